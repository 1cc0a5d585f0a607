/**
 * Sampling options and the seeded uniforms of a generation. The token choice itself is native:
 * the sampler chain of lib/kernels/sampling.ts (logit bias, penalties, temperature, top-k,
 * top-p, min-p, a draw with a uniform from the sequence's generator); the float64 TypeScript
 * sampler is a test reference (test/helpers/sampling-reference.ts). The same processed
 * distribution serves speculative verification (the draft's q, the target's p), with each
 * draft-tree row penalised from its own ancestor path.
 */

import { ArgumentError } from '../errors.js';
import { type SamplerChain, type SamplerChainOptions, checkSamplerChain, sampleRows } from '../kernels/sampling.js';
import { Tensor } from '../tensor/tensor.js';
import { Random, randomSeed } from './random.js';

export { Random, randomSeed } from './random.js';

export interface SamplingOptions extends SamplerChainOptions {
  /** Seed of the random generator (default: a random seed, reported in the stats). */
  seed?: number;
}

/** The validated sampling options: the chain's settings and the seed. */
export type CheckedSampling = SamplerChain & { seed: number };

/** Validates the sampling options (ArgumentError naming the option); `vocab` bounds logitBias. */
export function checkSamplingOptions(o: SamplingOptions, vocab?: number): CheckedSampling {
  const chain = checkSamplerChain(o, vocab);
  // No seed: a random one (reported in generate()'s stats), so sampled text differs run to run.
  const seed = o.seed ?? randomSeed();
  if (!Number.isSafeInteger(seed)) throw new ArgumentError('seed', 'an integer', seed);
  return { ...chain, seed };
}

/** argmax with ties to the lowest id (NaN never wins). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]! || Number.isNaN(logits[best]!)) best = i;
  return best;
}

/**
 * Draws tokens from logits with a configured chain and its own seeded generator (the native
 * sampler chain; greedy when temperature is 0). `context`: the tokens before the position the
 * logits predict (for the penalties).
 */
export class Sampler {
  readonly options: CheckedSampling;
  readonly #random: Random;
  constructor(options: SamplingOptions = {}) {
    this.options = checkSamplingOptions(options);
    this.#random = new Random(this.options.seed);
  }
  get greedy(): boolean {
    return this.options.temperature === 0;
  }
  /** The token for one row of logits; -1 when the row has no finite distribution. */
  async sample(logits: ArrayLike<number>, context: readonly number[] = []): Promise<number> {
    const row = Tensor.from(Float32Array.from(logits), { shape: [1, logits.length] });
    const u = Float64Array.of(this.greedy ? 0 : this.#random.next());
    return (await sampleRows(row, this.options, u, [context]))[0]!;
  }
}
