/**
 * Hugging Face model directories (transformers' save_pretrained output):
 *
 *   config.json                       model_type "llama" | "mistral" | "qwen2" and the dimensions
 *   model.safetensors                 all weights in one file, or
 *   model.safetensors.index.json      { "weight_map": { tensor name: shard file name } } with the shards
 *
 * Tensor names (PyTorch [out, in] matrices):
 *   model.embed_tokens.weight, model.norm.weight, lm_head.weight (absent or ignored when tied),
 *   model.layers.N.input_layernorm.weight, .post_attention_layernorm.weight,
 *   model.layers.N.self_attn.{q,k,v,o}_proj.weight (+ {q,k,v}_proj.bias for Qwen2),
 *   model.layers.N.mlp.{gate,up,down}_proj.weight
 *
 * Hugging Face checkpoints store q/k rows in the half-split RoPE layout
 * (rotate_half: pairs (i, i + headDim/2)); convert_llama_weights_to_hf.py
 * permutes Meta's interleaved rows into it. The loader reports ropeStyle
 * 'half' and permutes nothing.
 */

import { readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

import { ArgumentError, IoError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import { type ModelConfig, type RopeScaling, checkConfigBounds, layerTensorNames } from '../config.js';
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

// Buffers some checkpoints save that are not weights (RoPE inverse frequencies).
const IGNORED = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

const MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'gemma2', 'gemma3_text', 'phi3'] as const;

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
  let maxSeqLen = int('max_position_embeddings', defaults.maxPositionEmbeddings);
  const ropeTheta = num('rope_theta', defaults.ropeTheta);
  const normEps = num('rms_norm_eps', defaults.rmsNormEps);

  for (const key of ['attention_bias', 'mlp_bias']) {
    if (arch === 'llama' && flag(key) === true) throw new ArgumentError(`${file}: ${key} true is not supported (Llama models without biases only)`);
  }
  const partial = json.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) throw new ArgumentError(`${file}: partial_rotary_factor ${JSON.stringify(partial)} is not supported`);
  // Sliding-window attention equals full attention while the sequence fits the window:
  // report the window as the usable context.
  const window = json.sliding_window;
  const windowed = arch === 'mistral' ? has('sliding_window') : arch === 'qwen2' ? flag('use_sliding_window') === true : false;
  if (windowed) {
    if (typeof window !== 'number' || !Number.isSafeInteger(window) || window <= 0) {
      throw new ArgumentError(`${file}: field 'sliding_window' must be a positive integer; found ${JSON.stringify(window)}`);
    }
    maxSeqLen = Math.min(maxSeqLen, window);
  }

  const gemma = arch === 'gemma2' || arch === 'gemma3';
  // transformers ties Gemma's head by default.
  const tied = flag('tie_word_embeddings') ?? (gemma ? true : !hasLmHead);
  const original = json.original_max_position_embeddings;
  const ropeScaling = parseRopeScaling(json.rope_scaling, file, { maxSeqLen, headDim, original: typeof original === 'number' ? original : undefined });
  if (ropeScaling?.type === 'longrope' && arch !== 'phi3') throw new ArgumentError(`${file}: rope_scaling longrope is supported for Phi-3 models only`);
  const archOptions = gemma ? hfGemmaOptions(arch, json, { dim, nHeads, headDim, nLayers }, file) : {};
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
    ...archOptions,
    ...(typeof bos === 'number' ? { bosTokenId: bos } : {}),
    ...(eosList.length > 0 ? { eosTokenIds: eosList as number[] } : {}),
  };
}

function parseRopeScaling(
  raw: unknown,
  file: string,
  shape: { maxSeqLen: number; headDim: number; original: number | undefined },
): RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ArgumentError(`${file}: field 'rope_scaling' must be an object or null; found ${JSON.stringify(raw)}`);
  const r = raw as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === 'default') return undefined;
  if (type === 'longrope' || type === 'su') {
    const orig = r.original_max_position_embeddings ?? shape.original;
    return hfLongRope(r, shape.maxSeqLen, typeof orig === 'number' ? orig : undefined, shape.headDim, file);
  }
  if (type === 'linear') {
    const factor = r.factor;
    if (typeof factor !== 'number' || !Number.isFinite(factor) || factor <= 0) {
      throw new ArgumentError(`${file}: rope_scaling.factor must be a positive number; found ${JSON.stringify(factor)}`);
    }
    return factor === 1 ? undefined : { type: 'linear', factor };
  }
  if (type !== 'llama3') throw new ArgumentError(`${file}: rope_scaling type ${JSON.stringify(type)} is not supported (llama3, linear, longrope)`);
  const num = (key: string): number => {
    const v = r[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ArgumentError(`${file}: rope_scaling.${key} must be a positive number; found ${JSON.stringify(v)}`);
    }
    return v;
  };
  const original = num('original_max_position_embeddings');
  if (!Number.isSafeInteger(original)) throw new ArgumentError(`${file}: rope_scaling.original_max_position_embeddings must be an integer; found ${original}`);
  return {
    type: 'llama3',
    factor: num('factor'),
    lowFreqFactor: num('low_freq_factor'),
    highFreqFactor: num('high_freq_factor'),
    originalMaxPositionEmbeddings: original,
  };
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
    if (IGNORED.test(name)) continue;
    const info = infos.get(`${file.path}\0${name}`)!;
    // Phi-3: fused [q | k | v] and [gate | up] rows, mapped in place and split by rows.
    const fused = config.architecture === 'phi3' ? /^model\.layers\.(\d+)\.(self_attn\.qkv_proj|mlp\.gate_up_proj)\.weight$/.exec(name) : null;
    if (fused) {
      sources.push(...splitRows(file, info, fused[1]!, fused[2] === 'self_attn.qkv_proj' ? fusedQkvRows(config) : fusedGateUpRows(config.hiddenDim)));
      continue;
    }
    const canonical = canonicalName(name, GLOBAL_NAMES, /^model\.layers\.(\d+)\.(.+)$/, gemma ? GEMMA_LAYER_NAMES : LAYER_NAMES);
    if (canonical === undefined) {
      throw new ArgumentError(`${file.path}: unexpected tensor '${name}': not a weight of a ${config.architecture} model`);
    }
    if (canonical === 'output' && config.tiedEmbeddings) continue; // transformers ties it to the embedding
    const source = safetensorsSource(file, info, canonical);
    // Gemma's RMSNorm multiplies by (1 + w): the canonical weight is 1 + w (f32).
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
