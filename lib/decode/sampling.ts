/**
 * Token sampling: greedy, temperature, top-k and top-p, seeded and reproducible.
 *
 * processed distribution p = top-p(top-k(softmax(logits / temperature)))
 *   top-k keeps the k most probable tokens (ties by lower id), top-p the smallest set of the
 *   most probable tokens whose mass reaches p; the rest get probability 0, p is renormalised.
 * A draw uses one uniform u in [0, 1) from a seeded generator: the inverse CDF over token
 * ids in increasing order. temperature 0 is greedy: argmax, ties to the lowest id.
 * The same processed distribution serves speculative verification (the draft's q, the
 * target's p), so sampling and verification agree on what "the distribution" is.
 */

import { ArgumentError } from '../errors.js';
import { Random, randomSeed } from './random.js';

export { Random, randomSeed } from './random.js';

export interface SamplingOptions {
  /** 0 (default) is greedy. */
  temperature?: number;
  /** Keep the k most probable tokens (0 or undefined: all). */
  topK?: number;
  /** Nucleus: keep the most probable tokens up to this mass (1 or undefined: all). */
  topP?: number;
  /** Seed of the random generator (default: a random seed, reported in the stats). */
  seed?: number;
}

export function checkSamplingOptions(o: SamplingOptions): Required<Omit<SamplingOptions, 'seed'>> & { seed: number } {
  const temperature = o.temperature ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new ArgumentError('temperature', 'a finite number >= 0', temperature);
  }
  const topK = o.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0) throw new ArgumentError('topK', 'an integer >= 0 (0 keeps all tokens)', topK);
  const topP = o.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw new ArgumentError('topP', 'a number in (0, 1]', topP);
  // No seed: a random one (reported in generate()'s stats), so sampled text differs run to run.
  const seed = o.seed ?? randomSeed();
  if (!Number.isSafeInteger(seed)) throw new ArgumentError('seed', 'an integer', seed);
  return { temperature, topK, topP, seed };
}

/** argmax with ties to the lowest id (NaN never wins). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]! || Number.isNaN(logits[best]!)) best = i;
  return best;
}

/** The processed distribution (float64) for temperature > 0. */
export function processedDistribution(logits: ArrayLike<number>, o: { temperature: number; topK: number; topP: number }): Float64Array {
  const n = logits.length;
  const p = new Float64Array(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    p[i] = Math.exp((logits[i]! - max) / o.temperature);
    sum += p[i]!;
  }
  for (let i = 0; i < n; i++) p[i] = p[i]! / sum;
  if ((o.topK > 0 && o.topK < n) || o.topP < 1) {
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
    const keep = new Uint8Array(n);
    const k = o.topK > 0 ? Math.min(o.topK, n) : n;
    let mass = 0;
    for (let r = 0; r < k; r++) {
      keep[order[r]!] = 1;
      mass += p[order[r]!]!;
      if (mass >= o.topP) break;
    }
    let kept = 0;
    for (let i = 0; i < n; i++) {
      if (!keep[i]) p[i] = 0;
      kept += p[i]!;
    }
    for (let i = 0; i < n; i++) p[i] = p[i]! / kept;
  }
  return p;
}

/** Inverse CDF over ids in increasing order; u in [0, 1). */
export function sampleFrom(p: ArrayLike<number>, u: number): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += p[i]!;
  const target = u * total;
  let acc = 0;
  let last = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! <= 0) continue;
    acc += p[i]!;
    last = i;
    if (target < acc) return i;
  }
  return last; // rounding: the last token with mass
}

/** Draws tokens from logits with the configured policy. */
export class Sampler {
  readonly options: ReturnType<typeof checkSamplingOptions>;
  readonly #random: Random;
  constructor(options: SamplingOptions = {}) {
    this.options = checkSamplingOptions(options);
    this.#random = new Random(this.options.seed);
  }
  get greedy(): boolean {
    return this.options.temperature === 0;
  }
  sample(logits: ArrayLike<number>): number {
    if (this.greedy) return argmax(logits);
    return sampleFrom(processedDistribution(logits, this.options), this.#random.next());
  }
}
