/**
 * Hugging Face model directories (transformers' save_pretrained output):
 *
 *   config.json                       model_type llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3 and the dimensions
 *   model.safetensors                 all weights in one file, or
 *   model.safetensors.index.json      { "weight_map": { tensor name: shard file name } } with the shards
 *
 * Tensor names (PyTorch [out, in] matrices):
 *   model.embed_tokens.weight, model.norm.weight, lm_head.weight (absent or ignored when tied),
 *   model.layers.N.input_layernorm.weight, .post_attention_layernorm.weight,
 *   model.layers.N.self_attn.{q,k,v,o}_proj.weight (+ {q,k,v}_proj.bias for Qwen2),
 *   model.layers.N.self_attn.{q,k}_norm.weight (Qwen3),
 *   model.layers.N.mlp.{gate,up,down}_proj.weight
 *
 * Gemma 2 / 3: post_attention_layernorm is the attention output's norm (postAttnNorm),
 * pre_feedforward_layernorm the MLP input's (ffnNorm), post_feedforward_layernorm the MLP output's
 * (postFfnNorm); every Gemma norm weight w is loaded as 1 + w (f32). Phi-3: self_attn.qkv_proj and
 * mlp.gate_up_proj are split by rows in place. See lib/model/formats/arch-options.ts.
 *
 * Hugging Face checkpoints store q/k rows in the half-split RoPE layout
 * (rotate_half: pairs (i, i + headDim/2)); convert_llama_weights_to_hf.py
 * permutes Meta's interleaved rows into it. The loader reports ropeStyle
 * 'half' and permutes nothing.
 */

import { readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

import { ArgumentError, IoError } from '../../errors.js';
import { isIgnorableTensor } from '../architectures.js';
import { type ModelConfig, type RopeScaling, type YarnRopeScaling, checkConfigBounds, layerTensorNames } from '../config.js';
import { yarnMscale } from '../rope.js';
import { Tensor } from '../../tensor/tensor.js';
import { fusedGateUpRows, fusedQkvRows, hfGemmaOptions, hfLongRope } from './arch-options.js';
import { type LoadedWeightsBase, type TensorSource, canonicalName, disposeAll, mappedSource, materialize } from './common.js';
import { SAFETENSORS_LOADABLE, type SafetensorsFile, type SafetensorsTensorInfo, readSafetensors, safetensorsSource } from './safetensors.js';

export interface HfWeights extends LoadedWeightsBase {
  format: 'hf';
  metadata: {
    /** config.json as parsed. */
    config: Record<string, unknown>;
    /** The safetensors files read, and the __metadata__ of the first. */
    files: string[];
    safetensors: Record<string, string>;
  };
}

const LAYER_NAMES: Record<string, keyof ReturnType<typeof layerTensorNames>> = {
  'input_layernorm.weight': 'attnNorm',
  'self_attn.q_proj.weight': 'wq',
  'self_attn.k_proj.weight': 'wk',
  'self_attn.v_proj.weight': 'wv',
  'self_attn.o_proj.weight': 'wo',
  'self_attn.q_proj.bias': 'bq',
  'self_attn.k_proj.bias': 'bk',
  'self_attn.v_proj.bias': 'bv',
  'self_attn.q_norm.weight': 'qNorm',
  'self_attn.k_norm.weight': 'kNorm',
  'post_attention_layernorm.weight': 'ffnNorm',
  'mlp.gate_proj.weight': 'w1',
  'mlp.down_proj.weight': 'w2',
  'mlp.up_proj.weight': 'w3',
};
const GLOBAL_NAMES: Record<string, string> = { 'model.embed_tokens.weight': 'embed', 'model.norm.weight': 'norm', 'lm_head.weight': 'output' };

/** The canonical name of a Hugging Face tensor name, or undefined. */
export function canonicalFromHf(name: string): string | undefined {
  return canonicalName(name, GLOBAL_NAMES, /^model\.layers\.(\d+)\.(.+)$/, LAYER_NAMES);
}

/** The Hugging Face name of a canonical tensor name. */
export function hfNameOf(canonical: string): string {
  for (const [k, v] of Object.entries(GLOBAL_NAMES)) if (v === canonical) return k;
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canonical);
  if (m) for (const [k, v] of Object.entries(LAYER_NAMES)) if (v === m[2]) return `model.layers.${m[1]}.${k}`;
  return canonical;
}

const MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma2', 'gemma3_text', 'phi3'] as const;

/** Gemma's layer norms: post_attention_layernorm is the attention output's norm, pre_feedforward_layernorm the MLP input's. */
const GEMMA_LAYER_NAMES: Record<string, keyof ReturnType<typeof layerTensorNames>> = {
  ...LAYER_NAMES,
  'post_attention_layernorm.weight': 'postAttnNorm',
  'pre_feedforward_layernorm.weight': 'ffnNorm',
  'post_feedforward_layernorm.weight': 'postFfnNorm',
};

/**
 * transformers' defaults for fields config.json may omit (LlamaConfig,
 * MistralConfig, Qwen2Config). The dimensions themselves are required.
 */
const DEFAULTS: Record<(typeof MODEL_TYPES)[number], { maxPositionEmbeddings: number; rmsNormEps: number; ropeTheta: number }> = {
  llama: { maxPositionEmbeddings: 2048, rmsNormEps: 1e-6, ropeTheta: 10000 },
  mistral: { maxPositionEmbeddings: 4096 * 32, rmsNormEps: 1e-6, ropeTheta: 10000 },
  qwen2: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, ropeTheta: 10000 },
  qwen3: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, ropeTheta: 10000 },
  gemma2: { maxPositionEmbeddings: 8192, rmsNormEps: 1e-6, ropeTheta: 10000 },
  gemma3_text: { maxPositionEmbeddings: 131072, rmsNormEps: 1e-6, ropeTheta: 1000000 },
  phi3: { maxPositionEmbeddings: 4096, rmsNormEps: 1e-5, ropeTheta: 10000 },
};

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new IoError(`cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new IoError(`${file} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new IoError(`${file} must hold a JSON object`);
  return json as Record<string, unknown>;
}

