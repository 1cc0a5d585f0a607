/**
 * Rotary embedding frequencies: inv_freq[j] = theta^(-2j / headDim), then the config's scaling:
 *   llama3     (rope_type "llama3"): low frequencies divided by `factor`, high ones kept, a
 *              smooth blend in between
 *   linear     every frequency divided by `factor` (position interpolation)
 *   longrope   (Phi-3) frequency j divided by longFactors[j] when the context exceeds
 *              originalMaxPositionEmbeddings, else by shortFactors[j]; its attention factor
 *              scales q and k (ropeAttentionFactor), i.e. the softmax scale by its square
 * Gemma 3's local (sliding-window) layers rotate with ropeThetaLocal, unscaled
 * (ropeLocalInverseFrequencies).
 */
import type { ModelConfig } from './config.js';

function baseFrequencies(theta: number, headDim: number): number[] {
  return Array.from({ length: headDim / 2 }, (_, j) => Math.pow(theta, (-2 * j) / headDim));
}

/**
 * inv_freq of the global layers. `contextLength` (default config.maxSeqLen, as llama.cpp's
 * default context) picks LongRoPE's long or short factors.
 */
export function ropeInverseFrequencies(config: ModelConfig, contextLength = config.maxSeqLen): Float32Array {
  const freqs = baseFrequencies(config.ropeTheta, config.headDim);
  const s = config.ropeScaling;
  const out = new Float32Array(freqs.length);
  for (let j = 0; j < freqs.length; j++) {
    let f = freqs[j]!;
    if (s?.type === 'linear') {
      f = f / s.factor;
    } else if (s?.type === 'longrope') {
      f = f / (contextLength > s.originalMaxPositionEmbeddings ? s.longFactors : s.shortFactors)[j]!;
    } else if (s) {
      const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) {
        f = f / s.factor;
      } else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
    out[j] = f;
  }
  return out;
}

/** inv_freq of the sliding-window layers when they have their own base (Gemma 3), else undefined. */
export function ropeLocalInverseFrequencies(config: ModelConfig): Float32Array | undefined {
  if (config.ropeThetaLocal === undefined) return undefined;
  return Float32Array.from(baseFrequencies(config.ropeThetaLocal, config.headDim));
}

/** The factor RoPE multiplies q and k by (LongRoPE's attention factor; 1 otherwise). */
export function ropeAttentionFactor(config: ModelConfig): number {
  return config.ropeScaling?.type === 'longrope' ? config.ropeScaling.attentionFactor : 1;
}
