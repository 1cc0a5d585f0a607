/**
 * Where a sampled draft's q rows live: one grow-only f32 buffer [rows, vocab] on the draft's
 * device per proposer. The draft's sampled steps (Model.step with sampling.probsInto) write a
 * row per drafted position there and the target's step reads them by reference (DraftTree.q),
 * so q never crosses to JavaScript. A proposal's rows stay valid until the next proposal.
 */
import type { Model } from '../../model/model.js';
import { Tensor } from '../../tensor/tensor.js';

export class QBuffer {
  #t: Tensor | undefined;
  constructor(readonly draft: Model) {}

  /** A buffer of at least `rows` rows (grows by doubling). */
  get(rows: number): Tensor {
    if (!this.#t || this.#t.shape[0]! < rows) {
      const old = this.#t?.shape[0] ?? 0;
      this.#t?.dispose();
      this.#t = Tensor.empty([Math.max(rows, 2 * old), this.draft.config.vocabSize], 'f32', { device: this.draft.device });
    }
    return this.#t;
  }

  dispose(): void {
    this.#t?.dispose();
    this.#t = undefined;
  }
}
