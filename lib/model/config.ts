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
 * LongRoPE (Phi-3 / Phi-3.5, rope_scaling type "longrope"): frequency j divided by longFactors[j]
 * when the context the model runs with exceeds originalMaxPositionEmbeddings, else by
 * shortFactors[j] (so the short factors change the model at every length); q and k are also
 * multiplied by attentionFactor (sqrt(1 + ln(s) / ln(originalMaxPositionEmbeddings)),
 * s = maxSeqLen / originalMaxPositionEmbeddings, unless the checkpoint gives it).
 */
export interface LongRopeScaling {
  type: 'longrope';
  longFactors: number[];
  shortFactors: number[];
  originalMaxPositionEmbeddings: number;
  attentionFactor: number;
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

export type RopeScaling = Llama3RopeScaling | LinearRopeScaling | YarnRopeScaling | LongRopeScaling;

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
  // Gemma 2 / 3 and Phi-3 options; absent means the plain Llama block.
  /** Gemma: the embedding rows are multiplied by this (sqrt(dim)). Default 1. */
  embedScale?: number;
  /** MLP activation: 'silu' (SwiGLU, default) or 'gelu_tanh' (GeGLU with the tanh approximation of gelu: Gemma). */
  activation?: 'silu' | 'gelu_tanh';
  /** Gemma: RMSNorms of the attention output and of the MLP output before each residual add (layers.{i}.postAttnNorm, postFfnNorm). */
  postNorms?: boolean;
  /** Attention softmax scale; default 1/sqrt(headDim) (Gemma: query_pre_attn_scalar^-0.5). */
  attnScale?: number;
  /** Gemma 2: attention logits become attnSoftcap * tanh(logits / attnSoftcap). */
  attnSoftcap?: number;
  /** Gemma 2: output logits become finalSoftcap * tanh(logits / finalSoftcap). */
  finalSoftcap?: number;
  /** Sliding window of each layer (0: global attention); absent: every layer is global. */
  layerWindows?: number[];
  /** Gemma 3: RoPE base of the windowed (local) layers, unscaled; the global layers use ropeTheta and ropeScaling. */
  ropeThetaLocal?: number;
  /** Qwen3, Gemma 3: per-head RMSNorm of q and k (weights qNorm, kNorm [headDim]) after the projections, before RoPE. */
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
  postAttnNorm: `layers.${i}.postAttnNorm`,
  postFfnNorm: `layers.${i}.postFfnNorm`,
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
  if (config.layerWindows !== undefined) {
    const w = config.layerWindows;
    if (!Array.isArray(w) || w.length !== config.nLayers || w.some((x) => !Number.isSafeInteger(x) || x < 0 || x > 0x7fffffff)) {
      throw new ArgumentError(`${file}: layerWindows must hold nLayers (${config.nLayers}) integers >= 0 (0 = global attention); found ${String(w)}`);
    }
  }
  for (const key of ['embedScale', 'attnScale', 'attnSoftcap', 'finalSoftcap', 'ropeThetaLocal'] as const) {
    const v = config[key];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) {
      throw new ArgumentError(`${file}: ${key} must be a finite number > 0; found ${String(v)}`);
    }
  }
  const s = config.ropeScaling;
  if (s?.type === 'longrope') {
    for (const f of [s.longFactors, s.shortFactors]) {
      if (!Array.isArray(f) || f.length !== config.headDim / 2 || f.some((x) => !(Number.isFinite(x) && x > 0))) {
        throw new ArgumentError(`${file}: LongRoPE factors must be headDim / 2 (${config.headDim / 2}) positive numbers; found ${Array.isArray(f) ? `${f.length} values` : String(f)}`);
      }
    }
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
    longrope: ['originalMaxPositionEmbeddings', 'attentionFactor'],
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
    if (config.postNorms) {
      shapes.set(n.postAttnNorm, [dim]);
      shapes.set(n.postFfnNorm, [dim]);
    }
  }
  shapes.set('norm', [dim]);
  if (!config.tiedEmbeddings) shapes.set('output', [vocabSize, dim]);
  return shapes;
}
