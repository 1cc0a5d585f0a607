/**
 * Tensor: a dense, row-major array with a dtype, a shape and a device.
 *
 * CPU tensors wrap a JavaScript typed array and share its memory (no copy:
 * writes through either are seen by both). CUDA tensors own device memory
 * that dispose() frees; a FinalizationRegistry frees it if a tensor is
 * garbage collected undisposed, as a safety net only.
 *
 * Validation happens here, with errors that name the argument; the addon
 * checks again.
 */

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { ArgumentError, DisposedError, IoError, OutOfMemoryError, awaitNative, callNative } from '../errors.js';
import { type Backend, type Device, deviceIndex, selectBackend } from '../native/backend.js';
import { native } from '../native/loader.js';
import type { NativeDeviceBuffer, TensorDescriptor } from '../native/types.js';
import {
  type AnyTypedArray,
  type DType,
  DTYPES,
  arrayTypeFor,
  decodeFloats,
  dtypeSize,
  dtypesForArray,
  encodeFloats,
  isDType,
  isFloatDType,
} from './dtype.js';

export const MAX_DIMS = 8;
const MAX_BYTES = 2 ** 50;

export interface FromOptions {
  /** Element type; defaults to the array's natural type (f32 for number[]). Uint16Array needs 'f16' or 'bf16'. */
  dtype?: DType;
  /** Shape; defaults to [length]. */
  shape?: readonly number[];
}

export interface FromFileOptions {
  dtype: DType;
  shape: readonly number[];
  /** Byte offset of the first element in the file (default 0). */
  offset?: number;
  /**
   * 'mmap' (default) maps the file copy-on-write: pages load on first touch
   * and writes never reach the file. 'read' copies the bytes into memory.
   * Offsets not aligned to the element size are always read.
   */
  mode?: 'mmap' | 'read';
}

/** Checks a shape: an array of at most 8 non-negative integers whose byte size stays below 2^50. */
export function validateShape(shape: unknown, dtype: DType, argument = 'shape'): readonly number[] {
  if (!Array.isArray(shape)) throw new ArgumentError(argument, 'an array of non-negative integers', shape);
  if (shape.length > MAX_DIMS) throw new ArgumentError(argument, `an array of at most ${MAX_DIMS} dims`, shape);
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i] as unknown;
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new ArgumentError(`${argument}[${i}]`, 'a non-negative integer', d);
    }
    n *= d;
  }
  if (n * dtypeSize(dtype) > MAX_BYTES) {
    throw new ArgumentError(argument, `a shape of at most 2^50 bytes (${dtype})`, shape);
  }
  return Object.freeze([...shape]);
}

function checkDType(dtype: unknown, argument = 'dtype'): DType {
  if (!isDType(dtype)) throw new ArgumentError(argument, `one of ${DTYPES.join(', ')}`, dtype);
  return dtype;
}

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int32: [-(2 ** 31), 2 ** 31 - 1],
};

function encodeNumbers(values: ArrayLike<number>, dtype: DType): AnyTypedArray {
  if (isFloatDType(dtype)) {
    for (let i = 0; i < values.length; i++) {
      if (typeof values[i] !== 'number') throw new ArgumentError(`data[${i}]`, 'a number', values[i]);
    }
    return encodeFloats(values, dtype);
  }
  const [lo, hi] = INT_RANGE[dtype]!;
  const Ctor = arrayTypeFor(dtype);
  const out = new Ctor(new ArrayBuffer(values.length * dtypeSize(dtype)), 0, values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new ArgumentError(`data[${i}]`, `an integer in [${lo}, ${hi}] for ${dtype}`, v);
    }
    out[i] = v;
  }
  return out;
}

