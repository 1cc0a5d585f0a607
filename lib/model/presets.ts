/**
 * Standard model shapes for benchmarks (randomly initialised, no download): the
 * configurations of well-known checkpoints.
 */
import type { ModelConfig } from './config.js';

const base = { architecture: 'llama' as const, ropeStyle: 'half' as const, normEps: 1e-5, qkvBias: false };

export const MODEL_PRESETS: Record<string, ModelConfig> = {
  /** SmolLM-135M. */
  'smollm-135m': { ...base, dim: 576, hiddenDim: 1536, nLayers: 30, nHeads: 9, nKvHeads: 3, headDim: 64, vocabSize: 49152, maxSeqLen: 2048, ropeTheta: 10000, tiedEmbeddings: true },
  /** Llama 3.2 1B. */
  'llama-1b': {
    ...base, dim: 2048, hiddenDim: 8192, nLayers: 16, nHeads: 32, nKvHeads: 8, headDim: 64, vocabSize: 128256, maxSeqLen: 131072, ropeTheta: 500000, tiedEmbeddings: true,
    ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
  },
  /** TinyLlama 1.1B. */
  'tinyllama-1.1b': { ...base, dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, headDim: 64, vocabSize: 32000, maxSeqLen: 2048, ropeTheta: 10000, tiedEmbeddings: false },
};

/** Bytes of weights one decode step reads: every matrix once (the embedding row is negligible; tied heads read it as the output). */
export function weightBytesPerToken(c: ModelConfig, bytesPerWeight: number): number {
  const attn = c.dim * c.nHeads * c.headDim * 2 + c.dim * c.nKvHeads * c.headDim * 2;
  const mlp = 3 * c.dim * c.hiddenDim;
  return (c.nLayers * (attn + mlp) + c.vocabSize * c.dim) * bytesPerWeight;
}
