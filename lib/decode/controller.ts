/**
 * The goodput controller: each step, the draft size (chain length or tree node budget, 0
 * included) of every live sequence that maximises the expected tokens per second, from
 * costs and acceptance measured online on this machine and model (SpecDec++, SmartSpec).
 *
 *   costs       a target pass as a function of the rows it computes (the batch's pending
 *               tokens plus every draft node): an exponential moving average per row count,
 *               interpolated linearly between measured counts and extrapolated from the two
 *               largest; the proposer's time as a function of the draft size, the same way.
 *   acceptance  chains: per depth j, the probability a_j that draft token j is accepted when
 *               tokens 1..j-1 were (EMA per sequence, shrunk toward the batch's); then
 *                 E[tokens](k) = 1 + sum_{i<=k} prod_{j<=i} a_j
 *               trees (any proposer whose drafts branch): the emitted tokens per step
 *               measured per node-budget bucket (EMA).
 *   choice      for a batch of sequences with sizes k_s, one target pass and the proposer's
 *               work for the largest size:
 *                 goodput = sum_s E_s[tokens](k_s) / (draft(max_s k_s) + verify(sum_s (k_s + 1)))
 *               maximised first over one size K common to the batch, then over each
 *               sequence's size given the others' (coordinate search, to a local optimum).
 *   exploration a sequence held at size 0 probes the smallest size after `probeEvery` steps
 *               (acceptance changes with the text, and one unlucky early step must not stop
 *               drafting for good); each probe that does not bring drafting back doubles
 *               the wait (up to 16x), a size chosen on its merits resets it; a tree budget
 *               never measured is valued as a chain of its likely depth plus one token, and
 *               its first measurement replaces that.
 */

/** Costs (ms) as a function of a count: EMA per count, linear in between and beyond. */
export class CostCurve {
  readonly #ema = new Map<number, number>();
  #keys: number[] = [];
  constructor(readonly alpha = 0.25) {}

  observe(n: number, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const old = this.#ema.get(n);
    if (old === undefined) this.#keys = [...this.#keys, n].sort((a, b) => a - b);
    this.#ema.set(n, old === undefined ? ms : old + this.alpha * (ms - old));
  }

  /** Whether `n` itself has been measured. */
  has(n: number): boolean {
    return this.#ema.has(n);
  }

  get size(): number {
    return this.#ema.size;
  }

