/**
 * KV cache: per layer, keys and values of every sequence of a batch.
 *
 *   f32 / f16 / bf16: k, v Tensors [nLayers, capacity * sequences, nKvHeads, headDim] on the
 *   model's device.
 *   int8 / int4 / fp8 (quantized, see lib/kernels/kv-quant.ts and csrc/common/kv_quant.h): the
 *   storage is `quantized` (a QuantizedKv of every layer); k and v are its code tensors. The
 *   forward pass appends each step's keys quantized (int8 / fp8 per (token, head) row; int4 into
 *   a 16-bit residual ring per sequence) and attention reads them dequantizing on load. int4
 *   quantizes completed key groups (groups older than the newest `residual` committed keys) at
 *   the start of each forward step, or when quantizeCompleted() is called.
 *
 * Sequence s owns rows [start_s, start_s + capacity) and has `length_s` committed rows.
 * A forward step appends its tokens' keys after the committed rows; causal steps commit
 * them, tree steps leave them uncommitted until commit() keeps the accepted nodes.
 * truncate() rolls back; on int4 caches rolling back into a quantized group writes the kept
 * keys of that group back to the ring, dequantized (they keep exactly the values attention saw).
 */

import { totalmem } from 'node:os';

import { ArgumentError, DisposedError, OutOfMemoryError, callNative } from '../errors.js';
import { commitKvBatch } from '../kernels/kv-commit.js';
import {
  type KvQuantFormat,
  QuantizedKv,
  commitQuantizedKv,
  isKvQuantFormat,
  quantizeKvGroups,
  quantizedBytesPerToken,
  restoreKvGroupsSync,
} from '../kernels/kv-quant.js';
import { type Device, deviceIndex } from '../native/backend.js';
import { native } from '../native/loader.js';
import type { NativeQuantKv } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import { type FloatDType, dtypeSize } from '../tensor/dtype.js';
import type { ModelConfig } from './config.js';

/** Storage formats of a KV cache: plain floats or a quantized format. */
export type KvCacheDtype = FloatDType | KvQuantFormat;

export interface KvCacheOptions {
  /** Rows per sequence (default: the model's maxSeqLen). */
  capacity?: number;
  /** Number of sequences (default 1). */
  sequences?: number;
  /** 'f32' (default), 'f16', 'bf16', or quantized: 'int8', 'int4', 'fp8' (fp8: CUDA on cc 8.9+, and the CPU reference). */
  dtype?: KvCacheDtype;
  /** int4: tokens per key group, 32 (default), 64 or 128. */
  group?: 32 | 64 | 128;
  /** int4: the newest `residual` committed keys stay 16-bit (default 128; at least the group). */
  residual?: number;
  /**
   * int4: rows of each sequence's residual ring (default residual + group + 256). A step may
   * append at most ring - (length - quantized length after quantizing completed groups) tokens
   * to a sequence; longer prompts must be split into chunks.
   */
  residualCapacity?: number;
  /** int4: dtype of the ring, 'f16' (default), 'bf16' or 'f32'. */
  residualDtype?: FloatDType;
}

/** What Model.forward passes for a quantized cache (internal). */
export interface QuantizedForwardArgs {
  cache: NativeQuantKv;
  resStart?: Int32Array;
  quantLenBefore?: Int32Array;
  quantLenAfter?: Int32Array;
}

/** Bytes per cached element of each storage type (int4: half a byte; scales and residuals not counted). */
const CACHE_ELEMENT_BYTES: Record<KvCacheDtype, number> = { f32: 4, f16: 2, bf16: 2, int8: 1, fp8: 1, int4: 0.5 };

/**
 * Throws OutOfMemoryError, before anything is allocated, when the keys and values of `rows`
 * cache rows cannot fit the device: more bytes than the machine's memory (CPU) or the
 * device's total memory (CUDA). Smaller requests may still fail later if memory is in use.
 */
