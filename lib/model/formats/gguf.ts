/**
 * GGUF (llama.cpp's model format), versions 2 and 3, little-endian.
 *
 * Layout:
 *   uint32  magic "GGUF" (the bytes 47 47 55 46)
 *   uint32  version (2 or 3; version 1 used 32-bit counts and is not read)
 *   uint64  tensor_count
 *   uint64  metadata_kv_count
 *   metadata_kv_count x { string key; uint32 value_type; value }
 *   tensor_count x { string name; uint32 n_dims; uint64 ne[n_dims]; uint32 ggml_type; uint64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data; each tensor at data_start + offset (offsets are multiples of the alignment)
 * where string = uint64 byte length + UTF-8 bytes (no terminator), and a value is
 *   0 uint8, 1 int8, 2 uint16, 3 int16, 4 uint32, 5 int32, 6 float32, 7 bool (one byte),
 *   8 string, 9 array (uint32 element type, uint64 count, elements), 10 uint64, 11 int64, 12 float64.
 *
 * Dimensions are listed fastest-varying first: ne[0] is the number of columns.
 * A PyTorch [out, in] matrix is stored with ne = [in, out]; the row-major
 * shape is ne reversed. Quantized types pack ne[0] in blocks (Q8_0: 32
 * values as an f16 scale d and 32 int8 q, value = d * q).
 *
 * llama.cpp's converters store q/k of 'llama' (and Mistral) models in Meta's
 * interleaved RoPE layout (they undo Hugging Face's permutation); 'qwen2' uses
 * the NeoX (half-split) layout, as Hugging Face stores it.
 */

import { ArgumentError, IoError } from '../../errors.js';
import { fromF16Bits } from '../../tensor/dtype.js';
import { Tensor } from '../../tensor/tensor.js';
import { type QuantType, quantTypeOfGgmlId } from '../../tensor/quant-types.js';
import { fusedGateUpRows, fusedQkvRows, ggufGemmaOptions, ggufLongRope } from './arch-options.js';
import { ARCHITECTURES, isArchitecture, isIgnorableTensor } from '../architectures.js';
import { type ModelConfig, type RopeScaling, checkConfigBounds, layerTensorNames } from '../config.js';
import { yarnMscale } from '../rope.js';
import {
  type LoadedWeightsBase,
  type TensorSource,
  HeaderReader,
  canonicalName,
  checkDataRanges,
  checkDim,
  disposeAll,
  f32Decimal,
  fileSize,
  mappedSource,
  materialize,
  readBytes,
} from './common.js';

/** "GGUF" read as a little-endian uint32. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value type ids and their names. */
export const GGUF_VALUE_TYPES = [
  'uint8',
  'int8',
  'uint16',
  'int16',
  'uint32',
  'int32',
  'float32',
  'bool',
  'string',
  'array',
  'uint64',
  'int64',
  'float64',
] as const;
export type GgufValueTypeName = (typeof GGUF_VALUE_TYPES)[number];

/**
 * A metadata value. Scalars: 8..32-bit integers and floats are numbers, 64-bit
 * integers bigints (exact), bool booleans, strings strings. Arrays of numbers
 * are typed arrays of the matching type (BigInt64Array / BigUint64Array for
 * 64-bit), arrays of bools boolean[], of strings string[], of arrays GgufValue[].
 */
export type GgufValue = number | bigint | boolean | string | GgufArray;
export type GgufArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufValue[];

/** ggml tensor types: id -> name, values per block, bytes per block. */
export const GGML_TYPES: Record<number, { name: string; blockSize: number; typeSize: number }> = {
  0: { name: 'F32', blockSize: 1, typeSize: 4 },
  1: { name: 'F16', blockSize: 1, typeSize: 2 },
  2: { name: 'Q4_0', blockSize: 32, typeSize: 18 },
  3: { name: 'Q4_1', blockSize: 32, typeSize: 20 },
  6: { name: 'Q5_0', blockSize: 32, typeSize: 22 },
  7: { name: 'Q5_1', blockSize: 32, typeSize: 24 },
  8: { name: 'Q8_0', blockSize: 32, typeSize: 34 },
  9: { name: 'Q8_1', blockSize: 32, typeSize: 36 },
  10: { name: 'Q2_K', blockSize: 256, typeSize: 84 },
  11: { name: 'Q3_K', blockSize: 256, typeSize: 110 },
  12: { name: 'Q4_K', blockSize: 256, typeSize: 144 },
  13: { name: 'Q5_K', blockSize: 256, typeSize: 176 },
  14: { name: 'Q6_K', blockSize: 256, typeSize: 210 },
  15: { name: 'Q8_K', blockSize: 256, typeSize: 292 },
  16: { name: 'IQ2_XXS', blockSize: 256, typeSize: 66 },
  17: { name: 'IQ2_XS', blockSize: 256, typeSize: 74 },
  18: { name: 'IQ3_XXS', blockSize: 256, typeSize: 98 },
  19: { name: 'IQ1_S', blockSize: 256, typeSize: 50 },
  20: { name: 'IQ4_NL', blockSize: 32, typeSize: 18 },
  21: { name: 'IQ3_S', blockSize: 256, typeSize: 110 },
  22: { name: 'IQ2_S', blockSize: 256, typeSize: 82 },
  23: { name: 'IQ4_XS', blockSize: 256, typeSize: 136 },
  24: { name: 'I8', blockSize: 1, typeSize: 1 },
  25: { name: 'I16', blockSize: 1, typeSize: 2 },
  26: { name: 'I32', blockSize: 1, typeSize: 4 },
  27: { name: 'I64', blockSize: 1, typeSize: 8 },
  28: { name: 'F64', blockSize: 1, typeSize: 8 },
  29: { name: 'IQ1_M', blockSize: 256, typeSize: 56 },
  30: { name: 'BF16', blockSize: 1, typeSize: 2 },
  34: { name: 'TQ1_0', blockSize: 256, typeSize: 54 },
  35: { name: 'TQ2_0', blockSize: 256, typeSize: 66 },
  39: { name: 'MXFP4', blockSize: 32, typeSize: 17 },
};