  /**
   * The estimated cost at n; undefined when nothing is measured. Between measured counts:
   * linear; beyond the largest: the slope of the two largest (at least 0); below the
   * smallest: the smallest's cost scaled down by the same slope, never below 0.
   */
  estimate(n: number, priorSlope = 0): number | undefined {
    const exact = this.#ema.get(n);
    if (exact !== undefined) return exact;
    if (this.#ema.size === 0) return undefined;
    const keys = this.#keys;
    const v = (k: number) => this.#ema.get(k)!;
    const hi = keys.findIndex((k) => k > n);
    if (hi > 0) {
      const a = keys[hi - 1]!;
      const b = keys[hi]!;
      return v(a) + ((v(b) - v(a)) * (n - a)) / (b - a);
    }
    const slopeOf = (a: number, b: number) => Math.max(0, (v(b) - v(a)) / (b - a));
    if (hi === -1) {
      const last = keys[keys.length - 1]!;
      const slope = keys.length >= 2 ? slopeOf(keys[keys.length - 2]!, last) : priorSlope * v(last);
      return v(last) + slope * (n - last);
    }
    const first = keys[0]!;
    const slope = keys.length >= 2 ? slopeOf(first, keys[1]!) : priorSlope * v(first);
    return Math.max(0, v(first) - slope * (first - n));
  }
}

export interface GoodputOptions {
  /** Largest draft size (chain length or tree nodes) to consider. */
  maxDraft: number;
  /**
   * 'chain': drafts are chains, expected tokens from per-depth acceptance (every length 0..max
   * is a candidate); 'tree': expected tokens measured per node budget (0, 1, 2, 4, ... max).
   */
  mode: 'chain' | 'tree';
  /** Size of a sequence's first speculative step (default min(4, maxDraft)). */
  initial?: number;
  /** A sequence at size 0 probes the smallest size after this many steps (default 16; 0: never); doubled after each vain probe, up to 16x. */
  probeEvery?: number;
  /** Acceptance before any measurement (default 0.6: optimistic, so drafting is tried). */
  priorAcceptance?: number;
  /** Forgetting rate of the acceptance means per step (default 0.02). */
  alpha?: number;
}

/** What one step did, for the controller. */
export interface StepObservation {
  /** Rows the target pass computed (pending tokens + draft nodes of every live sequence). */
  rows: number;
  /** The target pass: forward, verification and KV commit (ms). */
  verifyMs: number;
  /** The proposer's time (ms) and the largest budget it was given (0: not called). */
  draftMs: number;
  draftBudget: number;
  /** Per live sequence: its id, the budget it was given, the draft's size and depth, and how many nodes were accepted. */
  sequences: Array<{ sequence: number; budget: number; drafted: number; depth: number; accepted: number }>;
}

interface SeqState {
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

export class GoodputController {
  readonly maxDraft: number;
  readonly mode: 'chain' | 'tree';
  readonly verify = new CostCurve();
  readonly draft = new CostCurve();
  readonly #o: Required<Omit<GoodputOptions, 'maxDraft' | 'mode'>>;
  readonly #seqs = new Map<number, SeqState>();
  /** Batch-wide conditional acceptance per depth (decayed mean) and its weight. */
  readonly #accept: number[] = [];
  readonly #weight: number[] = [];
  /** Tree mode: emitted tokens per sequence-step, per budget bucket. */
  readonly #treeTokens = new Map<number, number>();
  readonly candidates: number[];
  /** Sizes chosen, for the stats: size -> times. */
  readonly chosen = new Map<number, number>();
  /** Plain steps since the last full search that chose size 0 for the whole batch. */
  #idleSearch = -1;

  constructor(o: GoodputOptions) {
    this.maxDraft = Math.max(0, Math.floor(o.maxDraft));
    this.mode = o.mode;
    this.#o = {
      initial: Math.min(o.initial ?? 4, this.maxDraft),
      probeEvery: o.probeEvery ?? 16,
      priorAcceptance: o.priorAcceptance ?? 0.6,
      alpha: o.alpha ?? 0.02,
    };
    const c = new Set<number>([0]);
    if (this.mode === 'chain') for (let k = 1; k <= this.maxDraft; k++) c.add(k);
    else {
      for (let k = 1; k < this.maxDraft; k *= 2) c.add(k);
      c.add(this.maxDraft);
    }
    this.candidates = [...c].sort((a, b) => a - b);
  }

  #seq(s: number): SeqState {
    let st = this.#seqs.get(s);
    if (!st) this.#seqs.set(s, (st = { accept: [], weight: [], idle: 0, steps: 0, probeGap: this.#o.probeEvery, probed: false }));
    return st;
  }

  /**
   * Acceptance of depth j for sequence s: its own decayed mean shrunk toward the batch's,
   * and the batch's toward depth j - 1's (so a depth not tested for a while drifts back to
   * its neighbour's rate and gets tried again), depth 0's toward the prior.
   */
  acceptance(s: number, j: number): number {
    const glob = this.#batchAcceptance(j);
    const st = this.#seqs.get(s);
    const w = st?.weight[j] ?? 0;
    return w > 0 ? (w * st!.accept[j]! + 2 * glob) / (w + 2) : glob;
  }

  #batchAcceptance(j: number): number {
    let est = this.#o.priorAcceptance;
    for (let d = 0; d <= j; d++) {
      const w = this.#weight[d] ?? 0;
      est = w > 0 ? (w * this.#accept[d]! + 2 * est) / (w + 2) : est;
    }
    return est;
  }

