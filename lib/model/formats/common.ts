/**
 * Shared pieces of the weight loaders: the result type, bounded file reading
 * for headers, and the check of a model's tensors against its config.
 *
 * Every loader works in two phases. First it parses the file's header and
 * describes each canonical tensor as a `TensorSource` (where its bytes lie,
 * its stored shape and type) without touching tensor data. Then
 * `materialize` checks the set against `expectedShapes(config)` and every
 * byte range against the file size, and only then maps the tensors
 * (Tensor.fromFile, memory-mapped: f32/f16/bf16 data is never copied) or,
 * for quantized types, dequantizes them. A bad file therefore fails before
 * any tensor exists, with an error naming the file and the tensor.
 */

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { ArgumentError, IoError, NativeLoadError, OutOfMemoryError, callNative } from '../../errors.js';
import { native } from '../../native/loader.js';
import { type DType, arrayTypeFor, dtypeSize } from '../../tensor/dtype.js';
import { Tensor } from '../../tensor/tensor.js';
import { type ModelConfig, expectedShapes, layerTensorNames } from '../config.js';

/** The on-disk formats canopy loads. */
export type WeightFormat = 'llama2c' | 'gguf' | 'hf';

/** What every loader returns: the config, the canonical tensors, and where they came from. */
export interface LoadedWeightsBase {
  config: ModelConfig;
  /** Canonical name (see lib/model/config.ts) -> tensor; CPU tensors, memory-mapped where stored as f32/f16/bf16. */
  tensors: Map<string, Tensor>;
  /** The path given to the loader, as given. */
  path: string;
  /**
   * Disposes every tensor and unmaps the weight files now, unless a Model built from these
   * weights still uses them (it releases them with its own dispose()). Idempotent.
   */
  dispose(): void;
}

/**
 * One canonical tensor as stored in a file: its name there, the byte range of
 * its data and how to turn those bytes into a Tensor.
 */
export interface TensorSource {
  /** The canonical name (lib/model/config.ts). */
  canonical: string;
  /** The tensor's name in the file (for error messages). */
  name: string;
  /** The file holding the data. */
  file: string;
  /** Row-major shape (outermost first), as canonical tensors are shaped. */
  shape: number[];
  /** Storage type name in the file's own vocabulary (for error messages): F32, Q8_0, ... */
  storedType: string;
  /** Absolute byte offset of the data in `file`, and its length. */
  offset: number;
  byteLength: number;
  /**
   * Creates the tensor (called only after all checks pass). Reads go through `maps`, which
   * maps each file once for the whole load (see FileMaps).
   */
  load(maps: FileMaps): Tensor;
}

/**
 * The memory maps of one load: each file is mapped once, whole (copy-on-write), and every
 * tensor of it is a typed array over that one mapping (not a mapping per tensor). The maps
 * are reference-counted: the loader holds one reference, each Model built from the weights
 * another; when the last is released the files are unmapped synchronously. The native side
 * detaches the ArrayBuffers before unmapping, so a view kept past that point reads as empty
 * (and a Tensor over it throws DisposedError) instead of touching unmapped memory.
 */
export class FileMaps {
  #buffers = new Map<string, ArrayBuffer>();
  #refs = 1;

  /** The whole of `file`, mapped (once), or undefined where files cannot be mapped (Windows, empty files). */
  #map(file: string): ArrayBuffer | undefined {
    if (this.#refs <= 0) throw new IoError(`${file}: the weights' file maps were already released`);
    let ab = this.#buffers.get(file);
    if (ab) return ab;
    if (process.platform === 'win32') return undefined;
    const size = fileSize(file);
    if (size === 0) return undefined;
    ab = callNative(() => native().mapFile(file, 0, size));
    this.#buffers.set(file, ab);
    return ab;
  }

  /** Bytes [offset, offset + length) of `file`: a view of the mapping (a copy where nothing is mapped). */
  bytes(file: string, offset: number, length: number): Uint8Array {
    const ab = this.#map(file);
    if (ab && offset + length <= ab.byteLength) return new Uint8Array(ab, offset, length);
    return Tensor.fromFile(file, { dtype: 'uint8', shape: [length], offset, mode: 'read' }).toArray() as Uint8Array;
  }