function checkCacheFits(config: ModelConfig, device: Device, rows: number, dtype: KvCacheDtype): void {
  const bytes = 2 * config.nLayers * rows * config.nKvHeads * config.headDim * CACHE_ELEMENT_BYTES[dtype];
  let limit: number;
  let where: string;
  if (device === 'cpu') {
    limit = totalmem();
    where = 'the machine';
  } else {
    try {
      limit = callNative(() => native().cudaMemInfo(deviceIndex(device))).total;
    } catch {
      return; // no figure to compare with: the allocation itself reports
    }
    where = device;
  }
  if (bytes > limit) {
    throw new OutOfMemoryError(
      `a ${dtype} KV cache of ${rows} rows (capacity x sequences) needs ${(bytes / 2 ** 30).toFixed(1)} GiB for keys and values, more than ${where} has (${(limit / 2 ** 30).toFixed(1)} GiB); lower capacity, maxTokens or the number of sequences`,
    );
  }
}

export class KvCache {
  #k: Tensor;
  #v: Tensor;
  #capacity: number;
  readonly numSequences: number;
  readonly dtype: KvCacheDtype;
  /** The quantized storage (quantized dtypes only). */
  readonly quantized: QuantizedKv | undefined;
  readonly #lengths: number[];
  /** int4: keys [0, quantLen) of each sequence are quantized. */
  readonly #quantLens: number[];
  /** Rows between consecutive sequences' regions (int4: capacity rounded up to the group). */
  #region: number;
  #disposed = false;

  /** f32 / f16 / bf16 caches: the keys [nLayers, capacity * sequences, nKvHeads, headDim]; quantized caches: the code tensors of `quantized`. */
  get k(): Tensor {
    return this.#k;
  }
  /** Values, like k. */
  get v(): Tensor {
    return this.#v;
  }
  /** Rows per sequence. */
  get capacity(): number {
    return this.#capacity;
  }

