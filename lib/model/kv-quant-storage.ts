/**
 * Quantized KV storage (int8 / int4 / fp8; lib/kernels/kv-quant.ts, csrc/common/kv_quant.h)
 * behind the KvStorage interface of kv-storage.ts. The forward pass appends each step's keys
 * quantized (int8 / fp8 per (token, head) row; int4 into a 16-bit residual ring per sequence)
 * and attention reads them dequantizing on load. int4 quantizes completed key groups (groups
 * older than the newest `residual` committed keys) at the start of each step (the step's
 * quantLenAfter), or when quantizeCompleted() is called; rolling back into a quantized group
 * writes the kept keys of that group back to the ring, dequantized (they keep exactly the
 * values attention saw).
 */
import { ArgumentError } from '../errors.js';
import type { KvCommitSequence } from '../kernels/kv-commit.js';
import { type KvQuantFormat, QuantizedKv, commitQuantizedKv, quantizeKvGroups, restoreKvGroupsSync } from '../kernels/kv-quant.js';
import type { Device } from '../native/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import type { FloatDType } from '../tensor/dtype.js';
import type { ModelConfig } from './config.js';
import { type KvStorage, type KvStorageStep, notForkable } from './kv-storage.js';

export interface QuantKvStorageOptions {
  group?: 32 | 64 | 128;
  residual?: number;
  residualCapacity?: number;
  residualDtype?: FloatDType;
}

export class QuantKvStorage implements KvStorage {
  readonly quantized: QuantizedKv;
  readonly region: number;
  /** Rows of each shared-prefix slot's region (a multiple of the int4 group). */
  readonly prefixRegion: number;
  readonly forkable = false;
  /** int4: keys [0, quantLen) of each sequence (and prefix slot) are packed. */
  readonly #quantLens: number[];
  readonly #int4: boolean;

  constructor(
    config: ModelConfig,
    device: Device,
    readonly capacity: number,
    readonly sequences: number,
    readonly format: KvQuantFormat,
    o: QuantKvStorageOptions,
    readonly prefixes = 0,
    readonly prefixCapacity = capacity,
  ) {
    this.#int4 = format === 'int4';
    const group = this.#int4 ? (o.group ?? 32) : 1;
    this.region = Math.ceil(capacity / group) * group;
    this.prefixRegion = Math.ceil(prefixCapacity / group) * group;
    this.#quantLens = new Array<number>(sequences + prefixes).fill(0);
    this.quantized = new QuantizedKv({
      format,
      rows: this.region * sequences + this.prefixRegion * prefixes,
      numKvHeads: config.nKvHeads,
      headDim: config.headDim,
      layers: config.nLayers,
      device,
      ...(this.#int4
        ? {
            group: group as 32 | 64 | 128,
            rings: sequences + prefixes,
            ...(o.residual !== undefined ? { residual: o.residual } : {}),
            ...(o.residualCapacity !== undefined ? { ring: o.residualCapacity } : {}),
            ...(o.residualDtype !== undefined ? { residualDtype: o.residualDtype } : {}),
          }
        : {}),
    });
  }

  get k(): Tensor {
    return this.quantized.k;
  }
  get v(): Tensor {
    return this.quantized.v;
  }
  start(seq: number): number {
    return seq < this.sequences ? seq * this.region : this.sequences * this.region + (seq - this.sequences) * this.prefixRegion;
  }

  regionRows(seq: number): number {
    return seq < this.sequences ? this.region : this.prefixRegion;
  }

  /** int4: keys [0, quantLen) of the prefix are packed, the rest in `seq`'s ring (the cache keeps length >= quantLen). */
  prefixSource(seq: number): { start: number; quantLen?: number; resStart?: number } {
    if (!this.#int4) return { start: this.start(seq) };
    return { start: this.start(seq), quantLen: this.#quantLens[seq]!, resStart: seq * this.quantized.ring };
  }

  get bytes(): number {
    const q = this.quantized;
    return [q.k, q.v, q.kScale, q.vScale, q.kZero, q.vZero, q.resK, q.resV].reduce((sum, t) => sum + (t?.byteLength ?? 0), 0);
  }

  get bytesPerToken(): number {
    return this.quantized.bytesPerToken * this.quantized.k.shape[0]!;
  }

  /** int4: the quantized length sequence `seq` of committed `length` reaches once its completed groups are quantized. */
  #target(seq: number, length: number): number {
    const q = this.quantized;
    const n = length - q.residual;
    return Math.max(this.#quantLens[seq]!, n <= 0 ? 0 : Math.floor(n / q.group) * q.group);
  }

  #layout(): { kvStart: number[]; resStart: number[] } {
    const n = this.sequences + this.prefixes;
    const kvStart = Array.from({ length: n }, (_, s) => this.start(s));
    const resStart = Array.from({ length: n }, (_, s) => s * (this.#int4 ? this.quantized.ring : 0));
    return { kvStart, resStart };
  }

  step(sequences: readonly number[], lengths: readonly number[], newTokens: readonly number[]): KvStorageStep {
    const q = this.quantized;
    const before = sequences.map((s) => this.#quantLens[s]!);
    const after = sequences.map((s, i) => (this.#int4 ? this.#target(s, lengths[i]!) : 0));
    if (this.#int4) {
      sequences.forEach((s, i) => {
        const free = q.ring - (lengths[i]! - after[i]!);
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
    const int4 = this.#int4
      ? { resStart: Int32Array.from(sequences, (s) => resStart[s]!), quantLenBefore: Int32Array.from(before), quantLenAfter: Int32Array.from(after) }
      : {};
    return {
      args: { kvQuant: { cache: q.descriptor('cache'), ...int4 } },
      done: () => sequences.forEach((s, i) => (this.#quantLens[s] = this.#int4 ? after[i]! : 0)),
    };
  }

  treeRoom(seq: number, length: number): number {
    return this.#int4 ? this.quantized.ring - (length - this.#quantLens[seq]!) : this.regionRows(seq) - length;
  }

  commit(sequences: readonly KvCommitSequence[]): Promise<number[]> {
    return commitQuantizedKv(this.quantized, this.#layout(), sequences);
  }

  truncate(seq: number, length: number): void {
    if (!this.#int4 || length >= this.#quantLens[seq]!) return;
    const q = this.quantized;
    const from = Math.floor(length / q.group) * q.group;
    const { kvStart, resStart } = this.#layout();
    restoreKvGroupsSync(q, { kvStart: [kvStart[seq]!], resStart: [resStart[seq]!], from: [from], to: [length] });
    this.#quantLens[seq] = from;
  }

  quantizedLength(seq: number, length: number): number {
    return this.#int4 ? this.#quantLens[seq]! : length;
  }

  async quantizeCompleted(lengths: readonly number[]): Promise<void> {
    if (!this.#int4) return;
    const from = this.#quantLens.slice();
    const to = from.map((_, s) => this.#target(s, lengths[s]!));
    if (to.every((t, s) => t === from[s])) return;
    await quantizeKvGroups(this.quantized, { ...this.#layout(), from, to });
    to.forEach((t, s) => (this.#quantLens[s] = t));
  }

  fork(): void {
    notForkable(this.format, 'fork');
  }

  grow(): void {
    notForkable(this.format, 'grow');
  }

  dispose(): void {
    this.quantized.dispose();
  }
}
