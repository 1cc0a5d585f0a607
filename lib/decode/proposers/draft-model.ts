/**
 * Draft-model proposers: a smaller model sharing the tokenizer guesses ahead.
 *
 *   DraftChainProposer  k tokens drawn autoregressively from the draft through the native
 *                       sampler chain, the generation's own settings (greedy: argmax of the
 *                       biased, penalised logits; sampling: from the draft's processed
 *                       distribution q, recorded for lossless verification; each position
 *                       penalised from its own context, as the target's rows are). Adaptive length: grows by one after a fully
 *                       accepted step, shrinks by one otherwise, and stops drafting early when
 *                       the draft's top probability falls below `minProbability`.
 *   DraftTreeProposer   a dynamic tree in the manner of EAGLE-2: each depth expands the top-k
 *                       children of the frontier, keeping the `width` nodes of highest
 *                       cumulative draft probability, up to a node budget. Siblings are
 *                       deterministic (top-k), so sampling verifies them with point masses.
 *
 * The draft keeps its own KV cache per sequence; before each proposal it drops whatever it
 * cached beyond the tokens the sequence actually kept, and feeds the rest as one chunk.
 */
import type { Model } from '../../model/model.js';
import type { KvCache } from '../../model/kv-cache.js';
import { type SamplerChain, type SamplerChainOptions, chainProcessesLogits, checkSamplerChain, samplingChain } from '../../kernels/sampling.js';
import { Tensor } from '../../tensor/tensor.js';
import { Random, argmax } from '../sampling.js';
import type { DraftTree, ProposeContext, Proposer, StepFeedback } from '../types.js';
import { EMPTY_DRAFT } from '../types.js';

/** Chooses the draft length of each step from what happened in the previous one. */
export interface DraftLengthPolicy {
  /** Draft length of a sequence's first step. */
  initial(sequence: number): number;
  /** Draft length after a step that drafted `drafted` tokens and had `accepted` of them accepted. */
  next(sequence: number, current: number, drafted: number, accepted: number): number;
}

/** The default: grow by one after a fully accepted draft, shrink by one otherwise, within [1, kMax]. */
export function growShrinkPolicy(k: number, kMax: number): DraftLengthPolicy {
  return {
    initial: () => k,
    next: (_seq, current, drafted, accepted) => (drafted > 0 && accepted === drafted ? Math.min(kMax, current + 1) : Math.max(1, current - 1)),
  };
}

export interface DraftChainOptions {
  /** Replaces the default grow/shrink policy (k and kMax then only bound it). */
  policy?: DraftLengthPolicy;
  /** Initial draft length (default 4). */
  k?: number;
  /** Longest draft (default 8). */
  kMax?: number;
  /** Keep k fixed (default false: adaptive). */
  fixed?: boolean;
  /** Stop drafting when the draft's top probability is below this (default 0; e.g. 0.3). */
  minProbability?: number;
  /** Sampling settings for q: the generation's sampler chain (temperature 0: greedy drafts). */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** The rest of the chain (minP, penalties, logitBias), as generate() takes them. */
  sampler?: SamplerChainOptions;
  seed?: number;
}

/** Per-sequence draft cache bookkeeping shared by the draft proposers. */
class DraftState {
  cache: KvCache | undefined;
  /** Tokens whose keys the draft cache holds (committed), per sequence. */
  cached: number[][] = [];
  constructor(readonly draft: Model) {}

  start(prompts: readonly (readonly number[])[], capacity: number): void {
    this.cache?.dispose();
    this.cache = this.draft.createCache({ capacity, sequences: prompts.length });
    this.cached = prompts.map(() => []);
  }

  /** Brings the draft cache to `tokens` and returns the draft's logits after the last one. */
  async sync(seq: number, tokens: readonly number[]): Promise<Float32Array> {
    return (await this.syncBatch([{ seq, tokens }]))[0]!;
  }

  /** sync() for several sequences in one draft forward; logits per sequence, in order. */
  async syncBatch(items: Array<{ seq: number; tokens: readonly number[] }>): Promise<Float32Array[]> {
    const cache = this.cache!;
    const step = items.map(({ seq, tokens }) => {
      const have = this.cached[seq]!;
      let common = 0;
      while (common < have.length && common < tokens.length - 1 && have[common] === tokens[common]) common++;
      cache.truncate(seq, common);
      this.cached[seq] = tokens.slice(0, common);
      const feed = tokens.slice(common);
      this.cached[seq]!.push(...feed);
      return { sequence: seq, tokens: feed };
    });
    return this.#rows(await this.draft.forward(cache, step), step.map((x) => x.sequence));
  }

  /** step() for several sequences in one draft forward. */
  async stepBatch(items: Array<{ seq: number; token: number }>): Promise<Float32Array[]> {
    const step = items.map(({ seq, token }) => {
      this.cached[seq]!.push(token);
      return { sequence: seq, tokens: [token] };
    });
    return this.#rows(await this.draft.forward(this.cache!, step), step.map((x) => x.sequence));
  }