  /** Expected emitted tokens of a step of size k for sequence s (the bonus token included). */
  expectedTokens(s: number, k: number): number {
    if (this.mode === 'tree') {
      if (k === 0) return 1;
      const m = this.#treeTokens.get(k);
      // Unmeasured: a chain as deep as a tree of k nodes with two children per level, with
      // the acceptance measured per depth, plus one (optimism: each budget worth it is tried).
      return m ?? Math.min(1 + k, 1 + this.#chainTokens(s, Math.min(k, Math.ceil(Math.log2(k + 1)))));
    }
    return this.#chainTokens(s, k);
  }

  /** expectedTokens(s, k) for k = 0..maxDraft, in O(maxDraft). */
  #expectedTable(s: number): number[] {
    const out = [1];
    if (this.mode === 'tree') {
      for (let k = 1; k <= this.maxDraft; k++) out.push(this.expectedTokens(s, k));
      return out;
    }
    const st = this.#seqs.get(s);
    let glob = this.#o.priorAcceptance;
    let e = 1;
    let p = 1;
    for (let j = 0; j < this.maxDraft; j++) {
      const gw = this.#weight[j] ?? 0;
      glob = gw > 0 ? (gw * this.#accept[j]! + 2 * glob) / (gw + 2) : glob;
      const w = st?.weight[j] ?? 0;
      p *= w > 0 ? (w * st!.accept[j]! + 2 * glob) / (w + 2) : glob;
      e += p;
      out.push(e);
    }
    return out;
  }

  #chainTokens(s: number, k: number): number {
    let e = 1;
    let p = 1;
    for (let j = 0; j < k; j++) {
      p *= this.acceptance(s, j);
      e += p;
    }
    return e;
  }

  /** Estimated ms of the target pass over `rows` rows, and of the proposer at `budget`. */
  verifyCost(rows: number): number {
    return this.verify.estimate(rows, 0.05) ?? 1;
  }

  draftCost(budget: number): number {
    if (budget === 0) return 0;
    const d = this.draft.estimate(budget, 1 / Math.max(1, budget));
    if (d !== undefined) return d;
    return 0.1 * this.verifyCost(1) * budget; // before any measurement: a cheap draft
  }

  /** Expected tokens per ms of the batch with sizes `ks` (sequences `seqs`). */
  goodput(seqs: readonly number[], ks: readonly number[]): number {
    let tokens = 0;
    let rows = 0;
    let maxK = 0;
    seqs.forEach((s, i) => {
      tokens += this.expectedTokens(s, ks[i]!);
      rows += ks[i]! + 1;
      maxK = Math.max(maxK, ks[i]!);
    });
    return tokens / (this.draftCost(maxK) + this.verifyCost(rows));
  }

