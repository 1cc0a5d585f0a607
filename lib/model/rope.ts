/**
 * Rotary embedding frequencies: inv_freq[j] = theta^(-2j / headDim), with Llama 3
 * scaling when the config asks for it (rope_type "llama3": low frequencies divided by
 * `factor`, high frequencies kept, a smooth blend in between).
 */
import type { ModelConfig } from './config.js';

export function ropeInverseFrequencies(config: ModelConfig): Float32Array {
  const half = config.headDim / 2;
  const out = new Float32Array(half);
  const s = config.ropeScaling;
  for (let j = 0; j < half; j++) {
    let f = Math.pow(config.ropeTheta, (-2 * j) / config.headDim);
    if (s) {
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
