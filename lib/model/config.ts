/**
 * The model description every loader produces and the runtime consumes.
 *
 * canopy runs the Llama family (Llama 2/3, Mistral, Qwen2, SmolLM, TinyLlama,
 * llama2.c models): token embedding, pre-norm blocks of RMSNorm -> attention
 * (GQA, rotary embeddings) -> residual, RMSNorm -> SwiGLU MLP -> residual, a final
 * RMSNorm and an output head (tied to the embedding or separate).
 *
 * Canonical weight names and shapes (row-major; linear weights are [out, in] as in
 * PyTorch / Hugging Face, so y = W x):
 *   embed                 [vocabSize, dim]
 *   layers.{i}.attnNorm   [dim]
 *   layers.{i}.wq         [nHeads * headDim, dim]       layers.{i}.bq [nHeads * headDim]   (Qwen2 only)
 *   layers.{i}.wk         [nKvHeads * headDim, dim]     layers.{i}.bk [nKvHeads * headDim]
 *   layers.{i}.wv         [nKvHeads * headDim, dim]     layers.{i}.bv [nKvHeads * headDim]
 *   layers.{i}.wo         [dim, nHeads * headDim]
 *   layers.{i}.qNorm      [headDim]   layers.{i}.kNorm [headDim]   per-head RMSNorm of q and k    (qkNorm only: Qwen3)
 *   layers.{i}.ffnNorm    [dim]
 *   layers.{i}.w1         [hiddenDim, dim]   gate
 *   layers.{i}.w3         [hiddenDim, dim]   up
 *   layers.{i}.w2         [dim, hiddenDim]   down
 *   norm                  [dim]
 *   output                [vocabSize, dim]   absent when tiedEmbeddings
 *
 * Rotary embeddings rotate pairs of each head's q/k dims by angle pos * invFreq[i], invFreq[i] =
 * theta^(-2i/headDim) as changed by the config's RoPE scaling (lib/model/rope.ts states the math):
 *   'interleaved'  pairs (2i, 2i+1)            llama2.c, GGUF 'llama' (Meta's layout)
 *   'half'         pairs (i, i + headDim/2)    Hugging Face checkpoints (rotate_half), GGUF qwen2
 * The loader reports the layout the stored q/k rows are in; no weights are permuted at load.
 */

import { ArgumentError } from '../errors.js';
import type { ArchitectureName } from './architectures.js';

export type RopeStyle = 'interleaved' | 'half';

/** Llama 3 frequency scaling (rope_scaling.rope_type == "llama3"). */
export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** Linear position interpolation (rope_type "linear"; GGUF rope.scaling.type linear): positions / factor. */
export interface LinearRopeScaling {
  type: 'linear';
  factor: number;
}

/**
 * YaRN (rope_type "yarn"; GGUF rope.scaling.type yarn): inverse frequencies ramped between
 * theta^(-2i/d) / factor and theta^(-2i/d) over the dimensions set by betaFast / betaSlow, and
 * cos / sin multiplied by attentionFactor (resolved at load: HF's attention_factor, or
 * 0.1 ln(factor) + 1, or the mscale / mscale_all_dim ratio). See lib/model/rope.ts.
 */
export interface YarnRopeScaling {
  type: 'yarn';
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast: number;
  betaSlow: number;
  attentionFactor: number;
  /** Round the ramp's ends to whole dimensions (HF `truncate`, default true; llama.cpp always does). */
  truncate: boolean;
}

export type RopeScaling = Llama3RopeScaling | LinearRopeScaling | YarnRopeScaling;

export interface ModelConfig {
  /** lib/model/architectures.ts. */
  architecture: ArchitectureName;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Context length the model was trained for (a default for KV cache capacity). */
  maxSeqLen: number;
  ropeTheta: number;
  ropeStyle: RopeStyle;
  ropeScaling?: RopeScaling;
  /**
   * Per-frequency divisors of the inverse frequencies, [headDim / 2]: GGUF's rope_freqs.weight
   * (llama.cpp's converter writes Llama 3.1's llama3 scaling this way). Applied before ropeScaling.
   */
  ropeFreqFactors?: number[];
  normEps: number;
  tiedEmbeddings: boolean;
  /** Qwen2: q/k/v projections have biases. */
  qkvBias: boolean;
  /** Qwen3: per-head RMSNorm of q and k (weights qNorm, kNorm [headDim]) after the projections, before RoPE. */
  qkNorm?: boolean;
  bosTokenId?: number;
  eosTokenIds?: number[];
}

/** Canonical tensor names of layer i. */
export const layerTensorNames = (i: number) => ({
  attnNorm: `layers.${i}.attnNorm`,
  wq: `layers.${i}.wq`,
  wk: `layers.${i}.wk`,
  wv: `layers.${i}.wv`,
  wo: `layers.${i}.wo`,
  bq: `layers.${i}.bq`,
  bk: `layers.${i}.bk`,
  bv: `layers.${i}.bv`,
  qNorm: `layers.${i}.qNorm`,
  kNorm: `layers.${i}.kNorm`,
  ffnNorm: `layers.${i}.ffnNorm`,
  w1: `layers.${i}.w1`,
  w2: `layers.${i}.w2`,
  w3: `layers.${i}.w3`,
});