  constructor(config: ModelConfig, device: Device, options: KvCacheOptions = {}) {
    const capacity = options.capacity ?? config.maxSeqLen;
    const sequences = options.sequences ?? 1;
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new ArgumentError('capacity', 'a positive integer', capacity);
    if (!Number.isSafeInteger(sequences) || sequences < 1) throw new ArgumentError('sequences', 'a positive integer', sequences);
    const dtype = options.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16' && !isKvQuantFormat(dtype)) {
      throw new ArgumentError('dtype', "one of 'f32', 'f16', 'bf16', 'int8', 'int4', 'fp8'", dtype);
    }
    checkCacheFits(config, device, capacity * sequences, dtype);
    this.dtype = dtype;
    this.#capacity = capacity;
    this.numSequences = sequences;
    this.#lengths = new Array<number>(sequences).fill(0);
    this.#quantLens = new Array<number>(sequences).fill(0);
    if (isKvQuantFormat(dtype)) {
      const group = dtype === 'int4' ? (options.group ?? 32) : 1;
      this.#region = Math.ceil(capacity / group) * group;
      this.quantized = new QuantizedKv({
        format: dtype,
        rows: this.#region * sequences,
        numKvHeads: config.nKvHeads,
        headDim: config.headDim,
        layers: config.nLayers,
        device,
        ...(dtype === 'int4'
          ? {
              group: group as 32 | 64 | 128,
              rings: sequences,
              ...(options.residual !== undefined ? { residual: options.residual } : {}),
              ...(options.residualCapacity !== undefined ? { ring: options.residualCapacity } : {}),
              ...(options.residualDtype !== undefined ? { residualDtype: options.residualDtype } : {}),
            }
          : {}),
      });
      this.#k = this.quantized.k;
      this.#v = this.quantized.v;
    } else {
      this.#region = capacity;
      this.quantized = undefined;
      const shape = [config.nLayers, capacity * sequences, config.nKvHeads, config.headDim];
      this.#k = Tensor.empty(shape, dtype, { device });
      this.#v = Tensor.empty(shape, dtype, { device });
    }
  }

  /** Bytes of cache storage per token (every layer, keys and values; int4 rings not included). */
  get bytesPerToken(): number {
    const layers = this.k.shape[0]!;
    if (this.quantized) return this.quantized.bytesPerToken * layers;
    return quantizedBytesPerToken(this.dtype as FloatDType, this.k.shape[2]!, this.k.shape[3]!) * layers;
  }

  /** int4: keys of sequence `seq` held packed (the rest are in its ring); other dtypes: its length. */
  quantizedLength(seq: number): number {
    this.#check(seq);
    return this.dtype === 'int4' ? this.#quantLens[seq]! : this.#lengths[seq]!;
  }

  /** int4: the quantized length sequence `seq` reaches once its completed groups are quantized. */
  #targetQuantLen(seq: number): number {
    const q = this.quantized!;
    const n = this.#lengths[seq]! - q.residual;
    return Math.max(this.#quantLens[seq]!, n <= 0 ? 0 : Math.floor(n / q.group) * q.group);
  }

  /** int4: quantizes every sequence's completed key groups now (the forward pass also does it). */
  async quantizeCompleted(): Promise<void> {
    this.#check(0);
    if (this.dtype !== 'int4') return;
    const from = this.#quantLens.slice();
    const to = from.map((_, s) => this.#targetQuantLen(s));
    if (to.every((t, s) => t === from[s])) return;
    await quantizeKvGroups(this.quantized!, { ...this.#layout(), from, to });
    to.forEach((t, s) => {
      this.#quantLens[s] = t;
    });
  }

  #layout(): { kvStart: number[]; resStart: number[] } {
    const kvStart = Array.from({ length: this.numSequences }, (_, s) => s * this.#region);
    const resStart = Array.from({ length: this.numSequences }, (_, s) => s * (this.quantized?.ring ?? 0));
    return { kvStart, resStart };
  }

  /**
   * For Model.forward: the quantized cache arguments of a step over `sequences` (sorted) with
   * `newTokens` each; checks the int4 rings hold the step. Call quantizedStepDone after success.
   */
  quantizedStep(sequences: number[], newTokens: number[]): { args: QuantizedForwardArgs; after: number[] } {
    const q = this.quantized!;
    const before = sequences.map((s) => this.#quantLens[s]!);
    const after = sequences.map((s) => (this.dtype === 'int4' ? this.#targetQuantLen(s) : 0));
    if (this.dtype === 'int4') {
      sequences.forEach((s, i) => {
        const free = q.ring - (this.#lengths[s]! - after[i]!);
        if (newTokens[i]! > free) {
          throw new ArgumentError(
            `step[sequence ${s}].tokens`,
            `at most ${free} tokens for this int4 cache (its residual ring holds ${q.ring} rows; split longer prompts into chunks or create the cache with a larger residualCapacity)`,
            newTokens[i],
          );
        }
      });
    }
    const { resStart } = this.#layout();
    return {
      args: {
        cache: q.descriptor('cache'),
        ...(this.dtype === 'int4'
          ? { resStart: Int32Array.from(sequences, (s) => resStart[s]!), quantLenBefore: Int32Array.from(before), quantLenAfter: Int32Array.from(after) }
          : {}),
      },
      after,
    };
  }

  /** For Model.forward: records the quantized lengths a successful step reached. */
  quantizedStepDone(sequences: number[], after: number[]): void {
    if (this.dtype !== 'int4') return;
    sequences.forEach((s, i) => {
      this.#quantLens[s] = after[i]!;
    });
  }

  #check(seq: number): void {
    if (this.#disposed) throw new DisposedError('KvCache');
    if (!Number.isInteger(seq) || seq < 0 || seq >= this.numSequences) {
      throw new ArgumentError('sequence', `an integer in [0, ${this.numSequences - 1}]`, seq);
    }
  }

  /** First cache row of sequence `seq`. */
  start(seq: number): number {
    this.#check(seq);
    return seq * this.#region;
  }

  /** Committed rows of sequence `seq`. */
  length(seq: number): number {
    this.#check(seq);
    return this.#lengths[seq]!;
  }

  /** Room left in sequence `seq`. */
  free(seq: number): number {
    return this.capacity - this.length(seq);
  }

  /** Marks `count` more rows of `seq` as committed (after a causal step). */
  advance(seq: number, count: number): void {
    this.#check(seq);
    if (!Number.isInteger(count) || count < 0 || this.#lengths[seq]! + count > this.capacity) {
      throw new ArgumentError('count', `an integer in [0, ${this.capacity - this.#lengths[seq]!}]`, count);
    }
    this.#lengths[seq] = this.#lengths[seq]! + count;
  }

  /**
   * Drops rows past `length` (rollback). int4: rolling back below the quantized length writes
   * the kept keys of the cut group back to the ring, dequantized (synchronously).
   */
  truncate(seq: number, length: number): void {
    this.#check(seq);
    if (!Number.isInteger(length) || length < 0 || length > this.#lengths[seq]!) {
      throw new ArgumentError('length', `an integer in [0, ${this.#lengths[seq]!}]`, length);
    }
    if (this.dtype === 'int4' && length < this.#quantLens[seq]!) {
      const q = this.quantized!;
      const from = Math.floor(length / q.group) * q.group;
      const { kvStart, resStart } = this.#layout();
      restoreKvGroupsSync(q, { kvStart: [kvStart[seq]!], resStart: [resStart[seq]!], from: [from], to: [length] });
      this.#quantLens[seq] = from;
    }
    this.#lengths[seq] = length;
  }

  /**
   * After a tree step over `numNodes` uncommitted rows of each listed sequence: keeps the
   * accepted nodes (in path order) right after the committed rows and commits them.
   */
  async commit(entries: Array<{ sequence: number; numNodes: number; acceptedNodes: ArrayLike<number> }>): Promise<void> {
    for (const e of entries) this.#check(e.sequence);
    const kvIndptr = [0];
    const seqs = [];
    for (let s = 0; s < this.numSequences; s++) kvIndptr.push((s + 1) * this.#region);
    for (let s = 0; s < this.numSequences; s++) {
      const e = entries.find((x) => x.sequence === s);
      seqs.push({ prefixLen: this.#lengths[s]!, numNodes: e?.numNodes ?? 0, acceptedNodes: e ? Array.from(e.acceptedNodes) : [] });
    }
    if (this.quantized) {
      for (let s = 0; s < this.numSequences; s++) {
        const free = (this.dtype === 'int4' ? this.quantized.ring - (this.#lengths[s]! - this.#quantLens[s]!) : this.capacity - this.#lengths[s]!);
        if (seqs[s]!.numNodes > free) throw new ArgumentError(`entries[sequence ${s}].numNodes`, `at most ${free} (the rows the tree step could use)`, seqs[s]!.numNodes);
      }
    }
    const newLens = this.quantized
      ? await commitQuantizedKv(this.quantized, this.#layout(), seqs)
      : await commitKvBatch(this.k, this.v, kvIndptr, seqs);
    newLens.forEach((len, s) => {
      this.#lengths[s] = len;
    });
  }

  /** Whether fork() and grow() apply (f32 / f16 / bf16 caches). */
  get forkable(): boolean {
    return this.quantized === undefined;
  }

  /**
   * Copies the first `length` committed rows of sequence `from` into sequence `to` (which then
   * has that length): a shared prompt is prefilled once and forked to every sample.
   * f32 / f16 / bf16 caches only.
   */
  fork(from: number, to: number, length = this.length(from)): void {
    this.#check(from);
    this.#check(to);
    if (this.quantized) throw new ArgumentError('cache', 'an f32, f16 or bf16 cache to fork', this.dtype);
    if (!Number.isInteger(length) || length < 0 || length > this.#lengths[from]!) {
      throw new ArgumentError('length', `an integer in [0, ${this.#lengths[from]!}]`, length);
    }
    const rows = this.#capacity * this.numSequences;
    if (from !== to) for (const t of [this.#k, this.#v]) copyRows(t, this.start(from), t, this.start(to), length, rows, rows);
    this.#lengths[to] = length;
  }

  /** Grows every sequence's capacity to `capacity` rows (a new allocation; committed rows kept). f32 / f16 / bf16 caches only. */
  grow(capacity: number): void {
    this.#check(0);
    if (this.quantized) throw new ArgumentError('cache', 'an f32, f16 or bf16 cache to grow', this.dtype);
    if (!Number.isSafeInteger(capacity) || capacity < this.#capacity) throw new ArgumentError('capacity', `an integer >= the current capacity ${this.#capacity}`, capacity);
    if (capacity === this.#capacity) return;
    const shape = [...this.#k.shape];
    shape[1] = capacity * this.numSequences;
    const oldRows = this.#capacity * this.numSequences;
    const [k, v] = [this.#k, this.#v].map((old) => {
      const t = Tensor.empty(shape, old.dtype, { device: old.device });
      for (let s = 0; s < this.numSequences; s++) copyRows(old, s * this.#capacity, t, s * capacity, this.#lengths[s]!, oldRows, capacity * this.numSequences);
      old.dispose();
      return t;
    });
    this.#k = k!;
    this.#v = v!;
    this.#capacity = capacity;
    this.#region = capacity;
  }

  /**
   * Copies of the first `count` committed rows of sequence `seq` (keys and values, every
   * layer) as CPU tensors [nLayers, count, nKvHeads, headDim] in the cache's dtype. f32 / f16 /
   * bf16 caches only (session files, lib/chat/session-file.ts).
   */
  async readRows(seq: number, count = this.length(seq)): Promise<{ k: Tensor; v: Tensor }> {
    this.#check(seq);
    if (this.quantized) throw new ArgumentError('cache', 'an f32, f16 or bf16 cache to read rows of', this.dtype);
    if (!Number.isInteger(count) || count < 0 || count > this.#lengths[seq]!) throw new ArgumentError('count', `an integer in [0, ${this.#lengths[seq]!}]`, count);
    const rows = this.#capacity * this.numSequences;
    const [k, v] = await Promise.all(
      [this.#k, this.#v].map(async (src) => {
        const shape = [src.shape[0]!, count, src.shape[2]!, src.shape[3]!];
        const tmp = Tensor.empty(shape, src.dtype, { device: src.device });
        copyRows(src, this.start(seq), tmp, 0, count, rows, count);
        const host = await tmp.to('cpu');
        if (host !== tmp) tmp.dispose();
        return host;
      }),
    );
    return { k: k!, v: v! };
  }

  /** Writes rows read by readRows() as the first rows of sequence `seq` (which then has that length). */
  async writeRows(seq: number, k: Tensor, v: Tensor): Promise<void> {
    this.#check(seq);
    if (this.quantized) throw new ArgumentError('cache', 'an f32, f16 or bf16 cache to write rows to', this.dtype);
    const count = k.shape[1]!;
    const want = [this.#k.shape[0], count, this.#k.shape[2], this.#k.shape[3]].join();
    for (const [name, t] of [['k', k], ['v', v]] as const) {
      if (t.dtype !== this.dtype || t.shape.join() !== want) throw new ArgumentError(name, `a ${this.dtype} tensor [${want}]`, `${t.dtype} [${t.shape.join()}]`);
    }
    if (count > this.#capacity) throw new ArgumentError('k', `at most ${this.#capacity} rows (the cache's capacity)`, count);
    const rows = this.#capacity * this.numSequences;
    for (const [src, dst] of [[k, this.#k], [v, this.#v]] as const) {
      const dev = await src.to(dst.device);
      copyRows(dev, 0, dst, this.start(seq), count, count, rows);
      if (dev !== src) dev.dispose();
    }
    this.#lengths[seq] = count;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.quantized) this.quantized.dispose();
    else {
      this.k.dispose();
      this.v.dispose();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Copies `count` rows (every layer) from src row srcRow to dst row dstRow; tensors [layers, rows, heads, dim]. */
function copyRows(src: Tensor, srcRow: number, dst: Tensor, dstRow: number, count: number, srcRows: number, dstRows: number): void {
  if (count === 0) return;
  const layers = src.shape[0]!;
  const rowElems = src.shape[2]! * src.shape[3]!;
  const n = count * rowElems;
  if (src.device === 'cpu') {
    const a = src.toArray();
    const b = dst.toArray();
    for (let l = 0; l < layers; l++) {
      const so = (l * srcRows + srcRow) * rowElems;
      const d0 = (l * dstRows + dstRow) * rowElems;
      if (a === b) b.copyWithin(d0, so, so + n);
      else b.set(a.subarray(so, so + n), d0);
    }
    return;
  }
  const es = dtypeSize(src.dtype);
  const sd = src.descriptor('cache');
  const dd = dst.descriptor('cache');
  for (let l = 0; l < layers; l++) {
    callNative(() =>
      native().copySync(
        { data: dd.data, byteOffset: (l * dstRows + dstRow) * rowElems * es, dtype: dst.dtype, shape: [n] },
        { data: sd.data, byteOffset: (l * srcRows + srcRow) * rowElems * es, dtype: src.dtype, shape: [n] },
      ),
    );
  }
}