/**
 * A ggml type's block: values per block and bytes per block (1 and the element size for the
 * unquantized types); undefined for an unknown type id. A tensor of ne[0] columns (a multiple of
 * blockSize) and numel values takes numel / blockSize * typeSize bytes.
 */
export function ggmlTypeBlock(type: number): { name: string; blockSize: number; typeSize: number } | undefined {
  return GGML_TYPES[type];
}

/** One tensor's description (its data is not read). */
export interface GgufTensorInfo {
  name: string;
  /** Dimensions as stored: ne[0] varies fastest (columns). */
  ne: number[];
  /** Row-major shape, outermost first: ne reversed. */
  shape: number[];
  /** ggml type id and name (GGML_TYPES). */
  type: number;
  typeName: string;
  /** Offset relative to the data section, and absolute in the file. */
  offset: number;
  fileOffset: number;
  byteLength: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  /** The stored type of each metadata value ('array<string>' for arrays). */
  metadataTypes: Map<string, string>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute offset of the data section (the end of the tensor infos, aligned). */
  dataOffset: number;
}

export interface GgufWeights extends LoadedWeightsBase {
  format: 'gguf';
  /**
   * The block-quantized tensors (canonical name -> type): each is a uint8 tensor [rows, row bytes]
   * of the file's blocks, memory-mapped as stored (lib/tensor/quant-types.ts).
   */
  quant: Map<string, QuantType>;
  /** All metadata, including the tokenizer (tokenizer.ggml.*). */
  metadata: Map<string, GgufValue>;
}

// Limits that turn a corrupt count or length into an error instead of an allocation.
const MAX_KEY_BYTES = 65535;
const MAX_STRING_BYTES = 64 << 20;
const MAX_ARRAY_LENGTH = 1 << 27;
const MAX_ARRAY_DEPTH = 8;
const MAX_DIMS = 4;

const SCALAR_SIZE: Partial<Record<number, number>> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

function bigToNumber(v: bigint, what: string, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new IoError(`${path}: ${what} ${v} is absurdly large (corrupt file?)`);
  return Number(v);
}

function readString(r: HeaderReader, what: string, max: number): string {
  const len = r.u64(`the length of ${what}`);
  if (len > BigInt(max) || len > BigInt(r.remaining)) {
    throw new IoError(`${r.path}: ${what} claims ${len} bytes at offset ${r.pos - 8} (${r.remaining} bytes remain, limit ${max}); corrupt or truncated file`);
  }
  return r.bytes(Number(len), what).toString('utf8');
}

function typedCopy<T>(r: HeaderReader, n: number, size: number, what: string, make: (buf: ArrayBuffer) => T): T {
  const bytes = r.bytes(n * size, what);
  return make(new Uint8Array(bytes).buffer); // copy into a fresh, aligned buffer
}