/** The largest value of each dimension canopy runs (the native model's limits, csrc/napi/model_bindings.cc). */
export const CONFIG_LIMITS = {
  dim: 1 << 16,
  hiddenDim: 1 << 18,
  nLayers: 1024,
  nHeads: 1024,
  nKvHeads: 1024,
  headDim: 256,
  vocabSize: 1 << 24,
} as const;

/**
 * Checks a config's dimensions against CONFIG_LIMITS (positive integers, headDim even, heads
 * divisible) before anything is sized from them, so an absurd count (num_hidden_layers 1e9)
 * fails at once with an ArgumentError naming `file` and the field, instead of running for a
 * minute and failing on a Map limit.
 */
export function checkConfigBounds(config: ModelConfig, file: string): void {
  for (const [key, max] of Object.entries(CONFIG_LIMITS) as [keyof typeof CONFIG_LIMITS, number][]) {
    const v = config[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max) {
      throw new ArgumentError(`${file}: ${key} must be an integer in [1, ${max}]; found ${String(v)}`);
    }
  }
  if (config.headDim % 2 !== 0) throw new ArgumentError(`${file}: headDim must be even (RoPE rotates pairs); found ${config.headDim}`);
  if (config.nHeads % config.nKvHeads !== 0) {
    throw new ArgumentError(`${file}: nHeads ${config.nHeads} must be a multiple of nKvHeads ${config.nKvHeads}`);
  }
  checkRopeConfig(config, file);
}

/** Checks the RoPE fields: theta, the scaling's numbers, the per-frequency factors' count. */
export function checkRopeConfig(config: ModelConfig, file: string): void {
  const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (!positive(config.ropeTheta) || config.ropeTheta <= 1) throw new ArgumentError(`${file}: ropeTheta must be a number > 1; found ${String(config.ropeTheta)}`);
  const f = config.ropeFreqFactors;
  if (f !== undefined) {
    if (!Array.isArray(f) || f.length !== config.headDim / 2 || !f.every(positive)) {
      throw new ArgumentError(`${file}: ropeFreqFactors must be ${config.headDim / 2} positive numbers (headDim / 2); found ${Array.isArray(f) ? `${f.length} values${f.every(positive) ? '' : ', not all positive'}` : String(f)}`);
    }
  }
  const s = config.ropeScaling;
  if (s === undefined) return;
  const fields: Record<RopeScaling['type'], string[]> = {
    llama3: ['factor', 'lowFreqFactor', 'highFreqFactor', 'originalMaxPositionEmbeddings'],
    linear: ['factor'],
    yarn: ['factor', 'originalMaxPositionEmbeddings', 'betaFast', 'betaSlow', 'attentionFactor'],
  };
  const want = fields[s.type as RopeScaling['type']];
  if (!want) throw new ArgumentError(`${file}: ropeScaling.type must be one of ${Object.keys(fields).join(', ')}; found ${JSON.stringify(s.type)}`);
  for (const k of want) {
    const v = (s as unknown as Record<string, unknown>)[k];
    if (!positive(v)) throw new ArgumentError(`${file}: ropeScaling.${k} (${s.type}) must be a positive number; found ${String(v)}`);
  }
  if (s.type === 'llama3' && !(s.highFreqFactor > s.lowFreqFactor)) {
    throw new ArgumentError(`${file}: ropeScaling.highFreqFactor ${s.highFreqFactor} must be greater than lowFreqFactor ${s.lowFreqFactor} (llama3)`);
  }
  if (s.type === 'yarn' && !(s.betaFast > s.betaSlow)) {
    throw new ArgumentError(`${file}: ropeScaling.betaFast ${s.betaFast} must be greater than betaSlow ${s.betaSlow} (yarn)`);
  }
}

/** The shape every canonical tensor must have under `config`. */
export function expectedShapes(config: ModelConfig): Map<string, number[]> {
  checkConfigBounds(config, 'config');
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize } = config;
  const shapes = new Map<string, number[]>();
  shapes.set('embed', [vocabSize, dim]);
  for (let i = 0; i < config.nLayers; i++) {
    const n = layerTensorNames(i);
    shapes.set(n.attnNorm, [dim]);
    shapes.set(n.wq, [nHeads * headDim, dim]);
    shapes.set(n.wk, [nKvHeads * headDim, dim]);
    shapes.set(n.wv, [nKvHeads * headDim, dim]);
    shapes.set(n.wo, [dim, nHeads * headDim]);
    if (config.qkvBias) {
      shapes.set(n.bq, [nHeads * headDim]);
      shapes.set(n.bk, [nKvHeads * headDim]);
      shapes.set(n.bv, [nKvHeads * headDim]);
    }
    if (config.qkNorm) {
      shapes.set(n.qNorm, [headDim]);
      shapes.set(n.kNorm, [headDim]);
    }
    shapes.set(n.ffnNorm, [dim]);
    shapes.set(n.w1, [hiddenDim, dim]);
    shapes.set(n.w3, [hiddenDim, dim]);
    shapes.set(n.w2, [dim, hiddenDim]);
  }
  shapes.set('norm', [dim]);
  if (!config.tiedEmbeddings) shapes.set('output', [vocabSize, dim]);
  return shapes;
}
