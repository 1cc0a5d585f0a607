/**
 * KV cache: per layer, keys and values of every sequence of a batch.
 *
 *   The storage is one of two behind one interface (lib/model/kv-storage.ts):
 *   f32 / f16 / bf16 (PlainKvStorage): k, v Tensors [nLayers, capacity * sequences, nKvHeads,
 *   headDim] on the model's device.
 *   int8 / int4 / fp8 (QuantKvStorage, lib/model/kv-quant-storage.ts): `quantized` (a
 *   QuantizedKv of every layer); k and v are its code tensors.
 * The cache owns each step's plan (plan()): the native arguments of its storage, where every
 * sequence's rows are, and what to record once the native call succeeded.
 *
 * Sequence s owns rows [start_s, start_s + capacity) and has `length_s` committed rows.
 * A forward step appends its tokens' keys after the committed rows; causal steps commit
 * them, tree steps leave them uncommitted until commit() keeps the accepted nodes.
 * truncate() rolls back; on int4 caches rolling back into a quantized group writes the kept
 * keys of that group back to the ring, dequantized (they keep exactly the values attention saw).
 *
 * Shared prefixes (every dtype): `prefixes` extra regions of `prefixCapacity` rows each, the
 * prefix slots, are addressed as sequences numSequences .. numSequences + prefixes - 1
 * (prefixSlot(j)); they are prefilled like any sequence. attachPrefix(seq, source, length)
 * makes sequence `seq` read the first `length` committed rows of `source` (a slot or another
 * sequence) as the start of its own keys: its length is then length + its own rows, its own
 * region holds only what follows, and the forward pass attends to the prefix rows once per
 * group of sequences sharing them (prefixAttention, csrc/common/llama.h) instead of reading
 * forked copies. A source is frozen while sequences refer to it (no steps, no truncation below
 * what they read); truncate(seq, 0) detaches a sequence. One level: a source has no prefix.
 */

import { totalmem } from 'node:os';

import { ArgumentError, DisposedError, OutOfMemoryError, callNative } from '../errors.js';
import { type KvQuantFormat, type QuantizedKv, isKvQuantFormat } from '../kernels/kv-quant.js';
import { type Device, deviceIndex } from '../native/backend.js';
import { native } from '../native/loader.js';
import type { Tensor } from '../tensor/tensor.js';
import type { FloatDType } from '../tensor/dtype.js';
import type { NativePrefixArgs } from '../native/types.js';
import type { ModelConfig } from './config.js';
import { QuantKvStorage } from './kv-quant-storage.js';
import { type KvNativeArgs, type KvStorage, PlainKvStorage } from './kv-storage.js';

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
  /** Shared-prefix slots (default 0): regions after the sequences', addressed as sequences numSequences + j (see attachPrefix). */
  prefixes?: number;
  /** Rows of each prefix slot (default capacity). */
  prefixCapacity?: number;
}

/** Where a sequence's shared prefix is: the first `length` committed rows of sequence (or prefix slot) `source`. */
export interface KvPrefix {
  source: number;
  length: number;
}

/**
 * A step's plan over the cache (Model.forward / Model.step): the sequences' rows and the
 * storage's native arguments. Call done() once the native call succeeded.
 */
export interface KvStepPlan {
  /** The cache's part of the native options (k and v, or kvQuant). */
  args: KvNativeArgs;
  /** First row of each step sequence's region, and its committed rows before the step. */
  kvStart: Int32Array;
  kvLenBefore: Int32Array;
  /** Rows of the last step sequence's region (the native step's commit plan). */
  regionRows: number;
  /** Shared prefixes of the step's sequences (native `prefix`), when any has one. */
  prefix?: NativePrefixArgs;
  /**
   * Records the call's effect: the storage's (int4 quantized lengths), and the committed lengths
   * `newLens` of the step's sequences when the call committed rows (causal steps, native tree
   * steps); a tree forward leaves them unchanged (its nodes wait for commit()).
   */
  done(newLens?: ArrayLike<number>): void;
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
  readonly #storage: KvStorage;
  /** Ordinary sequences (prefix slots not counted). */
  readonly numSequences: number;
  /** Shared-prefix slots (sequences numSequences .. numSequences + numPrefixes - 1). */
  readonly numPrefixes: number;
  readonly dtype: KvCacheDtype;
  /** Committed rows of each region (sequences and prefix slots): the sequence's OWN rows, after its prefix. */
  readonly #lengths: number[];
  /** Each region's shared prefix, if any. */
  readonly #prefix: Array<KvPrefix | undefined>;
  /** Sequences reading each region as their prefix. */
  readonly #referrers: Array<Set<number>>;
  #disposed = false;