function readValue(r: HeaderReader, type: number, what: string, depth: number): { value: GgufValue; typeName: string } {
  switch (type) {
    case 0:
      return { value: r.u8(what), typeName: 'uint8' };
    case 1:
      return { value: r.i8(what), typeName: 'int8' };
    case 2:
      return { value: r.u16(what), typeName: 'uint16' };
    case 3:
      return { value: r.i16(what), typeName: 'int16' };
    case 4:
      return { value: r.u32(what), typeName: 'uint32' };
    case 5:
      return { value: r.i32(what), typeName: 'int32' };
    case 6:
      return { value: r.f32(what), typeName: 'float32' };
    case 7:
      return { value: r.u8(what) !== 0, typeName: 'bool' };
    case 8:
      return { value: readString(r, what, MAX_STRING_BYTES), typeName: 'string' };
    case 10:
      return { value: r.u64(what), typeName: 'uint64' };
    case 11:
      return { value: r.i64(what), typeName: 'int64' };
    case 12:
      return { value: r.f64(what), typeName: 'float64' };
    case 9: {
      if (depth >= MAX_ARRAY_DEPTH) throw new IoError(`${r.path}: ${what} nests arrays deeper than ${MAX_ARRAY_DEPTH} (corrupt file?)`);
      const elemType = r.u32(`the element type of ${what}`);
      const count64 = r.u64(`the length of ${what}`);
      const minSize = elemType === 8 ? 8 : elemType === 9 ? 12 : SCALAR_SIZE[elemType];
      if (minSize === undefined) throw new IoError(`${r.path}: ${what} has unknown element type ${elemType} (corrupt file?)`);
      if (count64 > BigInt(MAX_ARRAY_LENGTH) || count64 * BigInt(minSize) > BigInt(r.remaining)) {
        throw new IoError(
          `${r.path}: ${what} claims ${count64} elements of type ${GGUF_VALUE_TYPES[elemType]} at offset ${r.pos - 12} but only ${r.remaining} bytes remain (limit ${MAX_ARRAY_LENGTH} elements); corrupt or truncated file`,
        );
      }
      const n = Number(count64);
      const name = `array<${GGUF_VALUE_TYPES[elemType]}>`;
      switch (elemType) {
        case 0:
          return { value: typedCopy(r, n, 1, what, (b) => new Uint8Array(b)), typeName: name };
        case 1:
          return { value: typedCopy(r, n, 1, what, (b) => new Int8Array(b)), typeName: name };
        case 2:
          return { value: typedCopy(r, n, 2, what, (b) => new Uint16Array(b)), typeName: name };
        case 3:
          return { value: typedCopy(r, n, 2, what, (b) => new Int16Array(b)), typeName: name };
        case 4:
          return { value: typedCopy(r, n, 4, what, (b) => new Uint32Array(b)), typeName: name };
        case 5:
          return { value: typedCopy(r, n, 4, what, (b) => new Int32Array(b)), typeName: name };
        case 6:
          return { value: typedCopy(r, n, 4, what, (b) => new Float32Array(b)), typeName: name };
        case 10:
          return { value: typedCopy(r, n, 8, what, (b) => new BigUint64Array(b)), typeName: name };
        case 11:
          return { value: typedCopy(r, n, 8, what, (b) => new BigInt64Array(b)), typeName: name };
        case 12:
          return { value: typedCopy(r, n, 8, what, (b) => new Float64Array(b)), typeName: name };
        case 7: {
          const bytes = r.bytes(n, what);
          const out: boolean[] = new Array<boolean>(n);
          for (let i = 0; i < n; i++) out[i] = bytes[i] !== 0;
          return { value: out, typeName: name };
        }
        case 8: {
          const out: string[] = new Array<string>(n);
          for (let i = 0; i < n; i++) out[i] = readString(r, `${what}[${i}]`, MAX_STRING_BYTES);
          return { value: out, typeName: name };
        }
        default: {
          // An array of arrays: each element is itself (element type, count, values), as gguf-py writes it.
          const out: GgufValue[] = new Array<GgufValue>(n);
          for (let i = 0; i < n; i++) out[i] = readValue(r, 9, `${what}[${i}]`, depth + 1).value;
          return { value: out, typeName: name };
        }
      }
    }
    default:
      throw new IoError(`${r.path}: ${what} has unknown value type ${type} at offset ${r.pos - 4} (corrupt file?)`);
  }
}

/**
 * Reads a GGUF file's header: metadata and tensor infos, without reading
 * tensor data. Tensor byte ranges are not checked against the file size here
 * (a truncated file's metadata stays readable); loadGguf checks them.
 */
