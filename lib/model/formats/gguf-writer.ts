/**
 * A GGUF writer: the container (v2/v3, every metadata type, any alignment) and
 * Llama-family model files that llama.cpp loads.
 *
 * `canopy bench` uses it to write the random models of standard shapes as GGUF
 * files, so that canopy and llama.cpp (the node-llama-cpp peer) run the very same
 * bytes; the loader tests use it to write the files they read back. The tensor
 * names and metadata keys here are written from llama.cpp's conventions,
 * independently of the reader in gguf.ts, so a mistake in one shows in the tests
 * of the other.
 *
 * Files are written piece by piece (header, then each tensor at its offset), so a
 * model of a few GB never needs a second copy in memory; tensors given only as
 * `{ byteLength }` are left as holes (zeros, no disk blocks).
 */

import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

import { ArgumentError } from '../../errors.js';
import { encodeFloats } from '../../tensor/dtype.js';
import { type ModelConfig, expectedShapes } from '../config.js';

/** Metadata type names: scalars, 'string', or 'array<T>' (nesting allowed: 'array<array<uint8>>'). */
export type GgufTypeSpec = string;
/** One metadata entry: key, type name, value (bigint for the 64-bit integers). */
export type GgufEntry = [key: string, type: GgufTypeSpec, value: unknown];

const VALUE_TYPE_IDS: Record<string, number> = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  uint64: 10,
  int64: 11,
  float64: 12,
};

function ggufString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([len, b]);
}