  /** f32 / f16 / bf16 caches: the keys [nLayers, capacity * sequences, nKvHeads, headDim]; quantized caches: the code tensors of `quantized`. */
  get k(): Tensor {
    return this.#storage.k;
  }
  /** Values, like k. */
  get v(): Tensor {
    return this.#storage.v;
  }
  /** Rows per sequence. */
  get capacity(): number {
    return this.#storage.capacity;
  }
  /** The quantized storage (quantized dtypes only). */
  get quantized(): QuantizedKv | undefined {
    return this.#storage.quantized;
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
    const prefixes = options.prefixes ?? 0;
    const prefixCapacity = options.prefixCapacity ?? capacity;
    if (!Number.isSafeInteger(prefixes) || prefixes < 0) throw new ArgumentError('prefixes', 'an integer >= 0', prefixes);
    if (!Number.isSafeInteger(prefixCapacity) || prefixCapacity < 1) throw new ArgumentError('prefixCapacity', 'a positive integer', prefixCapacity);
    checkCacheFits(config, device, capacity * sequences + prefixCapacity * prefixes, dtype);
    this.dtype = dtype;
    this.numSequences = sequences;
    this.numPrefixes = prefixes;
    const regions = sequences + prefixes;
    this.#lengths = new Array<number>(regions).fill(0);
    this.#prefix = new Array<KvPrefix | undefined>(regions).fill(undefined);
    this.#referrers = Array.from({ length: regions }, () => new Set<number>());
    this.#storage = isKvQuantFormat(dtype)
      ? new QuantKvStorage(config, device, capacity, sequences, dtype, options, prefixes, prefixCapacity)
      : new PlainKvStorage(config, device, capacity, sequences, dtype, prefixes, prefixCapacity);
  }

  /** The sequence index of prefix slot `j`. */
  prefixSlot(j: number): number {
    if (!Number.isInteger(j) || j < 0 || j >= this.numPrefixes) throw new ArgumentError('slot', `an integer in [0, ${this.numPrefixes - 1}]`, j);
    return this.numSequences + j;
  }

  /** Rows of each prefix slot. */
  get prefixCapacity(): number {
    return this.#storage.prefixCapacity;
  }

  /** Bytes the cache holds on its device (keys and values of every region; quantized: scales and int4 rings included). */
  get bytes(): number {
    return this.#storage.bytes;
  }

  /** Sequence `seq`'s shared prefix, if it has one. */
  prefixOf(seq: number): KvPrefix | undefined {
    this.#check(seq);
    const p = this.#prefix[seq];
    return p ? { ...p } : undefined;
  }

  /**
   * Makes sequence `seq` read the first `length` committed rows of `source` (a prefix slot or
   * another sequence without a prefix of its own) as its shared prefix: `seq` drops its rows and
   * its length becomes `length`; its next tokens go to its own region at positions length, ....
   * `source` is frozen while sequences refer to it. int4: `length` must cover the source's
   * packed keys (quantizedLength(source) <= length).
   */
  attachPrefix(seq: number, source: number, length = this.length(source)): void {
    this.#check(seq);
    this.#check(source);
    if (seq === source) throw new ArgumentError('source', `a sequence other than ${seq}`, source);
    if (this.#prefix[source]) throw new ArgumentError('source', 'a sequence without a shared prefix of its own (one level)', source);
    if (this.#referrers[seq]!.size > 0) throw new ArgumentError('sequence', `a sequence no other sequence reads as its prefix (${[...this.#referrers[seq]!].join(', ')} read ${seq})`, seq);
    if (!Number.isInteger(length) || length < 0 || length > this.#lengths[source]!) {
      throw new ArgumentError('length', `an integer in [0, ${this.#lengths[source]!}] (the source's committed rows)`, length);
    }
    const packed = this.#storage.quantizedLength(source, this.#lengths[source]!);
    if (this.dtype === 'int4' && packed > length) {
      throw new ArgumentError('length', `at least ${packed} (the int4 source's packed keys)`, length);
    }
    this.#detach(seq);
    this.#storage.truncate(seq, 0);
    this.#lengths[seq] = 0;
    if (length === 0) return;
    this.#prefix[seq] = { source, length };
    this.#referrers[source]!.add(seq);
  }

  #detach(seq: number): void {
    const p = this.#prefix[seq];
    if (!p) return;
    this.#referrers[p.source]!.delete(seq);
    this.#prefix[seq] = undefined;
  }

  /** Rows of `seq`'s shared prefix (0 without one). */
  #prefixLength(seq: number): number {
    return this.#prefix[seq]?.length ?? 0;
  }

