/**
 * Quantized KV caches: storage and the cache ops (csrc/common/kv_quant.h states the layouts and
 * the math). Attention reads these caches directly, dequantizing on load
 * (quantizedAttention / quantizedTreeAttention in attention.ts, and prefixAttention).
 *
 * Formats, per (layer, token row, kv head):
 *   int8  symmetric: D int8 codes and one f32 scale (s = max|x| / 127, x ~ q s).
 *   fp8   e4m3 (max 448): D codes and one f32 scale (s = max|x| / 448, x ~ e4m3(q) s). Attention
 *         over fp8 runs on CUDA devices with compute capability 8.9+, and on the CPU as the
 *         reference decoder.
 *   int4  KIVI-style, asymmetric (x ~ q s + zero, q in 0..15, two codes per byte, low nibble
 *         first): keys per channel over groups of G tokens (G = 32, 64, 128), values per token
 *         over the head's D channels. The newest tokens stay in a 16-bit residual ring (one ring
 *         of `ring` rows per sequence) until their key group is complete and older than the
 *         newest `residual` tokens; quantizeKvGroups then moves whole groups out of the ring.
 *
 * A QuantizedKv holds `layers` layers of `rows` token rows. Like the plain cache, sequence b's
 * keys are rows kvStart[b] + position (int4: kvStart a multiple of G) and, for int4, its ring is
 * rows [resStart[b], resStart[b] + ring) of the residual (position j at resStart[b] + j % ring).
 */

import { ArgumentError, awaitNative, callNative } from '../errors.js';
import type { Backend, Device } from '../native/backend.js';
import { native } from '../native/loader.js';
import type { NativeQuantKv, TensorDescriptor } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import type { FloatDType } from '../tensor/dtype.js';
import { type IntArrayLike, checkCount, checkIndptr, int32Descriptor, toInt32Array } from './args.js';
import type { KvCommitSequence } from './kv-commit.js';

export type KvQuantFormat = 'int8' | 'int4' | 'fp8';
export const KV_QUANT_FORMATS: readonly KvQuantFormat[] = ['int8', 'int4', 'fp8'];

export function isKvQuantFormat(value: unknown): value is KvQuantFormat {
  return typeof value === 'string' && (KV_QUANT_FORMATS as readonly string[]).includes(value);
}

export interface QuantizedKvOptions {
  format: KvQuantFormat;
  /** Token rows per layer (int4: a multiple of `group`). */
  rows: number;
  numKvHeads: number;
  headDim: number;
  /** Layers stacked in one cache (default 1). */
  layers?: number;
  /** 'cpu' (default) or a CUDA device. */
  device?: Backend | Device;
  /** int4: tokens per key group, 32, 64 or 128 (default 32). */
  group?: 32 | 64 | 128;
  /** int4: the newest `residual` keys always stay in 16-bit (R >= group; default 128). */
  residual?: number;
  /**
   * int4: rows of each sequence's residual ring (default residual + group + 256). It must hold
   * every unquantized key of a sequence: the residual, up to group - 1 keys of an incomplete
   * group, and the tokens appended by one step.
   */
  ring?: number;
  /** int4: number of rings (one per sequence; default 1). */
  rings?: number;
  /** int4: dtype of the residual ring, 'f16' (default), 'bf16' or 'f32'. */
  residualDtype?: FloatDType;
}

function positiveInt(value: unknown, name: string, max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new ArgumentError(name, `an integer in [1, ${max}]`, value);
  }
  return value;
}

/** The storage of a quantized KV cache (all layers). Dispose it when done. */
export class QuantizedKv {
  readonly format: KvQuantFormat;
  readonly layers: number;
  readonly rows: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly device: Device;
  /** int4 only (0 otherwise). */
  readonly group: number;
  readonly residual: number;
  readonly ring: number;
  readonly rings: number;
  readonly residualDtype: FloatDType;
  /** Codes: int8 (int8) or uint8 (fp8, int4 packed) [layers, rows, numKvHeads, headDim (int4: headDim / 2)]. */
  readonly k: Tensor;
  readonly v: Tensor;
  /** f32 [layers, rows, numKvHeads]; int4 keys: [layers, rows / group, numKvHeads, headDim]. */
  readonly kScale: Tensor;
  readonly vScale: Tensor;
  /** int4 zero points, shaped like the scales. */
  readonly kZero: Tensor | undefined;
  readonly vZero: Tensor | undefined;
  /** int4 residual rings [layers, rings * ring, numKvHeads, headDim]. */
  readonly resK: Tensor | undefined;
  readonly resV: Tensor | undefined;
  #disposed = false;

