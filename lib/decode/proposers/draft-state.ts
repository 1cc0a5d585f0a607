/**
 * A draft model's KV cache per sequence, shared by the draft proposers (draft-chain.ts,
 * draft-tree.ts). Before each proposal it drops whatever it cached beyond the tokens the
 * sequence actually kept and feeds the rest as one chunk. Its greedy steps go through the same
 * native call as the target's (Model.step: forward and argmax in one call); the logits rows
 * come to the host only when a proposer asks (sampled drafts, a confidence threshold, trees).
 */
import type { KvCache } from '../../model/kv-cache.js';
import type { Model, StepSequence } from '../../model/model.js';

/** One draft step's outcome for a sequence: the argmax token (-1: no usable logit) and, when asked, the logits row. */
export interface DraftRow {
  token: number;
  logits?: Float32Array;
}

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
  async sync(items: Array<{ seq: number; tokens: readonly number[] }>, logits: boolean): Promise<DraftRow[]> {
    const cache = this.cache!;
    return this.#step(
      items.map(({ seq, tokens }) => {
        const have = this.cached[seq]!;
        let common = 0;
        while (common < have.length && common < tokens.length - 1 && have[common] === tokens[common]) common++;
        cache.truncate(seq, common);
        this.cached[seq] = tokens.slice(0, common);
        const feed = tokens.slice(common);
        this.cached[seq]!.push(...feed);
        return { sequence: seq, tokens: feed };
      }),
      logits,
    );
  }

  /** Feeds one more token per sequence (committed in the draft cache) and steps once. */
  async feed(items: Array<{ seq: number; token: number }>, logits: boolean): Promise<DraftRow[]> {
    return this.#step(
      items.map(({ seq, token }) => {
        this.cached[seq]!.push(token);
        return { sequence: seq, tokens: [token] };
      }),
      logits,
    );
  }

  // Model.step takes sequences in increasing order: sort, then map the rows back to the callers' order.
  async #step(step: StepSequence[], logits: boolean): Promise<DraftRow[]> {
    const sorted = [...step].sort((a, b) => a.sequence - b.sequence);
    const res = await this.draft.step(this.cache!, sorted, { logits });
    const all = res.logits?.toFloat32();
    res.logits?.dispose();
    const vocab = this.draft.config.vocabSize;
    return step.map(({ sequence }) => {
      const b = sorted.findIndex((x) => x.sequence === sequence);
      const token = res.sequences[b]!.nextToken;
      return all ? { token, logits: Float32Array.from(all.subarray(b * vocab, (b + 1) * vocab)) } : { token };
    });
  }

  dispose(): void {
    this.cache?.dispose();
    this.cache = undefined;
  }
}

/** The largest probability of softmax(logits). */
export function softmaxMax(logits: Float32Array): number {
  let m = -Infinity;
  for (const x of logits) m = Math.max(m, x);
  let z = 0;
  for (const x of logits) z += Math.exp(x - m);
  return 1 / z;
}