  /** Own rows `seq` may hold. */
  #room(seq: number): number {
    return seq < this.numSequences ? this.capacity : this.prefixCapacity;
  }

  /** The longest prefix of `seq`'s rows other sequences read (0 when none). */
  #referenced(seq: number): number {
    let n = 0;
    for (const r of this.#referrers[seq]!) n = Math.max(n, this.#prefix[r]!.length);
    return n;
  }

  /** Bytes of cache storage per token (every layer, keys and values; int4 rings not included). */
  get bytesPerToken(): number {
    return this.#storage.bytesPerToken;
  }

  /** int4: keys of sequence `seq` held packed (its shared prefix's and its own; the rest are in rings); other dtypes: its length. */
  quantizedLength(seq: number): number {
    this.#check(seq);
    const p = this.#prefix[seq];
    const prefixPacked = p ? Math.min(p.length, this.#storage.quantizedLength(p.source, this.#lengths[p.source]!)) : 0;
    return prefixPacked + this.#storage.quantizedLength(seq, this.#lengths[seq]!);
  }

  /** int4: quantizes every sequence's completed key groups now (the forward pass also does it); a frozen source only below what its referrers read. */
  async quantizeCompleted(): Promise<void> {
    this.#check(0);
    await this.#storage.quantizeCompleted(this.#lengths.map((len, s) => (this.#referrers[s]!.size > 0 ? Math.min(len, this.#referenced(s)) : len)));
  }

  /**
   * The plan of a step over `sequences` (sorted, distinct) with `newTokens` each: checks they
   * fit (the cache's free rows; int4: the residual rings), returns the native arguments.
   */
  plan(sequences: readonly number[], newTokens: readonly number[]): KvStepPlan {
    sequences.forEach((s, i) => {
      this.#check(s);
      if (this.#referrers[s]!.size > 0) {
        throw new ArgumentError(`step[sequence ${s}]`, `a sequence no other sequence reads as its shared prefix (sequences ${[...this.#referrers[s]!].join(', ')} read it; truncate them to 0 first)`, s);
      }
      const free = this.#room(s) - this.#lengths[s]!;
      if (newTokens[i]! > free) throw new ArgumentError(`step[sequence ${s}].tokens`, `at most ${free} tokens (the cache's free rows)`, newTokens[i]);
    });
    const lengths = sequences.map((s) => this.#lengths[s]!);
    const st = this.#storage.step(sequences, lengths, newTokens);
    return {
      args: st.args,
      kvStart: Int32Array.from(sequences, (s) => this.#storage.start(s)),
      kvLenBefore: Int32Array.from(lengths),
      regionRows: sequences.length ? this.#storage.regionRows(sequences[sequences.length - 1]!) : this.#storage.region,
      ...(sequences.some((s) => this.#prefix[s]) ? { prefix: this.#prefixArgs(sequences) } : {}),
      done: (newLens) => {
        st.done();
        if (newLens) sequences.forEach((s, i) => (this.#lengths[s] = newLens[i]!));
      },
    };
  }

  /** The native `prefix` arguments of a step over `sequences` (len 0 for those without one). */
  #prefixArgs(sequences: readonly number[]): NativePrefixArgs {
    const B = sequences.length;
    const out = { start: new Int32Array(B), len: new Int32Array(B), ...(this.dtype === 'int4' ? { quantLen: new Int32Array(B), resStart: new Int32Array(B) } : {}) };
    sequences.forEach((s, i) => {
      const p = this.#prefix[s];
      if (!p) return;
      const src = this.#storage.prefixSource(p.source, p.length);
      out.start[i] = src.start;
      out.len[i] = p.length;
      if (out.quantLen) {
        out.quantLen[i] = src.quantLen!;
        out.resStart![i] = src.resStart!;
      }
    });
    return out;
  }

  #check(seq: number): void {
    if (this.#disposed) throw new DisposedError('KvCache');
    const n = this.numSequences + this.numPrefixes;
    if (!Number.isInteger(seq) || seq < 0 || seq >= n) {
      throw new ArgumentError('sequence', `an integer in [0, ${n - 1}]`, seq);
    }
  }

  /** First cache row of sequence `seq`'s own region. */
  start(seq: number): number {
    this.#check(seq);
    return this.#storage.start(seq);
  }

  /** Committed rows of sequence `seq` (its shared prefix included). */
  length(seq: number): number {
    this.#check(seq);
    return this.#prefixLength(seq) + this.#lengths[seq]!;
  }

  /** Room left in sequence `seq`. */
  free(seq: number): number {
    this.#check(seq);
    return this.#room(seq) - this.#lengths[seq]!;
  }

  /** Marks `count` more rows of `seq` as committed (after a causal step). */
  advance(seq: number, count: number): void {
    this.#check(seq);
    if (!Number.isInteger(count) || count < 0 || this.#lengths[seq]! + count > this.#room(seq)) {
      throw new ArgumentError('count', `an integer in [0, ${this.#room(seq) - this.#lengths[seq]!}]`, count);
    }
    this.#lengths[seq] = this.#lengths[seq]! + count;
  }

  /**
   * Drops rows past `length` (rollback). int4: rolling back below the quantized length writes
   * the kept keys of the cut group back to the ring, dequantized (synchronously). A sequence
   * with a shared prefix keeps at least the prefix, or is truncated to 0 (which detaches it); a
   * source keeps at least what its referrers read.
   */
  truncate(seq: number, length: number): void {
    this.#check(seq);
    const total = this.length(seq);
    const pre = this.#prefixLength(seq);
    if (!Number.isInteger(length) || length < 0 || length > total) {
      throw new ArgumentError('length', `an integer in [0, ${total}]`, length);
    }
    if (length > 0 && length < pre) throw new ArgumentError('length', `0 or at least the shared prefix's ${pre} rows (in [${pre}, ${total}])`, length);
    const held = this.#referenced(seq);
    if (length < held) throw new ArgumentError('length', `at least ${held} (rows other sequences read as their shared prefix)`, length);
    if (length === 0) this.#detach(seq);
    const own = length === 0 ? 0 : length - pre;
    this.#storage.truncate(seq, own);
    this.#lengths[seq] = own;
  }

  /**
   * After a tree step over `numNodes` uncommitted rows of each listed sequence: keeps the
   * accepted nodes (in path order) right after the committed rows and commits them.
   */
  async commit(entries: Array<{ sequence: number; numNodes: number; acceptedNodes: ArrayLike<number> }>): Promise<void> {
    for (const e of entries) this.#check(e.sequence);
    const seqs = [];
    for (let s = 0; s < this.numSequences + this.numPrefixes; s++) {
      const e = entries.find((x) => x.sequence === s);
      const numNodes = e?.numNodes ?? 0;
      const room = this.#storage.treeRoom(s, this.#lengths[s]!);
      if (numNodes > room) throw new ArgumentError(`entries[sequence ${s}].numNodes`, `at most ${room} (the rows the tree step could use)`, numNodes);
      seqs.push({ prefixLen: this.#lengths[s]!, numNodes, acceptedNodes: e ? Array.from(e.acceptedNodes) : [] });
    }
    const newLens = await this.#storage.commit(seqs);
    newLens.forEach((len, s) => (this.#lengths[s] = len));
  }

  /** Whether fork() and grow() apply (f32 / f16 / bf16 caches). */
  get forkable(): boolean {
    return this.#storage.forkable;
  }

  /**
   * Copies the first `length` committed rows of sequence `from` into sequence `to` (which then
   * has that length): a shared prompt is prefilled once and forked to every sample. When `from`
   * has a shared prefix, `to` gets the same prefix (length must cover it) and a copy of the
   * rows after it. f32 / f16 / bf16 caches only.
   */
  fork(from: number, to: number, length = this.length(from)): void {
    this.#check(from);
    this.#check(to);
    if (!this.forkable) throw new ArgumentError('cache', 'an f32, f16 or bf16 cache to fork', this.dtype);
    const pre = this.#prefix[from];
    const total = this.length(from);
    if (!Number.isInteger(length) || length < (pre?.length ?? 0) || length > total) {
      throw new ArgumentError('length', `an integer in [${pre?.length ?? 0}, ${total}]`, length);
    }
    if (from === to) return;
    if (this.#referrers[to]!.size > 0) throw new ArgumentError('to', 'a sequence no other sequence reads as its shared prefix', to);
    const own = length - (pre?.length ?? 0);
    if (own > this.#room(to)) throw new ArgumentError('length', `at most ${this.#room(to)} own rows for sequence ${to}`, length);
    this.#detach(to);
    this.#storage.fork(from, to, own);
    this.#lengths[to] = own;
    if (pre) {
      this.#prefix[to] = { ...pre };
      this.#referrers[pre.source]!.add(to);
    }
  }

  /** Grows every ordinary sequence's capacity to `capacity` rows (a new allocation; committed rows kept; prefix slots unchanged). f32 / f16 / bf16 caches only. */
  grow(capacity: number): void {
    this.#check(0);
    if (!this.forkable) throw new ArgumentError('cache', 'an f32, f16 or bf16 cache to grow', this.dtype);
    if (!Number.isSafeInteger(capacity) || capacity < this.capacity) throw new ArgumentError('capacity', `an integer >= the current capacity ${this.capacity}`, capacity);
    this.#storage.grow(capacity, this.#lengths);
  }

  /**
   * Copies of the first `count` committed rows of sequence `seq` (keys and values, every
   * layer) as CPU tensors [nLayers, count, nKvHeads, headDim] in the cache's dtype. f32 / f16 /
   * bf16 caches only (session files, lib/chat/session-file.ts).
   */
  async readRows(seq: number, count = this.length(seq)): Promise<{ k: Tensor; v: Tensor }> {
    this.#check(seq);
    if (!(this.#storage instanceof PlainKvStorage)) throw new ArgumentError('cache', 'an f32, f16 or bf16 cache to read rows of', this.dtype);
    if (this.#prefix[seq]) throw new ArgumentError('sequence', 'a sequence without a shared prefix to read rows of', seq);
    if (!Number.isInteger(count) || count < 0 || count > this.#lengths[seq]!) throw new ArgumentError('count', `an integer in [0, ${this.#lengths[seq]!}]`, count);
    return this.#storage.readRows(seq, count);
  }

  /** Writes rows read by readRows() as the first rows of sequence `seq` (which then has that length). */
  async writeRows(seq: number, k: Tensor, v: Tensor): Promise<void> {
    this.#check(seq);
    if (!(this.#storage instanceof PlainKvStorage)) throw new ArgumentError('cache', 'an f32, f16 or bf16 cache to write rows to', this.dtype);
    if (this.#referrers[seq]!.size > 0) throw new ArgumentError('sequence', 'a sequence no other sequence reads as its shared prefix', seq);
    const count = k.shape[1]!;
    const own = this.#storage.k.shape;
    const want = [own[0], count, own[2], own[3]].join();
    for (const [name, t] of [['k', k], ['v', v]] as const) {
      if (t.dtype !== this.dtype || t.shape.join() !== want) throw new ArgumentError(name, `a ${this.dtype} tensor [${want}]`, `${t.dtype} [${t.shape.join()}]`);
    }
    if (count > this.capacity) throw new ArgumentError('k', `at most ${this.capacity} rows (the cache's capacity)`, count);
    this.#detach(seq);
    await this.#storage.writeRows(seq, k, v);
    this.#lengths[seq] = count;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#storage.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
