/**
 * Blockwise parallel decoding without extra weights: Jacobi iteration with a lookahead
 * n-gram pool (in the manner of Lookahead decoding), verified losslessly.
 *
 * Each sequence keeps a guessed block of k future tokens. A step verifies it as a chain; the
 * target's argmax at every row of the block is its own prediction for the next position
 * given the guess so far, so after the accepted prefix those predictions become the next
 * guess (the Jacobi fixed-point iteration: a block that is already the model's greedy
 * continuation is accepted whole). Every (token -> predicted continuation) trajectory is
 * harvested into an n-gram pool; n-grams starting with the pending token join the guess as
 * extra branches of the draft tree. Deterministic drafts: greedy or point-mass verification.
 */
import type { DraftTree, ProposeContext, Proposer, StepFeedback } from '../types.js';
import { EMPTY_DRAFT } from '../types.js';
import { mergeChains } from './lookup.js';

export interface JacobiOptions {
  /** Guessed block length (default 5). */
  k?: number;
  /** n of the pooled n-grams (default 4). */
  n?: number;
  /** Pool candidates per first token kept / proposed (default 4 / 2). */
  poolSize?: number;
  poolProposals?: number;
}

export class JacobiProposer implements Proposer {
  readonly name = 'jacobi';
  readonly #k: number;
  readonly #n: number;
  readonly #poolSize: number;
  readonly #poolProposals: number;
  /** The target's argmax at every step row (StepFeedback.targetTopK). */
  readonly wantsTopK = 1;
  readonly #guess = new Map<number, number[]>();
  readonly #pool = new Map<number, number[][]>();

  /** `_vocabSize`: kept for the signature (the predictions come as ids). */
  constructor(_vocabSize: number, options: JacobiOptions = {}) {
    this.#k = options.k ?? 5;
    this.#n = options.n ?? 4;
    this.#poolSize = options.poolSize ?? 4;
    this.#poolProposals = options.poolProposals ?? 2;
  }

  start(prompts: readonly (readonly number[])[]): void {
    this.#guess.clear();
    this.#pool.clear();
    // Seed the pool with the prompts' own n-grams.
    for (const p of prompts) for (let i = 0; i + this.#n <= p.length; i++) this.#add(p.slice(i, i + this.#n));
  }

  #add(gram: number[]): void {
    if (gram.length < 2) return;
    const list = this.#pool.get(gram[0]!) ?? [];
    const kept = [gram.slice(1), ...list.filter((g) => g.join(',') !== gram.slice(1).join(','))].slice(0, this.#poolSize);
    this.#pool.set(gram[0]!, kept);
  }

  propose(ctx: ProposeContext): DraftTree {
    const budget = Math.min(ctx.budget, this.#k + this.#poolProposals * (this.#n - 1));
    if (budget <= 0) return EMPTY_DRAFT;
    const pending = ctx.tokens[ctx.tokens.length - 1]!;
    // Initial guess: continue with the sequence's own last tokens (any guess converges).
    let guess = this.#guess.get(ctx.sequence);
    if (!guess || guess.length === 0) guess = ctx.tokens.slice(-this.#k).slice(0, this.#k);
    const chains = [guess.slice(0, Math.min(this.#k, budget)), ...(this.#pool.get(pending) ?? []).slice(0, this.#poolProposals)];
    const tree = mergeChains(chains, budget);
    return tree.tokens.length ? tree : EMPTY_DRAFT;
  }

  feedback(fb: StepFeedback): void {
    const top = fb.targetTopK;
    if (!top) return;
    const d = fb.draft;
    const pred = (row: number) => top[row]!; // -1: the row had no usable logit
    // The guess chain is the branch through node 0 and its first children.
    const chain: number[] = [];
    for (let node = 0, cur = -1; node < d.tokens.length; node++) {
      if (d.parents[node] === cur) {
        chain.push(node);
        cur = node;
      }
    }
    // Harvest trajectories: each drafted token followed by the target's prediction after it.
    for (const node of chain) {
      if (pred(node + 1) >= 0) this.#add([d.tokens[node]!, pred(node + 1)]);
    }
    const accepted = fb.acceptedNodes.length;
    const onChain = fb.acceptedNodes.every((n, i) => chain[i] === n);
    // New guess: the target's predictions past the accepted prefix of the chain.
    const next: number[] = [];
    if (onChain) for (let j = accepted + 1; j < chain.length && pred(chain[j]! + 1) >= 0; j++) next.push(pred(chain[j]! + 1));
    this.#guess.set(fb.sequence, next);
    // n-grams from the emitted run (accepted tokens + next token).
    const run = [fb.pendingToken, ...fb.acceptedNodes.map((n) => d.tokens[n]!), fb.nextToken];
    for (let i = 0; i + this.#n <= run.length; i++) this.#add(run.slice(i, i + this.#n));
  }
}
