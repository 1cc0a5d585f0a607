/**
 * The storages behind a KvCache (lib/model/kv-cache.ts), one interface: plain f32 / f16 / bf16
 * tensors here, quantized int8 / int4 / fp8 in kv-quant-storage.ts. A storage knows its rows
 * and formats; the cache keeps the committed lengths and hands them in.
 *
 * Sequence s < sequences owns rows [s * region, s * region + capacity) of every layer; after
 * them come the shared-prefix slots (KvCacheOptions.prefixes): slot j is sequence index
 * sequences + j and owns prefixRegion rows (prefixCapacity usable) at
 * sequences * region + j * prefixRegion.
 */
import { ArgumentError, callNative } from '../errors.js';
import { type KvCommitSequence, commitKvBatch } from '../kernels/kv-commit.js';
import { type QuantizedKv, quantizedBytesPerToken } from '../kernels/kv-quant.js';
import type { Device } from '../native/backend.js';
import { native } from '../native/loader.js';
import type { NativeQuantKv, TensorDescriptor } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import { type FloatDType, dtypeSize } from '../tensor/dtype.js';
import type { ModelConfig } from './config.js';

/** The cache's part of a native forward / step call's options. */
export type KvNativeArgs =
  | { k: TensorDescriptor; v: TensorDescriptor }
  | { kvQuant: { cache: NativeQuantKv; resStart?: Int32Array; quantLenBefore?: Int32Array; quantLenAfter?: Int32Array } };

/** A step's use of a storage: its native arguments, and what to record once the call succeeded. */
export interface KvStorageStep {
  args: KvNativeArgs;
  /** Records what the successful call changed in the storage (int4: the quantized lengths). */
  done(): void;
}

export interface KvStorage {
  /** f32 / f16 / bf16: the keys [nLayers, rows, nKvHeads, headDim]; quantized: the code tensors. */
  readonly k: Tensor;
  readonly v: Tensor;
  /** Rows between consecutive sequences' regions. */
  readonly region: number;
  /** Rows per sequence a step may fill. */
  readonly capacity: number;
  /** Rows of each shared-prefix slot a step may fill. */
  readonly prefixCapacity: number;
  /** First row of sequence (or prefix slot) `seq`'s region. */
  start(seq: number): number;
  /** Rows of sequence (or prefix slot) `seq`'s region. */
  regionRows(seq: number): number;
  /** Where the first `length` committed rows of `seq` are, for sequences reading them as a shared prefix (int4: packed length and ring). */
  prefixSource(seq: number, length: number): { start: number; quantLen?: number; resStart?: number };
  /** Bytes the storage holds (keys and values of every region, scales and int4 rings included). */
  readonly bytes: number;
  /** The quantized storage, for the kernels that read it directly (prefix attention, tests). */
  readonly quantized: QuantizedKv | undefined;
  readonly bytesPerToken: number;
  /** Whether fork() and grow() apply. */
  readonly forkable: boolean;
  /**
   * A step over `sequences` (sorted) with committed `lengths` and `newTokens` each: checks it
   * fits what the storage can take in one call, returns the native arguments.
   */
  step(sequences: readonly number[], lengths: readonly number[], newTokens: readonly number[]): KvStorageStep;
  /** The rows a tree step may add to sequence `seq` of committed length `length`. */
  treeRoom(seq: number, length: number): number;
  /** Keeps each listed sequence's accepted tree nodes (kv_commit.h); returns the new lengths. */
  commit(sequences: readonly KvCommitSequence[]): Promise<number[]>;
  /** Prepares a rollback of `seq` to `length` (int4: restores the cut group to the ring). */
  truncate(seq: number, length: number): void;
  /** Keys of `seq` held quantized (int4: packed; others: all `length` committed ones). */
  quantizedLength(seq: number, length: number): number;
  /** int4: quantizes the completed key groups of every sequence now. */
  quantizeCompleted(lengths: readonly number[]): Promise<void>;
  /** Copies rows [fromRow, fromRow + length) of `from`'s region into `to`'s region from row toRow (default 0, 0). */
  fork(from: number, to: number, length: number, fromRow?: number, toRow?: number): void;
  /** Grows the ordinary sequences' capacity; `lengths`: rows to keep of every region (prefix slots included). */
  grow(capacity: number, lengths: readonly number[]): void;
  dispose(): void;
}

/** f32 / f16 / bf16 keys and values, every layer, one tensor each. */
export class PlainKvStorage implements KvStorage {
  #k: Tensor;
  #v: Tensor;
  #capacity: number;
  readonly quantized = undefined;
  readonly forkable = true;

  constructor(
    config: ModelConfig,
    device: Device,
    capacity: number,
    readonly sequences: number,
    readonly dtype: FloatDType,
    readonly prefixes = 0,
    readonly prefixCapacity = capacity,
  ) {
    this.#capacity = capacity;
    const shape = [config.nLayers, this.#rowsFor(capacity), config.nKvHeads, config.headDim];
    this.#k = Tensor.empty(shape, dtype, { device });
    this.#v = Tensor.empty(shape, dtype, { device });
  }

  /** Rows of every region for an ordinary capacity of `capacity`. */
  #rowsFor(capacity: number): number {
    return capacity * this.sequences + this.prefixCapacity * this.prefixes;
  }

