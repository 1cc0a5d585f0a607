/**
 * Where a sampled draft's q rows live: one f32 buffer [rows, vocab] on the draft's device per
 * proposer. The draft's sampled steps (Model.step with sampling.probsInto) write a row per
 * drafted position there and the target's step reads them by reference (DraftTree.q), so q
 * never crosses to JavaScript.
 *
 * Rows are handed out as a ring of 2 * sequences * (kMax + 1) rows: one step's proposals (one
 * proposeBatch, or one propose() per sequence) take at most sequences * kMax of them, so a
 * proposal never reuses rows another proposal of the same step still points to.
 */
import type { Model } from '../../model/model.js';
import { Tensor } from '../../tensor/tensor.js';

export class QBuffer {
  #t: Tensor | undefined;
  #capacity = 0;
  #cursor = 0;
  constructor(readonly draft: Model) {}

  /** Sizes the ring for `sequences` sequences drafting at most kMax tokens each (drops the old one). */
  start(sequences: number, kMax: number): void {
    this.dispose();
    this.#capacity = 2 * Math.max(1, sequences) * (kMax + 1);
  }

  /** `rows` consecutive rows (at most sequences * kMax): the tensor and the first row. */
  take(rows: number): { tensor: Tensor; base: number } {
    if (!this.#t) this.#t = Tensor.empty([this.#capacity, this.draft.config.vocabSize], 'f32', { device: this.draft.device });
    if (this.#cursor + rows > this.#capacity) this.#cursor = 0;
    const base = this.#cursor;
    this.#cursor += rows;
    return { tensor: this.#t, base };
  }

  dispose(): void {
    this.#t?.dispose();
    this.#t = undefined;
    this.#cursor = 0;
  }
}
