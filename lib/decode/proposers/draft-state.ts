/**
 * A draft model's KV cache per sequence, shared by the draft proposers (draft-chain.ts,
 * draft-tree.ts). Before each proposal it drops whatever it cached beyond the tokens the
 * sequence actually kept and feeds the rest as one chunk. Its steps go through the same native
 * call as the target's (Model.step: forward and the token choice in one call: the argmax, or the
 * sampler chain with q written to the proposer's buffer; Model.topK for scored candidates); the
 * logits rows come to the host only when a proposer asks (a confidence threshold).
 */
import type { KvCache } from '../../model/kv-cache.js';
import type { Model, StepSampling, StepSequence } from '../../model/model.js';
import { type DraftChoice, type DraftRow, type DraftScores, rowsBack, sortedOrder } from './draft-rows.js';

export { type DraftChoice, type DraftRow, type DraftScores, softmaxMax } from './draft-rows.js';

export class DraftState {
  cache: KvCache | undefined;
  /** Tokens whose keys the draft cache holds (committed), per sequence. */
  cached: number[][] = [];
  constructor(readonly draft: Model) {}

  start(prompts: readonly (readonly number[])[], capacity: number): void {
    this.cache?.dispose();
    this.cache = this.draft.createCache({ capacity, sequences: prompts.length });
    this.cached = prompts.map(() => []);
  }

  /** Brings each sequence's draft cache to `tokens` and steps once after the last (one draft call for all). */
  async sync(items: Array<{ seq: number; tokens: readonly number[] }>, choice: DraftChoice = {}): Promise<DraftRow[]> {
    return this.#step(this.#catchUp(items), choice);
  }

  /** As sync, then the top-k candidates of each sequence's last row instead of a token. */
  async syncScores(items: Array<{ seq: number; tokens: readonly number[] }>, k: number): Promise<DraftScores[]> {
    const step = this.#catchUp(items);
    const order = sortedOrder(step);
    const res = await this.draft.topK(this.cache!, order.map((i) => step[i]!), { k });
    return rowsBack(order, (b) => ({ ids: res.ids.subarray(b * k, (b + 1) * k), logprobs: res.logprobs.subarray(b * k, (b + 1) * k) }));
  }

  /** Feeds one more token per sequence (committed in the draft cache) and steps once. */
  async feed(items: Array<{ seq: number; token: number }>, choice: DraftChoice = {}): Promise<DraftRow[]> {
    return this.#step(
      items.map(({ seq, token }) => {
        this.cached[seq]!.push(token);
        return { sequence: seq, tokens: [token] };
      }),
      choice,
    );
  }

  /**
   * One tree step over each sequence's draft tree so far (uncommitted: the next sync drops it),
   * the top-k candidates of the listed nodes of each (`rows[i]`: node indices of items[i]).
   */
  async treeScores(items: Array<{ seq: number; tokens: number[]; parents: number[]; rows: number[] }>, k: number): Promise<DraftScores[][]> {
    const order = sortedOrder(items.map((x) => ({ sequence: x.seq })));
    const step = order.map((i) => ({ sequence: items[i]!.seq, tokens: items[i]!.tokens, parents: items[i]!.parents }));
    const rows: number[] = [];
    let base = 0;
    for (const i of order) {
      rows.push(...items[i]!.rows.map((n) => base + n));
      base += items[i]!.tokens.length;
    }
    const res = await this.draft.topK(this.cache!, step, { k, logits: rows });
    const out: DraftScores[][] = items.map(() => []);
    let r = 0;
    for (const i of order) {
      for (let j = 0; j < items[i]!.rows.length; j++, r++) out[i]!.push({ ids: res.ids.subarray(r * k, (r + 1) * k), logprobs: res.logprobs.subarray(r * k, (r + 1) * k) });
    }
    return out;
  }

  /** Truncates each sequence's draft cache to what it shares with `tokens` and returns the rest to feed. */
  #catchUp(items: Array<{ seq: number; tokens: readonly number[] }>): StepSequence[] {
    const cache = this.cache!;
    return items.map(({ seq, tokens }) => {
      const have = this.cached[seq]!;
      let common = 0;
      while (common < have.length && common < tokens.length - 1 && have[common] === tokens[common]) common++;
      cache.truncate(seq, common);
      this.cached[seq] = tokens.slice(0, common);
      const feed = tokens.slice(common);
      this.cached[seq]!.push(...feed);
      return { sequence: seq, tokens: feed };
    });
  }

  // Model.step takes sequences in increasing order: sort (with each item's chain inputs), then map the rows back.
  async #step(step: StepSequence[], choice: DraftChoice): Promise<DraftRow[]> {
    const order = sortedOrder(step);
    const pick = <T>(xs: readonly T[] | undefined) => (xs ? order.map((i) => xs[i]!) : undefined);
    let sampling: StepSampling | undefined;
    if (choice.chain) {
      const uniforms = pick(choice.uniforms);
      const contexts = pick(choice.contexts);
      sampling = {
        chain: choice.chain,
        ...(uniforms ? { uniforms: Float64Array.from(uniforms) } : {}),
        ...(contexts ? { contexts } : {}),
        ...(choice.q ? { probsInto: { tensor: choice.q.tensor, rows: pick(choice.q.rows)! } } : {}),
      };
    }
    const res = await this.draft.step(this.cache!, order.map((i) => step[i]!), { logits: choice.logits === true, ...(sampling ? { sampling } : {}) });
    const all = res.logits?.toFloat32();
    res.logits?.dispose();
    const vocab = this.draft.config.vocabSize;
    return rowsBack(order, (b) => {
      const token = res.sequences[b]!.nextToken;
      return all ? { token, logits: Float32Array.from(all.subarray(b * vocab, (b + 1) * vocab)) } : { token };
    });
  }

  dispose(): void {
    this.cache?.dispose();
    this.cache = undefined;
  }
}
