/**
 * The Gemma 2 / Gemma 3 / Phi-3 parts of a ModelConfig, from GGUF metadata (as llama.cpp reads
 * it) and from a Hugging Face config.json (as transformers reads it), and the row splits of
 * Phi-3's fused matrices. Facts used (llama.cpp's gemma2 / gemma3 / phi3 builders and hparams,
 * transformers' modeling_gemma2 / gemma3 / phi3):
 *
 *   Gemma 2  embedding x sqrt(dim); GeGLU (tanh gelu); RMSNorms after attention and after the MLP
 *            (GGUF post_attention_norm, post_ffw_norm; HF post_attention_layernorm,
 *            post_feedforward_layernorm, with pre_feedforward_layernorm the MLP's input norm);
 *            attention logits soft-capped at attn_logit_softcapping (default 50), output logits
 *            at final_logit_softcapping (default 30); even layers attend within a sliding window
 *            (default 4096), odd layers globally; query scale query_pre_attn_scalar^-0.5 (HF),
 *            which llama.cpp takes as 1/sqrt(headDim) except for the 27B (46 layers:
 *            1/sqrt(dim / heads)). Tied embeddings.
 *   Gemma 3  as Gemma 2 without soft-capping (unless the file gives a final cap), with per-head
 *            q/k RMSNorms, 5 local layers (window sliding_window) per global one (layer i is
 *            global iff (i + 1) % 6 == 0, or HF layer_types), local RoPE base 10000 unscaled,
 *            global RoPE base rope_theta (1M) with the config's linear scaling (8 on 4B+);
 *            llama.cpp's query scale rule as Gemma 2 with the 27B at 62 layers.
 *   GGUF norm weights of Gemma already hold llama.cpp's +1; HF's hold w (the model uses 1 + w).
 *   Phi-3    fused attn_qkv / qkv_proj rows [q | k | v] and ffn_up / gate_up_proj rows
 *            [gate | up]; LongRoPE factors rope_factors_long / _short (GGUF tensors, HF
 *            rope_scaling long_factor / short_factor), the original context
 *            (rope.scaling.original_context_length / original_max_position_embeddings) and the
 *            attention factor (rope.scaling.attn_factor; HF: sqrt(1 + ln(s) / ln(orig)) with
 *            s = max_position_embeddings / orig, unless rope_scaling.attention_factor).
 */
import { ArgumentError } from '../../errors.js';
import type { LongRopeScaling, ModelConfig } from '../config.js';

/** The options of architecture `arch` that are not plain Llama (ModelConfig's Gemma / Phi-3 fields). */
export type ArchOptions = Pick<
  ModelConfig,
  'embedScale' | 'activation' | 'postNorms' | 'attnScale' | 'attnSoftcap' | 'finalSoftcap' | 'layerWindows' | 'ropeThetaLocal'
>;

interface Shape {
  dim: number;
  nHeads: number;
  headDim: number;
  nLayers: number;
}

/** llama.cpp's Gemma query scale: 1/sqrt(headDim), except for the 27B models (by layer count). */
function llamaCppGemmaScale(arch: 'gemma2' | 'gemma3', s: Shape): number {
  const is27b = arch === 'gemma2' ? s.nLayers === 46 : s.nLayers === 62;
  return 1 / Math.sqrt(is27b ? Math.floor(s.dim / s.nHeads) : s.headDim);
}

/** sqrt(dim) as llama.cpp computes it (sqrtf in f32). */
const embedScaleOf = (dim: number) => Math.fround(Math.sqrt(dim));

/** Layer windows: layer i is windowed iff isLocal(i). */
function windows(nLayers: number, window: number, isLocal: (i: number) => boolean): number[] {
  return Array.from({ length: nLayers }, (_, i) => (isLocal(i) ? window : 0));
}

/**
 * The Gemma options from GGUF metadata `get(key)` (key without the architecture prefix; numbers
 * or undefined). `path` names the file in errors.
 */
export function ggufGemmaOptions(arch: 'gemma2' | 'gemma3', get: (key: string) => number | undefined, s: Shape, path: string): ArchOptions {
  const positive = (key: string, fallback: number | undefined): number | undefined => {
    const v = get(key) ?? fallback;
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new ArgumentError(`${path}: ${arch}.${key} must be > 0; found ${v}`);
    return v;
  };
  const common: ArchOptions = {
    embedScale: embedScaleOf(s.dim),
    activation: 'gelu_tanh',
    postNorms: true,
    attnScale: llamaCppGemmaScale(arch, s),
  };
  if (arch === 'gemma2') {
    const window = positive('attention.sliding_window', 4096)!;
    const finalCap = positive('final_logit_softcapping', 30);
    return {
      ...common,
      attnSoftcap: positive('attn_logit_softcapping', 50)!,
      ...(finalCap !== undefined ? { finalSoftcap: finalCap } : {}),
      layerWindows: windows(s.nLayers, window, (i) => i % 2 === 0),
    };
  }
  const window = get('attention.sliding_window');
  const finalCap = get('final_logit_softcapping');
  return {
    ...common,
    ...(finalCap !== undefined && finalCap > 0 ? { finalSoftcap: finalCap } : {}),
    ...(window !== undefined && window > 0
      ? { layerWindows: windows(s.nLayers, window, (i) => i % 6 < 5), ropeThetaLocal: 10000 }
      : {}),
  };
}

