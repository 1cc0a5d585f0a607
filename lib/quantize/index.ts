/**
 * quantize(input, output, { type }): a model file (F32 / F16 / BF16 GGUF, a Hugging Face folder,
 * or a llama2.c checkpoint) written as a GGUF of a llama.cpp preset (Q4_K_M, Q8_0, ...; the
 * per-tensor rules in presets.ts), quantized on the CPU with llama.cpp's reference quantizers
 * (lib/kernels/quantize.ts), so that llama.cpp loads the file and reads what it would have written.
 *
 *   - GGUF input: every metadata entry is kept (the tokenizer included) except general.file_type
 *     and general.quantization_version, which are rewritten; tensors keep their names.
 *   - Other input: the 'llama' architecture (Qwen2: 'qwen2') metadata llama.cpp's converter
 *     writes, and the tokenizer found with the model as tokenizer.ggml.* (a llama2.c tokenizer
 *     as a SentencePiece 'llama' vocabulary; a tokenizer.json byte-level BPE as 'gpt2' with its
 *     merges and the pre-tokenizer name). Hugging Face q/k rows (the half-split RoPE layout) are
 *     permuted to the interleaved layout the 'llama' architecture expects, as convert_hf_to_gguf
 *     does: within each head, row 2j + t comes from row t * headDim/2 + j.
 *   - Tensors are written in llama.cpp's order (by layer, then name), aligned to 32 bytes; each
 *     is quantized, written and dropped before the next, so memory stays near one tensor's size.
 */

import { closeSync, openSync, readFileSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { basename, resolve } from 'node:path';

import { ArgumentError } from '../errors.js';
import { quantizeMatrix } from '../kernels/quantize.js';
import type { ModelConfig } from '../model/config.js';
import { type GgufEntry, type GgufTensorSpec, ggufName, llamaGgufMetadata, writeGguf } from '../model/formats/gguf-writer.js';
import { readGguf } from '../model/formats/gguf.js';
import { findTokenizerFor } from '../model/tokenizer/index.js';
import { llama2cTokenStrings, parseLlama2cTokenizer } from '../model/tokenizer/llama2c.js';
import { type LoadedWeights, loadWeights } from '../model/weights.js';
import { encodeFloats } from '../tensor/dtype.js';
import { QUANT_TYPES, isQuantType } from '../tensor/quant-types.js';
import { Tensor } from '../tensor/tensor.js';
import { QUANT_PRESETS, QUANT_PRESET_NAMES, type QuantPreset, type TensorStorage, isQuantPreset, presetTensorTypes } from './presets.js';

export { QUANT_PRESETS, QUANT_PRESET_NAMES, type QuantPreset, type TensorStorage, presetTensorTypes, fitRows, llamaTensorOrder, isQuantPreset } from './presets.js';

export interface QuantizeProgress {
  /** The GGUF name of the tensor just written. */
  tensor: string;
  storage: TensorStorage;
  /** Tensors written so far, and in all. */
  done: number;
  count: number;
  /** Values written so far, and in all (the fraction done is doneValues / totalValues). */
  doneValues: number;
  totalValues: number;
}

export interface QuantizeOptions {
  /** The llama.cpp preset: Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_M, IQ4_NL, IQ4_XS. */
  type: QuantPreset;
  /** Called after each tensor is written. */
  onProgress?: (progress: QuantizeProgress) => void;
}

export interface QuantizeResult {
  output: string;
  /** The storage of each tensor written, by GGUF name, in file order. */
  tensors: Map<string, TensorStorage>;
  /** The output's size in bytes. */
  bytes: number;
}

const GGML_TYPE_ID: Record<'F32' | 'F16', number> = { F32: 0, F16: 1 };
const typeId = (s: TensorStorage): number => (s === 'F32' || s === 'F16' ? GGML_TYPE_ID[s] : QUANT_TYPES[s].id);

/** Rows of `t` reordered from the half-split RoPE layout to the interleaved one, per head of `headDim` rows. */
export function permuteHalfToInterleaved(t: Tensor, nHeads: number): Tensor {
  const [rows, cols] = t.shape as [number, number];
  const headDim = rows / nHeads;
  const src = t.toArray();
  const Ctor = src.constructor as new (n: number) => typeof src;
  const dst = new Ctor(src.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < half; j++) {
      for (let s = 0; s < 2; s++) {
        const from = (h * headDim + s * half + j) * cols;
        const to = (h * headDim + 2 * j + s) * cols;
        (dst as Float32Array).set((src as Float32Array).subarray(from, from + cols), to);
      }
    }
  }
  return Tensor.from(dst, { dtype: t.dtype, shape: t.shape });
}

