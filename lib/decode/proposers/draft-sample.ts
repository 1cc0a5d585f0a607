/**
 * The draft's token choice through the native sampler chain: the rows of one drafted position,
 * each penalised from its own context (the sequence's tokens, then the drafts so far), as the
 * target's rows are; q (the processed distribution) comes back when sampling, for verification.
 */
import { type SamplerChain, samplingChain } from '../../kernels/sampling.js';
import { Tensor } from '../../tensor/tensor.js';
import type { Random } from '../random.js';

export async function chainRows(chain: SamplerChain, vocab: number, rows: Float32Array[], contexts: number[][], random: Random): Promise<{ chosen: Int32Array; q?: Float32Array }> {
  const sampling = chain.temperature > 0;
  const host = new Float32Array(rows.length * vocab);
  rows.forEach((row, a) => host.set(row, a * vocab));
  const uniforms = sampling ? Float64Array.from(rows, () => random.next()) : undefined;
  const res = await samplingChain(Tensor.from(host, { shape: [rows.length, vocab] }), chain, { contexts, ...(uniforms ? { uniforms } : {}), probs: sampling });
  const q = res.probs?.toFloat32();
  res.probs?.dispose();
  return { chosen: res.tokens, ...(q ? { q } : {}) };
}
