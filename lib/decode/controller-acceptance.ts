/**
 * The goodput controller's acceptance model (lib/decode/controller.ts).
 *   chains: per depth j, the probability a_j that draft token j is accepted when tokens
 *           1..j-1 were (decayed mean per sequence, shrunk toward the batch's, the batch's
 *           toward depth j - 1's, depth 0's toward the prior); then
 *             E[tokens](k) = 1 + sum_{i<=k} prod_{j<=i} a_j
 *   trees:  the emitted tokens per step measured per node-budget bucket (EMA); a budget never
 *           measured is valued as a chain of its likely depth plus one token.
 */
import type { StepObservation } from './controller-types.js';

export interface SeqState {
  /** Per depth (0: the first draft token): conditional acceptance EMA and its weight. */
  accept: number[];
  weight: number[];
  /** Steps in a row at size 0. */
  idle: number;
  /** Steps at size 0 before the next probe, and whether the last size was a probe. */
  probeGap: number;
  probed: boolean;
  steps: number;
}

export class AcceptanceModel {
  readonly #seqs = new Map<number, SeqState>();
  /** Batch-wide conditional acceptance per depth (decayed mean) and its weight. */
  readonly #accept: number[] = [];
  readonly #weight: number[] = [];
  /** Tree mode: emitted tokens per sequence-step, per budget bucket. */
  readonly #treeTokens = new Map<number, number>();

  constructor(readonly mode: 'chain' | 'tree', readonly maxDraft: number, readonly prior: number, readonly alpha: number, readonly probeEvery: number) {}

  seq(s: number): SeqState {
    let st = this.#seqs.get(s);
    if (!st) this.#seqs.set(s, (st = { accept: [], weight: [], idle: 0, steps: 0, probeGap: this.probeEvery, probed: false }));
    return st;
  }

  /** Acceptance of depth j for sequence s (see above). */
  acceptance(s: number, j: number): number {
    let glob = this.prior;
    for (let d = 0; d <= j; d++) glob = this.#shrink(this.#accept, this.#weight, d, glob);
    const st = this.#seqs.get(s);
    return st ? this.#shrink(st.accept, st.weight, j, glob) : glob;
  }

  /** A decayed mean shrunk toward `toward` with weight 2. */
  #shrink(mean: number[], weight: number[], j: number, toward: number): number {
    const w = weight[j] ?? 0;
    return w > 0 ? (w * mean[j]! + 2 * toward) / (w + 2) : toward;
  }

  /** Expected emitted tokens of a step of size k for sequence s (the bonus token included). */
  expectedTokens(s: number, k: number): number {
    if (this.mode === 'tree') {
      if (k === 0) return 1;
      const m = this.#treeTokens.get(k);
      // Unmeasured: a chain as deep as a tree of k nodes with two children per level, plus one.
      return m ?? Math.min(1 + k, 1 + this.#chainTokens(s, Math.min(k, Math.ceil(Math.log2(k + 1)))));
    }
    return this.#chainTokens(s, k);
  }

  /** expectedTokens(s, k) for k = 0..maxDraft, in O(maxDraft). */
  expectedTable(s: number): number[] {
    const out = [1];
    if (this.mode === 'tree') {
      for (let k = 1; k <= this.maxDraft; k++) out.push(this.expectedTokens(s, k));
      return out;
    }
    const st = this.#seqs.get(s);
    let glob = this.prior;
    let e = 1;
    let p = 1;
    for (let j = 0; j < this.maxDraft; j++) {
      glob = this.#shrink(this.#accept, this.#weight, j, glob);
      p *= st ? this.#shrink(st.accept, st.weight, j, glob) : glob;
      e += p;
      out.push(e);
    }
    return out;
  }

  #chainTokens(s: number, k: number): number {
    let e = 1;
    let p = 1;
    for (let j = 0; j < k; j++) e += p *= this.acceptance(s, j);
    return e;
  }

  /** Feeds a step's per-sequence outcomes into the acceptance means (exponential forgetting: weights decay by 1 - alpha per step). */
  observe(sequences: StepObservation['sequences']): void {
    const keep = 1 - this.alpha;
    for (let j = 0; j < this.#weight.length; j++) this.#weight[j]! *= keep;
    const add = (mean: number[], weight: number[], j: number, hit: number) => {
      const w = weight[j] ?? 0;
      mean[j] = w > 0 ? (w * mean[j]! + hit) / (w + 1) : hit;
      weight[j] = w + 1;
    };
    for (const x of sequences) {
      const st = this.seq(x.sequence);
      st.steps++;
      st.idle = x.budget === 0 ? st.idle + 1 : 0;
      if (x.drafted === 0) continue;
      if (this.mode === 'tree') {
        const old = this.#treeTokens.get(x.budget); // emitted tokens at this budget: accepted + the bonus token
        this.#treeTokens.set(x.budget, old === undefined ? x.accepted + 1 : old + 0.2 * (x.accepted + 1 - old));
      }
      for (let j = 0; j < st.weight.length; j++) st.weight[j]! *= keep;
      // Depths tested: 0..accepted (the one after the accepted path, when the draft reached it).
      for (let j = 0; j <= Math.min(x.accepted, x.depth - 1); j++) {
        add(st.accept, st.weight, j, j < x.accepted ? 1 : 0);
        add(this.#accept, this.#weight, j, j < x.accepted ? 1 : 0);
      }
    }
  }
}
