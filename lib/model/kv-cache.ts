/**
 * KV cache: per layer, keys and values of every sequence of a batch.
 *
 *   k, v  Tensors [nLayers, capacity, nKvHeads, headDim] (f32 / f16 / bf16), on the model's device
 *
 * Sequence s owns rows [start_s, start_s + capacity_s) and has `length_s` committed rows.
 * A forward step appends its tokens' keys after the committed rows; causal steps commit
 * them, tree steps leave them uncommitted until commit() keeps the accepted nodes.
 */

import { ArgumentError, DisposedError, callNative } from '../errors.js';
import { native } from '../native/loader.js';
import { dtypeSize } from '../tensor/dtype.js';
import { commitKvBatch } from '../kernels/kv-commit.js';
import type { Device } from '../native/backend.js';
import { Tensor } from '../tensor/tensor.js';
import type { FloatDType } from '../tensor/dtype.js';
import type { ModelConfig } from './config.js';

export interface KvCacheOptions {
  /** Rows per sequence (default: the model's maxSeqLen). */
  capacity?: number;
  /** Number of sequences (default 1). */
  sequences?: number;
  dtype?: FloatDType;
}

export class KvCache {
  #k: Tensor;
  #v: Tensor;
  #capacity: number;
  readonly numSequences: number;
  readonly #lengths: number[];
  readonly #rowElems: number;
  readonly #layers: number;
  #disposed = false;

  /** Keys [nLayers, capacity * sequences, nKvHeads, headDim]. */
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
    const shape = [config.nLayers, capacity * sequences, config.nKvHeads, config.headDim];
    this.#k = Tensor.empty(shape, dtype, { device });
    this.#v = Tensor.empty(shape, dtype, { device });
    this.#capacity = capacity;
    this.#rowElems = config.nKvHeads * config.headDim;
    this.#layers = config.nLayers;
    this.numSequences = sequences;
    this.#lengths = new Array<number>(sequences).fill(0);
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
    return seq * this.#capacity;
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

  /** Drops rows past `length` (rollback). */
  truncate(seq: number, length: number): void {
    this.#check(seq);
    if (!Number.isInteger(length) || length < 0 || length > this.#lengths[seq]!) {
      throw new ArgumentError('length', `an integer in [0, ${this.#lengths[seq]!}]`, length);
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
    for (let s = 0; s < this.numSequences; s++) kvIndptr.push((s + 1) * this.capacity);
    for (let s = 0; s < this.numSequences; s++) {
      const e = entries.find((x) => x.sequence === s);
      seqs.push({ prefixLen: this.#lengths[s]!, numNodes: e?.numNodes ?? 0, acceptedNodes: e ? Array.from(e.acceptedNodes) : [] });
    }
    const newLens = await commitKvBatch(this.k, this.v, kvIndptr, seqs);
    newLens.forEach((len, s) => {
      this.#lengths[s] = len;
    });
  }

  /**
   * Copies the first `length` committed rows of sequence `from` into sequence `to` (which then
   * has that length): a shared prompt is prefilled once and forked to every sample.
   */
  fork(from: number, to: number, length = this.length(from)): void {
    this.#check(from);
    this.#check(to);
    if (!Number.isInteger(length) || length < 0 || length > this.#lengths[from]!) {
      throw new ArgumentError('length', `an integer in [0, ${this.#lengths[from]!}]`, length);
    }
    if (from !== to) {
      for (const t of [this.#k, this.#v]) copyRows(t, this.start(from), t, this.start(to), length, this.#layers, this.#rowElems, this.#capacity * this.numSequences, this.#capacity * this.numSequences);
    }
    this.#lengths[to] = length;
  }

  /** Grows every sequence's capacity to `capacity` rows (a new allocation; committed rows are kept). */
  grow(capacity: number): void {
    if (this.#disposed) throw new DisposedError('KvCache');
    if (!Number.isSafeInteger(capacity) || capacity < this.#capacity) throw new ArgumentError('capacity', `an integer >= the current capacity ${this.#capacity}`, capacity);
    if (capacity === this.#capacity) return;
    const shape = [...this.#k.shape];
    shape[1] = capacity * this.numSequences;
    const oldRows = this.#capacity * this.numSequences;
    const next = [this.#k, this.#v].map((old) => {
      const t = Tensor.empty(shape, old.dtype, { device: old.device });
      for (let s = 0; s < this.numSequences; s++) copyRows(old, s * this.#capacity, t, s * capacity, this.#lengths[s]!, this.#layers, this.#rowElems, oldRows, capacity * this.numSequences);
      old.dispose();
      return t;
    });
    this.#k = next[0]!;
    this.#v = next[1]!;
    this.#capacity = capacity;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#k.dispose();
    this.#v.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Copies `count` rows per layer from src (row srcRow) to dst (row dstRow); rows hold rowElems elements. */
function copyRows(src: Tensor, srcRow: number, dst: Tensor, dstRow: number, count: number, layers: number, rowElems: number, srcRows: number, dstRows: number): void {
  if (count === 0) return;
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