export function readGguf(path: string): GgufFile {
  const r = new HeaderReader(path);
  try {
    if (r.size < 24) throw new IoError(`${path}: ${r.size} bytes is too short for a GGUF file (the header is 24 bytes); is the file truncated?`);
    const magicBytes = Buffer.from(r.bytes(4, 'the magic'));
    if (magicBytes.readUInt32LE(0) !== GGUF_MAGIC) {
      throw new IoError(`${path}: bad magic ${JSON.stringify(magicBytes.toString('latin1'))} (bytes ${magicBytes.toString('hex')}); a GGUF file starts with "GGUF"`);
    }
    const version = r.u32('the version');
    if (version !== 2 && version !== 3) {
      const hint = version === 1 ? ' (GGUF v1 is obsolete: convert the model again)' : (version & 0xffff) === 0 ? ' (a big-endian GGUF file?)' : '';
      throw new IoError(`${path}: GGUF version ${version} is not supported (2 and 3 are)${hint}`);
    }
    const nTensors64 = r.u64('the tensor count');
    const nKv64 = r.u64('the metadata count');
    // Each metadata entry takes at least 13 bytes (key length, type, a one-byte value); each tensor info at least 28.
    if (nKv64 * 13n > BigInt(r.remaining)) {
      throw new IoError(`${path}: the header claims ${nKv64} metadata entries but only ${r.remaining} bytes follow; corrupt or truncated file`);
    }
    if (nTensors64 * 28n > BigInt(r.remaining)) {
      throw new IoError(`${path}: the header claims ${nTensors64} tensors but only ${r.remaining} bytes follow; corrupt or truncated file`);
    }
    const nKv = Number(nKv64);
    const nTensors = Number(nTensors64);
    const metadata = new Map<string, GgufValue>();
    const metadataTypes = new Map<string, string>();
    for (let i = 0; i < nKv; i++) {
      const key = readString(r, `the key of metadata entry ${i}`, MAX_KEY_BYTES);
      const type = r.u32(`the value type of metadata '${key}'`);
      if (metadata.has(key)) throw new IoError(`${path}: metadata key '${key}' appears twice`);
      const { value, typeName } = readValue(r, type, `metadata '${key}'`, 0);
      metadata.set(key, value);
      metadataTypes.set(key, typeName);
    }
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    if (metadata.has('general.alignment')) {
      const a = metadata.get('general.alignment');
      if (typeof a !== 'number' || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) {
        throw new IoError(`${path}: general.alignment must be a power of two; found ${String(a)}`);
      }
      alignment = a;
    }
    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = readString(r, `the name of tensor ${i}`, MAX_KEY_BYTES);
      if (names.has(name)) throw new IoError(`${path}: tensor '${name}' appears twice`);
      names.add(name);
      const nDims = r.u32(`the dimension count of tensor '${name}'`);
      if (nDims < 1 || nDims > MAX_DIMS) throw new IoError(`${path}: tensor '${name}' has ${nDims} dimensions (1 to ${MAX_DIMS} allowed); corrupt file?`);
      const ne: number[] = [];
      let numel = 1;
      for (let d = 0; d < nDims; d++) {
        const v = r.u64(`dimension ${d} of tensor '${name}'`);
        if (v > 2n ** 40n) throw new IoError(`${path}: tensor '${name}' has dimension ${v} (corrupt file?)`);
        ne.push(Number(v));
        numel *= Number(v);
      }
      if (numel > 2 ** 48) throw new IoError(`${path}: tensor '${name}' has ${numel} elements (ne [${ne.join(', ')}]; corrupt file?)`);
      const type = r.u32(`the type of tensor '${name}'`);
      const offset = bigToNumber(r.u64(`the offset of tensor '${name}'`), `the offset of tensor '${name}'`, path);
      const t = GGML_TYPES[type];
      if (!t) throw new ArgumentError(`${path}: tensor '${name}' has unknown ggml type ${type}`);
      if (ne[0]! % t.blockSize !== 0) {
        throw new IoError(`${path}: tensor '${name}' (${t.name}) has ${ne[0]} columns, not a multiple of its block size ${t.blockSize}`);
      }
      if (offset % alignment !== 0) {
        throw new IoError(`${path}: tensor '${name}' has offset ${offset}, not a multiple of the alignment ${alignment}`);
      }
      tensors.push({
        name,
        ne,
        shape: [...ne].reverse(),
        type,
        typeName: t.name,
        offset,
        fileOffset: 0, // set below
        byteLength: (numel / t.blockSize) * t.typeSize,
      });
    }
    const dataOffset = Math.ceil(r.pos / alignment) * alignment;
    for (const t of tensors) t.fileOffset = dataOffset + t.offset;
    return { version, metadata, metadataTypes, tensors, alignment, dataOffset };
  } finally {
    r.close();
  }
}

/** llama.cpp names (blk.N.*) of the canonical per-layer tensors. */
const LAYER_NAMES: Record<string, keyof ReturnType<typeof layerTensorNames>> = {
  'attn_norm.weight': 'attnNorm',
  'attn_q.weight': 'wq',
  'attn_k.weight': 'wk',
  'attn_v.weight': 'wv',
  'attn_output.weight': 'wo',
  'attn_q.bias': 'bq',
  'attn_k.bias': 'bk',
  'attn_v.bias': 'bv',
  'attn_q_norm.weight': 'qNorm',
  'attn_k_norm.weight': 'kNorm',
  'ffn_norm.weight': 'ffnNorm',
  'ffn_gate.weight': 'w1',
  'ffn_down.weight': 'w2',
  'ffn_up.weight': 'w3',
  'post_attention_norm.weight': 'postAttnNorm',
  'post_ffw_norm.weight': 'postFfnNorm',
};
const GLOBAL_NAMES: Record<string, string> = { 'token_embd.weight': 'embed', 'output_norm.weight': 'norm', 'output.weight': 'output' };

/** The canonical name of a llama.cpp tensor name, or undefined. */
export function canonicalFromGguf(name: string): string | undefined {
  return canonicalName(name, GLOBAL_NAMES, /^blk\.(\d+)\.(.+)$/, LAYER_NAMES);
}

/** The llama.cpp name of a canonical tensor name. */
export function ggufNameOf(canonical: string): string {
  for (const [k, v] of Object.entries(GLOBAL_NAMES)) if (v === canonical) return k;
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canonical);
  if (m) for (const [k, v] of Object.entries(LAYER_NAMES)) if (v === m[2]) return `blk.${m[1]}.${k}`;
  return canonical;
}