// Frees device memory of tensors collected without dispose().
const deviceFinalizer = new FinalizationRegistry<NativeDeviceBuffer>((buffer) => {
  if (!buffer.freed) buffer.free();
});

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly device: Device;
  #host: AnyTypedArray | undefined;
  #buffer: NativeDeviceBuffer | undefined;
  /** A file mapping this tensor owns (Tensor.fromFile): unmapped by dispose(). */
  #mapping: ArrayBuffer | undefined;
  #disposed = false;

  private constructor(dtype: DType, shape: readonly number[], device: Device, host?: AnyTypedArray, buffer?: NativeDeviceBuffer) {
    this.dtype = dtype;
    this.shape = shape;
    this.device = device;
    this.#host = host;
    this.#buffer = buffer;
    if (buffer) deviceFinalizer.register(this, buffer, this);
  }

  /**
   * A CPU tensor over a typed array (shared, not copied) or over numbers
   * (encoded into a new array: f16/bf16 rounded to nearest even; integers
   * range-checked).
   */
  static from(data: AnyTypedArray | ArrayLike<number>, options: FromOptions = {}): Tensor {
    if (data === null || typeof data !== 'object') {
      throw new ArgumentError('data', 'a typed array or an array of numbers', data);
    }
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
    let array: AnyTypedArray;
    let dtype: DType;
    if (ArrayBuffer.isView(data)) {
      const allowed = dtypesForArray(data);
      if (allowed.length === 0) {
        throw new ArgumentError('data', 'a Float32Array, Uint16Array (f16/bf16 bits), Int8Array, Uint8Array or Int32Array', data);
      }
      if (options.dtype === undefined) {
        if (allowed.length > 1) throw new ArgumentError('dtype', `one of ${allowed.join(', ')} for a ${data.constructor.name}`, undefined);
        dtype = allowed[0]!;
      } else {
        dtype = checkDType(options.dtype);
        if (!allowed.includes(dtype)) {
          throw new ArgumentError('dtype', `one of ${allowed.join(', ')} for a ${data.constructor.name}`, dtype);
        }
      }
      array = data as AnyTypedArray;
    } else {
      if (typeof (data as ArrayLike<number>).length !== 'number') {
        throw new ArgumentError('data', 'a typed array or an array of numbers', data);
      }
      dtype = options.dtype === undefined ? 'f32' : checkDType(options.dtype);
      array = encodeNumbers(data, dtype);
    }
    const shape = validateShape(options.shape ?? [array.length], dtype);
    if (numelOf(shape) !== array.length) {
      throw new ArgumentError('shape', `a shape with ${array.length} elements (the length of data)`, shape);
    }
    return new Tensor(dtype, shape, 'cpu', array);
  }

  /** A new tensor of zeros on the CPU, or of unspecified contents on a CUDA device. */
  static empty(shape: readonly number[], dtype: DType = 'f32', options: { device?: Backend | Device } = {}): Tensor {
    const dt = checkDType(dtype);
    const s = validateShape(shape, dt);
    const { device } = selectBackend(options.device ?? 'cpu', 'device');
    const bytes = numelOf(s) * dtypeSize(dt);
    if (device === 'cpu') {
      const Ctor = arrayTypeFor(dt);
      let ab: ArrayBuffer;
      try {
        ab = new ArrayBuffer(bytes);
      } catch (cause) {
        // V8 refuses (RangeError) a buffer larger than it or the machine can give.
        throw new OutOfMemoryError(`cannot allocate ${bytes} bytes for a ${dt} tensor of shape [${s.join(', ')}]`, { cause });
      }
      return new Tensor(dt, s, 'cpu', new Ctor(ab, 0, numelOf(s)));
    }
    const addon = native();
    const buffer = callNative(() => new addon.DeviceBuffer(deviceIndex(device), bytes));
    return new Tensor(dt, s, device, undefined, buffer);
  }

  /** A CPU tensor over bytes of a file (memory-mapped by default). */
  static fromFile(path: string, options: FromFileOptions): Tensor {
    if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a file path', path);
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object with dtype and shape', options);
    const dtype = checkDType(options.dtype, 'options.dtype');
    const shape = validateShape(options.shape, dtype, 'options.shape');
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new ArgumentError('options.offset', 'a non-negative integer', offset);
    const mode = options.mode ?? 'mmap';
    if (mode !== 'mmap' && mode !== 'read') throw new ArgumentError('options.mode', "'mmap' or 'read'", mode);
    const numel = numelOf(shape);
    const bytes = numel * dtypeSize(dtype);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (cause) {
      throw new IoError(`cannot open ${path}: ${(cause as Error).message}`, { cause });
    }
    try {
      const size = fstatSync(fd).size;
      if (offset + bytes > size) {
        throw new IoError(
          `${path} holds ${size} bytes but a ${dtype} tensor of shape [${shape.join(', ')}] at offset ${offset} needs bytes [${offset}, ${offset + bytes}); is the file truncated?`,
        );
      }
      const Ctor = arrayTypeFor(dtype);
      if (mode === 'mmap' && offset % dtypeSize(dtype) === 0 && process.platform !== 'win32' && bytes > 0) {
        const ab = callNative(() => native().mapFile(path, offset, bytes));
        const t = new Tensor(dtype, shape, 'cpu', new Ctor(ab, 0, numel));
        t.#mapping = ab;
        return t;
      }
      const ab = new ArrayBuffer(bytes);
      const view = new Uint8Array(ab);
      let done = 0;
      while (done < bytes) {
        const n = readSync(fd, view, done, bytes - done, offset + done);
        if (n === 0) throw new IoError(`${path}: unexpected end of file at byte ${offset + done}`);
        done += n;
      }
      return new Tensor(dtype, shape, 'cpu', new Ctor(ab, 0, numel));
    } finally {
      closeSync(fd);
    }
  }

  get numel(): number {
    return numelOf(this.shape);
  }

  get byteLength(): number {
    return this.numel * dtypeSize(this.dtype);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The native view of this tensor (for lib/ wrappers). Throws DisposedError after dispose(). */
  descriptor(argument = 'tensor'): TensorDescriptor {
    // A host view whose memory was released underneath it (its file mapping was unmapped by
    // the weights' dispose(): the ArrayBuffer is detached and the view reads as empty).
    const released = this.#host !== undefined && this.#host.byteLength === 0 && this.numel > 0;
    if (this.#disposed || released) {
      throw new DisposedError(`${argument} (a ${this.dtype} tensor of shape [${this.shape.join(', ')}] on ${this.device})`);
    }
    return { data: (this.#host ?? this.#buffer)!, dtype: this.dtype, shape: this.shape };
  }

  /**
   * The elements as a typed array. For a CPU tensor this is the tensor's own
   * memory (shared); for a CUDA tensor, a copy made synchronously.
   */
  toArray(): AnyTypedArray {
    const desc = this.descriptor();
    if (this.#host) return this.#host;
    const Ctor = arrayTypeFor(this.dtype);
    const out = new Ctor(new ArrayBuffer(this.byteLength), 0, this.numel);
    callNative(() => native().copySync({ data: out, dtype: this.dtype, shape: this.shape }, desc));
    return out;
  }

  /** The elements as numbers in a Float32Array (f16 / bf16 decoded exactly). */
  toFloat32(): Float32Array {
    if (!isFloatDType(this.dtype)) return Float32Array.from(this.toArray() as ArrayLike<number>);
    return decodeFloats(this.toArray(), this.dtype);
  }

  /**
   * This tensor on another device. 'auto' means CUDA when usable. Returns
   * this tensor itself when it is already there; otherwise a new tensor
   * (the copy runs off the JavaScript thread).
   */
  async to(target: Backend | Device): Promise<Tensor> {
    const desc = this.descriptor();
    const { device } = selectBackend(target, 'device');
    if (device === this.device) return this;
    const out = Tensor.empty(this.shape, this.dtype, { device });
    try {
      await awaitNative(native().copy(out.descriptor(), desc));
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }

  /** A new tensor with elements converted to `dtype` (float types only), on the same device. */
  async cast(dtype: DType): Promise<Tensor> {
    const desc = this.descriptor();
    const to = checkDType(dtype);
    if (!isFloatDType(this.dtype) || !isFloatDType(to)) {
      throw new ArgumentError('dtype', `a float dtype (f32, f16, bf16) for a ${this.dtype} tensor`, dtype);
    }
    const out = Tensor.empty(this.shape, to, { device: this.device });
    try {
      await awaitNative(native().cast(desc, out.descriptor()));
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }

  /**
   * Releases the memory: device memory and a file mapping of Tensor.fromFile now (views of
   * the mapping read as empty afterwards), other host memory when the typed array is
   * unreferenced. Idempotent.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#buffer) {
      deviceFinalizer.unregister(this);
      this.#buffer.free();
    }
    this.#buffer = undefined;
    this.#host = undefined;
    if (this.#mapping) {
      // Detached, then unmapped now (typed arrays handed out by toArray() read as empty after this).
      const ab = this.#mapping;
      this.#mapping = undefined;
      callNative(() => native().unmapFile(ab));
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device}${this.#disposed ? ', disposed' : ''})`;
  }
}