  start(seq: number): number {
    return seq < this.sequences ? seq * this.#capacity : this.sequences * this.#capacity + (seq - this.sequences) * this.prefixCapacity;
  }

  regionRows(seq: number): number {
    return seq < this.sequences ? this.#capacity : this.prefixCapacity;
  }

  prefixSource(seq: number): { start: number } {
    return { start: this.start(seq) };
  }

  get bytes(): number {
    return this.#k.byteLength + this.#v.byteLength;
  }

  get k(): Tensor {
    return this.#k;
  }
  get v(): Tensor {
    return this.#v;
  }
  get region(): number {
    return this.#capacity;
  }
  get capacity(): number {
    return this.#capacity;
  }
  get bytesPerToken(): number {
    return quantizedBytesPerToken(this.dtype, this.#k.shape[2]!, this.#k.shape[3]!) * this.#k.shape[0]!;
  }

  step(): KvStorageStep {
    return { args: { k: this.#k.descriptor('cache.k'), v: this.#v.descriptor('cache.v') }, done: () => {} };
  }

  treeRoom(seq: number, length: number): number {
    return this.regionRows(seq) - length;
  }

  commit(sequences: readonly KvCommitSequence[]): Promise<number[]> {
    const kvIndptr = Array.from({ length: sequences.length + 1 }, (_, s) => this.start(s));
    return commitKvBatch(this.#k, this.#v, kvIndptr, sequences);
  }

  truncate(): void {}

  quantizedLength(_seq: number, length: number): number {
    return length;
  }

  async quantizeCompleted(): Promise<void> {}

  /** Copies rows [fromRow, fromRow + length) of `from`'s region to `to`'s region from row toRow. */
  fork(from: number, to: number, length: number, fromRow = 0, toRow = 0): void {
    const rows = this.#rowsFor(this.#capacity);
    if (from !== to || fromRow !== toRow) for (const t of [this.#k, this.#v]) copyRows(t, this.start(from) + fromRow, t, this.start(to) + toRow, length, rows, rows);
  }

  /** Grows the ordinary sequences' regions (prefix slots keep theirs); `lengths`: the rows to keep of every region. */
  grow(capacity: number, lengths: readonly number[]): void {
    if (capacity === this.#capacity) return;
    const shape = [...this.#k.shape];
    shape[1] = this.#rowsFor(capacity);
    const oldRows = this.#rowsFor(this.#capacity);
    const oldStarts = lengths.map((_, s) => this.start(s));
    const newStart = (s: number) => (s < this.sequences ? s * capacity : this.sequences * capacity + (s - this.sequences) * this.prefixCapacity);
    const [k, v] = [this.#k, this.#v].map((old) => {
      const t = Tensor.empty(shape, old.dtype, { device: old.device });
      lengths.forEach((len, s) => copyRows(old, oldStarts[s]!, t, newStart(s), len, oldRows, shape[1]!));
      old.dispose();
      return t;
    });
    this.#k = k!;
    this.#v = v!;
    this.#capacity = capacity;
  }

  /** Copies of the first `count` rows of sequence `seq` as CPU tensors [nLayers, count, nKvHeads, headDim]. */
  async readRows(seq: number, count: number): Promise<{ k: Tensor; v: Tensor }> {
    const rows = this.#rowsFor(this.#capacity);
    const [k, v] = await Promise.all(
      [this.#k, this.#v].map(async (src) => {
        const tmp = Tensor.empty([src.shape[0]!, count, src.shape[2]!, src.shape[3]!], src.dtype, { device: src.device });
        copyRows(src, this.start(seq), tmp, 0, count, rows, count);
        const host = await tmp.to('cpu');
        if (host !== tmp) tmp.dispose();
        return host;
      }),
    );
    return { k: k!, v: v! };
  }

  /** Writes rows shaped as readRows() gives them as the first k.shape[1] rows of sequence `seq` (checked by the caller). */
  async writeRows(seq: number, k: Tensor, v: Tensor): Promise<void> {
    const count = k.shape[1]!;
    const rows = this.#rowsFor(this.#capacity);
    for (const [src, dst] of [[k, this.#k], [v, this.#v]] as const) {
      const dev = await src.to(dst.device);
      copyRows(dev, 0, dst, this.start(seq), count, count, rows);
      if (dev !== src) dev.dispose();
    }
  }

  dispose(): void {
    this.#k.dispose();
    this.#v.dispose();
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

/** For storages that cannot fork or grow. */
export function notForkable(dtype: string, what: 'fork' | 'grow'): never {
  throw new ArgumentError('cache', `an f32, f16 or bf16 cache to ${what}`, dtype);
}