/** The tensor holding RoPE frequency factors (Llama 3.1 as llama.cpp's converter writes it). */
export const ROPE_FREQS_TENSOR = 'rope_freqs.weight';

/** Reads an integer metadata value (any integer type); undefined when absent. */
export function ggufInteger(metadata: Map<string, GgufValue>, key: string, path: string): number | undefined {
  const v = metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v === 'bigint') return bigToNumber(v, `metadata '${key}'`, path);
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new ArgumentError(`${path}: metadata '${key}' must be an integer; found ${describeValue(v)}`);
  return v;
}

function ggufFloat(metadata: Map<string, GgufValue>, key: string, path: string): number | undefined {
  const v = metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number') throw new ArgumentError(`${path}: metadata '${key}' must be a number; found ${describeValue(v)}`);
  return v;
}

function describeValue(v: GgufValue): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 37) + '...' : v);
  if (typeof v === 'object') return `an array of ${(v as { length: number }).length}`;
  return String(v);
}

/** The ModelConfig a GGUF file's metadata and tensor infos describe. */
export function ggufConfig(file: GgufFile, path: string): ModelConfig {
  const meta = file.metadata;
  const arch = meta.get('general.architecture');
  if (arch === undefined) throw new ArgumentError(`${path}: metadata 'general.architecture' is missing`);
  if (!isArchitecture(arch)) {
    throw new ArgumentError(`${path}: general.architecture ${describeValue(arch)} is not supported (supported: ${Object.keys(ARCHITECTURES).join(', ')})`);
  }
  const architecture = arch;
  const info = ARCHITECTURES[architecture];
  const req = (key: string): number => {
    const v = ggufInteger(meta, `${arch}.${key}`, path);
    if (v === undefined) throw new ArgumentError(`${path}: metadata '${arch}.${key}' is missing`);
    return checkDim(v, `metadata '${arch}.${key}'`, path);
  };
  const opt = (key: string): number | undefined => {
    const v = ggufInteger(meta, `${arch}.${key}`, path);
    return v === undefined ? undefined : checkDim(v, `metadata '${arch}.${key}'`, path);
  };
  const dim = req('embedding_length');
  const hiddenDim = req('feed_forward_length');
  const nLayers = req('block_count');
  const nHeads = req('attention.head_count');
  const nKvHeads = opt('attention.head_count_kv') ?? nHeads;
  let maxSeqLen = req('context_length');
  const keyLength = opt('attention.key_length');
  const valueLength = opt('attention.value_length');
  if (keyLength === undefined && dim % nHeads !== 0) {
    throw new ArgumentError(`${path}: ${arch}.embedding_length ${dim} is not a multiple of ${arch}.attention.head_count ${nHeads} and ${arch}.attention.key_length is absent`);
  }
  const headDim = keyLength ?? dim / nHeads;
  if (valueLength !== undefined && valueLength !== headDim) {
    throw new ArgumentError(`${path}: ${arch}.attention.value_length ${valueLength} differs from the head size ${headDim}, which canopy does not support`);
  }
  if (nHeads % nKvHeads !== 0) throw new ArgumentError(`${path}: ${arch}.attention.head_count ${nHeads} is not a multiple of head_count_kv ${nKvHeads}`);
  const ropeDims = opt('rope.dimension_count');
  if (ropeDims !== undefined && ropeDims !== headDim) {
    throw new ArgumentError(`${path}: ${arch}.rope.dimension_count ${ropeDims} differs from the head size ${headDim} (partial rotary embeddings are not supported)`);
  }
  const eps = ggufFloat(meta, `${arch}.attention.layer_norm_rms_epsilon`, path);
  if (eps === undefined) throw new ArgumentError(`${path}: metadata '${arch}.attention.layer_norm_rms_epsilon' is missing`);
  if (!(eps > 0 && eps < 1)) throw new ArgumentError(`${path}: ${arch}.attention.layer_norm_rms_epsilon must be in (0, 1); found ${eps}`);
  const theta = ggufFloat(meta, `${arch}.rope.freq_base`, path) ?? 10000;
  if (!(theta > 1)) throw new ArgumentError(`${path}: ${arch}.rope.freq_base must be > 1; found ${theta}`);
  // Phi-3's LongRoPE (factor tensors, attn_factor) is read below instead.
  let ropeScaling = architecture === 'phi3' && file.tensors.some((t) => t.name === 'rope_factors_long.weight') ? undefined : ggufRopeScaling(meta, arch, path, maxSeqLen);
  // YaRN extends the original context by its factor (converters keep context_length at the original).
  if (ropeScaling?.type === 'yarn') maxSeqLen = Math.max(maxSeqLen, Math.floor(ropeScaling.originalMaxPositionEmbeddings * ropeScaling.factor));
  const ropeFreqFactors = ggufRopeFreqFactors(file, path, headDim);

  const embd = file.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embd) throw new ArgumentError(`${path}: missing tensor 'token_embd.weight' (embed)`);
  if (embd.ne.length !== 2) throw new ArgumentError(`${path}: tensor 'token_embd.weight' (embed) has ne [${embd.ne.join(', ')}]; expected [dim, vocab]`);
  const vocabSize = embd.ne[1]!;
  const declaredVocab = opt('vocab_size');
  if (declaredVocab !== undefined && declaredVocab !== vocabSize) {
    throw new ArgumentError(`${path}: ${arch}.vocab_size ${declaredVocab} differs from the rows of 'token_embd.weight' (${vocabSize})`);
  }
  const bos = ggufInteger(meta, 'tokenizer.ggml.bos_token_id', path);
  const eos = ggufInteger(meta, 'tokenizer.ggml.eos_token_id', path);
  const eot = ggufInteger(meta, 'tokenizer.ggml.eot_token_id', path);
  const eosTokenIds = [eos, eot].filter((x, i, a): x is number => x !== undefined && a.indexOf(x) === i);
  // Gemma 2 / 3 and Phi-3 (lib/model/formats/arch-options.ts).
  const num = (key: string) => {
    const v = meta.get(`${arch}.${key}`);
    if (v === undefined) return undefined;
    if (typeof v === 'bigint') return bigToNumber(v, `metadata '${arch}.${key}'`, path);
    if (typeof v !== 'number') throw new ArgumentError(`${path}: metadata '${arch}.${key}' must be a number; found ${describeValue(v)}`);
    return f32Decimal(v);
  };
  const shape = { dim, nHeads, headDim, nLayers };
  const archOptions = architecture === 'gemma2' || architecture === 'gemma3' ? ggufGemmaOptions(architecture, num, shape, path) : {};
  if (architecture === 'phi3') {
    const factors = (name: string) => {
      const t = file.tensors.find((x) => x.name === name);
      if (!t) return undefined;
      if (t.typeName !== 'F32' || t.ne.length !== 1) throw new ArgumentError(`${path}: tensor '${name}' must be F32 [headDim / 2]; found ${t.typeName} ne [${t.ne.join(', ')}]`);
      const b = readBytes(path, t.fileOffset, t.byteLength);
      return Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
    };
    ropeScaling = ggufLongRope(factors('rope_factors_long.weight'), factors('rope_factors_short.weight'), num, maxSeqLen, headDim, path) ?? ropeScaling;
  }
  return {
    architecture,
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    maxSeqLen,
    // f32 metadata: report the decimal the converter wrote (1e-5, not 9.99999974737875e-6).
    ropeTheta: f32Decimal(theta),
    ropeStyle: info.ggufRope,
    ...(ropeScaling ? { ropeScaling } : {}),
    ...(ropeFreqFactors ? { ropeFreqFactors } : {}),
    normEps: f32Decimal(eps),
    // llama.cpp's Gemma reads no output.weight: the head is the embedding.
    tiedEmbeddings: architecture === 'gemma2' || architecture === 'gemma3' || !file.tensors.some((t) => t.name === 'output.weight'),
    // Qwen2 always has q/k/v biases (a file without them fails as missing tensors); llama.cpp's
    // llama architecture takes them when present.
    qkvBias: info.qkvBias === 'always' || (info.qkvBias === 'optional' && file.tensors.some((t) => /^blk\.\d+\.attn_[qkv]\.bias$/.test(t.name))),
    ...(info.qkNorm ? { qkNorm: true } : {}),
    ...archOptions,
    ...(bos !== undefined ? { bosTokenId: bos } : {}),
    ...(eosTokenIds.length > 0 ? { eosTokenIds } : {}),
  };
}

