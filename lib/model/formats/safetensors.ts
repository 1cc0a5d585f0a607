/**
 * safetensors (Hugging Face's tensor file format).
 *
 * Layout:
 *   uint64 little-endian N: the byte length of the header
 *   N bytes of UTF-8 JSON: { "__metadata__"?: {string: string},
 *                            name: { "dtype": "F32" | "F16" | "BF16" | ..., "shape": [d0, d1, ...],
 *                                    "data_offsets": [begin, end] }, ... }
 *   the data: tensor `name` occupies bytes [8 + N + begin, 8 + N + end), row-major
 *   (shape outermost first, as in PyTorch), little-endian.
 * Writers may pad the JSON with spaces so the data starts 8-byte aligned.
 */

import { writeFileSync } from 'node:fs';

import { ArgumentError, IoError } from '../../errors.js';
import type { DType } from '../../tensor/dtype.js';
import { type TensorSource, HeaderReader, checkDataRanges, duplicateJsonKey, mappedSource } from './common.js';

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** safetensors dtypes canopy maps directly, and the canopy dtype of each. */
export const SAFETENSORS_LOADABLE: Partial<Record<string, DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

export interface SafetensorsTensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** data_offsets as stored (relative to the data section). */
  begin: number;
  end: number;
  /** Absolute offset of the data in the file. */
  fileOffset: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: SafetensorsTensorInfo[];
  /** Absolute offset of the data section: 8 + N. */
  dataOffset: number;
}

/** safetensors' own limit on the header (100 MB): a larger length is a corrupt file. */
export const MAX_SAFETENSORS_HEADER = 100_000_000;

/**
 * Reads and checks a safetensors header (not the data). Each tensor's byte
 * count must equal its shape times its dtype's size; ranges are checked
 * against the file size when tensors are loaded (so a truncated file names
 * the tensor that does not fit).
 */
export function readSafetensors(path: string): SafetensorsFile {
  const r = new HeaderReader(path);
  try {
    if (r.size < 8) throw new IoError(`${path}: ${r.size} bytes is too short for a safetensors file (8-byte header length); is the file truncated?`);
    const n64 = r.u64('the header length');
    if (n64 > BigInt(MAX_SAFETENSORS_HEADER)) {
      throw new IoError(`${path}: the header length ${n64} exceeds safetensors' limit of ${MAX_SAFETENSORS_HEADER} bytes (corrupt file or not safetensors)`);
    }
    const n = Number(n64);
    if (n > r.remaining) {
      throw new IoError(`${path}: the header length ${n} runs past the end of the file (${r.size} bytes); is the file truncated?`);
    }
    const text = r.bytes(n, 'the JSON header').toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (cause) {
      throw new IoError(`${path}: the header is not valid JSON (${(cause as Error).message}); corrupt file or not safetensors`, { cause });
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new IoError(`${path}: the header is not a JSON object`);
    // JSON.parse keeps the last of duplicated keys silently: a tensor named twice is an error.
    const dup = duplicateJsonKey(text);
    if (dup !== undefined) throw new IoError(`${path}: the header names '${dup}' twice`);
    const dataOffset = 8 + n;
    let metadata: Record<string, string> = {};
    const tensors: SafetensorsTensorInfo[] = [];
    for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (entry === null || typeof entry !== 'object' || Array.isArray(entry) || Object.values(entry).some((v) => typeof v !== 'string')) {
          throw new IoError(`${path}: __metadata__ must map strings to strings`);
        }
        metadata = entry as Record<string, string>;
        continue;
      }
      tensors.push(checkEntry(path, name, entry, dataOffset));
    }
    // The data section holds the tensors back to back, nothing else (as the reference
    // implementation requires): overlapping data_offsets, gaps and trailing bytes are errors.
    checkDataRanges(
      path,
      tensors.map((t) => ({ name: t.name, type: t.dtype, offset: t.fileOffset, byteLength: t.end - t.begin })),
      { start: dataOffset, end: r.size, alignment: 1, packed: true },
    );
    return { path, metadata, tensors, dataOffset };
  } finally {
    r.close();
  }
}

function checkEntry(path: string, name: string, entry: unknown, dataOffset: number): SafetensorsTensorInfo {
  const bad = (what: string) => new IoError(`${path}: tensor '${name}': ${what}`);
  if (entry === null || typeof entry !== 'object') throw bad('the header entry is not an object');
  const { dtype, shape, data_offsets: offsets } = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof dtype !== 'string') throw bad(`dtype must be a string; found ${JSON.stringify(dtype)}`);
  const size = SAFETENSORS_DTYPES[dtype];
  if (size === undefined) throw bad(`unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || shape.length > 8 || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw bad(`shape must be an array of at most 8 non-negative integers; found ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || offsets.some((d) => !Number.isSafeInteger(d) || d < 0) || offsets[0] > offsets[1]) {
    throw bad(`data_offsets must be [begin, end] with 0 <= begin <= end; found ${JSON.stringify(offsets)}`);
  }
  const numel = (shape as number[]).reduce((a, b) => a * b, 1);
  const [begin, end] = offsets as [number, number];
  if (end - begin !== numel * size) {
    throw bad(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${numel * size}`);
  }
  return { name, dtype, shape: [...(shape as number[])], begin, end, fileOffset: dataOffset + begin };
}

/** A memory-mapped source for one tensor (F32, F16 or BF16; otherwise an ArgumentError naming the tensor). */
export function safetensorsSource(file: SafetensorsFile, info: SafetensorsTensorInfo, canonical: string): TensorSource {
  const dtype = SAFETENSORS_LOADABLE[info.dtype];
  if (!dtype) {
    throw new ArgumentError(`${file.path}: tensor '${info.name}' has dtype ${info.dtype}, which canopy does not load (F32, F16, BF16)`);
  }
  return mappedSource(canonical, info.name, file.path, dtype, info.shape, info.fileOffset, info.dtype, SAFETENSORS_DTYPES[info.dtype]!);
}

/** One tensor to write: safetensors dtype name (F32, F16, BF16, I8, U8, I32), shape, raw little-endian data. */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  data: ArrayBufferView;
}

/** The bytes of a safetensors file: 8-byte header length, JSON header (8-byte aligned), data. */
export function safetensorsBytes(tensors: SafetensorsEntry[], metadata?: Record<string, string>, options: { align?: boolean } = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  if (options.align !== false) json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]);
}

/** Writes a safetensors file. */
export function writeSafetensors(path: string, tensors: SafetensorsEntry[], metadata?: Record<string, string>): void {
  writeFileSync(path, safetensorsBytes(tensors, metadata));
}
