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

import { ArgumentError, IoError, NativeLoadError, OutOfMemoryError } from '../../errors.js';
import type { DType } from '../../tensor/dtype.js';
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
  /** Disposes every tensor (the mappings are released when the arrays are collected). Idempotent. */
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
  /** Creates the tensor (called only after all checks pass). */
  load(): Tensor;
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
    load: () => Tensor.fromFile(file, { dtype, shape, offset }),
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
  const tensors = new Map<string, Tensor>();
  try {
    for (const s of sources) {
      try {
        tensors.set(s.canonical, s.load());
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
    throw e;
  }
  return tensors;
}

/** A one-line summary of the dimensions, for shape-mismatch messages. */
export function configSummary(c: ModelConfig): string {
  return `dim ${c.dim}, hiddenDim ${c.hiddenDim}, nLayers ${c.nLayers}, nHeads ${c.nHeads}, nKvHeads ${c.nKvHeads}, headDim ${c.headDim}, vocabSize ${c.vocabSize}`;
}

/** Disposes all tensors of a map. */
export function disposeAll(tensors: Map<string, Tensor>): void {
  for (const t of tensors.values()) t.dispose();
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