/** tokenizer.ggml.* for a llama2.c tokenizer file: a SentencePiece ('llama') vocabulary. */
function llama2cVocabMetadata(path: string, vocabSize: number): GgufEntry[] {
  const vocab = parseLlama2cTokenizer(new Uint8Array(readFileSync(path)), path, vocabSize);
  const texts = llama2cTokenStrings(vocab);
  const tokens: string[] = [];
  const types: number[] = [];
  texts.forEach((text, id) => {
    if (id === 0) {
      tokens.push('<unk>');
      types.push(2); // UNKNOWN
    } else if (id === 1 || id === 2) {
      tokens.push(id === 1 ? '<s>' : '</s>'); // llama2.c writes them as "\n<s>\n", "\n</s>\n"
      types.push(3); // CONTROL
    } else if (/^<0x[0-9A-F]{2}>$/.test(text)) {
      tokens.push(text);
      types.push(6); // BYTE
    } else {
      tokens.push(text.replaceAll(' ', '\u2581'));
      types.push(1); // NORMAL
    }
  });
  return [
    ['tokenizer.ggml.model', 'string', 'llama'],
    ['tokenizer.ggml.tokens', 'array<string>', tokens],
    ['tokenizer.ggml.scores', 'array<float32>', Float32Array.from(vocab.entries, (e) => e.score)],
    ['tokenizer.ggml.token_type', 'array<int32>', Int32Array.from(types)],
    ['tokenizer.ggml.unknown_token_id', 'uint32', 0],
  ];
}

/** The pre-tokenizer name llama.cpp uses for a tokenizer.json pre_tokenizer (by its split regex). */
function preTokenizerName(pre: unknown): string {
  const text = JSON.stringify(pre ?? null);
  if (text.includes('\\\\p{N}{1,3}') && text.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)")) return 'llama-bpe';
  if (text.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && text.includes('\\\\p{N}|')) return 'qwen2';
  if (text.includes('"Digits"') && text.includes('"individual_digits":true')) return 'smollm';
  if (text.includes('ByteLevel')) return 'gpt2';
  return 'default';
}

/** tokenizer.ggml.* for a tokenizer.json of a byte-level BPE model ('gpt2'). */
function hfBpeVocabMetadata(path: string, vocabSize: number): GgufEntry[] {
  const json = JSON.parse(readFileSync(path, 'utf8')) as {
    model?: { type?: string; vocab?: Record<string, number>; merges?: (string | string[])[]; byte_fallback?: boolean };
    added_tokens?: { id: number; content: string; special?: boolean }[];
    pre_tokenizer?: unknown;
  };
  const model = json.model;
  if (!model || model.type !== 'BPE' || !model.vocab || model.byte_fallback) {
    throw new ArgumentError(`${path}: tokenizer`, 'a byte-level BPE tokenizer.json (or a llama2.c tokenizer file) to write as GGUF metadata', model?.type ?? 'none');
  }
  const tokens = new Array<string>(vocabSize).fill('');
  const types = new Array<number>(vocabSize).fill(5); // UNUSED until seen
  for (const [text, id] of Object.entries(model.vocab)) {
    if (id < vocabSize) {
      tokens[id] = text;
      types[id] = 1;
    }
  }
  for (const a of json.added_tokens ?? []) {
    if (a.id < vocabSize) {
      tokens[a.id] = a.content;
      types[a.id] = a.special ? 3 : 4; // CONTROL, USER_DEFINED
    }
  }
  tokens.forEach((t, i) => {
    if (t === '') tokens[i] = `[PAD${i}]`;
  });
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  return [
    ['tokenizer.ggml.model', 'string', 'gpt2'],
    ['tokenizer.ggml.pre', 'string', preTokenizerName(json.pre_tokenizer)],
    ['tokenizer.ggml.tokens', 'array<string>', tokens],
    ['tokenizer.ggml.token_type', 'array<int32>', Int32Array.from(types)],
    ['tokenizer.ggml.merges', 'array<string>', merges],
  ];
}

/** The metadata of the output, without general.file_type / quantization_version. */
function outputMetadata(input: string, weights: LoadedWeights, arch: string): GgufEntry[] {
  if (weights.format === 'gguf') {
    const file = readGguf(input);
    const skip = new Set(['general.file_type', 'general.quantization_version', 'general.alignment']);
    const out: GgufEntry[] = [];
    for (const [key, value] of file.metadata) if (!skip.has(key)) out.push([key, file.metadataTypes.get(key)!, value]);
    return out;
  }
  const c = weights.config;
  const meta: GgufEntry[] = [
    ...llamaGgufMetadata(c, arch).filter(([k]) => !k.startsWith('tokenizer.')),
    ['general.name', 'string', basename(resolve(input)).replace(/\.[^.]*$/, '')],
    [`${arch}.rope.dimension_count`, 'uint32', c.headDim],
    [`${arch}.vocab_size`, 'uint32', c.vocabSize],
    ['tokenizer.ggml.bos_token_id', 'uint32', c.bosTokenId ?? 1],
    ['tokenizer.ggml.eos_token_id', 'uint32', c.eosTokenIds?.[0] ?? 2],
  ];
  const tok = findTokenizerFor(input);
  meta.push(...(tok.endsWith('.json') ? hfBpeVocabMetadata(tok, c.vocabSize) : llama2cVocabMetadata(tok, c.vocabSize)));
  return meta;
}