  /** The draft size of each sequence for this step (sequences: the live ones, in batch order). */
  plan(seqs: readonly number[]): number[] {
    if (this.maxDraft === 0 || seqs.length === 0) return seqs.map(() => 0);
    const B = seqs.length;
    const states = seqs.map((s) => this.#seq(s));
    // Start: one speculative step at the initial size, then one plain step (the baseline cost).
    if (this.verify.size === 0) return this.#record(seqs.map(() => this.#o.initial));
    if (!this.verify.has(B)) return this.#record(seqs.map(() => 0));
    // While the search says 0 for everyone, nothing it reads changes but the plain step's
    // cost (acceptance moves only on drafts): search again every `RESEARCH` steps, not every
    // step (the search costs about a tiny model's decode step).
    if (this.#idleSearch >= 0 && this.#idleSearch < GoodputController.RESEARCH) {
      this.#idleSearch++;
      return this.#record(this.#probes(states, seqs.map(() => 0)));
    }
    // Tables for this step (goodput() computes the same, one call at a time).
    const expected = seqs.map((s) => this.#expectedTable(s));
    const draftMs = new Map(this.candidates.map((k) => [k, this.draftCost(k)]));
    const verifyMs = new Map<number, number>();
    const fast = (ks: readonly number[]): number => {
      let tokens = 0;
      let rows = 0;
      let maxK = 0;
      ks.forEach((k, i) => {
        tokens += expected[i]![k]!;
        rows += k + 1;
        maxK = Math.max(maxK, k);
      });
      let v = verifyMs.get(rows);
      if (v === undefined) verifyMs.set(rows, (v = this.verifyCost(rows)));
      return tokens / (draftMs.get(maxK)! + v);
    };
    // The best common size, then each sequence's size given the others' (coordinate search,
    // incremental: the batch's token and row sums change by one sequence's terms).
    let ks = seqs.map(() => 0);
    let g = fast(ks);
    for (const K of this.candidates) {
      const trial = seqs.map(() => K);
      const gt = fast(trial);
      if (gt > g) {
        g = gt;
        ks = trial;
      }
    }
    let tokens = 0;
    let rows = 0;
    ks.forEach((k, i) => {
      tokens += expected[i]![k]!;
      rows += k + 1;
    });
    for (let pass = 0, moved = B > 1; moved && pass < 4; pass++) {
      moved = false;
      for (let i = 0; i < B; i++) {
        let othersMax = 0;
        for (let m = 0; m < B; m++) if (m !== i) othersMax = Math.max(othersMax, ks[m]!);
        const cur = ks[i]!;
        for (const k of this.candidates) {
          if (k === ks[i]) continue;
          const t = tokens - expected[i]![cur]! + expected[i]![k]!;
          const n = rows - cur + k;
          let v = verifyMs.get(n);
          if (v === undefined) verifyMs.set(n, (v = this.verifyCost(n)));
          const gt = t / (draftMs.get(Math.max(othersMax, k))! + v);
          if (gt > g + 1e-12) {
            g = gt;
            ks[i] = k;
            moved = true;
          }
        }
        tokens += expected[i]![ks[i]!]! - expected[i]![cur]!;
        rows += ks[i]! - cur;
      }
    }
    this.#idleSearch = ks.every((k) => k === 0) ? 0 : -1;
    return this.#record(this.#probes(states, ks));
  }

  /** Search again every this many steps while the search gives 0 to every sequence. */
  static readonly RESEARCH = 8;

  #probes(states: SeqState[], best: number[]): number[] {
    // Probes: a sequence idle for its probe gap tries the smallest size once; a probe followed
    // by size 0 again doubles the gap, a size chosen on its merits resets it.
    const probe = this.#o.probeEvery;
    return best.map((k, i) => {
      const st = states[i]!;
      if (k > 0) {
        st.probed = false;
        st.probeGap = probe;
        return k;
      }
      if (st.probed) st.probeGap = Math.min(16 * probe, 2 * st.probeGap);
      st.probed = probe > 0 && st.idle >= st.probeGap;
      return st.probed ? this.candidates[1]! : 0;
    });
  }

  #record(ks: number[]): number[] {
    for (const k of ks) this.chosen.set(k, (this.chosen.get(k) ?? 0) + 1);
    return ks;
  }

  /** Feeds what a step did back into the costs and the acceptance estimates. */
  observe(o: StepObservation): void {
    this.verify.observe(o.rows, o.verifyMs);
    if (o.draftBudget > 0) this.draft.observe(o.draftBudget, o.draftMs);
    const keep = 1 - this.#o.alpha;
    for (let j = 0; j < this.#weight.length; j++) this.#weight[j]! *= keep;
    for (const x of o.sequences) {
      const st = this.#seq(x.sequence);
      st.steps++;
      st.idle = x.budget === 0 ? st.idle + 1 : 0;
      if (x.drafted === 0) continue;
      if (this.mode === 'tree') {
        // Emitted tokens of this step at this budget (accepted + the bonus token).
        const old = this.#treeTokens.get(x.budget);
        const v = x.accepted + 1;
        this.#treeTokens.set(x.budget, old === undefined ? v : old + 0.2 * (v - old));
      }
      for (let j = 0; j < st.weight.length; j++) st.weight[j]! *= keep;
      // Depths tested: 0..accepted (the one after the accepted path, when the draft reached it).
      // Means with exponential forgetting: weight w decays by (1 - alpha) per step.
      const add = (mean: number[], weight: number[], j: number, hit: number) => {
        const w = weight[j] ?? 0;
        mean[j] = w > 0 ? (w * mean[j]! + hit) / (w + 1) : hit;
        weight[j] = w + 1;
      };
      for (let j = 0; j <= Math.min(x.accepted, x.depth - 1); j++) {
        const hit = j < x.accepted ? 1 : 0;
        add(st.accept, st.weight, j, hit);
        add(this.#accept, this.#weight, j, hit);
      }
    }
  }
}
