/**
 * A float64 reference of RoPE scaling, written apart from lib/model/rope.ts and in the other
 * published form: the rotation angle of pair j at position p as ggml's rope_yarn computes it
 * (theta_extrap = p * base^(-2j/d) / ff[j], theta_interp = theta_extrap / factor, mixed by the
 * ramp), and Llama 3's per-frequency factor as llama.cpp's converter writes rope_freqs
 * (a divisor of the frequency). Used by the RoPE tests on hand-picked positions and by the
 * float64 forward reference (test/helpers/llama-reference.ts).
 */
import type { ModelConfig } from '../../lib/model/config.js';

/** convert_hf_to_gguf.py's Llama 3 rope_freqs: the divisor of each frequency (1, factor, or the blend). */
export function llama3FreqFactors(headDim: number, theta: number, factor: number, low: number, high: number, originalMax: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < headDim; i += 2) {
    const freq = 1 / theta ** (i / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < originalMax / high) out.push(1);
    else if (wavelen > originalMax / low) out.push(factor);
    else {
      const smooth = (originalMax / wavelen - low) / (high - low);
      out.push(1 / ((1 - smooth) / factor + smooth));
    }
  }
  return out;
}

/** The frequency of pair j (the angle at position 1), in float64. */
export function referenceFrequency(config: ModelConfig, j: number, contextLength = config.maxSeqLen): number {
  const d = config.headDim;
  let f = 1 / config.ropeTheta ** ((2 * j) / d);
  if (config.ropeFreqFactors) f /= config.ropeFreqFactors[j]!;
  const s = config.ropeScaling;
  if (!s) return f;
  if (s.type === 'linear') return f / s.factor;
  // LongRoPE as transformers: 1 / (ext_factors * base^(2j/d)), long factors past the original context.
  if (s.type === 'longrope') return 1 / ((contextLength > s.originalMaxPositionEmbeddings ? s.longFactors : s.shortFactors)[j]! * config.ropeTheta ** ((2 * j) / d));
  if (s.type === 'llama3') {
    const [ff] = llama3FreqFactorsOf(f, s.factor, s.lowFreqFactor, s.highFreqFactor, s.originalMaxPositionEmbeddings);
    return f / ff;
  }
  // YaRN as ggml: ramp over i0 / 2 between the correction dims.
  const corrDim = (nRot: number) => (d * Math.log(s.originalMaxPositionEmbeddings / (nRot * 2 * Math.PI))) / (2 * Math.log(config.ropeTheta));
  const start = s.truncate ? Math.floor(corrDim(s.betaFast)) : corrDim(s.betaFast);
  const end = s.truncate ? Math.ceil(corrDim(s.betaSlow)) : corrDim(s.betaSlow);
  const lo = Math.max(0, start);
  const hi = Math.min(d - 1, end);
  const y = ((2 * j) / 2 - lo) / Math.max(0.001, hi - lo);
  const rampMix = 1 - Math.min(1, Math.max(0, y)); // the weight of the unscaled (extrapolated) frequency
  const extrap = f;
  const interp = f / s.factor;
  return interp * (1 - rampMix) + extrap * rampMix;
}

function llama3FreqFactorsOf(freq: number, factor: number, low: number, high: number, originalMax: number): [number] {
  const wavelen = (2 * Math.PI) / freq;
  if (wavelen < originalMax / high) return [1];
  if (wavelen > originalMax / low) return [factor];
  const smooth = (originalMax / wavelen - low) / (high - low);
  return [1 / ((1 - smooth) / factor + smooth)];
}

/** The factor multiplying cos and sin: YaRN's attention factor, else 1. */
export function referenceAttentionFactor(config: ModelConfig): number {
  const s = config.ropeScaling;
  return s?.type === 'yarn' || s?.type === 'longrope' ? s.attentionFactor : 1;
}

/** All frequencies of `config` in float64 (`contextLength` picks LongRoPE's factors). */
export function referenceFrequencies(config: ModelConfig, contextLength = config.maxSeqLen): number[] {
  return Array.from({ length: config.headDim / 2 }, (_, j) => referenceFrequency(config, j, contextLength));
}

/** Gemma 3's local-layer frequencies theta_local^(-2j/d) in float64, or undefined. */
export function referenceLocalFrequencies(config: ModelConfig): number[] | undefined {
  const t = config.ropeThetaLocal;
  return t === undefined ? undefined : Array.from({ length: config.headDim / 2 }, (_, j) => 1 / t ** ((2 * j) / config.headDim));
}