/** The ModelConfig of a parsed config.json (`file` names it in errors). `hasLmHead` decides tying when the field is absent. */
export function hfConfig(json: Record<string, unknown>, file: string, hasLmHead: boolean): ModelConfig {
  const modelType = json.model_type;
  if (typeof modelType !== 'string' || !(MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new ArgumentError(
      `${file}: model_type ${modelType === undefined ? 'is missing' : JSON.stringify(modelType) + ' is not supported'} (supported: ${MODEL_TYPES.join(', ')})`,
    );
  }
  const modelKind = modelType as (typeof MODEL_TYPES)[number];
  const arch = modelKind === 'gemma3_text' ? 'gemma3' : modelKind;
  const defaults = DEFAULTS[modelKind];
  const has = (key: string) => json[key] !== undefined && json[key] !== null;
  const int = (key: string, fallback?: number): number => {
    const v = json[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ArgumentError(`${file}: field '${key}' is missing (a positive integer)`);
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new ArgumentError(`${file}: field '${key}' must be a positive integer; found ${JSON.stringify(v)}`);
    }
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = json[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ArgumentError(`${file}: field '${key}' must be a positive number; found ${JSON.stringify(v)}`);
    return v;
  };
  const flag = (key: string): boolean | undefined => {
    const v = json[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw new ArgumentError(`${file}: field '${key}' must be a boolean; found ${JSON.stringify(v)}`);
    return v;
  };

  const dim = int('hidden_size');
  const hiddenDim = int('intermediate_size');
  const nLayers = int('num_hidden_layers');
  const nHeads = int('num_attention_heads');
  const vocabSize = int('vocab_size');
  const nKvHeads = int('num_key_value_heads', nHeads);
  if (!has('head_dim') && dim % nHeads !== 0) {
    throw new ArgumentError(`${file}: hidden_size ${dim} is not a multiple of num_attention_heads ${nHeads} and head_dim is absent`);
  }
  const headDim = int('head_dim', dim / nHeads);
  if (nHeads % nKvHeads !== 0) throw new ArgumentError(`${file}: num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);
  if (headDim % 2 !== 0) throw new ArgumentError(`${file}: the head size ${headDim} is odd (RoPE rotates pairs)`);
  const maxPositionEmbeddings = int('max_position_embeddings', defaults.maxPositionEmbeddings);
  let maxSeqLen = maxPositionEmbeddings;
  // transformers 5 saves RoPE as rope_parameters { rope_type, rope_theta, ...scaling fields };
  // earlier versions as rope_theta and rope_scaling.
  const ropeParams = json.rope_parameters;
  if (ropeParams !== undefined && ropeParams !== null && (typeof ropeParams !== 'object' || Array.isArray(ropeParams))) {
    throw new ArgumentError(`${file}: field 'rope_parameters' must be an object; found ${JSON.stringify(ropeParams)}`);
  }
  let rp = ropeParams as Record<string, unknown> | null | undefined;
  // Gemma 3 under transformers 5: rope_parameters per layer type; the global layers' entry is the
  // model's RoPE, the sliding layers' rope_theta its local base (rope_local_base_freq before).
  let localTheta: unknown;
  if (arch === 'gemma3' && rp && typeof rp.full_attention === 'object' && rp.full_attention !== null) {
    const sliding = rp.sliding_attention as Record<string, unknown> | null | undefined;
    localTheta = sliding && typeof sliding === 'object' ? sliding.rope_theta : undefined;
    rp = rp.full_attention as Record<string, unknown>;
  }
  if (rp && rp.rope_type === undefined && rp.rope_theta === undefined && Object.values(rp).some((v) => v !== null && typeof v === 'object')) {
    // transformers 5 nests rope_parameters per layer type for models whose layers differ (Gemma 3).
    throw new ArgumentError(`${file}: rope_parameters per layer type (${Object.keys(rp).join(', ')}) is not supported for model_type ${arch}`);
  }
  const ropeThetaRaw = rp?.rope_theta ?? json.rope_theta;
  if (ropeThetaRaw !== undefined && ropeThetaRaw !== null && !(typeof ropeThetaRaw === 'number' && Number.isFinite(ropeThetaRaw) && ropeThetaRaw > 1)) {
    throw new ArgumentError(`${file}: field '${rp?.rope_theta !== undefined ? 'rope_parameters.rope_theta' : 'rope_theta'}' must be a number > 1; found ${JSON.stringify(ropeThetaRaw)}`);
  }
  const ropeTheta = typeof ropeThetaRaw === 'number' ? ropeThetaRaw : defaults.ropeTheta;
  const normEps = num('rms_norm_eps', defaults.rmsNormEps);

  for (const key of ['attention_bias', 'mlp_bias']) {
    if ((arch === 'llama' || arch === 'qwen3' || arch === 'mistral') && flag(key) === true) {
      throw new ArgumentError(`${file}: ${key} true is not supported (${arch} models without biases only)`);
    }
  }
  // The MLP is SwiGLU: silu(gate) * up (Gemma: GeGLU, checked by hfGemmaOptions). Another activation would run silently wrong.
  const act = json.hidden_act ?? json.hidden_activation;
  const gemma = arch === 'gemma2' || arch === 'gemma3';
  if (!gemma && act !== undefined && act !== null && act !== 'silu' && act !== 'swish') {
    throw new ArgumentError(`${file}: hidden_act ${JSON.stringify(act)} is not supported (${arch} models use "silu")`);
  }
  const partial = json.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) throw new ArgumentError(`${file}: partial_rotary_factor ${JSON.stringify(partial)} is not supported`);
  const scalingRaw = rp ?? json.rope_scaling;
  const scalingType = scalingRaw && typeof scalingRaw === 'object' ? ((scalingRaw as Record<string, unknown>).rope_type ?? (scalingRaw as Record<string, unknown>).type) : undefined;
  // Phi-3's LongRoPE (lib/model/formats/arch-options.ts); every other type as parseRopeScaling reads it.
  const original = json.original_max_position_embeddings;
  const ropeScaling =
    arch === 'phi3' && (scalingType === 'longrope' || scalingType === 'su')
      ? hfLongRope(scalingRaw as Record<string, unknown>, maxPositionEmbeddings, typeof original === 'number' ? original : undefined, headDim, file)
      : parseRopeScaling(scalingRaw, rp ? 'rope_parameters' : 'rope_scaling', file, maxPositionEmbeddings);
  // YaRN extends the context the model was trained for (original_max_position_embeddings) by its
  // factor; configs often keep max_position_embeddings at the original (Qwen2.5's model card).
  if (ropeScaling?.type === 'yarn') maxSeqLen = Math.max(maxSeqLen, Math.floor(ropeScaling.originalMaxPositionEmbeddings * ropeScaling.factor));
  // Sliding-window attention (a query at position P sees keys P - window + 1 .. P), as
  // transformers applies it: Mistral's sliding_window on every layer (null in v0.2 and later);
  // Qwen2 / Qwen3 only with use_sliding_window, on layers >= max_window_layers. A window that
  // covers the whole context changes nothing and is left out.
  const window = json.sliding_window;
  const windowed = arch === 'mistral' ? has('sliding_window') : arch === 'qwen2' || arch === 'qwen3' ? flag('use_sliding_window') === true : false;
  let slidingWindows: number[] | undefined;
  if (windowed) {
    if (typeof window !== 'number' || !Number.isSafeInteger(window) || window <= 0) {
      throw new ArgumentError(`${file}: field 'sliding_window' must be a positive integer; found ${JSON.stringify(window)}`);
    }
    const mwl = json.max_window_layers ?? 28;
    if (typeof mwl !== 'number' || !Number.isSafeInteger(mwl) || mwl < 0) {
      throw new ArgumentError(`${file}: field 'max_window_layers' must be an integer >= 0; found ${JSON.stringify(mwl)}`);
    }
    const first = arch === 'mistral' ? 0 : mwl;
    if (window < maxSeqLen && first < nLayers) slidingWindows = Array.from({ length: nLayers }, (_, i) => (i >= first ? window : 0));
  }

  // transformers ties Gemma's head by default.
  const tied = flag('tie_word_embeddings') ?? (gemma ? true : !hasLmHead);
  const archOptions = gemma ? hfGemmaOptions(arch, localTheta !== undefined ? { ...json, rope_local_base_freq: localTheta } : json, { dim, nHeads, headDim, nLayers }, file) : {};
  const bos = json.bos_token_id;
  if (bos !== undefined && bos !== null && (typeof bos !== 'number' || !Number.isSafeInteger(bos) || bos < 0)) {
    throw new ArgumentError(`${file}: field 'bos_token_id' must be a token id; found ${JSON.stringify(bos)}`);
  }
  const eosRaw = json.eos_token_id;
  const eosList = eosRaw === undefined || eosRaw === null ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  for (const e of eosList) {
    if (typeof e !== 'number' || !Number.isSafeInteger(e) || e < 0) {
      throw new ArgumentError(`${file}: field 'eos_token_id' must be a token id or an array of them; found ${JSON.stringify(eosRaw)}`);
    }
  }
  return {
    architecture: arch,
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    maxSeqLen,
    ropeTheta,
    ropeStyle: 'half',
    ...(ropeScaling ? { ropeScaling } : {}),
    normEps,
    tiedEmbeddings: tied,
    qkvBias: arch === 'qwen2',
    ...(arch === 'qwen3' || arch === 'gemma3' ? { qkNorm: true } : {}),
    ...archOptions,
    ...(slidingWindows ? { layerWindows: slidingWindows } : {}),
    ...(typeof bos === 'number' ? { bosTokenId: bos } : {}),
    ...(eosList.length > 0 ? { eosTokenIds: eosList as number[] } : {}),
  };
}

/**
 * rope_scaling (or transformers 5's rope_parameters, named by `field`) as transformers reads it
 * (modeling_rope_utils.py): rope_type (or the older `type`) 'default' (none), 'llama3',
 * 'linear' or 'yarn'. YaRN: factor; original_max_position_embeddings (default
 * max_position_embeddings); beta_fast / beta_slow (default 32 / 1); truncate (default true); the
 * attention factor is attention_factor when given, else get_mscale(factor, mscale) /
 * get_mscale(factor, mscale_all_dim) when both are set, else get_mscale(factor) = 0.1 ln(factor) + 1.
 */
function parseRopeScaling(raw: unknown, field: string, file: string, maxPositionEmbeddings: number): RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ArgumentError(`${file}: field '${field}' must be an object or null; found ${JSON.stringify(raw)}`);
  const r = raw as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === 'default' || (type === undefined && field === 'rope_parameters')) return undefined;
  const num = (key: string, fallback?: number): number => {
    const v = r[key];
    if ((v === undefined || v === null) && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ArgumentError(`${file}: ${field}.${key} must be a positive number; found ${JSON.stringify(v)}`);
    }
    return v;
  };
  const integer = (key: string, fallback?: number): number => {
    const v = num(key, fallback);
    if (!Number.isSafeInteger(v)) throw new ArgumentError(`${file}: ${field}.${key} must be an integer; found ${v}`);
    return v;
  };
  switch (type) {
    case 'llama3':
      return {
        type: 'llama3',
        factor: num('factor'),
        lowFreqFactor: num('low_freq_factor'),
        highFreqFactor: num('high_freq_factor'),
        originalMaxPositionEmbeddings: integer('original_max_position_embeddings'),
      };
    case 'linear':
      return { type: 'linear', factor: num('factor') };
    case 'yarn': {
      const factor = num('factor');
      const truncate = r.truncate ?? true;
      if (typeof truncate !== 'boolean') throw new ArgumentError(`${file}: ${field}.truncate must be a boolean; found ${JSON.stringify(truncate)}`);
      const given = r.attention_factor;
      let attentionFactor: number;
      if (given !== undefined && given !== null) {
        attentionFactor = num('attention_factor');
      } else {
        const mscale = r.mscale === undefined || r.mscale === null ? 0 : num('mscale');
        const mscaleAllDim = r.mscale_all_dim === undefined || r.mscale_all_dim === null ? 0 : num('mscale_all_dim');
        attentionFactor = mscale && mscaleAllDim ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) : yarnMscale(factor);
      }
      const s: YarnRopeScaling = {
        type: 'yarn',
        factor,
        originalMaxPositionEmbeddings: integer('original_max_position_embeddings', maxPositionEmbeddings),
        betaFast: num('beta_fast', 32),
        betaSlow: num('beta_slow', 1),
        attentionFactor,
        truncate,
      };
      if (!(s.betaFast > s.betaSlow)) throw new ArgumentError(`${file}: ${field}.beta_fast ${s.betaFast} must be greater than beta_slow ${s.betaSlow}`);
      return s;
    }
    case 'longrope':
      throw new ArgumentError(`${file}: ${field} type "longrope" (Phi-3's LongRoPE) is not supported for this model_type`);
    default:
      throw new ArgumentError(`${file}: ${field} type ${JSON.stringify(type)} is not supported (default, linear, llama3, yarn)`);
  }
}

/** The safetensors files of a model directory: model.safetensors, or the shards its index names. */
function readWeightFiles(dir: string): { files: SafetensorsFile[]; owner: Map<string, SafetensorsFile> } {
  const indexPath = join(dir, 'model.safetensors.index.json');
  const singlePath = join(dir, 'model.safetensors');
  const owner = new Map<string, SafetensorsFile>();
  if (isFile(indexPath)) {
    const index = readJson(indexPath);
    const map = index.weight_map;
    if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new IoError(`${indexPath}: 'weight_map' must map tensor names to file names`);
    const shards = new Map<string, SafetensorsFile>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard !== basename(shard) || shard === '..' || shard === '.') {
        throw new IoError(`${indexPath}: weight_map names ${JSON.stringify(shard)} for tensor '${name}'; expected a file name in the model directory`);
      }
      let file = shards.get(shard);
      if (!file) {
        file = readSafetensors(join(dir, shard));
        shards.set(shard, file);
      }
      owner.set(name, file);
    }
    const names = new Map([...shards.values()].map((f) => [f, new Set(f.tensors.map((t) => t.name))]));
    for (const [name, file] of owner) {
      if (!names.get(file)!.has(name)) {
        throw new ArgumentError(`${indexPath}: weight_map puts tensor '${name}' in ${file.path}, which has no such tensor`);
      }
    }
    return { files: [...shards.values()], owner };
  }
  if (isFile(singlePath)) {
    const file = readSafetensors(singlePath);
    for (const t of file.tensors) owner.set(t.name, file);
    return { files: [file], owner };
  }
  const hint = isFile(join(dir, 'pytorch_model.bin')) ? ' (pytorch_model.bin is not read: convert the model to safetensors)' : '';
  throw new IoError(`${dir}: no model.safetensors or model.safetensors.index.json${hint}`);
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The rows [start, start + rows) of a fused matrix as the canonical tensors layers.{layer}.{part}, mapped in place. */
function splitRows(file: SafetensorsFile, info: SafetensorsTensorInfo, layer: string, parts: Array<{ part: string; start: number; rows: number }>): TensorSource[] {
  const total = parts.reduce((a, p) => a + p.rows, 0);
  if (info.shape.length !== 2 || info.shape[0] !== total) {
    throw new ArgumentError(`${file.path}: tensor '${info.name}' has shape [${info.shape.join(', ')}]; expected [${total}, cols] (${parts.map((p) => p.part).join(' | ')} rows)`);
  }
  const whole = safetensorsSource(file, info, `layers.${layer}.${parts[0]!.part}`);
  const rowBytes = whole.byteLength / total;
  const elem = rowBytes / info.shape[1]!;
  const dtype = SAFETENSORS_LOADABLE[info.dtype]!;
  return parts.map((p) => mappedSource(`layers.${layer}.${p.part}`, info.name, file.path, dtype, [p.rows, info.shape[1]!], info.fileOffset + p.start * rowBytes, info.dtype, elem));
}

/** A norm source whose tensor is 1 + w in f32 (Gemma's RMSNorm weights). */
function plusOne(source: TensorSource): TensorSource {
  return {
    ...source,
    load: (maps) => {
      const v = source.load(maps).toFloat32();
      const out = new Float32Array(v.length);
      for (let i = 0; i < v.length; i++) out[i] = 1 + v[i]!;
      return Tensor.from(out, { shape: source.shape });
    },
  };
}

/** Loads a Hugging Face model directory (config.json + safetensors) into canonical tensors, memory-mapped. */
export function loadHf(dir: string): HfWeights {
  const configPath = join(dir, 'config.json');
  if (!isFile(configPath)) throw new IoError(`${dir}: no config.json (not a Hugging Face model directory?)`);
  const json = readJson(configPath);
  const { files, owner } = readWeightFiles(dir);
  const config = hfConfig(json, configPath, owner.has('lm_head.weight'));
  checkConfigBounds(config, configPath);
  const infos = new Map(files.flatMap((f) => f.tensors.map((t) => [`${f.path}\0${t.name}`, t] as const)));
  const sources: TensorSource[] = [];
  const gemma = config.architecture === 'gemma2' || config.architecture === 'gemma3';
  for (const [name, file] of owner) {
    const info = infos.get(`${file.path}\0${name}`)!;
    // Phi-3: fused [q | k | v] and [gate | up] rows, mapped in place and split by rows.
    const fused = config.architecture === 'phi3' ? /^model\.layers\.(\d+)\.(self_attn\.qkv_proj|mlp\.gate_up_proj)\.weight$/.exec(name) : null;
    if (fused) {
      sources.push(...splitRows(file, info, fused[1]!, fused[2] === 'self_attn.qkv_proj' ? fusedQkvRows(config) : fusedGateUpRows(config.hiddenDim)));
      continue;
    }
    const canonical = gemma ? canonicalName(name, GLOBAL_NAMES, /^model\.layers\.(\d+)\.(.+)$/, GEMMA_LAYER_NAMES) : canonicalFromHf(name);
    if (canonical === undefined) {
      if (isIgnorableTensor(config.architecture, 'hf', name)) continue;
      throw new ArgumentError(`${file.path}: unexpected tensor '${name}': not a weight of a ${config.architecture} model that canopy knows; refusing to ignore it, as it may change the math`);
    }
    if (canonical === 'output' && config.tiedEmbeddings) continue; // transformers ties it to the embedding
    const source = safetensorsSource(file, info, canonical);
    // Gemma's RMSNorm multiplies by (1 + w): the canonical weight is 1 + w (f32), q/k norms included.
    const isNorm = canonical === 'norm' || /Norm$/.test(canonical);
    sources.push(gemma && isNorm ? plusOne(source) : source);
  }
  const where = files.length === 1 ? files[0]!.path : `${dir} (${files.map((f) => basename(f.path)).join(', ')})`;
  const tensors = materialize(config, sources, where, hfNameOf);
  return {
    format: 'hf',
    config,
    tensors,
    path: dir,
    metadata: { config: json, files: files.map((f) => f.path), safetensors: files[0]?.metadata ?? {} },
    dispose: () => disposeAll(tensors),
  };
}
