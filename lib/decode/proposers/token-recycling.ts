/**
 * Token recycling (training-free): an adjacency table of the top-k tokens the TARGET itself
 * ranked after each token, refreshed from every step's logits (candidates the verifier
 * rejected are "recycled"). A draft tree grows breadth-first from the pending token through
 * the table: the children of a token are its k recorded successors, up to a node budget.
 * Deterministic siblings: greedy or point-mass sampling verification.
 */
import type { DraftTree, ProposeContext, Proposer, StepFeedback } from '../types.js';
import { EMPTY_DRAFT } from '../types.js';

export interface TokenRecyclingOptions {
  /** Successors recorded per token (default 4). */
  k?: number;
  /** Node budget (default 24). */
  nodes?: number;
  /** Depth at most (default 6). */
  depth?: number;
}

export class TokenRecyclingProposer implements Proposer {
  readonly name = 'token-recycling';
  readonly #k: number;
  readonly #nodes: number;
  readonly #depth: number;
  readonly #table = new Map<number, number[]>();
  /** The target's top-k successors at every step row (StepFeedback.targetTopK). */
  readonly wantsTopK: number;

  /** `_vocabSize`: kept for the signature (the successors come as ids). */
  constructor(_vocabSize: number, options: TokenRecyclingOptions = {}) {
    this.#k = options.k ?? 4;
    this.wantsTopK = this.#k;
    this.#nodes = options.nodes ?? 24;
    this.#depth = options.depth ?? 6;
  }

  start(prompts: readonly (readonly number[])[]): void {
    // Seed the table with the prompts' own bigrams (most recent first).
    for (const p of prompts) {
      for (let i = 0; i + 1 < p.length; i++) this.#record(p[i]!, [p[i + 1]!]);
    }
  }

  #record(token: number, successors: number[]): void {
    const old = this.#table.get(token) ?? [];
    const merged = [...successors, ...old.filter((t) => !successors.includes(t))].slice(0, this.#k);
    this.#table.set(token, merged);
  }

  propose(ctx: ProposeContext): DraftTree {
    const budget = Math.min(this.#nodes, ctx.budget);
    if (budget <= 0) return EMPTY_DRAFT;
    const pending = ctx.tokens[ctx.tokens.length - 1]!;
    const tokens: number[] = [];
    const parents: number[] = [];
    let frontier: Array<{ node: number; token: number }> = [{ node: -1, token: pending }];
    for (let d = 0; d < this.#depth && frontier.length && tokens.length < budget; d++) {
      const next: typeof frontier = [];
      for (const f of frontier) {
        for (const t of this.#table.get(f.token) ?? []) {
          if (tokens.length >= budget) break;
          tokens.push(t);
          parents.push(f.node);
          next.push({ node: tokens.length - 1, token: t });
        }
      }
      // Deeper levels follow only the best successor of each node, keeping the tree narrow.
      frontier = next.filter((_, i) => d === 0 || i % this.#k === 0);
    }
    return tokens.length ? { tokens, parents } : EMPTY_DRAFT;
  }

  feedback(fb: StepFeedback): void {
    const top = fb.targetTopK;
    if (!top) return;
    const rows = fb.draft.tokens.length + 1;
    for (let r = 0; r < rows; r++) {
      const tok = r === 0 ? fb.pendingToken : fb.draft.tokens[r - 1]!;
      this.#record(tok, Array.from(top.subarray(r * this.#k, (r + 1) * this.#k)).filter((t) => t >= 0));
    }
  }
}