  constructor(options: QuantizedKvOptions) {
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object {format, rows, numKvHeads, headDim}', options);
    if (!isKvQuantFormat(options.format)) throw new ArgumentError('format', "'int8', 'int4' or 'fp8'", options.format);
    this.format = options.format;
    this.layers = positiveInt(options.layers ?? 1, 'layers', 4096);
    this.numKvHeads = positiveInt(options.numKvHeads, 'numKvHeads', 1024);
    this.headDim = positiveInt(options.headDim, 'headDim', 256);
    this.rows = checkCount(options.rows, 'rows');
    const int4 = this.format === 'int4';
    if (int4) {
      const group = options.group ?? 32;
      if (group !== 32 && group !== 64 && group !== 128) throw new ArgumentError('group', '32, 64 or 128', group);
      if (this.headDim % 2 !== 0) throw new ArgumentError('headDim', 'even for int4 (two codes per byte)', this.headDim);
      if (this.rows % group !== 0) throw new ArgumentError('rows', `a multiple of the group ${group} for int4`, this.rows);
      const residual = options.residual ?? 128;
      if (!Number.isSafeInteger(residual) || residual < group) throw new ArgumentError('residual', `an integer >= the group ${group}`, residual);
      const ring = options.ring ?? residual + group + 256;
      if (!Number.isSafeInteger(ring) || ring < residual + group) {
        throw new ArgumentError('ring', `an integer >= residual + group (${residual + group})`, ring);
      }
      const residualDtype = options.residualDtype ?? 'f16';
      if (residualDtype !== 'f16' && residualDtype !== 'bf16' && residualDtype !== 'f32') {
        throw new ArgumentError('residualDtype', "'f16', 'bf16' or 'f32'", residualDtype);
      }
      this.group = group;
      this.residual = residual;
      this.ring = ring;
      this.rings = positiveInt(options.rings ?? 1, 'rings', 1 << 20);
      this.residualDtype = residualDtype;
    } else {
      this.group = 0;
      this.residual = 0;
      this.ring = 0;
      this.rings = 0;
      this.residualDtype = 'f16';
    }
    const device = { device: options.device ?? 'cpu' };
    const L = this.layers;
    const H = this.numKvHeads;
    const D = this.headDim;
    const owned: Tensor[] = [];
    const make = (shape: number[], dtype: Parameters<typeof Tensor.empty>[1]) => {
      const t = Tensor.empty(shape, dtype, device);
      owned.push(t);
      return t;
    };
    try {
      const codeShape = [L, this.rows, H, int4 ? D / 2 : D];
      const codeType = this.format === 'int8' ? 'int8' : 'uint8';
      this.k = make(codeShape, codeType);
      this.v = make(codeShape, codeType);
      this.device = this.k.device;
      const kScaleShape = int4 ? [L, this.rows / this.group, H, D] : [L, this.rows, H];
      this.kScale = make(kScaleShape, 'f32');
      this.vScale = make([L, this.rows, H], 'f32');
      this.kZero = int4 ? make(kScaleShape, 'f32') : undefined;
      this.vZero = int4 ? make([L, this.rows, H], 'f32') : undefined;
      this.resK = int4 ? make([L, this.rings * this.ring, H, D], this.residualDtype) : undefined;
      this.resV = int4 ? make([L, this.rings * this.ring, H, D], this.residualDtype) : undefined;
    } catch (e) {
      owned.forEach((t) => t.dispose());
      throw e;
    }
  }

