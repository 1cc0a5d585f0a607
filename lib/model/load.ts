/**
 * loadModel(path): the weights (any supported format) placed on a backend, and the
 * tokenizer that goes with them: an explicit tokenizer path, else the vocabulary a GGUF
 * file embeds, else a tokenizer file next to the model (tokenizer.json, tokenizer.bin,
 * tok*.bin).
 */

import { ArgumentError } from '../errors.js';
import { loadAddon } from '../native/loader.js';
import type { GgufValue } from './formats/gguf.js';
import { Model, type ModelOptions, type ModelWeights } from './model.js';
import type { GgufVocabulary } from './tokenizer/gguf.js';
import { type Tokenizer, loadTokenizer } from './tokenizer/index.js';
import { type LoadedWeights, loadWeights } from './weights.js';
import { layerTensorNames } from './config.js';
import { quantizeMatrix } from '../kernels/quantize.js';
import { fitRows } from '../quantize/presets.js';
import type { QuantType } from '../tensor/quant-types.js';

/** A block type to requantize float matrices into at load (lowercase ggml names). */
export type LoadQuantDtype = 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k' | 'iq4_nl' | 'iq4_xs';
export const LOAD_QUANT_DTYPES: readonly LoadQuantDtype[] = ['q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k', 'iq4_nl', 'iq4_xs'];

export interface LoadModelOptions extends Omit<ModelOptions, 'dtype'> {
  /**
   * Storage of the weight matrices: 'f32' | 'f16' | 'bf16' (see ModelOptions.dtype), or a block
   * type ('q8_0', 'q4_k', ...) to quantize the float matrices into at load, on the CPU, with
   * llama.cpp's reference quantizers (as `canopy quantize` does, but every matrix in that one
   * type: no preset rules). A matrix whose rows are not a multiple of the type's block takes
   * llama.cpp's fallback (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K / Q3_K / IQ4_XS ->
   * IQ4_NL), else F16. Matrices already block-quantized in the file are kept as they are.
   * Block types run on the CPU only.
   */
  dtype?: ModelOptions['dtype'] | LoadQuantDtype;
  /** A tokenizer file or folder (overrides the one found with the model). */
  tokenizer?: string;
  /** Scan the weights for NaN / Infinity at load (see LoadWeightsOptions.validate). */
  validate?: boolean;
}

export interface LoadedModel {
  model: Model;
  tokenizer: Tokenizer;
  format: LoadedWeights['format'];
  path: string;
}

/** The tokenizer.ggml.* metadata of a GGUF file as the GGUF tokenizer takes it. */
export function ggufVocabulary(metadata: Map<string, GgufValue>, path: string): GgufVocabulary | undefined {
  const model = metadata.get('tokenizer.ggml.model');
  const tokens = metadata.get('tokenizer.ggml.tokens');
  if (model === undefined || tokens === undefined) return undefined;
  if (model !== 'llama' && model !== 'gpt2') {
    throw new ArgumentError(`${path}: tokenizer.ggml.model`, "'llama' or 'gpt2' (or pass --tokenizer PATH)", model);
  }
  if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'string')) {
    throw new ArgumentError(`${path}: tokenizer.ggml.tokens`, 'an array of strings', tokens);
  }
  const num = (key: string): number | undefined => {
    const v = metadata.get(key);
    return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : undefined;
  };
  const bool = (key: string): boolean | undefined => {
    const v = metadata.get(key);
    return typeof v === 'boolean' ? v : undefined;
  };
  const arr = (key: string): ArrayLike<number> | undefined => {
    const v = metadata.get(key);
    return ArrayBuffer.isView(v) && !(v instanceof BigInt64Array || v instanceof BigUint64Array) ? (v as unknown as ArrayLike<number>) : undefined;
  };
  const merges = metadata.get('tokenizer.ggml.merges');
  const pre = metadata.get('tokenizer.ggml.pre');
  const vocab: GgufVocabulary = { model, tokens: tokens as string[] };
  const scores = arr('tokenizer.ggml.scores');
  if (scores) vocab.scores = scores;
  const types = arr('tokenizer.ggml.token_type');
  if (types) vocab.tokenTypes = types;
  if (Array.isArray(merges)) vocab.merges = merges as string[];
  const bos = num('tokenizer.ggml.bos_token_id');
  if (bos !== undefined) vocab.bosId = bos;
  const eos = num('tokenizer.ggml.eos_token_id');
  if (eos !== undefined) vocab.eosId = eos;
  const eot = num('tokenizer.ggml.eot_token_id');
  if (eot !== undefined && eot < tokens.length) vocab.eotId = eot;
  const eom = num('tokenizer.ggml.eom_token_id');
  if (eom !== undefined && eom < tokens.length) vocab.eomId = eom;
  const unk = num('tokenizer.ggml.unknown_token_id');
  if (unk !== undefined) vocab.unknownId = unk;
  const addBos = bool('tokenizer.ggml.add_bos_token');
  if (addBos !== undefined) vocab.addBos = addBos;
  const addSpace = bool('tokenizer.ggml.add_space_prefix');
  if (addSpace !== undefined) vocab.addSpacePrefix = addSpace;
  if (typeof pre === 'string') vocab.pre = pre;
  const chatTemplate = metadata.get('tokenizer.chat_template');
  if (typeof chatTemplate === 'string') vocab.chatTemplate = chatTemplate;
  return vocab;
}

