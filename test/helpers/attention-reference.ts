/**
 * The slow, obvious float64 attention reference: for every query row and head,
 * score every visible key, softmax in float64, sum the values. Inputs are the
 * tensors' exact values (f16/bf16 decoded), so the only error left in a kernel
 * is its own fp32 arithmetic and the output rounding.
 */

export interface RefProblem {
  q: Float64Array; // [numTokens, hq, d]
  k: Float64Array; // [kvRows, hkv, d]
  v: Float64Array;
  hq: number;
  hkv: number;
  d: number;
  qoIndptr: ArrayLike<number>;
  kvIndptr: ArrayLike<number>;
  kvLens?: ArrayLike<number>;
  mask: 'none' | 'causal' | 'tree';
  parents?: ArrayLike<number>;
  scale: number;
  /** Logit soft-capping: s <- softcap * tanh(s / softcap) before the mask (0 / undefined: off). */
  softcap?: number;
  /** Sliding window: key visible only if pos(query) - pos(key) < window (0 / undefined: off). */
  window?: number;
  /** Query row positions (default: kvPos + prefix + t, trees: + depth). */
  qPos?: ArrayLike<number>;
  /** Position of each sequence's key 0 (default 0). */
  kvPos?: ArrayLike<number>;
}

/** Ancestor-or-self sets per node, from parents (local indices, -1 = prefix). */
export function ancestorSets(parents: ArrayLike<number>, start: number, n: number): Set<number>[] {
  const sets: Set<number>[] = [];
  for (let t = 0; t < n; t++) {
    const p = parents[start + t]!;
    const s = new Set<number>(p >= 0 ? sets[p] : []);
    s.add(t);
    sets.push(s);
  }
  return sets;
}

export function attentionReference(p: RefProblem): { o: Float64Array; lse: Float64Array } {
  const numTokens = p.qoIndptr[p.qoIndptr.length - 1]!;
  const o = new Float64Array(numTokens * p.hq * p.d);
  const lse = new Float64Array(numTokens * p.hq).fill(-Infinity);
  const group = p.hq / p.hkv;
  for (let b = 0; b + 1 < p.qoIndptr.length; b++) {
    const qs = p.qoIndptr[b]!;
    const qlen = p.qoIndptr[b + 1]! - qs;
    const ks = p.kvIndptr[b]!;
    const kvLen = p.kvLens ? p.kvLens[b]! : p.kvIndptr[b + 1]! - ks;
    const prefix = kvLen - qlen;
    const anc = p.mask === 'tree' ? ancestorSets(p.parents!, qs, qlen) : [];
    // Positions (window only): a tree node sits at prefix + its depth (ancestors other than itself).
    const kvPos0 = p.kvPos ? p.kvPos[b]! : 0;
    const qPos = (t: number) => (p.qPos ? p.qPos[qs + t]! : kvPos0 + prefix + (p.mask === 'tree' ? anc[t]!.size - 1 : t));
    const keyPos = (j: number) => (p.mask === 'tree' && j >= prefix ? qPos(j - prefix) : kvPos0 + j);
    for (let t = 0; t < qlen; t++) {
      for (let h = 0; h < p.hq; h++) {
        const kh = Math.floor(h / group);
        const scores: number[] = [];
        const keys: number[] = [];
        for (let j = 0; j < kvLen; j++) {
          if (p.mask === 'causal' && j > prefix + t) continue;
          if (p.mask === 'tree' && j >= prefix && !anc[t]!.has(j - prefix)) continue;
          if (p.window && qPos(t) - keyPos(j) >= p.window) continue;
          let s = 0;
          for (let x = 0; x < p.d; x++) s += p.q[((qs + t) * p.hq + h) * p.d + x]! * p.k[((ks + j) * p.hkv + kh) * p.d + x]!;
          s *= p.scale;
          scores.push(p.softcap ? p.softcap * Math.tanh(s / p.softcap) : s);
          keys.push(j);
        }
        if (scores.length === 0) continue; // output 0, lse -inf
        const m = Math.max(...scores);
        let sum = 0;
        for (const s of scores) sum += Math.exp(s - m);
        const row = ((qs + t) * p.hq + h) * p.d;
        for (let i = 0; i < keys.length; i++) {
          const w = Math.exp(scores[i]! - m) / sum;
          const vrow = ((ks + keys[i]!) * p.hkv + kh) * p.d;
          for (let x = 0; x < p.d; x++) o[row + x] = o[row + x]! + w * p.v[vrow + x]!;
        }
        lse[(qs + t) * p.hq + h] = m + Math.log(sum);
      }
    }
  }
  return { o, lse };
}

/** Compares with atol + rtol*|ref|; returns the first mismatches (empty when all close). */
export function mismatches(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number, limit = 5): string[] {
  const out: string[] = [];
  if (got.length !== want.length) return [`length ${got.length} vs ${want.length}`];
  for (let i = 0; i < want.length && out.length < limit; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (g === w) continue; // includes -inf == -inf
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) out.push(`#${i}: got ${g}, want ${w} (diff ${Math.abs(g - w).toExponential(2)})`);
  }
  return out;
}

export { randomValues } from '../../lib/bench/suites/util.js';