/**
 * The RoPE scaling of a GGUF file, read as llama.cpp reads it (llama-model.cpp, llama-context.cpp):
 *   {arch}.rope.scaling.type     'none' | 'linear' | 'yarn' ('longrope' belongs to Phi-3); absent:
 *                                'linear' (llama.cpp's default), which a factor of 1 makes a no-op
 *   {arch}.rope.scaling.factor   (or the older {arch}.rope.scale_linear); absent or 0: 1
 *   yarn: {arch}.rope.scaling.original_context_length (default {arch}.context_length),
 *         {arch}.rope.scaling.yarn_beta_fast / yarn_beta_slow (default 32 / 1),
 *         {arch}.rope.scaling.yarn_log_multiplier (DeepSeek's mscale_all_dim; attention factor
 *         get_mscale(factor) / get_mscale(factor, it)), {arch}.rope.scaling.attn_factor (multiplies)
 */
function ggufRopeScaling(meta: Map<string, GgufValue>, arch: string, path: string, contextLength: number): RopeScaling | undefined {
  const key = (k: string) => `${arch}.rope.${k}`;
  const typeRaw = meta.get(key('scaling.type'));
  if (typeRaw !== undefined && typeof typeRaw !== 'string') throw new ArgumentError(`${path}: ${key('scaling.type')} must be a string; found ${describeValue(typeRaw)}`);
  const factorRaw = ggufFloat(meta, key('scaling.factor'), path) ?? ggufFloat(meta, key('scale_linear'), path) ?? 0;
  if (!Number.isFinite(factorRaw) || factorRaw < 0) throw new ArgumentError(`${path}: ${key('scaling.factor')} must be a positive number; found ${factorRaw}`);
  const factor = factorRaw === 0 ? 1 : f32Decimal(factorRaw);
  const type = typeRaw ?? 'linear';
  const attnFactor = ggufFloat(meta, key('scaling.attn_factor'), path) ?? 1;
  if (!(attnFactor > 0 && Number.isFinite(attnFactor))) throw new ArgumentError(`${path}: ${key('scaling.attn_factor')} must be a positive number; found ${attnFactor}`);
  if (attnFactor !== 1 && type !== 'yarn') {
    throw new ArgumentError(`${path}: ${key('scaling.attn_factor')} ${attnFactor} with rope scaling '${type}' is not supported (only with yarn)`);
  }
  switch (type) {
    case 'none':
      return undefined;
    case 'linear':
      return factor === 1 ? undefined : { type: 'linear', factor };
    case 'yarn': {
      const ext = ggufFloat(meta, key('scaling.yarn_ext_factor'), path);
      if (ext !== undefined && ext !== 1) throw new ArgumentError(`${path}: ${key('scaling.yarn_ext_factor')} ${ext} is not supported (1 only)`);
      const original = ggufInteger(meta, key('scaling.original_context_length'), path) ?? contextLength;
      checkDim(original, `metadata '${key('scaling.original_context_length')}'`, path);
      const betaFast = ggufFloat(meta, key('scaling.yarn_beta_fast'), path) ?? 32;
      const betaSlow = ggufFloat(meta, key('scaling.yarn_beta_slow'), path) ?? 1;
      const logMul = ggufFloat(meta, key('scaling.yarn_log_multiplier'), path) ?? 0;
      const mscale = logMul !== 0 ? yarnMscale(factor) / yarnMscale(factor, logMul) : yarnMscale(factor);
      return {
        type: 'yarn',
        factor,
        originalMaxPositionEmbeddings: original,
        betaFast: f32Decimal(betaFast),
        betaSlow: f32Decimal(betaSlow),
        attentionFactor: mscale * attnFactor,
        truncate: true,
      };
    }
    case 'longrope':
      throw new ArgumentError(`${path}: ${key('scaling.type')} 'longrope' (Phi-3's LongRoPE) is not supported for ${arch} models`);
    default:
      throw new ArgumentError(`${path}: ${key('scaling.type')} ${describeValue(type)} is not supported (none, linear, yarn)`);
  }
}