  /**
   * Bytes of quantized storage per token and layer, keys and values together (the residual
   * ring of int4 not included: see ringBytes).
   *   int8 / fp8: 2 H (D + 4);  int4: H (D + 8 D / G + 8)
   */
  get bytesPerToken(): number {
    return quantizedBytesPerToken(this.format, this.numKvHeads, this.headDim, this.group);
  }

  /** int4: bytes of one sequence's residual ring per layer (0 otherwise). */
  get ringBytes(): number {
    return this.format === 'int4' ? 2 * this.ring * this.numKvHeads * this.headDim * (this.residualDtype === 'f32' ? 4 : 2) : 0;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The native descriptor (for lib/ wrappers). */
  descriptor(argument = 'cache'): NativeQuantKv {
    return {
      format: this.format,
      ...(this.format === 'int4' ? { group: this.group, ring: this.ring } : {}),
      k: this.k.descriptor(`${argument}.k`),
      v: this.v.descriptor(`${argument}.v`),
      kScale: this.kScale.descriptor(`${argument}.kScale`),
      vScale: this.vScale.descriptor(`${argument}.vScale`),
      ...(this.kZero ? { kZero: this.kZero.descriptor(`${argument}.kZero`), vZero: this.vZero!.descriptor(`${argument}.vZero`) } : {}),
      ...(this.resK ? { resK: this.resK.descriptor(`${argument}.resK`), resV: this.resV!.descriptor(`${argument}.resV`) } : {}),
    };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const t of [this.k, this.v, this.kScale, this.vScale, this.kZero, this.vZero, this.resK, this.resV]) t?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Bytes per token and layer (K and V) of a format; 16-bit caches: 4 H D, f32: 8 H D. */
export function quantizedBytesPerToken(format: KvQuantFormat | FloatDType, numKvHeads: number, headDim: number, group = 32): number {
  const H = numKvHeads;
  const D = headDim;
  switch (format) {
    case 'f32':
      return 8 * H * D;
    case 'f16':
    case 'bf16':
      return 4 * H * D;
    case 'int8':
    case 'fp8':
      return 2 * H * (D + 4);
    case 'int4':
      return H * (D + (8 * D) / group + 8);
  }
}

/** Where each sequence of a batch lives in a QuantizedKv. */
export interface QuantizedKvSequences {
  /** First row of each sequence's region (int4: a multiple of the group). */
  kvStart: IntArrayLike;
  /** int4: first row of each sequence's ring (default: sequence b uses ring b, rows b * ring). */
  resStart?: IntArrayLike;
}

function checkCache(cache: unknown, name = 'cache'): QuantizedKv {
  if (!(cache instanceof QuantizedKv)) throw new ArgumentError(name, 'a QuantizedKv', cache);
  if (cache.disposed) throw new ArgumentError(name, 'a QuantizedKv that was not disposed', 'a disposed QuantizedKv');
  return cache;
}

function sequences(cache: QuantizedKv, s: QuantizedKvSequences): { kvStart: Int32Array; resStart?: Int32Array } {
  if (s === null || typeof s !== 'object') throw new ArgumentError('sequences', 'an object {kvStart, resStart?}', s);
  const kvStart = toInt32Array(s.kvStart, 'kvStart', 0);
  for (let b = 0; b < kvStart.length; b++) {
    if (kvStart[b]! > cache.rows) throw new ArgumentError(`kvStart[${b}]`, `at most the cache's ${cache.rows} rows`, kvStart[b]);
    if (cache.format === 'int4' && kvStart[b]! % cache.group !== 0) {
      throw new ArgumentError(`kvStart[${b}]`, `a multiple of the int4 group ${cache.group}`, kvStart[b]);
    }
  }
  if (cache.format !== 'int4') return { kvStart };
  const resStart = s.resStart === undefined ? Int32Array.from(kvStart, (_, b) => b * cache.ring) : toInt32Array(s.resStart, 'resStart', 0);
  if (resStart.length !== kvStart.length) throw new ArgumentError('resStart', `${kvStart.length} entries (like kvStart)`, resStart);
  for (let b = 0; b < resStart.length; b++) {
    if (resStart[b]! + cache.ring > cache.rings * cache.ring) {
      throw new ArgumentError(`resStart[${b}]`, `at most ${cache.rings * cache.ring - cache.ring} (rings of ${cache.ring} rows)`, resStart[b]);
    }
  }
  return { kvStart, resStart };
}

function checkLayer(cache: QuantizedKv, layer: unknown): number {
  const l = layer ?? 0;
  if (typeof l !== 'number' || !Number.isInteger(l) || l < 0 || l >= cache.layers) {
    throw new ArgumentError('layer', `an integer in [0, ${cache.layers - 1}]`, l);
  }
  return l;
}

function checkRows(t: unknown, name: string, n: number, cache: QuantizedKv): Tensor {
  if (!(t instanceof Tensor)) throw new ArgumentError(name, `an f32 Tensor [${n}, ${cache.numKvHeads}, ${cache.headDim}]`, t);
  t.descriptor(name);
  if (t.dtype !== 'f32') throw new ArgumentError(`${name}.dtype`, 'f32', t.dtype);
  if (t.shape.join() !== [n, cache.numKvHeads, cache.headDim].join()) {
    throw new ArgumentError(`${name}.shape`, `[${n}, ${cache.numKvHeads}, ${cache.headDim}]`, t.shape);
  }
  if (t.device !== cache.device) throw new ArgumentError(`${name}.device`, `the cache's device ${cache.device}`, t.device);
  return t;
}

export interface AppendKvOptions extends QuantizedKvSequences {
  layer?: number;
  /** [B + 1]: the new tokens of each sequence are rows [qoIndptr[b], qoIndptr[b+1]) of k and v (default: one sequence). */
  qoIndptr?: IntArrayLike;
  /** [B]: position of each sequence's first new token (its current length). */
  posBefore: IntArrayLike;
  /** int4 [B]: quantized keys of each sequence (checks the ring holds the rest; default 0). */
  quantLen?: IntArrayLike;
}

/**
 * Appends new tokens' keys and values (f32 [n, numKvHeads, headDim], on the cache's device) to
 * one layer: int8 / fp8 quantize each (token, head) row at once; int4 writes them to the
 * sequence's residual ring.
 */
export async function appendQuantizedKv(cache: QuantizedKv, k: Tensor, v: Tensor, options: AppendKvOptions): Promise<void> {
  checkCache(cache);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object {kvStart, posBefore}', options);
  const layer = checkLayer(cache, options.layer);
  const n = k instanceof Tensor ? (k.shape[0] ?? 0) : 0;
  checkRows(k, 'k', n, cache);
  checkRows(v, 'v', n, cache);
  const seqs = sequences(cache, options);
  const B = seqs.kvStart.length;
  const qoIndptr = toInt32Array(options.qoIndptr ?? [0, n], 'qoIndptr', 0);
  if (qoIndptr.length !== B + 1) throw new ArgumentError('qoIndptr', `${B + 1} entries (one more than kvStart)`, qoIndptr);
  if (qoIndptr[0] !== 0 || qoIndptr[B] !== n) throw new ArgumentError('qoIndptr', `an index pointer from 0 to the ${n} new tokens`, qoIndptr);
  const posBefore = toInt32Array(options.posBefore, 'posBefore', 0);
  if (posBefore.length !== B) throw new ArgumentError('posBefore', `${B} entries`, posBefore);
  const quantLen = options.quantLen === undefined ? undefined : toInt32Array(options.quantLen, 'quantLen', 0);
  await awaitNative(
    callNative(() => native().kvQuantAppend({
      cache: cache.descriptor(),
      layer,
      kvStart: seqs.kvStart,
      ...(seqs.resStart ? { resStart: seqs.resStart } : {}),
      qoIndptr,
      posBefore,
      ...(quantLen ? { quantLen } : {}),
      k: k.descriptor('k'),
      v: v.descriptor('v'),
    })),
  );
}

export interface KvGroupRanges extends QuantizedKvSequences {
  /** [B] first position (a multiple of the group). */
  from: IntArrayLike;
  /** [B] end position (quantize: a multiple of the group). */
  to: IntArrayLike;
}

function groupArgs(cache: QuantizedKv, r: KvGroupRanges) {
  if (cache.format !== 'int4') throw new ArgumentError('cache.format', "'int4' (only int4 caches have groups)", cache.format);
  if (r === null || typeof r !== 'object') throw new ArgumentError('ranges', 'an object {kvStart, from, to}', r);
  const seqs = sequences(cache, r);
  const from = toInt32Array(r.from, 'from', 0);
  const to = toInt32Array(r.to, 'to', 0);
  if (from.length !== seqs.kvStart.length) throw new ArgumentError('from', `${seqs.kvStart.length} entries`, from);
  if (to.length !== seqs.kvStart.length) throw new ArgumentError('to', `${seqs.kvStart.length} entries`, to);
  return { cache: cache.descriptor(), kvStart: seqs.kvStart, resStart: seqs.resStart!, from, to };
}

/**
 * int4: quantizes the keys [from[b], to[b]) of each sequence (whole groups, in its ring) into
 * packed codes, in every layer. The ring rows are left as they are (they are reused later).
 */
export async function quantizeKvGroups(cache: QuantizedKv, ranges: KvGroupRanges): Promise<void> {
  checkCache(cache);
  await awaitNative(callNative(() => native().kvQuantizeGroups(groupArgs(cache, ranges))));
}

/**
 * int4, synchronous: writes the dequantized keys [from[b], to[b]) (from a multiple of the group)
 * back into each sequence's ring, in every layer (rolling back into a quantized group).
 */
export function restoreKvGroupsSync(cache: QuantizedKv, ranges: KvGroupRanges): void {
  checkCache(cache);
  callNative(() => native().kvRestoreGroupsSync(groupArgs(cache, ranges)));
}

/**
 * After tree verification: in every layer, position prefixLen + j of each sequence receives
 * position prefixLen + acceptedNodes[j] (see kv-commit.ts). int8 / fp8 move codes and scales;
 * int4 moves ring rows (the tree's keys are unquantized). Returns the new lengths.
 */
export async function commitQuantizedKv(cache: QuantizedKv, seqs: QuantizedKvSequences, entries: readonly KvCommitSequence[]): Promise<number[]> {
  checkCache(cache);
  const s = sequences(cache, seqs);
  const B = s.kvStart.length;
  if (!Array.isArray(entries) || entries.length !== B) throw new ArgumentError('entries', `an array of ${B} {prefixLen, numNodes, acceptedNodes}`, entries);
  const prefixLens = new Int32Array(B);
  const treeIndptr = new Int32Array(B + 1);
  const acceptedCount = new Int32Array(B);
  const nodes: number[] = [];
  for (let b = 0; b < B; b++) {
    const e = entries[b]!;
    const name = `entries[${b}]`;
    if (e === null || typeof e !== 'object') throw new ArgumentError(name, 'an object {prefixLen, numNodes, acceptedNodes}', e);
    prefixLens[b] = checkCount(e.prefixLen, `${name}.prefixLen`);
    const n = checkCount(e.numNodes, `${name}.numNodes`);
    treeIndptr[b + 1] = treeIndptr[b]! + n;
    const accIn = e.acceptedNodes as unknown;
    if (accIn === null || typeof accIn !== 'object' || typeof (accIn as ArrayLike<number>).length !== 'number') {
      throw new ArgumentError(`${name}.acceptedNodes`, 'an array of node indices', accIn);
    }
    const acc: number[] = Array.from(accIn as ArrayLike<number>);
    if (acc.length > n) throw new ArgumentError(`${name}.acceptedNodes`, `at most numNodes = ${n} entries`, accIn);
    for (let j = 0; j < acc.length; j++) {
      const lo = j === 0 ? 0 : acc[j - 1]! + 1;
      if (!Number.isInteger(acc[j]) || acc[j]! < lo || acc[j]! >= n) {
        throw new ArgumentError(`${name}.acceptedNodes[${j}]`, `a node index in [${lo}, ${n}) (strictly increasing)`, acc[j]);
      }
    }
    acceptedCount[b] = acc.length;
    for (let j = 0; j < n; j++) nodes.push(j < acc.length ? acc[j]! : -1);
  }
  const newLens = new Int32Array(B);
  await awaitNative(
    callNative(() => native().kvQuantCommit({
      cache: cache.descriptor(),
      kvStart: s.kvStart,
      ...(s.resStart ? { resStart: s.resStart } : {}),
      prefixLens,
      treeIndptr,
      acceptedCount,
      acceptedNodes: Int32Array.from(nodes),
      newLens: int32Descriptor(newLens),
    })),
  );
  return Array.from(newLens);
}

export interface DequantizeKvOptions extends QuantizedKvSequences {
  layer?: number;
  /** [B] keys of each sequence. */
  kvLens: IntArrayLike;
  /** int4 [B]: quantized keys of each sequence (the rest are read from its ring; default all). */
  quantLens?: IntArrayLike;
}

/**
 * A dequantized f32 copy of each sequence's keys and values, concatenated
 * ([sum kvLens, numKvHeads, headDim]): for tests and references only (attention never needs it).
 */
export async function dequantizeKv(cache: QuantizedKv, options: DequantizeKvOptions): Promise<{ k: Tensor; v: Tensor }> {
  checkCache(cache);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object {kvStart, kvLens}', options);
  const layer = checkLayer(cache, options.layer);
  const s = sequences(cache, options);
  const kvLens = toInt32Array(options.kvLens, 'kvLens', 0);
  if (kvLens.length !== s.kvStart.length) throw new ArgumentError('kvLens', `${s.kvStart.length} entries (like kvStart)`, kvLens);
  const quantLens = options.quantLens === undefined ? undefined : toInt32Array(options.quantLens, 'quantLens', 0);
  const total = kvLens.reduce((a, b) => a + b, 0);
  const shape = [total, cache.numKvHeads, cache.headDim];
  const k = Tensor.empty(shape, 'f32', { device: cache.device });
  const v = Tensor.empty(shape, 'f32', { device: cache.device });
  try {
    await awaitNative(
      callNative(() => native().kvDequantize({
        cache: cache.descriptor(),
        layer,
        kvStart: s.kvStart,
        ...(s.resStart ? { resStart: s.resStart } : {}),
        kvLens,
        ...(quantLens ? { quantLens } : {}),
        kOut: k.descriptor('kOut'),
        vOut: v.descriptor('vOut'),
      })),
    );
  } catch (e) {
    k.dispose();
    v.dispose();
    throw e;
  }
  return { k, v };
}

/** The descriptor of rows [from, from + count) of a [rows, H, D] tensor (no copy). */
function rowsDescriptor(t: Tensor, from: number, count: number, name: string): TensorDescriptor {
  const d = t.descriptor(name);
  const row = t.shape[1]! * t.shape[2]!;
  const shape = [count, t.shape[1]!, t.shape[2]!];
  if (ArrayBuffer.isView(d.data)) {
    const a = d.data as Float32Array;
    return { data: a.subarray(from * row, (from + count) * row), dtype: d.dtype, shape };
  }
  return { data: d.data, byteOffset: (d.byteOffset ?? 0) + from * row * 4, dtype: d.dtype, shape };
}

export interface QuantizeKvOptions extends Omit<QuantizedKvOptions, 'rows' | 'numKvHeads' | 'headDim' | 'layers' | 'rings'> {
  /** [B + 1]: sequence b is rows [kvIndptr[b], kvIndptr[b+1]) of k and v (default: one sequence). */
  kvIndptr?: IntArrayLike;
  /** int4: quantize every complete group (default: only groups older than the newest `residual` keys, as a cache would). */
  quantizeAll?: boolean;
}

export interface QuantizedSequences {
  cache: QuantizedKv;
  /** Each sequence's first cache row (its region is rounded up to the int4 group). */
  kvStart: number[];
  /** Keys of each sequence. */
  kvLens: number[];
  /** Quantized keys of each sequence (int4: the rest are in its ring; others: all). */
  quantLens: number[];
  /** int4: each sequence's first ring row. */
  resStart: number[];
  /** quantLens[0] (one sequence). */
  quantLen: number;
}

/**
 * A QuantizedKv holding sequences of keys and values (f32 / f16 / bf16 [rows, H, D], sequence b
 * at rows [kvIndptr[b], kvIndptr[b+1])), appended in chunks the way a cache fills: int8 / fp8
 * quantize every row; int4 quantizes the groups a cache would have quantized by then (all
 * complete groups older than the newest `residual` keys; every complete group with
 * quantizeAll) and leaves the rest in each sequence's ring. A convenience for tests,
 * benchmarks and shared prefixes; the layout to pass to attention is returned with the cache.
 */
export async function quantizeKv(k: Tensor, v: Tensor, options: QuantizeKvOptions): Promise<QuantizedSequences> {
  if (!(k instanceof Tensor) || k.shape.length !== 3) throw new ArgumentError('k', 'a Tensor [rows, numKvHeads, headDim]', k);
  if (!(v instanceof Tensor) || v.shape.join() !== k.shape.join()) throw new ArgumentError('v', `a Tensor of the shape of k [${k.shape.join(', ')}]`, v);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object {format}', options);
  const [n, H, D] = k.shape as [number, number, number];
  const indptr = toInt32Array(options.kvIndptr ?? [0, n], 'kvIndptr', 0);
  checkIndptr(indptr, 'kvIndptr', n, true, 'the rows of k');
  const B = indptr.length - 1;
  const int4 = options.format === 'int4';
  const group = int4 ? (options.group ?? 32) : 1;
  const residual = int4 ? (options.residual ?? 128) : 0;
  const ring = int4 ? (options.ring ?? residual + group + 256) : undefined;
  const kvLens = Array.from({ length: B }, (_, b) => indptr[b + 1]! - indptr[b]!);
  const kvStart: number[] = [];
  let rows = 0;
  for (const len of kvLens) {
    kvStart.push(rows);
    rows += Math.max(group, Math.ceil(len / group) * group);
  }
  const { kvIndptr: _omit, quantizeAll, ...storage } = options;
  void _omit;
  const cache = new QuantizedKv({ ...storage, rows, numKvHeads: H, headDim: D, device: k.device, ...(int4 ? { ring: ring!, rings: B } : {}) });
  const resStart = Array.from({ length: B }, (_, b) => b * (ring ?? 0));
  const quantLens = new Array<number>(B).fill(0);
  const owned: Tensor[] = [];
  try {
    const f32 = async (t: Tensor) => {
      if (t.dtype === 'f32') return t;
      const c = await t.cast('f32');
      owned.push(c);
      return c;
    };
    const kf = await f32(k);
    const vf = await f32(v);
    for (let b = 0; b < B; b++) {
      const len = kvLens[b]!;
      let done = 0;
      while (done < len) {
        // int4: append what the ring can hold beside its unquantized keys, then quantize.
        const room = int4 ? ring! - (done - quantLens[b]!) : len;
        const count = Math.min(len - done, room);
        await awaitNative(
          callNative(() =>
            native().kvQuantAppend({
              cache: cache.descriptor(),
              layer: 0,
              kvStart: Int32Array.of(kvStart[b]!),
              ...(int4 ? { resStart: Int32Array.of(resStart[b]!), quantLen: Int32Array.of(quantLens[b]!) } : {}),
              qoIndptr: Int32Array.of(0, count),
              posBefore: Int32Array.of(done),
              k: rowsDescriptor(kf, indptr[b]! + done, count, 'k'),
              v: rowsDescriptor(vf, indptr[b]! + done, count, 'v'),
            }),
          ),
        );
        done += count;
        if (int4) {
          const target = quantizeAll ? Math.floor(done / group) * group : Math.max(0, Math.floor((done - residual) / group) * group);
          if (target > quantLens[b]!) {
            await quantizeKvGroups(cache, { kvStart: [kvStart[b]!], resStart: [resStart[b]!], from: [quantLens[b]!], to: [target] });
            quantLens[b] = target;
          }
        }
      }
      if (!int4) quantLens[b] = len;
    }
    return { cache, kvStart, kvLens, quantLens, resStart, quantLen: quantLens[0] ?? 0 };
  } catch (e) {
    cache.dispose();
    throw e;
  } finally {
    owned.forEach((t) => t.dispose());
  }
}
