/**
 * Prompt lookup (n-gram) proposers, training-free:
 *
 *   LookupProposer     the continuation of the longest earlier occurrence of the context's
 *                      last n tokens (n from maxN down to minN), as a chain of up to k tokens.
 *   NgramTreeProposer  several such continuations (different earlier occurrences) merged into
 *                      a tree (shared prefixes once), up to a node budget.
 * Deterministic drafts: verified greedily, or with the deterministic-sibling rule when sampling.
 */
import type { DraftTree, ProposeContext, Proposer } from '../types.js';
import { EMPTY_DRAFT } from '../types.js';

import { mergeChains } from './merge-chains.js';

export { mergeChains };

export interface LookupOptions {
  /** Longest n-gram to match (default 3). */
  maxN?: number;
  /** Shortest (default 1). */
  minN?: number;
  /** Draft length at most (default 8). */
  k?: number;
}

/** Start positions j (ascending) where tokens[j - n .. j) equals the last n tokens, j < len. */
function matches(tokens: readonly number[], n: number): number[] {
  const len = tokens.length;
  const out: number[] = [];
  if (len < n + 1) return out;
  for (let j = n; j < len; j++) {
    let ok = true;
    for (let t = 0; t < n; t++) {
      if (tokens[j - n + t] !== tokens[len - n + t]) {
        ok = false;
        break;
      }
    }
    if (ok) out.push(j);
  }
  return out;
}

export class LookupProposer implements Proposer {
  readonly name = 'lookup';
  readonly #maxN: number;
  readonly #minN: number;
  readonly #k: number;
  constructor(o: LookupOptions = {}) {
    this.#maxN = o.maxN ?? 3;
    this.#minN = o.minN ?? 1;
    this.#k = o.k ?? 8;
  }
  propose(ctx: ProposeContext): DraftTree {
    const k = Math.min(this.#k, ctx.budget);
    if (k <= 0) return EMPTY_DRAFT;
    for (let n = this.#maxN; n >= this.#minN; n--) {
      const m = matches(ctx.tokens, n);
      // The latest occurrence whose continuation is not the sequence's own end.
      for (let i = m.length - 1; i >= 0; i--) {
        const start = m[i]!;
        if (start >= ctx.tokens.length) continue;
        const cont = ctx.tokens.slice(start, Math.min(start + k, ctx.tokens.length));
        if (cont.length === 0) continue;
        return { tokens: cont, parents: cont.map((_, j) => j - 1) };
      }
    }
    return EMPTY_DRAFT;
  }
}

export class NgramTreeProposer implements Proposer {
  readonly name = 'ngram-tree';
  readonly #maxN: number;
  readonly #minN: number;
  readonly #k: number;
  readonly #candidates: number;
  readonly #budget: number;
  constructor(o: LookupOptions & { candidates?: number; nodes?: number } = {}) {
    this.#maxN = o.maxN ?? 3;
    this.#minN = o.minN ?? 1;
    this.#k = o.k ?? 6;
    this.#candidates = o.candidates ?? 4;
    this.#budget = o.nodes ?? 24;
  }
  propose(ctx: ProposeContext): DraftTree {
    const budget = Math.min(this.#budget, ctx.budget);
    if (budget <= 0) return EMPTY_DRAFT;
    const conts: number[][] = [];
    const seen = new Set<string>();
    for (let n = this.#maxN; n >= this.#minN && conts.length < this.#candidates; n--) {
      const m = matches(ctx.tokens, n);
      for (let i = m.length - 1; i >= 0 && conts.length < this.#candidates; i--) {
        const start = m[i]!;
        const cont = ctx.tokens.slice(start, Math.min(start + this.#k, ctx.tokens.length));
        const key = cont.join(',');
        if (cont.length === 0 || seen.has(key)) continue;
        seen.add(key);
        conts.push(cont);
      }
    }
    return mergeChains(conts, budget);
  }
}
