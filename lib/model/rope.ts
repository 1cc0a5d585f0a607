/**
 * Rotary embedding parameters: the inverse frequency of each pair of dims and the attention
 * factor, from a ModelConfig. The kernels (csrc/common/transformer_ops.h, Rope) rotate pair j of
 * every q and k head at position p by the angle p * invFreq[j] and multiply the pair by
 * attentionFactor. This file is where the math is stated; test/helpers/rope-reference.ts is an
 * independent float64 reference of it.
 *
 * With d = headDim and j = 0 .. d/2 - 1, computed in float64 and rounded once to f32:
 *
 *   base[j] = theta^(-2j/d) / ff[j]            ff: ropeFreqFactors (GGUF rope_freqs.weight), else 1
 *
 * then by ropeScaling.type (none: invFreq = base, attentionFactor = 1):
 *
 *   linear   invFreq[j] = base[j] / factor     (HF "linear"; llama.cpp freq_scale = 1 / factor)
 *
 *   llama3   (HF _compute_llama3_parameters; llama.cpp gets the same numbers from rope_freqs.weight)
 *            wavelen = 2 pi / base[j], L = originalMaxPositionEmbeddings
 *            wavelen < L / highFreqFactor:  invFreq = base                    (high frequencies kept)
 *            wavelen > L / lowFreqFactor:   invFreq = base / factor           (low frequencies scaled)
 *            otherwise, s = (L / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor):
 *                                           invFreq = (1 - s) base / factor + s base
 *
 *   yarn     (HF _compute_yarn_parameters; ggml's rope_yarn with ext_factor 1)
 *            corr(r) = d ln(L / (2 pi r)) / (2 ln theta)         the dim index that turns r times over L
 *            low = max(0, floor(corr(betaFast))), high = min(d - 1, ceil(corr(betaSlow)))
 *                  (without floor / ceil when truncate is false)
 *            ramp[j] = clamp((j - low) / max(0.001, high - low), 0, 1)
 *            invFreq[j] = base[j] / factor * ramp[j] + base[j] * (1 - ramp[j])
 *                  (dims below low keep their frequency; above high they are interpolated)
 *            attentionFactor = ropeScaling.attentionFactor (the loaders resolve HF's
 *                  attention_factor, or 0.1 ln(factor) + 1, or the mscale ratio; llama.cpp's
 *                  mscale gives the same), multiplying cos and sin: q.k grows by its square.
 *
 *   longrope (Phi-3; HF _compute_longrope_parameters, llama.cpp's rope_factors_long / _short)
 *            invFreq[j] = base[j] / ext[j], ext = longFactors when the context the model runs
 *                  with (contextLength, default maxSeqLen) exceeds originalMaxPositionEmbeddings,
 *                  else shortFactors (so the short factors apply at every length within it)
 *            attentionFactor = ropeScaling.attentionFactor (sqrt(1 + ln(s) / ln(original)))
 *
 * Gemma 3's sliding-window layers rotate with ropeThetaLocal, unscaled: theta_local^(-2j/d)
 * (ropeLocalInverseFrequencies).
 */
import type { ModelConfig } from './config.js';

export interface RopeParameters {
  /** [headDim / 2] f32 inverse frequencies. */
  invFreq: Float32Array;
  /** Multiplies cos and sin (YaRN); 1 otherwise. */
  attentionFactor: number;
}

/** YaRN's ramp ends [low, high] in pair indices (see the module comment). */
export function yarnCorrectionRange(headDim: number, theta: number, originalMax: number, betaFast: number, betaSlow: number, truncate: boolean): [number, number] {
  const corr = (rotations: number) => (headDim * Math.log(originalMax / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = corr(betaFast);
  let high = corr(betaSlow);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  return [Math.max(low, 0), Math.min(high, headDim - 1)];
}

/** The inverse frequencies and attention factor of `config` (see the module comment). */
export function ropeParameters(config: ModelConfig, contextLength = config.maxSeqLen): RopeParameters {
  const d = config.headDim;
  const half = d / 2;
  const out = new Float32Array(half);
  const s = config.ropeScaling;
  const ff = config.ropeFreqFactors;
  const ramp =
    s?.type === 'yarn'
      ? (() => {
          const [low, high] = yarnCorrectionRange(d, config.ropeTheta, s.originalMaxPositionEmbeddings, s.betaFast, s.betaSlow, s.truncate);
          return (j: number) => Math.min(1, Math.max(0, (j - low) / Math.max(0.001, high - low)));
        })()
      : undefined;
  for (let j = 0; j < half; j++) {
    const base = Math.pow(config.ropeTheta, (-2 * j) / d) / (ff ? ff[j]! : 1);
    let f = base;
    if (s?.type === 'linear') {
      f = base / s.factor;
    } else if (s?.type === 'llama3') {
      const L = s.originalMaxPositionEmbeddings;
      const wavelen = (2 * Math.PI) / base;
      if (wavelen > L / s.lowFreqFactor) {
        f = base / s.factor;
      } else if (wavelen >= L / s.highFreqFactor) {
        const smooth = (L / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f = ((1 - smooth) * base) / s.factor + smooth * base;
      }
    } else if (s?.type === 'yarn') {
      const r = ramp!(j);
      f = (base / s.factor) * r + base * (1 - r);
    } else if (s?.type === 'longrope') {
      f = base / (contextLength > s.originalMaxPositionEmbeddings ? s.longFactors : s.shortFactors)[j]!;
    }
    out[j] = f;
  }
  return { invFreq: out, attentionFactor: s?.type === 'yarn' || s?.type === 'longrope' ? s.attentionFactor : 1 };
}

/** ropeParameters(config, contextLength).invFreq. */
export function ropeInverseFrequencies(config: ModelConfig, contextLength = config.maxSeqLen): Float32Array {
  return ropeParameters(config, contextLength).invFreq;
}

/** inv_freq of the sliding-window layers when they have their own base (Gemma 3), else undefined. */
export function ropeLocalInverseFrequencies(config: ModelConfig): Float32Array | undefined {
  if (config.ropeThetaLocal === undefined) return undefined;
  const d = config.headDim;
  return Float32Array.from({ length: d / 2 }, (_, j) => Math.pow(config.ropeThetaLocal!, (-2 * j) / d));
}

/** YaRN's default attention factor for `factor` (HF get_mscale): 1 for factor <= 1, else 0.1 * mscale * ln(factor) + 1. */
export function yarnMscale(factor: number, mscale = 1): number {
  return factor <= 1 ? 1 : 0.1 * mscale * Math.log(factor) + 1;
}
