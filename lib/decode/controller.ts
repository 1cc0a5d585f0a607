/**
 * The goodput controller: each step, the draft size (chain length or tree node budget, 0
 * included) of every live sequence that maximises the expected tokens per second, from costs
 * and acceptance measured online on this machine and model (SpecDec++, SmartSpec).
 *   costs       a target pass by the rows it computes, the proposer's time by the draft size
 *               (controller-costs.ts: the median of the last 7 per count, linear between; shared
 *               between generations of the same target and proposer: controller-memory.ts)
 *   acceptance  per depth for chains, per node budget for trees (controller-acceptance.ts)
 *   choice      the sizes maximising expected tokens / (draft + verify) ms (controller-search.ts)
 *   exploration a sequence held at size 0 probes the smallest size after `probeEvery` steps; each
 *               probe that does not bring drafting back doubles the wait (up to 16x), a size
 *               chosen on its merits resets it; a batch's probes share steps, and the wait carries
 *               to later generations. While no size could pay even at full acceptance (a draft
 *               as dear as the target: the tiny pair), no search, a probe only after the longest wait.
 *   robustness  a target pass costs at least a plain step (verify(n) >= verify(B)), measured
 *               again every REFRESH steps while drafting; passes over more rows are scaled by
 *               the plain step's cost now over its cost when they were measured (the load moves
 *               both; a busy spell seen only by plain steps must not make a draft look cheap).
 */
import { AcceptanceModel } from './controller-acceptance.js';
import { CostCurve } from './controller-costs.js';
import { couldPay, probeSizes, searchSizes, sizeCandidates } from './controller-search.js';
import type { GoodputOptions, SeqState, StepObservation } from './controller-types.js';

export { CostCurve } from './controller-costs.js';
export type { GoodputOptions, SharedCosts, StepObservation } from './controller-types.js';

export class GoodputController {
  readonly maxDraft: number;
  readonly mode: 'chain' | 'tree';
  readonly verify: CostCurve;
  readonly draft: CostCurve;
  /** Per batch size B: the plain step's cost when passes over more rows were measured (robustness). */
  readonly plainAt: Map<number, CostCurve>;
  readonly #initial: number;
  readonly #probeEvery: number;
  readonly #acc: AcceptanceModel;
  readonly candidates: number[];
  /** Sizes chosen, for the stats: size -> times. */
  readonly chosen = new Map<number, number>();
  /** Plain steps since the last full search that chose size 0 for the whole batch. */
  #idleSearch = -1;
  /** At the last search, no size could pay even at full acceptance (no probes then). */
  #hopeless = false;

  constructor(o: GoodputOptions) {
    this.maxDraft = Math.max(0, Math.floor(o.maxDraft));
    this.mode = o.mode;
    this.#initial = Math.min(o.initial ?? 4, this.maxDraft);
    this.#probeEvery = o.probeEvery ?? 16;
    this.verify = o.costs?.verify ?? new CostCurve(0.25, 7);
    this.draft = o.costs?.draft ?? new CostCurve(0.25, 7);
    this.plainAt = o.costs ? (o.costs.plainAt ??= new Map()) : new Map();
    this.#acc = new AcceptanceModel(this.mode, this.maxDraft, o.priorAcceptance ?? 0.6, o.alpha ?? 0.02, this.#probeEvery, o.costs?.acceptance);
    this.candidates = sizeCandidates(this.mode, this.maxDraft);
  }

  /** Acceptance of depth j for sequence s; expected tokens of a step of size k (controller-acceptance.ts). */
  acceptance = (s: number, j: number): number => this.#acc.acceptance(s, j);
  expectedTokens = (s: number, k: number): number => this.#acc.expectedTokens(s, k);

