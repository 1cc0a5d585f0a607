/**
 * Token choice through the native sampler chain (lib/kernels/sampling.ts) for chain steps
 * (sampling, or greedy with bias / penalties; plain greedy steps choose inside Model.step).
 */
import { sampleRows } from '../kernels/sampling.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Run } from './run.js';

/**
 * Tokens for rows of logits, row i for sequence seqs[i]: one uniform per sampled row from the
 * sequence's generator, penalties from the sequence's tokens. -1 (the emitter ends the sequence
 * with 'error') where a row has nothing to choose from: greedy needs a value above -inf (NaN
 * never is), sampling a finite distribution (no NaN, no +Infinity).
 */
export async function chooseTokens(r: Run, logits: Tensor, seqs: number[]): Promise<Int32Array> {
  const uniforms = r.sampling ? Float64Array.from(seqs, (s) => r.seqs[s]!.random.next()) : undefined;
  return sampleRows(logits, r.chain, uniforms, seqs.map((s) => r.seqs[s]!.all));
}