function typeId(spec: GgufTypeSpec, key: string): number {
  if (spec.startsWith('array<')) return 9;
  const id = VALUE_TYPE_IDS[spec];
  if (id === undefined) throw new ArgumentError(`metadata '${key}' type`, `one of ${Object.keys(VALUE_TYPE_IDS).join(', ')} or array<T>`, spec);
  return id;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function encodeValue(spec: GgufTypeSpec, value: unknown, key: string): Buffer {
  const m = /^array<(.+)>$/.exec(spec);
  if (m) {
    const inner = m[1]!;
    const items = Array.from(value as ArrayLike<unknown>);
    const head = Buffer.alloc(12);
    head.writeUInt32LE(typeId(inner, key), 0);
    head.writeBigUInt64LE(BigInt(items.length), 4);
    // Elements carry no type of their own; a nested array element is (type, count, values).
    return Buffer.concat([head, ...items.map((v) => encodeValue(inner, v, key))]);
  }
  const b = Buffer.alloc(8);
  switch (spec) {
    case 'uint8':
      b.writeUInt8(value as number);
      return b.subarray(0, 1);
    case 'int8':
      b.writeInt8(value as number);
      return b.subarray(0, 1);
    case 'uint16':
      b.writeUInt16LE(value as number);
      return b.subarray(0, 2);
    case 'int16':
      b.writeInt16LE(value as number);
      return b.subarray(0, 2);
    case 'uint32':
      b.writeUInt32LE(value as number);
      return b.subarray(0, 4);
    case 'int32':
      b.writeInt32LE(value as number);
      return b.subarray(0, 4);
    case 'float32':
      b.writeFloatLE(value as number);
      return b.subarray(0, 4);
    case 'bool':
      b.writeUInt8(value ? 1 : 0);
      return b.subarray(0, 1);
    case 'string':
      return ggufString(value as string);
    case 'uint64':
      b.writeBigUInt64LE(value as bigint);
      return b;
    case 'int64':
      b.writeBigInt64LE(value as bigint);
      return b;
    case 'float64':
      b.writeDoubleLE(value as number);
      return b;
    default:
      throw new ArgumentError(`metadata '${key}' type`, `one of ${Object.keys(VALUE_TYPE_IDS).join(', ')} or array<T>`, spec);
  }
}

/** A tensor's bytes: given, produced on demand (written then dropped), or a hole of `byteLength` zeros. */
export type GgufTensorData = Uint8Array | (() => Uint8Array) | { byteLength: number };

export interface GgufTensorSpec {
  name: string;
  /** ggml type id: 0 F32, 1 F16, 8 Q8_0, 30 BF16, ... */
  type: number;
  /** Dimensions fastest-varying first (the reverse of the row-major shape). */
  ne: number[];
  data: GgufTensorData;
  /** Byte length; required when `data` is a function. */
  byteLength?: number;
}

export interface GgufWriteOptions {
  /** GGUF version, 2 or 3 (default 3). */
  version?: number;
  /** Used for padding; write 'general.alignment' in metadata to declare it (default 32). */
  alignment?: number;
  metadata: GgufEntry[];
  tensors: GgufTensorSpec[];
}

function byteLengthOf(t: GgufTensorSpec, i: number): number {
  const n = typeof t.data === 'function' ? t.byteLength : t.data.byteLength;
  if (n === undefined || !Number.isInteger(n) || n < 0) {
    throw new ArgumentError(`tensors[${i}].byteLength`, 'a byte count (required when data is a function)', n);
  }
  return n;
}

/** Writes a GGUF file (little-endian) and returns the absolute offset of each tensor's data. */
export function writeGguf(path: string, o: GgufWriteOptions): number[] {
  const align = o.alignment ?? 32;
  if (!Number.isInteger(align) || align < 1) throw new ArgumentError('alignment', 'a positive integer', align);
  const parts: Buffer[] = [Buffer.from('GGUF', 'latin1'), u32(o.version ?? 3)];
  const counts = Buffer.alloc(16);
  counts.writeBigUInt64LE(BigInt(o.tensors.length), 0);
  counts.writeBigUInt64LE(BigInt(o.metadata.length), 8);
  parts.push(counts);
  for (const [key, spec, value] of o.metadata) parts.push(ggufString(key), u32(typeId(spec, key)), encodeValue(spec, value, key));
  const rel: number[] = [];
  const lengths = o.tensors.map(byteLengthOf);
  let off = 0;
  o.tensors.forEach((t, i) => {
    off = Math.ceil(off / align) * align;
    rel.push(off);
    const info = Buffer.alloc(4 + 8 * t.ne.length + 4 + 8);
    info.writeUInt32LE(t.ne.length, 0);
    t.ne.forEach((d, j) => info.writeBigUInt64LE(BigInt(d), 4 + 8 * j));
    info.writeUInt32LE(t.type, 4 + 8 * t.ne.length);
    info.writeBigUInt64LE(BigInt(off), 8 + 8 * t.ne.length);
    parts.push(ggufString(t.name), info);
    off += lengths[i]!;
  });
  const header = Buffer.concat(parts);
  const dataStart = Math.ceil(header.length / align) * align;
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, header, 0, header.length, 0);
    o.tensors.forEach((t, i) => {
      if (!(typeof t.data === 'function' || ArrayBuffer.isView(t.data))) return; // a hole
      const given = typeof t.data === 'function' ? t.data() : (t.data as Uint8Array);
      const bytes = new Uint8Array(given.buffer, given.byteOffset, given.byteLength);
      if (bytes.byteLength !== lengths[i]) throw new ArgumentError(`tensors[${i}] (${t.name}) data`, `${lengths[i]} bytes`, `${bytes.byteLength} bytes`);
      let done = 0;
      while (done < bytes.byteLength) {
        done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30), dataStart + rel[i]! + done);
      }
    });
    ftruncateSync(fd, dataStart + off);
  } finally {
    closeSync(fd);
  }
  return rel.map((r) => dataStart + r);
}