  /** Estimated ms of the target pass over `rows` rows, and of the proposer at `budget`. */
  verifyCost = (rows: number): number => this.verify.estimate(rows, 0.05) ?? 1;
  // Before any measurement: a cheap draft.
  draftCost = (budget: number): number => (budget === 0 ? 0 : (this.draft.estimate(budget, 1 / Math.max(1, budget), true) ?? 0.1 * this.verifyCost(1) * budget));

  /** Expected tokens per ms of the batch with sizes `ks` (sequences `seqs`). */
  goodput(seqs: readonly number[], ks: readonly number[]): number {
    const tokens = seqs.reduce((t, s, i) => t + this.expectedTokens(s, ks[i]!), 0);
    const rows = ks.reduce((r, k) => r + k + 1, 0);
    return tokens / (this.draftCost(Math.max(0, ...ks)) + this.#verifyAbove(seqs.length)(rows));
  }

  /** verifyCost for a batch of B, never below its plain step; more rows: scaled as the plain step's cost moved (see the top). */
  #verifyAbove(B: number): (rows: number) => number {
    const plain = this.verifyCost(B);
    const scale = plain / (this.plainAt.get(B)?.estimate(0) ?? plain);
    return (rows) => Math.max(plain, (rows > B ? scale : 1) * this.verifyCost(rows));
  }

  /** The draft size of each sequence for this step (sequences: the live ones, in batch order). */
  plan(seqs: readonly number[]): number[] {
    if (this.maxDraft === 0 || seqs.length === 0) return seqs.map(() => 0);
    const states = seqs.map((s) => this.#acc.seq(s));
    // Start: one speculative step at the initial size, then one plain step (the baseline cost).
    if (this.verify.size === 0) return this.#record(seqs.map(() => this.#initial));
    const zeros = seqs.map(() => 0);
    if (!this.verify.has(seqs.length)) return this.#record(zeros);
    // While the search says 0 for everyone, nothing it reads changes but the plain step's
    // cost (acceptance moves only on drafts): search again every `RESEARCH` steps.
    if (this.#idleSearch >= 0 && this.#idleSearch < GoodputController.RESEARCH) {
      this.#idleSearch++;
      return this.#record(this.#probes(states, zeros));
    }
    this.#hopeless = this.draft.observations >= 3 && !couldPay(this.candidates, seqs.length, (k) => this.draftCost(k), this.#verifyAbove(seqs.length));
    const ks = this.#hopeless ? zeros : searchSizes(this.candidates, seqs.map((s) => this.#acc.expectedTable(s)), (k) => this.draftCost(k), this.#verifyAbove(seqs.length));
    this.#idleSearch = ks.every((k) => k === 0) ? 0 : -1;
    // Drafting every step leaves the plain step's cost stale as the load moves: measure it again.
    if (this.#idleSearch < 0 && this.verify.age(seqs.length) > GoodputController.REFRESH) return this.#record(zeros);
    return this.#record(this.#probes(states, ks));
  }

  static readonly RESEARCH = 8; // search again every RESEARCH steps while the search gives 0 to all
  static readonly REFRESH = 32; // a plain step every REFRESH while drafting
  #probes(states: SeqState[], best: number[]): number[] {
    return probeSizes(states, best, this.#probeEvery, this.candidates[1]!, this.#hopeless ? 16 * this.#probeEvery : 0);
  }

  #record = (ks: number[]): number[] => (ks.forEach((k) => this.chosen.set(k, (this.chosen.get(k) ?? 0) + 1)), ks);

  /** Feeds what a step did back into the costs and the acceptance estimates. */
  observe(o: StepObservation): void {
    const B = o.sequences.length;
    if (o.rows > B && this.verify.has(B)) (this.plainAt.get(B) ?? this.plainAt.set(B, new CostCurve(0.25, 7)).get(B)!).observe(0, this.verifyCost(B));
    this.verify.observe(o.rows, o.verifyMs);
    if (o.draftBudget > 0) this.draft.observe(o.draftBudget, o.draftMs);
    this.#acc.observe(o.sequences);
  }
}