/** rope_freqs.weight (F32 [headDim / 2], each > 0) as numbers, or undefined when the file has none. */
function ggufRopeFreqFactors(file: GgufFile, path: string, headDim: number): number[] | undefined {
  const t = file.tensors.find((x) => x.name === ROPE_FREQS_TENSOR);
  if (!t) return undefined;
  if (t.typeName !== 'F32' || t.ne.length !== 1 || t.ne[0] !== headDim / 2) {
    throw new ArgumentError(`${path}: tensor '${ROPE_FREQS_TENSOR}' is ${t.typeName} ne [${t.ne.join(', ')}]; expected F32 [${headDim / 2}] (headDim / 2 RoPE frequency factors)`);
  }
  const bytes = readBytes(path, t.fileOffset, t.byteLength);
  if (bytes.length !== t.byteLength) throw new IoError(`${path}: tensor '${ROPE_FREQS_TENSOR}' needs bytes [${t.fileOffset}, ${t.fileOffset + t.byteLength}) but the file ends at ${t.fileOffset + bytes.length}; is the file truncated?`);
  const values: number[] = [];
  for (let i = 0; i < headDim / 2; i++) {
    const v = bytes.readFloatLE(4 * i);
    if (!(v > 0 && Number.isFinite(v))) throw new ArgumentError(`${path}: tensor '${ROPE_FREQS_TENSOR}' holds ${v} at element ${i}; RoPE frequency factors must be positive`);
    values.push(v);
  }
  return values;
}

/** Q8_0: blocks of 34 bytes (f16 scale d, 32 int8 q); value = d * q, computed in f32 (exact). Not used by loadGguf (which keeps blocks as stored); a reference for tests and tools. */
export function dequantizeQ8_0(blocks: Uint8Array, numel: number): Float32Array {
  const out = new Float32Array(numel);
  const view = new DataView(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  const nBlocks = numel / 32;
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 34;
    const d = fromF16Bits(view.getUint16(base, true));
    const o = b * 32;
    for (let j = 0; j < 32; j++) out[o + j] = d * view.getInt8(base + 2 + j);
  }
  return out;
}

const DIRECT: Partial<Record<string, 'f32' | 'f16' | 'bf16'>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const QUANT_NAMES = 'Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS';

/**
 * The tensor data lies packed from the data start in alignment-padded slots, as llama.cpp
 * requires (each offset equals the padded end of the tensors before it), inside the file:
 * overlapping data, gaps and trailing bytes (a tensor whose declared type or shape does not
 * match its bytes) are errors. Generic over ggml types: it uses each tensor's byteLength.
 */