/** f32 values as the bytes of a ggml tensor of type F32 (0), F16 (1) or BF16 (30). */
export function ggmlFloatBytes(values: Float32Array, type: 0 | 1 | 30): Uint8Array {
  const arr = type === 0 ? values : encodeFloats(values, type === 1 ? 'f16' : 'bf16');
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

/** The llama.cpp name of a canonical tensor name (lib/model/config.ts). */
export function ggufName(canonical: string): string {
  const G: Record<string, string> = { embed: 'token_embd.weight', norm: 'output_norm.weight', output: 'output.weight' };
  if (G[canonical]) return G[canonical]!;
  const L: Record<string, string> = {
    attnNorm: 'attn_norm.weight',
    wq: 'attn_q.weight',
    wk: 'attn_k.weight',
    wv: 'attn_v.weight',
    wo: 'attn_output.weight',
    bq: 'attn_q.bias',
    bk: 'attn_k.bias',
    bv: 'attn_v.bias',
    qNorm: 'attn_q_norm.weight',
    kNorm: 'attn_k_norm.weight',
    ffnNorm: 'ffn_norm.weight',
    w1: 'ffn_gate.weight',
    w2: 'ffn_down.weight',
    w3: 'ffn_up.weight',
    postAttnNorm: 'post_attention_norm.weight',
    postFfnNorm: 'post_ffw_norm.weight',
  };
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canonical);
  if (!m || !L[m[2]!]) throw new ArgumentError('canonical', 'a canonical tensor name (embed, norm, output, layers.N.wq, ...)', canonical);
  return `blk.${m[1]}.${L[m[2]!]}`;
}

/**
 * The metadata a Llama-family GGUF needs for `c` (the keys llama.cpp's converter writes); BOS 1,
 * EOS 2. The head size is written (attention.key_length / value_length) when it is not dim /
 * nHeads (Qwen3, Mistral Nemo); RoPE scaling as rope.scaling.* (linear: type and factor; yarn:
 * also original_context_length; llama3 scaling is not metadata but the rope_freqs.weight tensor,
 * which writeLlamaGguf adds: ggufRopeFreqs).
 */
export function llamaGgufMetadata(c: ModelConfig, arch = 'llama'): GgufEntry[] {
  const entries: GgufEntry[] = [
    ['general.architecture', 'string', arch],
    [`${arch}.context_length`, 'uint32', c.maxSeqLen],
    [`${arch}.embedding_length`, 'uint32', c.dim],
    [`${arch}.feed_forward_length`, 'uint32', c.hiddenDim],
    [`${arch}.block_count`, 'uint32', c.nLayers],
    [`${arch}.attention.head_count`, 'uint32', c.nHeads],
    [`${arch}.attention.head_count_kv`, 'uint32', c.nKvHeads],
    [`${arch}.rope.freq_base`, 'float32', c.ropeTheta],
    [`${arch}.attention.layer_norm_rms_epsilon`, 'float32', c.normEps],
    ['tokenizer.ggml.bos_token_id', 'uint32', 1],
    ['tokenizer.ggml.eos_token_id', 'uint32', 2],
  ];
  if (c.headDim * c.nHeads !== c.dim) {
    entries.push([`${arch}.attention.key_length`, 'uint32', c.headDim], [`${arch}.attention.value_length`, 'uint32', c.headDim]);
  }
  const s = c.ropeScaling;
  if (s?.type === 'linear') {
    entries.push([`${arch}.rope.scaling.type`, 'string', 'linear'], [`${arch}.rope.scaling.factor`, 'float32', s.factor]);
  } else if (s?.type === 'yarn') {
    entries.push(
      [`${arch}.rope.scaling.type`, 'string', 'yarn'],
      [`${arch}.rope.scaling.factor`, 'float32', s.factor],
      [`${arch}.rope.scaling.original_context_length`, 'uint32', s.originalMaxPositionEmbeddings],
    );
  }
  return entries;
}

/**
 * The rope_freqs.weight values of `c`: its ropeFreqFactors, or, for llama3 scaling, the divisors
 * llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel) computes: per pair, with the unscaled
 * frequency f = theta^(-2j/d) and wavelength w = 2 pi / f, 1 when w < L / high_freq_factor,
 * factor when w > L / low_freq_factor, else 1 / ((1 - s) / factor + s) with
 * s = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor). Undefined when neither.
 */
