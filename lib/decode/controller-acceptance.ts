/**
 * The goodput controller's acceptance model (lib/decode/controller.ts).
 *   chains: per depth j, the probability a_j that draft token j is accepted when tokens
 *           1..j-1 were (decayed mean per sequence, shrunk toward the batch's, the batch's
 *           toward depth j - 1's, depth 0's toward the prior); then
 *             E[tokens](k) = 1 + sum_{i<=k} prod_{j<=i} a_j
 *   trees:  per node budget k, the emitted tokens per step measured at k (decayed mean, weight
 *           at most 20) shrunk with weight 1 toward the chain value at the depth the trees of
 *           k reached; a budget never measured: the chain value at depth min(k, 6) (a
 *           confident draft's tree of k nodes) plus one token, so that it is tried; at most 1 + k.
 */
import type { SeqState, SharedAcceptance, StepObservation, TreeBucket } from './controller-types.js';

export type { SeqState } from './controller-types.js';

export class AcceptanceModel {
  readonly #seqs = new Map<number, SeqState>();
  /** Batch-wide conditional acceptance per depth (decayed mean) and its weight. */
  readonly #accept: number[];
  readonly #weight: number[];
  /** Tree mode: emitted tokens and depth per sequence-step, per budget bucket. */
  readonly #treeTokens: Map<number, TreeBucket>;
  readonly #memory: { probeGap?: number }; // the start probe gap: shared, or this model's own

  /** `shared`: the batch-wide state of earlier generations (continued and updated in place). */
  constructor(readonly mode: 'chain' | 'tree', readonly maxDraft: number, readonly prior: number, readonly alpha: number, readonly probeEvery: number, shared?: SharedAcceptance) {
    this.#accept = shared?.accept ?? [];
    this.#weight = shared?.weight ?? [];
    this.#treeTokens = shared?.treeTokens ?? new Map();
    this.#memory = shared ?? {};
  }

  seq(s: number): SeqState {
    let st = this.#seqs.get(s);
    if (!st) this.#seqs.set(s, (st = { accept: [], weight: [], idle: 0, steps: 0, probeGap: this.#memory.probeGap ?? this.probeEvery, probed: false }));
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
    const chain = this.#chainTable(s);
    return this.mode === 'tree' ? this.#treeValue(k, (d) => chain[d]!) : chain[Math.min(k, this.maxDraft)]!;
  }

  #treeValue(k: number, chain: (depth: number) => number): number {
    const b = this.#treeTokens.get(k);
    const model = Math.min(1 + k, chain(Math.min(this.maxDraft, Math.round(b?.depth ?? Math.min(k, 6)))));
    // Never measured: one token more than the model (optimism, so each budget is tried).
    return k === 0 ? 1 : b ? (b.weight * b.tokens + model) / (b.weight + 1) : Math.min(1 + k, model + 1);
  }

  /** expectedTokens(s, k) for k = 0..maxDraft, in O(maxDraft). */
  expectedTable(s: number): number[] {
    const out = this.#chainTable(s);
    return this.mode === 'tree' ? out.map((_, k) => this.#treeValue(k, (d) => out[d]!)) : out;
  }

  /** The chain values for k = 0..maxDraft. */
  #chainTable(s: number): number[] {
    const out = [1];
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

  /** A step's outcomes into the means; weights decay by 1 - alpha per step that drafted (a plain stretch keeps what was measured). */
  observe(sequences: StepObservation['sequences']): void {
    const keep = 1 - this.alpha;
    if (sequences.some((x) => x.budget > 0)) for (let j = 0; j < this.#weight.length; j++) this.#weight[j]! *= keep;
    const add = (mean: number[], weight: number[], j: number, hit: number) => {
      const w = weight[j] ?? 0;
      mean[j] = w > 0 ? (w * mean[j]! + hit) / (w + 1) : hit;
      weight[j] = w + 1;
    };
    let gap = Infinity;
    for (let x of sequences) {
      const st = this.seq(x.sequence);
      gap = Math.min(gap, st.probeGap);
      st.steps++;
      st.idle = x.budget === 0 ? st.idle + 1 : 0;
      // Asked for a draft and given none (no n-gram match, an empty table): as if nothing passed.
      if (x.drafted === 0) {
        if (x.budget === 0) continue;
        x = { ...x, depth: 1, accepted: 0 };
      }
      if (this.mode === 'tree') {
        // Emitted tokens at this budget: accepted + the bonus token.
        const b = this.#treeTokens.get(x.budget) ?? { tokens: 0, depth: 0, weight: 0 };
        const w = Math.min(20, b.weight + 1);
        this.#treeTokens.set(x.budget, { tokens: b.tokens + (x.accepted + 1 - b.tokens) / w, depth: b.depth + (x.depth - b.depth) / w, weight: w });
      }
      for (let j = 0; j < st.weight.length; j++) st.weight[j]! *= keep;
      // Depths tested: 0..accepted (the one after the accepted path, when the draft reached it).
      for (let j = 0; j <= Math.min(x.accepted, x.depth - 1); j++) {
        add(st.accept, st.weight, j, j < x.accepted ? 1 : 0);
        add(this.#accept, this.#weight, j, j < x.accepted ? 1 : 0);
      }
    }
    // The start gap of later sequences: the smallest these reached (vain probes double it), at most 4x probeEvery.
    if (Number.isFinite(gap)) this.#memory.probeGap = Math.min(4 * this.probeEvery, gap);
  }
}