  /** A CPU tensor over the mapping (copied when `offset` is not aligned to the element size). */
  tensor(file: string, dtype: DType, shape: number[], offset: number): Tensor {
    const numel = shape.reduce((a, b) => a * b, 1);
    const size = dtypeSize(dtype);
    const ab = this.#map(file);
    if (ab && offset % size === 0 && offset + numel * size <= ab.byteLength) {
      const Ctor = arrayTypeFor(dtype);
      return Tensor.from(new Ctor(ab, offset, numel), { dtype, shape });
    }
    return Tensor.fromFile(file, { dtype, shape, offset, mode: 'read' });
  }

  /** How many files are mapped now. */
  get mappedFiles(): number {
    return this.#buffers.size;
  }

  retain(): void {
    if (this.#refs <= 0) throw new IoError('the weights were disposed; their file maps are gone');
    this.#refs++;
  }

  /** Drops one reference; the last one unmaps every file now. */
  release(): void {
    if (this.#refs <= 0) return;
    if (--this.#refs > 0) return;
    for (const ab of this.#buffers.values()) callNative(() => native().unmapFile(ab));
    this.#buffers.clear();
  }
}

// The maps behind each loader's tensor map (set by materialize; released by disposeAll).
const mapsOfTensors = new WeakMap<Map<string, Tensor>, FileMaps>();

/**
 * Takes a reference on the file maps behind loaded weights (for a Model that keeps using
 * them after the weights are disposed); returns the function that gives it back (idempotent).
 * Tensors not from a loader have no maps: the function does nothing then.
 */
export function retainWeightMaps(tensors: Map<string, Tensor>): () => void {
  const maps = mapsOfTensors.get(tensors);
  if (!maps) return () => {};
  maps.retain();
  let released = false;
  return () => {
    if (released) return;
    released = true;
    maps.release();
  };
}

/** A source read straight from the file: memory-mapped when the offset is aligned to the element size. */
export function mappedSource(
  canonical: string,
  name: string,
  file: string,
  dtype: DType,
  shape: number[],
  offset: number,
  storedType: string,
  elementSize: number,
): TensorSource {
  return {
    canonical,
    name,
    file,
    shape,
    storedType,
    offset,
    byteLength: shape.reduce((a, b) => a * b, 1) * elementSize,
    load: (maps) => maps.tensor(file, dtype, shape, offset),
  };
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** How a canonical name is described in messages: "'blk.0.attn_q.weight' (layers.0.wq)". */
export function describeTensor(source: Pick<TensorSource, 'name' | 'canonical'>): string {
  return source.name === source.canonical ? `'${source.name}'` : `'${source.name}' (${source.canonical})`;
}

/**
 * Checks the sources against the config (every expected tensor present, none
 * extra, shapes equal) and the files' sizes, then loads them. `names` maps a
 * canonical name to the name the format would give it, for the message about
 * a missing tensor; `file` names where it was looked for. On any failure,
 * tensors already loaded are disposed.
 */
export function materialize(
  config: ModelConfig,
  sources: TensorSource[],
  file: string,
  names: (canonical: string) => string,
): Map<string, Tensor> {
  const expected = expectedShapes(config);
  const byName = new Map<string, TensorSource>();
  for (const s of sources) {
    const shape = expected.get(s.canonical);
    if (!shape) {
      throw new ArgumentError(`${s.file}: tensor ${describeTensor(s)} is not expected under this config (${configSummary(config)})`);
    }
    if (byName.has(s.canonical)) {
      throw new ArgumentError(`${s.file}: tensor ${describeTensor(s)} appears twice (also as '${byName.get(s.canonical)!.name}')`);
    }
    if (s.shape.length !== shape.length || s.shape.some((d, i) => d !== shape[i])) {
      throw new ArgumentError(
        `${s.file}: tensor ${describeTensor(s)} has shape ${fmt(s.shape)}; expected ${fmt(shape)} from the config (${configSummary(config)})`,
      );
    }
    byName.set(s.canonical, s);
  }
  for (const [canonical, shape] of expected) {
    if (!byName.has(canonical)) {
      throw new ArgumentError(`${file}: missing tensor '${names(canonical)}' (${canonical}, shape ${fmt(shape)})`);
    }
  }
  const sizes = new Map<string, number>();
  for (const s of sources) {
    let size = sizes.get(s.file);
    if (size === undefined) {
      size = fileSize(s.file);
      sizes.set(s.file, size);
    }
    if (s.offset + s.byteLength > size) {
      throw new IoError(
        `${s.file}: tensor ${describeTensor(s)} (${s.storedType} ${fmt(s.shape)}) needs bytes [${s.offset}, ${s.offset + s.byteLength}) but the file holds ${size} bytes; is the file truncated?`,
      );
    }
  }
  // Within each file: no two tensors' bytes overlap (whatever the format's own rules).
  const byFile = new Map<string, DataRange[]>();
  for (const s of sources) {
    let list = byFile.get(s.file);
    if (!list) byFile.set(s.file, (list = []));
    list.push({ name: s.name, type: s.storedType, offset: s.offset, byteLength: s.byteLength });
  }
  for (const [f, ranges] of byFile) checkDataRanges(f, ranges, { start: 0, end: sizes.get(f)!, alignment: 1, packed: false });
  const tensors = new Map<string, Tensor>();
  const maps = new FileMaps();
  try {
    for (const s of sources) {
      try {
        tensors.set(s.canonical, s.load(maps));
      } catch (e) {
        // A missing or unloadable addon is not about this tensor: pass it on as it is.
        if (e instanceof NativeLoadError) throw e;
        // Same class (argument, out of memory, otherwise I/O), now naming the file and the tensor.
        const message = `${s.file}: tensor ${describeTensor(s)}: ${(e as Error).message}`;
        if (e instanceof ArgumentError) throw new ArgumentError(message, { cause: e });
        if (e instanceof OutOfMemoryError) throw new OutOfMemoryError(message, { cause: e });
        throw new IoError(message, { cause: e });
      }
    }
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    maps.release();
    throw e;
  }
  mapsOfTensors.set(tensors, maps);
  return tensors;
}

/** A one-line summary of the dimensions, for shape-mismatch messages. */
export function configSummary(c: ModelConfig): string {
  return `dim ${c.dim}, hiddenDim ${c.hiddenDim}, nLayers ${c.nLayers}, nHeads ${c.nHeads}, nKvHeads ${c.nKvHeads}, headDim ${c.headDim}, vocabSize ${c.vocabSize}`;
}

/** Disposes all tensors of a map and releases the loader's reference on its file maps. */
export function disposeAll(tensors: Map<string, Tensor>): void {
  for (const t of tensors.values()) t.dispose();
  const maps = mapsOfTensors.get(tensors);
  if (maps) {
    mapsOfTensors.delete(tensors);
    maps.release();
  }
}

/** The size of a file in bytes (IoError naming it when it cannot be opened). */
export function fileSize(path: string): number {
  const fd = openFile(path);
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/** Opens a file for reading; IoError naming it on failure. */
export function openFile(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (cause) {
    throw new IoError(`cannot open ${path}: ${(cause as Error).message}`, { cause });
  }
}

/** Reads up to `length` bytes at `position` (fewer at the end of the file). */
export function readBytes(path: string, position: number, length: number): Buffer {
  const fd = openFile(path);
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/**
 * Sequential little-endian reading of a file's header through a window of
 * at most a few MiB. Every read is checked against the file size first, so a
 * corrupt length fails with an IoError naming the file and what was being
 * read instead of allocating or reading past the end.
 */
export class HeaderReader {
  readonly path: string;
  readonly size: number;
  #fd: number;
  #buf: Buffer = Buffer.alloc(0);
  #bufStart = 0;
  /** Absolute position of the next byte to read. */
  pos = 0;

  constructor(path: string) {
    this.path = path;
    this.#fd = openFile(path);
    let isFile = false;
    try {
      const st = fstatSync(this.#fd);
      this.size = st.size;
      isFile = st.isFile();
    } catch (cause) {
      closeSync(this.#fd);
      throw new IoError(`cannot stat ${path}: ${(cause as Error).message}`, { cause });
    }
    if (!isFile) {
      closeSync(this.#fd);
      throw new IoError(`${path} is not a regular file`);
    }
  }

  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  /** Bytes left after the current position. */
  get remaining(): number {
    return this.size - this.pos;
  }

  /** Ensures [pos, pos + n) is in the window; `what` names the field for the truncation message. */
  #ensure(n: number, what: string): number {
    if (n > this.size - this.pos) {
      throw new IoError(
        `${this.path}: unexpected end of file reading ${what} (needs bytes [${this.pos}, ${this.pos + n}), the file holds ${this.size} bytes); is the file truncated?`,
      );
    }
    const rel = this.pos - this.#bufStart;
    if (rel >= 0 && rel + n <= this.#buf.length) return rel;
    const want = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
    const buf = Buffer.allocUnsafe(want);
    let done = 0;
    while (done < want) {
      const r = readSync(this.#fd, buf, done, want - done, this.pos + done);
      if (r === 0) throw new IoError(`${this.path}: unexpected end of file at byte ${this.pos + done} reading ${what}`);
      done += r;
    }
    this.#buf = buf;
    this.#bufStart = this.pos;
    return 0;
  }

  /** `n` raw bytes (a view into the window, valid until the next read). */
  bytes(n: number, what: string): Buffer {
    const at = this.#ensure(n, what);
    this.pos += n;
    return this.#buf.subarray(at, at + n);
  }

  u8(what: string): number {
    const at = this.#ensure(1, what);
    this.pos += 1;
    return this.#buf.readUInt8(at);
  }
  i8(what: string): number {
    const at = this.#ensure(1, what);
    this.pos += 1;
    return this.#buf.readInt8(at);
  }
  u16(what: string): number {
    const at = this.#ensure(2, what);
    this.pos += 2;
    return this.#buf.readUInt16LE(at);
  }
  i16(what: string): number {
    const at = this.#ensure(2, what);
    this.pos += 2;
    return this.#buf.readInt16LE(at);
  }
  u32(what: string): number {
    const at = this.#ensure(4, what);
    this.pos += 4;
    return this.#buf.readUInt32LE(at);
  }
  i32(what: string): number {
    const at = this.#ensure(4, what);
    this.pos += 4;
    return this.#buf.readInt32LE(at);
  }
  f32(what: string): number {
    const at = this.#ensure(4, what);
    this.pos += 4;
    return this.#buf.readFloatLE(at);
  }
  f64(what: string): number {
    const at = this.#ensure(8, what);
    this.pos += 8;
    return this.#buf.readDoubleLE(at);
  }
  u64(what: string): bigint {
    const at = this.#ensure(8, what);
    this.pos += 8;
    return this.#buf.readBigUInt64LE(at);
  }
  i64(what: string): bigint {
    const at = this.#ensure(8, what);
    this.pos += 8;
    return this.#buf.readBigInt64LE(at);
  }
}

/**
 * The shortest decimal that rounds to the same f32 as `x` (an f32 value):
 * formats store 1e-5 as the f32 9.99999974737875e-6, and the writer meant
 * 1e-5. Returns x unchanged when it is not an f32 value.
 */
export function f32Decimal(x: number): number {
  if (!Number.isFinite(x) || Math.fround(x) !== x) return x;
  for (let p = 1; p <= 9; p++) {
    const d = Number(x.toPrecision(p));
    if (Math.fround(d) === x) return d;
  }
  return x;
}

/** Checks a dimension read from a header: a positive safe integer (at most `max`). */
export function checkDim(value: unknown, what: string, file: string, max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0 || value > max) {
    throw new ArgumentError(`${file}: ${what} must be a positive integer (at most ${max}); found ${String(value)}`);
  }
  return value;
}

/**
 * The canonical name of a file's tensor name: whole-model tensors by `globals`, per-layer
 * tensors by `layerPattern` (capturing the layer index and the rest) and `layerFields`.
 */
export function canonicalName(
  name: string,
  globals: Record<string, string>,
  layerPattern: RegExp,
  layerFields: Record<string, keyof ReturnType<typeof layerTensorNames>>,
): string | undefined {
  const g = globals[name];
  if (g) return g;
  const m = layerPattern.exec(name);
  if (!m) return undefined;
  const field = layerFields[m[2]!];
  return field ? layerTensorNames(Number(m[1]))[field] : undefined;
}

/** A tensor's stored bytes, for the integrity checks (any storage type: float, block-quantized). */
export interface DataRange {
  /** The tensor's name in the file. */
  name: string;
  /** Its storage type in the file's vocabulary (F32, Q8_0, ...), for messages. */
  type: string;
  /** Absolute byte offset in the file, and the byte length its type and shape require. */
  offset: number;
  byteLength: number;
}

export interface DataRangeRules {
  /** Where tensor data may lie: [start, end) of the file (end: the file size). */
  start: number;
  end: number;
  /** Every offset (relative to `start`) must be a multiple of this (1: any). */
  alignment: number;
  /**
   * The format packs tensors back to back (each padded to `alignment`), from `start` to `end`
   * (GGUF, as llama.cpp checks it; safetensors, as its reference implementation does): a gap
   * means a declared type or shape does not describe the bytes (F32 data declared F16, ...).
   */
  packed: boolean;
}

/**
 * Checks a file's tensor data ranges: each lies inside [start, end), is aligned, no two
 * overlap, and, for packed formats, none leaves a gap. The errors (IoError) name the file,
 * the tensors and the byte ranges. Generic over storage types: byteLength is whatever the
 * format computes for the type and shape.
 */
export function checkDataRanges(file: string, all: readonly DataRange[], rules: DataRangeRules): void {
  const desc = (r: DataRange) => `'${r.name}' (${r.type}, bytes [${r.offset}, ${r.offset + r.byteLength}))`;
  const pad = (n: number) => Math.ceil(n / rules.alignment) * rules.alignment;
  // A range that starts in the data section but ends past the end of the file is a truncated
  // file: materialize reports it naming the tensor's canonical name and shape, so it is left
  // out here (and the file's end is then not checked for trailing bytes).
  const ranges = all.filter((r) => !(r.offset >= rules.start && r.offset + r.byteLength > rules.end));
  const truncated = ranges.length < all.length;
  for (const r of ranges) {
    if (!Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.byteLength) || r.byteLength < 0) {
      throw new IoError(`${file}: tensor '${r.name}' has an invalid data range (offset ${r.offset}, ${r.byteLength} bytes)`);
    }
    if (r.offset < rules.start || r.offset + r.byteLength > rules.end) {
      throw new IoError(
        `${file}: tensor ${desc(r)} lies outside the data section [${rules.start}, ${rules.end}) of the file; is the file truncated or the offset corrupt?`,
      );
    }
    if ((r.offset - rules.start) % rules.alignment !== 0) {
      throw new IoError(`${file}: tensor ${desc(r)} is not aligned to ${rules.alignment} bytes from the data start ${rules.start}`);
    }
  }
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let expected = rules.start;
  let prev: DataRange | undefined;
  for (const r of sorted) {
    if (prev && r.offset < prev.offset + prev.byteLength) {
      throw new IoError(`${file}: the data of tensors ${desc(prev)} and ${desc(r)} overlap`);
    }
    if (rules.packed && r.offset !== expected) {
      const after = prev ? `'${prev.name}' (${prev.type}) ends at byte ${prev.offset + prev.byteLength}` : `the data section starts at byte ${rules.start}`;
      throw new IoError(
        `${file}: ${after} but tensor ${desc(r)} starts at byte ${r.offset}: ${r.offset - expected} bytes belong to no tensor; a declared type or shape does not match the data`,
      );
    }
    expected = r.offset + pad(r.byteLength);
    prev = r;
  }
  // Packed: the last tensor (and its padding, which writers may omit) ends the file.
  if (rules.packed && !truncated && rules.end - (prev ? prev.offset + prev.byteLength : rules.start) >= rules.alignment) {
    const what = prev ? `the last tensor ${desc(prev)} ends at byte ${prev.offset + prev.byteLength}` : 'the file has no tensors';
    throw new IoError(`${file}: ${what} but the file holds ${rules.end} bytes; a declared type or shape does not match the data`);
  }
}

/**
 * The first key that appears twice in one object of a JSON text (JSON.parse keeps the last
 * silently), as "outer.key" paths, or undefined. Assumes `text` already parsed as JSON.
 */
export function duplicateJsonKey(text: string): string | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  };
  const str = (): string => {
    const start = i;
    i++; // opening quote
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): string | undefined => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return undefined;
      }
      for (;;) {
        ws();
        const key = str();
        const at = path ? `${path}.${key}` : key;
        if (seen.has(key)) return at;
        seen.add(key);
        ws();
        i++; // ':'
        const dup = value(at);
        if (dup !== undefined) return dup;
        ws();
        if (text[i++] === '}') return undefined; // else ','
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return undefined;
      }
      for (let n = 0; ; n++) {
        const dup = value(`${path}[${n}]`);
        if (dup !== undefined) return dup;
        ws();
        if (text[i++] === ']') return undefined;
      }
    }
    if (c === '"') {
      str();
      return undefined;
    }
    while (i < text.length && !',}] \n\r\t'.includes(text[i]!)) i++; // number, true, false, null
    return undefined;
  };
  return value('');
}