export function ggufRopeFreqs(c: ModelConfig): Float32Array | undefined {
  if (c.ropeFreqFactors) return Float32Array.from(c.ropeFreqFactors);
  const s = c.ropeScaling;
  if (s?.type !== 'llama3') return undefined;
  const out = new Float32Array(c.headDim / 2);
  const L = s.originalMaxPositionEmbeddings;
  for (let j = 0; j < out.length; j++) {
    const w = (2 * Math.PI) / c.ropeTheta ** ((-2 * j) / c.headDim);
    if (w < L / s.highFreqFactor) out[j] = 1;
    else if (w > L / s.lowFreqFactor) out[j] = s.factor;
    else {
      const smooth = (L / w - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[j] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/**
 * A made-up SentencePiece ('llama') vocabulary of `vocabSize` tokens, for random models
 * that llama.cpp must load (it refuses a model without a vocabulary): <unk> <s> </s>, the
 * 256 byte tokens <0x00>..<0xFF>, then pieces "▁t259", "▁t260", ... with falling scores.
 */
export function syntheticVocabMetadata(vocabSize: number): GgufEntry[] {
  if (!Number.isInteger(vocabSize) || vocabSize < 259) throw new ArgumentError('vocabSize', 'an integer >= 259 (3 special and 256 byte tokens)', vocabSize);
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types: number[] = [2, 3, 3]; // UNKNOWN, CONTROL, CONTROL
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6); // BYTE
  }
  for (let i = tokens.length; i < vocabSize; i++) {
    tokens.push(`\u2581t${i}`);
    types.push(1); // NORMAL
  }
  const scores = Float32Array.from(tokens, (_, i) => (i < 259 ? 0 : -i));
  return [
    ['tokenizer.ggml.model', 'string', 'llama'],
    ['tokenizer.ggml.tokens', 'array<string>', tokens],
    ['tokenizer.ggml.scores', 'array<float32>', scores],
    ['tokenizer.ggml.token_type', 'array<int32>', types],
    ['tokenizer.ggml.unknown_token_id', 'uint32', 0],
    ['tokenizer.ggml.add_bos_token', 'bool', false],
  ];
}

export interface WriteLlamaGgufOptions {
  /** Stored ggml type of the matrices: 0 F32 (default), 1 F16, 30 BF16; norms stay F32. */
  type?: 0 | 1 | 30;
  /** Metadata added after llamaGgufMetadata (e.g. syntheticVocabMetadata). */
  extraMetadata?: GgufEntry[];
}

/**
 * Writes a GGUF model of `config` (architecture `config.architecture`) from canonical f32
 * tensors (any iterable of [name, values]; values may be produced lazily by a function,
 * called once when the tensor is written). q/k rows are written as given: llama.cpp's
 * 'llama' architecture reads them in the interleaved RoPE layout, as canopy's GGUF loader
 * does, so both run the same model whatever the rows hold.
 */
export function writeLlamaGguf(
  path: string,
  config: ModelConfig,
  tensors: Iterable<[string, Float32Array | (() => Float32Array)]>,
  options: WriteLlamaGgufOptions = {},
): void {
  const type = options.type ?? 0;
  if (![0, 1, 30].includes(type)) throw new ArgumentError('options.type', '0 (F32), 1 (F16) or 30 (BF16)', type);
  const shapes = expectedShapes(config);
  const specs: GgufTensorSpec[] = [];
  for (const [name, values] of tensors) {
    const shape = shapes.get(name);
    if (!shape) throw new ArgumentError('tensors', `canonical tensor names of the config (${[...shapes.keys()].slice(0, 3).join(', ')}, ...)`, name);
    const numel = shape.reduce((a, b) => a * b, 1);
    if (typeof values !== 'function' && values.length !== numel) throw new ArgumentError(`tensors '${name}'`, `${numel} values ([${shape.join(', ')}])`, values.length);
    const t: 0 | 1 | 30 = shape.length === 1 ? 0 : type; // norms and biases stay F32
    const get = typeof values === 'function' ? values : () => values;
    specs.push({ name: ggufName(name), type: t, ne: [...shape].reverse(), data: () => ggmlFloatBytes(get(), t), byteLength: numel * (t === 0 ? 4 : 2) });
  }
  const freqs = ggufRopeFreqs(config);
  if (freqs) specs.push({ name: 'rope_freqs.weight', type: 0, ne: [freqs.length], data: new Uint8Array(freqs.buffer) });
  writeGguf(path, { metadata: [...llamaGgufMetadata(config, config.architecture), ...(options.extraMetadata ?? [])], tensors: specs });
}