/** Writes `input` as a GGUF of the llama.cpp preset `options.type` at `output` (see the module comment). */
export async function quantize(input: string, output: string, options: QuantizeOptions): Promise<QuantizeResult> {
  if (typeof input !== 'string' || input.length === 0) throw new ArgumentError('input', 'a model file or folder', input);
  if (typeof output !== 'string' || output.length === 0) throw new ArgumentError('output', 'a file path for the GGUF', output);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object with type', options);
  if (!isQuantPreset(options.type)) throw new ArgumentError('options.type', `one of ${QUANT_PRESET_NAMES.join(', ')}`, options.type);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new ArgumentError('options.onProgress', 'a function', options.onProgress);
  let same = false;
  try {
    same = realpathSync(input) === realpathSync(output);
  } catch {
    same = resolve(input) === resolve(output);
  }
  if (same) throw new ArgumentError('output', `a path other than the input (${input})`, output);
  const weights = loadWeights(input);
  let fd: number | undefined;
  try {
    if (weights.format === 'gguf' && weights.quant.size > 0) {
      const [name, type] = weights.quant.entries().next().value!;
      throw new ArgumentError('input', 'a model of F32, F16 or BF16 tensors (requantizing block-quantized files is not supported)', `${input} (tensor ${name} is ${type})`);
    }
    const c: ModelConfig = weights.config;
    if (c.ropeScaling) throw new ArgumentError('input', 'a model without RoPE frequency scaling (Llama 3.1 rope_freqs are not written yet)', `${input} (rope scaling ${c.ropeScaling.type})`);
    const arch = c.architecture === 'qwen2' ? 'qwen2' : 'llama';
    const permute = arch === 'llama' && c.ropeStyle === 'half';
    const entries = [...weights.tensors.entries()].map(([canonical, t]) => ({ canonical, t, name: ggufName(canonical), ne: [...t.shape].reverse() }));
    const storage = presetTensorTypes(options.type, entries, { nHeads: c.nHeads, nKvHeads: c.nKvHeads, nLayers: c.nLayers });
    const order = [...storage.keys()];
    const byName = new Map(entries.map((e) => [e.name, e]));
    const bytesOf = (name: string): number => {
      const e = byName.get(name)!;
      const s = storage.get(name)!;
      const numel = e.ne.reduce((a, b) => a * b, 1);
      if (s === 'F32') return numel * 4;
      if (s === 'F16') return numel * 2;
      return (numel / QUANT_TYPES[s].block) * QUANT_TYPES[s].bytes;
    };
    const specs: GgufTensorSpec[] = order.map((name) => ({ name, type: typeId(storage.get(name)!), ne: byName.get(name)!.ne, data: { byteLength: bytesOf(name) } }));
    const metadata: GgufEntry[] = [
      ...outputMetadata(input, weights, arch),
      ['general.quantization_version', 'uint32', 2],
      ['general.file_type', 'uint32', QUANT_PRESETS[options.type].fileType],
    ];
    const offsets = writeGguf(output, { metadata, tensors: specs });
    fd = openSync(output, 'r+');
    const totalValues = entries.reduce((a, e) => a + e.t.numel, 0);
    let doneValues = 0;
    for (let i = 0; i < order.length; i++) {
      const name = order[i]!;
      const e = byName.get(name)!;
      const s = storage.get(name)!;
      let t = e.t;
      const owned: Tensor[] = [];
      if (permute && (e.canonical.endsWith('.wq') || e.canonical.endsWith('.wk'))) {
        t = permuteHalfToInterleaved(t, e.canonical.endsWith('.wq') ? c.nHeads : c.nKvHeads);
        owned.push(t);
      }
      let bytes: Uint8Array;
      if (s === 'F32') {
        const f = t.toFloat32();
        bytes = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
      } else if (s === 'F16') {
        const h = t.dtype === 'f16' ? (t.toArray() as Uint16Array) : encodeFloats(t.toFloat32(), 'f16');
        bytes = new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
      } else if (isQuantType(s)) {
        const q = await quantizeMatrix(t, s);
        owned.push(q);
        bytes = q.toArray() as Uint8Array;
      } else {
        throw new ArgumentError('storage', 'F32, F16 or a block type', s);
      }
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30), offsets[i]! + done);
      owned.forEach((o) => o.dispose());
      doneValues += e.t.numel;
      options.onProgress?.({ tensor: name, storage: s, done: i + 1, count: order.length, doneValues, totalValues });
    }
    closeSync(fd);
    fd = undefined;
    const total = offsets.length > 0 ? offsets[offsets.length - 1]! + bytesOf(order[order.length - 1]!) : 0;
    return { output, tensors: storage, bytes: total };
  } catch (e) {
    if (fd !== undefined) {
      closeSync(fd);
      try {
        unlinkSync(output);
      } catch {
        // already gone
      }
    }
    throw e;
  } finally {
    weights.dispose();
  }
}