/** The weights with every float matrix quantized into `type` (or its fallback / F16, see LoadModelOptions.dtype). */
async function requantizeWeights(weights: LoadedWeights, type: QuantType): Promise<ModelWeights> {
  const c = weights.config;
  // In place: the model holds the file maps through this very Map (retainWeightMaps), and the
  // norms still point into them.
  const quant = weights.format === 'gguf' ? weights.quant : new Map<string, QuantType>();
  const tensors = weights.tensors;
  const matrices = ['embed', ...(c.tiedEmbeddings ? [] : ['output'])];
  for (let i = 0; i < c.nLayers; i++) {
    const n = layerTensorNames(i);
    matrices.push(n.wq, n.wk, n.wv, n.wo, n.w1, n.w2, n.w3);
  }
  for (const name of matrices) {
    const t = tensors.get(name);
    if (!t || quant.has(name) || t.shape.length !== 2) continue;
    const storage = fitRows(type, t.shape[1]!);
    const q = storage === 'F16' || storage === 'F32' ? await t.cast('f16') : await quantizeMatrix(t, storage);
    if (storage !== 'F16' && storage !== 'F32') quant.set(name, storage);
    tensors.set(name, q);
  }
  return { config: weights.config, tensors, quant };
}

export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a model file or folder', path);
  loadAddon(); // no usable native addon: NativeLoadError (ERR_CANOPY_NATIVE_LOAD) with build instructions, before any file is read
  const weights = loadWeights(path, options.validate !== undefined ? { validate: options.validate } : {});
  try {
    let tokenizer: Tokenizer;
    const vocabSize = weights.config.vocabSize;
    if (options.tokenizer !== undefined) {
      tokenizer = loadTokenizer({ path: options.tokenizer, vocabSize });
    } else if (weights.format === 'gguf' && ggufVocabulary(weights.metadata, path)) {
      tokenizer = loadTokenizer({ ggufMetadata: ggufVocabulary(weights.metadata, path)!, vocabSize });
    } else {
      tokenizer = loadTokenizer({ modelPath: path, vocabSize });
    }
    const { tokenizer: _ignored, validate: _validated, dtype, ...rest } = options;
    let model: Model;
    if (typeof dtype === 'string' && (LOAD_QUANT_DTYPES as readonly string[]).includes(dtype)) {
      const requantized = await requantizeWeights(weights, dtype.toUpperCase() as QuantType);
      // The native model keeps the quantized arrays referenced (as it does any weight).
      model = await Model.fromWeights(requantized, rest);
    } else {
      if (dtype !== undefined && !['f32', 'f16', 'bf16'].includes(dtype as string)) {
        throw new ArgumentError('options.dtype', `'f32', 'f16', 'bf16' or a block type (${LOAD_QUANT_DTYPES.join(', ')})`, dtype);
      }
      model = await Model.fromWeights(weights, { ...rest, ...(dtype !== undefined ? { dtype: dtype as ModelOptions['dtype'] } : {}) });
    }
    // The model holds its own reference on the weights' file maps; dropping the loader's
    // leaves model.dispose() to unmap them.
    weights.dispose();
    return { model, tokenizer, format: weights.format, path };
  } catch (e) {
    weights.dispose();
    throw e;
  }
}
