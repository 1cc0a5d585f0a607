/**
 * DraftChainProposer: a smaller model sharing the tokenizer guesses k tokens autoregressively
 * (greedy: the draft's argmax, chosen natively by Model.step; sampling, or bias / penalties: the
 * native sampler chain inside the same step, q kept native for lossless verification). Adaptive length: grows by one
 * after a fully accepted step, shrinks by one otherwise, and stops drafting early when the
 * draft's top probability falls below `minProbability`.
 */
import type { Model } from '../../model/model.js';
import { type SamplerChain, chainProcessesLogits, checkSamplerChain } from '../../kernels/sampling.js';
import { QBuffer } from './draft-sample.js';
import { Random } from '../random.js';
import type { DraftTree, ProposeContext, Proposer, StepFeedback } from '../types.js';
import { EMPTY_DRAFT } from '../types.js';
import { type DraftChainOptions, type DraftLengthPolicy, growShrinkPolicy } from './draft-policy.js';
import { DraftState, softmaxMax } from './draft-state.js';

export { type DraftChainOptions, type DraftLengthPolicy, growShrinkPolicy } from './draft-policy.js';

export class DraftChainProposer implements Proposer {
  readonly name = 'speculative';
  readonly #state: DraftState;
  readonly #o: Required<Omit<DraftChainOptions, 'seed' | 'policy' | 'sampler' | 'temperature' | 'topK' | 'topP'>>;
  readonly #chain: SamplerChain;
  readonly #policy: DraftLengthPolicy;
  readonly #k: number[] = [];
  readonly #random: Random;
  readonly #q: QBuffer;
  constructor(draft: Model, options: DraftChainOptions = {}) {
    this.#state = new DraftState(draft);
    this.#q = new QBuffer(draft);
    this.#o = {
      k: options.k ?? 4,
      kMax: options.kMax ?? 8,
      fixed: options.fixed ?? false,
      minProbability: options.minProbability ?? 0,
    };
    const { temperature, topK, topP } = { ...options.sampler, ...options };
    this.#chain = checkSamplerChain({ ...options.sampler, temperature: temperature ?? 0, topK: topK ?? 0, topP: topP ?? 1 });
    this.#random = new Random((options.seed ?? 0) ^ 0x5eed);
    this.#policy = options.policy ?? growShrinkPolicy(this.#o.k, this.#o.kMax);
  }

  start(prompts: readonly (readonly number[])[], capacity: number): void {
    this.#state.start(prompts, capacity);
    this.#q.start(prompts.length, this.#longest());
    this.#k.length = 0;
    prompts.forEach((_, s) => this.#k.push(this.#o.fixed ? this.#o.k : this.#policy.initial(s)));
  }

  async propose(ctx: ProposeContext): Promise<DraftTree> {
    return (await this.proposeBatch([ctx]))[0]!;
  }

  /** One native draft step per position for all (argmax or sampler chain; q stays native: DraftTree.q). */
  async proposeBatch(ctxs: ProposeContext[]): Promise<DraftTree[]> {
    const ks = ctxs.map((c) => Math.max(0, Math.min(this.#k[c.sequence]!, this.#longest(), c.budget, this.#state.cache!.free(c.sequence) - 1)));
    const drafts: DraftTree[] = ctxs.map(() => ({ tokens: [], parents: [] }));
    let active = ctxs.map((_, i) => i).filter((i) => ks[i]! > 0);
    if (active.length === 0) return ctxs.map(() => EMPTY_DRAFT);
    const sampling = this.#chain.temperature > 0;
    const chained = sampling || chainProcessesLogits(this.#chain);
    const wantLogits = !sampling && this.#o.minProbability > 0;
    // q row of ctx i at position pos: qBase[i] + pos, in the ring's rows for this proposal.
    const ring = sampling ? this.#q.take(ks.reduce((a, k) => a + k, 0)) : undefined;
    const q = ring?.tensor;
    const qBase = ks.map((_, i) => (ring?.base ?? 0) + ks.slice(0, i).reduce((a, k) => a + k, 0));
    const choice = (pos: number) =>
      chained
        ? {
            logits: wantLogits,
            chain: this.#chain,
            ...(sampling ? { uniforms: active.map(() => this.#random.next()), q: { tensor: q!, rows: active.map((i) => qBase[i]! + pos) } } : {}),
            contexts: active.map((i) => [...ctxs[i]!.tokens, ...drafts[i]!.tokens]),
          }
        : { logits: wantLogits };
    let rows = await this.#state.sync(active.map((i) => ({ seq: ctxs[i]!.sequence, tokens: ctxs[i]!.tokens })), choice(0));
    for (let pos = 0; active.length; pos++) {
      const next: number[] = [];
      const feed: Array<{ seq: number; token: number }> = [];
      active.forEach((i, a) => {
        const row = rows[a]!;
        if (!sampling && this.#o.minProbability > 0 && pos > 0 && softmaxMax(row.logits!) < this.#o.minProbability) return;
        if (row.token < 0) return; // the draft's logits broke: stop drafting this sequence
        drafts[i]!.tokens.push(row.token);
        drafts[i]!.parents.push(pos - 1);
        if (pos + 1 < ks[i]!) {
          next.push(i);
          feed.push({ seq: ctxs[i]!.sequence, token: row.token });
        }
      });
      if (next.length === 0) break;
      active = next;
      rows = await this.#state.feed(feed, choice(pos + 1));
    }
    return drafts.map((d, i) => {
      if (d.tokens.length === 0) return EMPTY_DRAFT;
      // Row 0: the pending token's children's q; node j's: position j + 1's (the last node has no children).
      if (q) d.q = { tensor: q, rows: d.tokens.map((_, j) => qBase[i]! + j).concat(-1) };
      return d;
    });
  }

  /** The longest draft of a step (the q ring is sized by it). */
  #longest = (): number => Math.max(this.#o.k, this.#o.kMax);

  feedback(fb: StepFeedback): void {
    if (this.#o.fixed) return;
    const k = this.#policy.next(fb.sequence, this.#k[fb.sequence]!, fb.draft.tokens.length, fb.acceptedNodes.length);
    this.#k[fb.sequence] = Math.max(1, Math.min(this.#o.kMax, Math.floor(k)));
  }

  dispose(): void {
    this.#state.dispose();
    this.#q.dispose();
  }
}
