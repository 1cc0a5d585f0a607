/** What a draft model's steps hand back (draft-state.ts), and the small helpers around them. */
import type { SamplerChain } from '../../kernels/sampling.js';
import type { Tensor } from '../../tensor/tensor.js';

/** One draft step's outcome for a sequence: its token (-1: no usable logit) and, when asked, the logits row. */
export interface DraftRow {
  token: number;
  logits?: Float32Array;
}

/** The top-k candidates of a sequence's row: ids (argmax order, -1 past the row) and log-probabilities. */
export interface DraftScores {
  ids: Int32Array;
  logprobs: Float32Array;
}

/** How a draft step chooses: argmax (default), or the sampler chain (per item: its uniform, penalty context and q row). */
export interface DraftChoice {
  logits?: boolean;
  chain?: SamplerChain;
  uniforms?: number[];
  contexts?: ReadonlyArray<readonly number[]>;
  q?: { tensor: Tensor; rows: number[] };
}

/** Indices of `items` by increasing sequence. */
export function sortedOrder(items: ReadonlyArray<{ sequence: number }>): number[] {
  return items.map((_, i) => i).sort((a, b) => items[a]!.sequence - items[b]!.sequence);
}

/** Row b of a sorted call back to the callers' order. */
export function rowsBack<T>(order: number[], row: (b: number) => T): T[] {
  const out = new Array<T>(order.length);
  order.forEach((i, b) => (out[i] = row(b)));
  return out;
}

/** The largest probability of softmax(logits). */
export function softmaxMax(logits: Float32Array): number {
  let m = -Infinity;
  for (const x of logits) m = Math.max(m, x);
  let z = 0;
  for (const x of logits) z += Math.exp(x - m);
  return 1 / z;
}