  // forward() returns rows sorted by sequence: map them back to the callers' order.
  #rows(r: { logits: { toFloat32(): Float32Array; dispose(): void } }, order: number[]): Float32Array[] {
    const all = r.logits.toFloat32();
    const vocab = this.draft.config.vocabSize;
    const sorted = [...order].sort((a, b) => a - b);
    const out = order.map((seq) => Float32Array.from(all.subarray(sorted.indexOf(seq) * vocab, (sorted.indexOf(seq) + 1) * vocab)));
    r.logits.dispose();
    return out;
  }

  /** Feeds one more token (committed in the draft cache) and returns the next logits. */
  async step(seq: number, token: number): Promise<Float32Array> {
    return (await this.stepBatch([{ seq, token }]))[0]!;
  }


  dispose(): void {
    this.cache?.dispose();
    this.cache = undefined;
  }
}

function softmaxMax(logits: Float32Array): number {
  let m = -Infinity;
  for (const x of logits) m = Math.max(m, x);
  let z = 0;
  for (const x of logits) z += Math.exp(x - m);
  return 1 / z;
}

export class DraftChainProposer implements Proposer {
  readonly name = 'speculative';
  readonly #state: DraftState;
  readonly #o: Required<Omit<DraftChainOptions, 'seed' | 'policy' | 'sampler' | 'temperature' | 'topK' | 'topP'>>;
  readonly #chain: SamplerChain;
  readonly #policy: DraftLengthPolicy;
  readonly #k: number[] = [];
  readonly #random: Random;
  constructor(draft: Model, options: DraftChainOptions = {}) {
    this.#state = new DraftState(draft);
    this.#o = {
      k: options.k ?? 4,
      kMax: options.kMax ?? 8,
      fixed: options.fixed ?? false,
      minProbability: options.minProbability ?? 0,
    };
    this.#chain = checkSamplerChain({
      ...options.sampler,
      temperature: options.temperature ?? options.sampler?.temperature ?? 0,
      topK: options.topK ?? options.sampler?.topK ?? 0,
      topP: options.topP ?? options.sampler?.topP ?? 1,
    });
    this.#random = new Random((options.seed ?? 0) ^ 0x5eed);
    this.#policy = options.policy ?? growShrinkPolicy(this.#o.k, this.#o.kMax);
  }

  start(prompts: readonly (readonly number[])[], capacity: number): void {
    this.#state.start(prompts, capacity);
    this.#k.length = 0;
    prompts.forEach((_, s) => this.#k.push(this.#o.fixed ? this.#o.k : this.#policy.initial(s)));
  }

  async propose(ctx: ProposeContext): Promise<DraftTree> {
    return (await this.proposeBatch([ctx]))[0]!;
  }

  /** Chains for several sequences with one draft forward per drafted position. */
  async proposeBatch(ctxs: ProposeContext[]): Promise<DraftTree[]> {
    const ks = ctxs.map((c) => Math.max(0, Math.min(this.#k[c.sequence]!, c.budget, this.#state.cache!.free(c.sequence) - 1)));
    const drafts: DraftTree[] = ctxs.map(() => ({ tokens: [], parents: [] }));
    const probs: Float32Array[][] = ctxs.map(() => []);
    let active = ctxs.map((_, i) => i).filter((i) => ks[i]! > 0);
    if (active.length === 0) return ctxs.map(() => EMPTY_DRAFT);
    let logits = await this.#state.syncBatch(active.map((i) => ({ seq: ctxs[i]!.sequence, tokens: ctxs[i]!.tokens })));
    const sampling = this.#chain.temperature > 0;
    const native = sampling || chainProcessesLogits(this.#chain);
    const vocab = this.#state.draft.config.vocabSize;
    for (let pos = 0; active.length; pos++) {
      const next: number[] = [];
      const feed: Array<{ seq: number; token: number }> = [];
      // The chain over this position's rows: tokens (and q when sampling), each row penalised
      // from its own context (the sequence's tokens, then the drafts so far).
      let chosen: Int32Array | undefined;
      let q: Float32Array | undefined;
      if (native) {
        const rows = new Float32Array(active.length * vocab);
        active.forEach((_, a) => rows.set(logits[a]!, a * vocab));
        const uniforms = sampling ? Float64Array.from(active, () => this.#random.next()) : undefined;
        const contexts = active.map((i) => [...ctxs[i]!.tokens, ...drafts[i]!.tokens]);
        const res = await samplingChain(Tensor.from(rows, { shape: [active.length, vocab] }), this.#chain, { contexts, ...(uniforms ? { uniforms } : {}), probs: sampling });
        chosen = res.tokens;
        q = res.probs?.toFloat32();
        res.probs?.dispose();
      }
      active.forEach((i, a) => {
        const row = logits[a]!;
        if (!sampling && this.#o.minProbability > 0 && pos > 0 && softmaxMax(row) < this.#o.minProbability) return;
        const token = chosen ? chosen[a]! : argmax(row);
        if (token < 0) return; // the draft's row has no finite distribution: stop drafting here
        if (q) probs[i]!.push(q.slice(a * vocab, (a + 1) * vocab));
        drafts[i]!.tokens.push(token);
        drafts[i]!.parents.push(pos - 1);
        if (pos + 1 < ks[i]!) {
          next.push(i);
          feed.push({ seq: ctxs[i]!.sequence, token });
        }
      });
      if (next.length === 0) break;
      logits = await this.#state.stepBatch(feed);
      active = next;
    }
    return drafts.map((d, i) => {
      if (d.tokens.length === 0) return EMPTY_DRAFT;
      if (sampling) d.draftProbs = [...probs[i]!, probs[i]![probs[i]!.length - 1]!];
      return d;
    });
  }

  feedback(fb: StepFeedback): void {
    if (this.#o.fixed) return;
    const k = this.#policy.next(fb.sequence, this.#k[fb.sequence]!, fb.draft.tokens.length, fb.acceptedNodes.length);
    this.#k[fb.sequence] = Math.max(1, Math.min(this.#o.kMax, Math.floor(k)));
  }

  dispose(): void {
    this.#state.dispose();
  }
}


export interface DraftTreeOptions {
  /** Children considered per expanded node (default 4). */
  topK?: number;
  /** Nodes kept per depth (default 4). */
  width?: number;
  /** Tree depth at most (default 5). */
  depth?: number;
  /** Node budget (default 24). */
  nodes?: number;
}

export class DraftTreeProposer implements Proposer {
  readonly name = 'tree';
  readonly #state: DraftState;
  readonly #o: Required<DraftTreeOptions>;
  constructor(draft: Model, options: DraftTreeOptions = {}) {
    this.#state = new DraftState(draft);
    this.#o = { topK: options.topK ?? 4, width: options.width ?? 4, depth: options.depth ?? 5, nodes: options.nodes ?? 24 };
  }

  start(prompts: readonly (readonly number[])[], capacity: number): void {
    this.#state.start(prompts, capacity);
  }

  async propose(ctx: ProposeContext): Promise<DraftTree> {
    const budget = Math.min(this.#o.nodes, ctx.budget, this.#state.cache!.free(ctx.sequence) - 1);
    if (budget <= 0) return EMPTY_DRAFT;
    const rootLogits = await this.#state.sync(ctx.sequence, ctx.tokens);
    const tokens: number[] = [];
    const parents: number[] = [];
    const score: number[] = []; // cumulative log probability of each node
    // frontier: [node index (-1 = pending), its logits, its score]
    let frontier: Array<{ node: number; logits: Float32Array; score: number }> = [{ node: -1, logits: rootLogits, score: 0 }];
    for (let d = 0; d < this.#o.depth && tokens.length < budget && frontier.length; d++) {
      const candidates: Array<{ parent: number; token: number; score: number }> = [];
      for (const f of frontier) {
        const lp = logSoftmax(f.logits);
        for (const t of topIndices(lp, this.#o.topK)) candidates.push({ parent: f.node, token: t, score: f.score + lp[t]! });
      }
      candidates.sort((a, b) => b.score - a.score);
      const chosen = candidates.slice(0, Math.min(this.#o.width, budget - tokens.length));
      const added: number[] = [];
      for (const c of chosen) {
        added.push(tokens.length);
        tokens.push(c.token);
        parents.push(c.parent);
        score.push(c.score);
      }
      if (d + 1 >= this.#o.depth || tokens.length >= budget) break;
      // One draft tree step over the whole tree so far (uncommitted), logits of the new nodes.
      const { logits } = await this.#state.draft.forward(
        this.#state.cache!,
        [{ sequence: ctx.sequence, tokens, parents }],
        { logits: added },
      );
      const all = logits.toFloat32();
      const vocab = this.#state.draft.config.vocabSize;
      frontier = added.map((node, i) => ({ node, logits: all.slice(i * vocab, (i + 1) * vocab), score: score[node]! }));
      logits.dispose();
    }
    return { tokens, parents };
  }

  dispose(): void {
    this.#state.dispose();
  }
}

function logSoftmax(logits: Float32Array): Float64Array {
  let m = -Infinity;
  for (const x of logits) m = Math.max(m, x);
  let z = 0;
  for (const x of logits) z += Math.exp(x - m);
  const lz = m + Math.log(z);
  return Float64Array.from(logits, (x) => x - lz);
}

/** Indices of the k largest values, largest first (ties: lower index first). O(n k). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (best.length === k && !(v > values[best[k - 1]!]!)) continue;
    // Insert after every kept index with a value >= v (earlier indices win ties), keep k.
    let pos = best.length;
    while (pos > 0 && v > values[best[pos - 1]!]!) pos--;
    best.splice(pos, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}