/** GGUF Phi-3 LongRoPE from its factor tensors and metadata (undefined without factors). */
export function ggufLongRope(
  longFactors: number[] | undefined,
  shortFactors: number[] | undefined,
  get: (key: string) => number | undefined,
  maxSeqLen: number,
  headDim: number,
  path: string,
): LongRopeScaling | undefined {
  if (longFactors === undefined && shortFactors === undefined) return undefined;
  if (longFactors === undefined || shortFactors === undefined) {
    throw new ArgumentError(`${path}: Phi-3 LongRoPE needs both 'rope_factors_long.weight' and 'rope_factors_short.weight'; found only one`);
  }
  for (const [name, f] of [['rope_factors_long.weight', longFactors], ['rope_factors_short.weight', shortFactors]] as const) {
    if (f.length !== headDim / 2 || f.some((x) => !(Number.isFinite(x) && x > 0))) {
      throw new ArgumentError(`${path}: tensor '${name}' must hold headDim / 2 (${headDim / 2}) positive factors; found ${f.length} values`);
    }
  }
  const original = get('rope.scaling.original_context_length') ?? maxSeqLen;
  const attn = get('rope.scaling.attn_factor') ?? longRopeAttentionFactor(maxSeqLen, original);
  return { type: 'longrope', longFactors, shortFactors, originalMaxPositionEmbeddings: original, attentionFactor: attn };
}

/** transformers' LongRoPE attention factor: sqrt(1 + ln(s) / ln(original)), s = max / original (1 when s <= 1). */
export function longRopeAttentionFactor(maxPositions: number, original: number): number {
  const s = maxPositions / original;
  return s <= 1 ? 1 : Math.sqrt(1 + Math.log(s) / Math.log(original));
}

/** The Gemma options of a Hugging Face config.json (model_type gemma2, gemma3_text). */
export function hfGemmaOptions(arch: 'gemma2' | 'gemma3', json: Record<string, unknown>, s: Shape, file: string): ArchOptions {
  const num = (key: string): number | undefined => {
    const v = json[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ArgumentError(`${file}: field '${key}' must be a positive number or null; found ${JSON.stringify(v)}`);
    return v;
  };
  const act = json.hidden_activation ?? json.hidden_act;
  if (act !== undefined && act !== null && act !== 'gelu_pytorch_tanh' && act !== 'gelu') {
    throw new ArgumentError(`${file}: hidden_activation ${JSON.stringify(act)} is not supported (gelu_pytorch_tanh)`);
  }
  const qScalar = num('query_pre_attn_scalar') ?? s.headDim;
  const window = num('sliding_window') ?? (arch === 'gemma2' ? 4096 : undefined);
  let layerWindows: number[] | undefined;
  const types = json.layer_types;
  if (Array.isArray(types)) {
    if (types.length !== s.nLayers || types.some((t) => t !== 'sliding_attention' && t !== 'full_attention')) {
      throw new ArgumentError(`${file}: layer_types must list num_hidden_layers (${s.nLayers}) entries of 'sliding_attention' / 'full_attention'`);
    }
    if (window === undefined) throw new ArgumentError(`${file}: layer_types has sliding layers but sliding_window is missing`);
    layerWindows = types.map((t) => (t === 'sliding_attention' ? window : 0));
  } else if (window !== undefined) {
    const pattern = arch === 'gemma2' ? 2 : (num('sliding_window_pattern') ?? 6);
    layerWindows = windows(s.nLayers, window, (i) => (i + 1) % pattern !== 0);
  }
  const attnCap = num('attn_logit_softcapping');
  const finalCap = num('final_logit_softcapping');
  return {
    embedScale: embedScaleOf(s.dim),
    activation: 'gelu_tanh',
    postNorms: true,
    attnScale: 1 / Math.sqrt(qScalar),
    ...(attnCap !== undefined ? { attnSoftcap: attnCap } : {}),
    ...(finalCap !== undefined ? { finalSoftcap: finalCap } : {}),
    ...(layerWindows ? { layerWindows } : {}),
    ...(arch === 'gemma3' && layerWindows ? { ropeThetaLocal: num('rope_local_base_freq') ?? 10000 } : {}),
  };
}

/** HF rope_scaling of type longrope / su (Phi-3). */
export function hfLongRope(r: Record<string, unknown>, maxSeqLen: number, original: number | undefined, headDim: number, file: string): LongRopeScaling {
  const factors = (key: string): number[] => {
    const v = r[key];
    if (!Array.isArray(v) || v.length !== headDim / 2 || v.some((x) => typeof x !== 'number' || !(Number.isFinite(x) && x > 0))) {
      throw new ArgumentError(`${file}: rope_scaling.${key} must be headDim / 2 (${headDim / 2}) positive numbers`);
    }
    return v as number[];
  };
  const orig = original ?? maxSeqLen;
  const given = r.attention_factor;
  if (given !== undefined && given !== null && (typeof given !== 'number' || !(given > 0))) {
    throw new ArgumentError(`${file}: rope_scaling.attention_factor must be a positive number; found ${JSON.stringify(given)}`);
  }
  return {
    type: 'longrope',
    longFactors: factors('long_factor'),
    shortFactors: factors('short_factor'),
    originalMaxPositionEmbeddings: orig,
    attentionFactor: typeof given === 'number' ? given : longRopeAttentionFactor(maxSeqLen, orig),
  };
}

/** Row ranges of Phi-3's fused matrices: [q | k | v] and [gate | up]. */
export function fusedQkvRows(c: Pick<ModelConfig, 'nHeads' | 'nKvHeads' | 'headDim'>): Array<{ part: 'wq' | 'wk' | 'wv'; start: number; rows: number }> {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  return [
    { part: 'wq', start: 0, rows: q },
    { part: 'wk', start: q, rows: kv },
    { part: 'wv', start: q + kv, rows: kv },
  ];
}
export function fusedGateUpRows(hiddenDim: number): Array<{ part: 'w1' | 'w3'; start: number; rows: number }> {
  return [
    { part: 'w1', start: 0, rows: hiddenDim },
    { part: 'w3', start: hiddenDim, rows: hiddenDim },
  ];
}
