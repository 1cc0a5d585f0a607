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
 *               chosen on its merits resets it. After 3 drafting steps, while no size could pay
 *               even if every draft token passed, (B + k) / (draft(k) + verify(B + k)) <=
 *               B / verify(B) for every k (a draft as dear as the target: the tiny pair), no
 *               search, and a probe only after the longest wait.
 *   robustness  a target pass costs at least a plain step (verify(n) >= verify(B)), measured
 *               again every REFRESH steps while drafting.
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
  /** Per batch size B: the plain step's estimated cost when passes over more rows were measured. */
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
  verifyCost(rows: number): number {
    return this.verify.estimate(rows, 0.05) ?? 1;
  }
  draftCost(budget: number): number {
    if (budget === 0) return 0;
    return this.draft.estimate(budget, 1 / Math.max(1, budget), true) ?? 0.1 * this.verifyCost(1) * budget; // before any measurement: a cheap draft
  }

  /** Expected tokens per ms of the batch with sizes `ks` (sequences `seqs`). */
  goodput(seqs: readonly number[], ks: readonly number[]): number {
    const tokens = seqs.reduce((t, s, i) => t + this.expectedTokens(s, ks[i]!), 0);
    const rows = ks.reduce((r, k) => r + k + 1, 0);
    return tokens / (this.draftCost(Math.max(0, ...ks)) + this.#verifyAbove(seqs.length)(rows));
  }

  /**
   * verifyCost for a batch of B, never below its plain step (more rows never cost less); more
   * rows: scaled by the plain step's cost now over its cost when those passes were measured (a
   * busy or quiet spell seen only by plain steps must not make drafting look cheap or dear).
   */
  #verifyAbove(B: number): (rows: number) => number {
    const plain = this.verifyCost(B);
    const then = this.plainAt.get(B)?.estimate(0);
    const scale = then ? plain / then : 1;
    return (rows) => Math.max(plain, rows > B ? scale * this.verifyCost(rows) : this.verifyCost(rows));
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

  /** Search again every RESEARCH steps while the search gives 0 to all; a plain step every REFRESH while drafting. */
  static readonly RESEARCH = 8;
  static readonly REFRESH = 32;
  #probes(states: SeqState[], best: number[]): number[] {
    return probeSizes(states, best, this.#probeEvery, this.candidates[1]!, this.#hopeless ? 16 * this.#probeEvery : 0);
  }

  #record(ks: number[]): number[] {
    for (const k of ks) this.chosen.set(k, (this.chosen.get(k) ?? 0) + 1);
    return ks;
  }

  /** Feeds what a step did back into the costs and the acceptance estimates. */
  observe(o: StepObservation): void {
    const B = o.sequences.length;
    if (o.rows > B && this.verify.has(B)) {
      if (!this.plainAt.has(B)) this.plainAt.set(B, new CostCurve(0.25, 7));
      this.plainAt.get(B)!.observe(0, this.verifyCost(B));
    }
    this.verify.observe(o.rows, o.verifyMs);
    if (o.draftBudget > 0) this.draft.observe(o.draftBudget, o.draftMs);
    this.#acc.observe(o.sequences);
  }
}
