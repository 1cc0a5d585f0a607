/**
 * The slow, obvious float64 reference of the sampler chain (csrc/common/sampling.h): a full
 * sort of the vocabulary, Math.exp, the penalties and bias written as the header states them.
 * The native kernels must pick the same token for the same uniform (they never sort the
 * vocabulary and use their own exp; see the header for why that can move a token only when a
 * uniform falls within ~1e-15 of a boundary).
 */
import { chunkedSum, inverseCdf } from './verify-reference.js';

export interface ChainRef {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  frequencyPenalty: number;
  presencePenalty: number;
  penaltyLastN: number;
  logitBias: ReadonlyMap<number, number>;
}

export const PLAIN: ChainRef = {
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  repeatPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  penaltyLastN: 64,
  logitBias: new Map(),
};

/** Stage A: bias, then penalties from the last penaltyLastN tokens of `context` (f32 results). */
export function processLogitsRef(logits: ArrayLike<number>, c: ChainRef, context: readonly number[] = []): Float32Array {
  const l = Float32Array.from(logits);
  for (const [t, b] of c.logitBias) l[t] = Math.fround(l[t]! + b);
  const penalties = c.penaltyLastN !== 0 && (c.repeatPenalty !== 1 || c.frequencyPenalty !== 0 || c.presencePenalty !== 0);
  if (penalties) {
    const window = c.penaltyLastN < 0 ? context : context.slice(Math.max(0, context.length - c.penaltyLastN));
    const counts = new Map<number, number>();
    for (const t of window) counts.set(t, (counts.get(t) ?? 0) + 1);
    for (const [t, n] of counts) {
      let d = l[t]!;
      if (c.repeatPenalty !== 1) d = d > 0 ? d / c.repeatPenalty : d * c.repeatPenalty;
      d = d - n * c.frequencyPenalty;
      d = d - c.presencePenalty;
      l[t] = Math.fround(d);
    }
  }
  return l;
}

/**
 * Stage B's kept weights r (unnormalised: w of the kept tokens, 0 elsewhere), or null when the
 * row has no finite distribution. temperature must be > 0.
 */
export function keptWeightsRef(l: Float32Array, c: ChainRef): Float64Array | null {
  const V = l.length;
  let m = -Infinity;
  for (let y = 0; y < V; y++) {
    if (Number.isNaN(l[y]!) || l[y] === Infinity) return null;
    m = Math.max(m, l[y]!);
  }
  if (m === -Infinity) return null;
  const w = new Float64Array(V);
  for (let y = 0; y < V; y++) {
    const x = (l[y]! - m) / c.temperature;
    w[y] = x >= -708 ? Math.exp(x) : 0;
  }
  const order = Array.from({ length: V }, (_, y) => y).sort((a, b) => (l[a]! > l[b]! ? -1 : l[a]! < l[b]! ? 1 : a - b));
  const rank = new Int32Array(V);
  order.forEach((y, i) => (rank[y] = i));
  const kk = c.topK >= 1 && c.topK < V ? c.topK : V;
  let kp = kk;
  if (c.topP < 1) {
    const zk = chunkedSum(Float64Array.from(w, (v, y) => (rank[y]! < kk ? v : 0)));
    const target = c.topP * zk;
    let cum = 0;
    for (let j = 0; j < kk; j++) {
      cum = cum + w[order[j]!]!;
      if (cum >= target) {
        kp = j + 1;
        break;
      }
    }
  }
  let km = V;
  if (c.minP > 0) {
    km = 0;
    for (let y = 0; y < V; y++) if (w[y]! >= c.minP) km++;
  }
  const K = Math.min(kk, kp, km);
  return Float64Array.from(w, (v, y) => (rank[y]! < K ? v : 0));
}

/** The chain's token for one row: -1 when none (greedy: nothing above -inf; sampling: no finite distribution). */
export function sampleRef(logits: ArrayLike<number>, c: ChainRef, u: number, context: readonly number[] = []): number {
  const l = processLogitsRef(logits, c, context);
  if (c.temperature === 0) {
    let best = -1;
    let bestV = -Infinity;
    for (let y = 0; y < l.length; y++) {
      const v = Number.isNaN(l[y]!) ? -Infinity : l[y]!;
      if (v > bestV) {
        bestV = v;
        best = y;
      }
    }
    return best;
  }
  const r = keptWeightsRef(l, c);
  return r ? inverseCdf(r, u) : -1;
}

/** The processed distribution (float64, sums to 1) for temperature > 0; null when the row has none. */
export function probsRef(logits: ArrayLike<number>, c: ChainRef, context: readonly number[] = []): Float64Array | null {
  const r = keptWeightsRef(processLogitsRef(logits, c, context), c);
  if (!r) return null;
  const z = chunkedSum(r);
  return r.map((v) => v / z);
}