function checkGgufData(file: GgufFile, path: string): void {
  const ranges = file.tensors.map((t) => ({ name: t.name, type: t.typeName, offset: t.fileOffset, byteLength: t.byteLength }));
  checkDataRanges(path, ranges, { start: file.dataOffset, end: fileSize(path), alignment: file.alignment, packed: true });
}

/**
 * Loads a GGUF model of the Llama family into canonical tensors, every one memory-mapped as stored:
 * F32/F16/BF16 as float tensors, block-quantized types (Q8_0, Q4_0, Q4_K, ...: QUANT_TYPES) as
 * uint8 tensors of their blocks, listed in `quant`. Files may mix types per tensor.
 */
export function loadGguf(path: string): GgufWeights {
  const file = readGguf(path);
  checkGgufData(file, path);
  const config = ggufConfig(file, path);
  checkConfigBounds(config, path);
  const sources: TensorSource[] = [];
  const quant = new Map<string, QuantType>();
  for (const t of file.tensors) {
    // Phi-3: LongRoPE factors (read into the config), fused q/k/v and gate/up rows (mapped in place, split by rows).
    if (config.architecture === 'phi3' && (t.name === 'rope_factors_long.weight' || t.name === 'rope_factors_short.weight')) continue;
    const fused = config.architecture === 'phi3' ? /^blk\.(\d+)\.(attn_qkv|ffn_up)\.weight$/.exec(t.name) : null;
    if (fused) {
      const parts = fused[2] === 'attn_qkv' ? fusedQkvRows(config) : fusedGateUpRows(config.hiddenDim);
      const totalRows = parts.reduce((a, p) => a + p.rows, 0);
      if (t.shape.length !== 2 || t.shape[0] !== totalRows) {
        throw new ArgumentError(`${path}: tensor '${t.name}' has ne [${t.ne.join(', ')}]; expected [${config.dim}, ${totalRows}] (${fused[2] === 'attn_qkv' ? 'q, k and v rows' : 'gate and up rows'})`);
      }
      const rowBytes = t.byteLength / totalRows;
      const direct = DIRECT[t.typeName];
      const blockType = quantTypeOfGgmlId(t.type);
      for (const p of parts) {
        const canonical = `layers.${fused[1]}.${p.part}`;
        const offset = t.fileOffset + p.start * rowBytes;
        const shape = [p.rows, t.shape[1]!];
        if (direct) {
          sources.push(mappedSource(canonical, t.name, path, direct, shape, offset, t.typeName, direct === 'f32' ? 4 : 2));
        } else if (blockType !== undefined) {
          quant.set(canonical, blockType);
          sources.push({ canonical, name: t.name, file: path, shape, storedType: t.typeName, offset, byteLength: p.rows * rowBytes, load: (maps) => maps.tensor(path, 'uint8', [p.rows, rowBytes], offset) });
        } else {
          throw new ArgumentError(`${path}: tensor '${t.name}' has type ${t.typeName}, which canopy does not load (F32, F16, BF16, ${QUANT_NAMES})`);
        }
      }
      continue;
    }
    // rope_freqs.weight is in the config (ropeFreqFactors), read by ggufConfig.
    if (t.name === ROPE_FREQS_TENSOR) continue;
    const canonical = canonicalFromGguf(t.name);
    if (canonical === undefined) {
      if (isIgnorableTensor(config.architecture, 'gguf', t.name)) continue;
      throw new ArgumentError(`${path}: unexpected tensor '${t.name}' (${t.typeName} ne [${t.ne.join(', ')}]): not a weight of a ${config.architecture} model that canopy knows; refusing to ignore it, as it may change the math`);
    }
    const direct = DIRECT[t.typeName];
    const blockType = quantTypeOfGgmlId(t.type);
    if (direct) {
      const size = direct === 'f32' ? 4 : 2;
      sources.push(mappedSource(canonical, t.name, path, direct, t.shape, t.fileOffset, t.typeName, size));
    } else if (blockType !== undefined && t.shape.length === 2) {
      // Blocks as stored: [rows, row bytes] uint8, mapped (no copy, no dequantization).
      const rows = t.shape[0]!;
      const rowBytes = t.byteLength / rows;
      quant.set(canonical, blockType);
      sources.push({
        canonical,
        name: t.name,
        file: path,
        shape: t.shape,
        storedType: t.typeName,
        offset: t.fileOffset,
        byteLength: t.byteLength,
        load: (maps) => maps.tensor(path, 'uint8', [rows, rowBytes], t.fileOffset),
      });
    } else {
      throw new ArgumentError(
        `${path}: tensor '${t.name}' has type ${t.typeName}${blockType ? ` with ${t.shape.length} dimensions (block types are read for matrices)` : ''}, which canopy does not load (F32, F16, BF16, ${QUANT_NAMES})`,
      );
    }
  }
  const tensors = materialize(config, sources, path, ggufNameOf);
  return { format: 'gguf', config, tensors, path, metadata: file.metadata, quant, dispose: () => disposeAll(tensors) };
}
