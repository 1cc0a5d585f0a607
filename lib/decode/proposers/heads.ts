/**
 * Prediction-head proposer (Medusa-style): from the target's hidden state at the position
 * that produced the pending token, head i proposes its top candidates for the token i + 1
 * places after the pending one; the draft tree is their cartesian expansion (top-k_i at
 * depth i), cut to a node budget in breadth-first order. Deterministic siblings.
 */
import { type PredictionHeads, headLogits } from '../../model/heads.js';
import { topIndices } from './top-indices.js';
import type { DraftTree, ProposeContext, Proposer } from '../types.js';
import { EMPTY_DRAFT } from '../types.js';

export interface HeadsProposerOptions {
  /** Candidates per depth (default [4, 3, 2, 2, ...] for the heads). */
  topK?: number[];
  /** Node budget (default 24). */
  nodes?: number;
}

export class HeadsProposer implements Proposer {
  readonly name = 'heads';
  readonly wantsHidden = true;
  readonly #heads: PredictionHeads;
  readonly #topK: number[];
  readonly #nodes: number;
  readonly #hidden = new Map<number, Float32Array>();

  constructor(heads: PredictionHeads, options: HeadsProposerOptions = {}) {
    this.#heads = heads;
    this.#topK = options.topK ?? Array.from({ length: heads.count }, (_, i) => [4, 3, 2][i] ?? 2);
    this.#nodes = options.nodes ?? 24;
  }

  /** The loop hands over the hidden state of the row that produced each sequence's pending token. */
  observeHidden(sequence: number, hidden: Float32Array): void {
    this.#hidden.set(sequence, hidden);
  }

  propose(ctx: ProposeContext): DraftTree {
    const h = this.#hidden.get(ctx.sequence);
    const budget = Math.min(this.#nodes, ctx.budget);
    if (!h || budget <= 0) return EMPTY_DRAFT;
    const tokens: number[] = [];
    const parents: number[] = [];
    let frontier = [-1];
    for (let i = 0; i < this.#heads.count && tokens.length < budget; i++) {
      const cands = topIndices(headLogits(this.#heads, i, h), this.#topK[i] ?? 1);
      const next: number[] = [];
      for (const p of frontier) {
        for (const c of cands) {
          if (tokens.length >= budget) break;
          tokens.push(c);
          parents.push(p);
          next.push(tokens.length - 1);
        }
      }
      frontier = next;
    }
    return { tokens, parents };
  }
}
