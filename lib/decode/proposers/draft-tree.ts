/**
 * DraftTreeProposer: a dynamic draft tree in the manner of EAGLE-2: each depth expands the top-k
 * children of the frontier, keeping the `width` nodes of highest cumulative draft probability;
 * the tree returned is the `budget` nodes of highest probability among them (topNodes).
 * Siblings are deterministic (top-k), so sampling verifies them with point masses. The whole
 * batch's trees grow together: one native draft call per depth (Model.topK: a tree step over
 * every sequence's tree so far, uncommitted, returning only the top-k ids and log-probabilities
 * of the new nodes; no logits cross to JavaScript).
 */
import type { Model } from '../../model/model.js';
import type { DraftTree, ProposeContext, Proposer } from '../types.js';
import { EMPTY_DRAFT } from '../types.js';
import { type DraftScores, DraftState } from './draft-state.js';
import { topNodes } from './top-nodes.js';

export interface DraftTreeOptions {
  /** Children considered per expanded node (default 4). */
  topK?: number;
  /** Nodes kept per depth (default 4). */
  width?: number;
  /** Tree depth at most (default 6). */
  depth?: number;
  /** Node budget (default 24). */
  nodes?: number;
}

/** One sequence's tree being grown: its nodes, their cumulative log-probabilities, and the frontier. */
interface Growing {
  seq: number;
  /** Nodes returned at most (the budget asked for). */
  budget: number;
  /** Nodes grown at most: min(depth, budget) levels of min(width, budget), within the draft cache. */
  grown: number;
  depth: number;
  width: number;
  tokens: number[];
  parents: number[];
  score: number[];
  frontier: Array<{ node: number; scores: DraftScores; score: number }>;
  added: number[];
}

export class DraftTreeProposer implements Proposer {
  readonly name = 'tree';
  readonly #state: DraftState;
  readonly #o: Required<DraftTreeOptions>;
  constructor(draft: Model, options: DraftTreeOptions = {}) {
    this.#state = new DraftState(draft);
    this.#o = { topK: options.topK ?? 4, width: options.width ?? 4, depth: options.depth ?? 6, nodes: options.nodes ?? 24 };
  }

  start(prompts: readonly (readonly number[])[], capacity: number): void {
    this.#state.start(prompts, capacity);
  }

  async propose(ctx: ProposeContext): Promise<DraftTree> {
    return (await this.proposeBatch([ctx]))[0]!;
  }

  /** The trees of several sequences, one draft call per depth for all of them. */
  async proposeBatch(ctxs: ProposeContext[]): Promise<DraftTree[]> {
    const k = Math.min(this.#o.topK, this.#state.draft.config.vocabSize);
    const grow: Growing[] = [];
    const index: number[] = [];
    ctxs.forEach((ctx, i) => {
      const budget = Math.min(this.#o.nodes, ctx.budget, this.#state.cache!.free(ctx.sequence) - 1);
      if (budget <= 0) return;
      index.push(i);
      // A tree of `budget` nodes is at most `budget` deep: grow min(depth, budget) levels of
      // min(width, budget) nodes each, then keep the `budget` nodes of highest score.
      const depth = Math.min(this.#o.depth, budget);
      const width = Math.min(this.#o.width, budget);
      const grown = Math.min(depth * width, this.#state.cache!.free(ctx.sequence) - 1);
      grow.push({ seq: ctx.sequence, budget, grown, depth, width, tokens: [], parents: [], score: [], frontier: [], added: [] });
    });
    if (grow.length === 0) return ctxs.map(() => EMPTY_DRAFT);
    const roots = await this.#state.syncScores(
      index.map((i) => ({ seq: ctxs[i]!.sequence, tokens: ctxs[i]!.tokens })),
      k,
    );
    grow.forEach((g, j) => (g.frontier = [{ node: -1, scores: roots[j]!, score: 0 }]));
    let live = grow;
    for (let d = 0; d < this.#o.depth && live.length; d++) {
      live.forEach((g) => this.#expand(g));
      live = live.filter((g) => g.added.length > 0 && d + 1 < g.depth && g.tokens.length < g.grown);
      if (live.length === 0) break;
      const scores = await this.#state.treeScores(
        live.map((g) => ({ seq: g.seq, tokens: g.tokens, parents: g.parents, rows: g.added })),
        k,
      );
      live.forEach((g, j) => (g.frontier = g.added.map((node, i) => ({ node, scores: scores[j]![i]!, score: g.score[node]! }))));
    }
    const out: DraftTree[] = ctxs.map(() => EMPTY_DRAFT);
    grow.forEach((g, j) => (out[index[j]!] = g.tokens.length ? topNodes(g.tokens, g.parents, g.score, g.budget) : EMPTY_DRAFT));
    return out;
  }

  /** One depth of a tree: the frontier's top-k children, the `width` best by cumulative log-probability. */
  #expand(g: Growing): void {
    const candidates: Array<{ parent: number; token: number; score: number }> = [];
    for (const f of g.frontier) {
      f.scores.ids.forEach((t, j) => t >= 0 && candidates.push({ parent: f.node, token: t, score: f.score + f.scores.logprobs[j]! }));
    }
    candidates.sort((a, b) => b.score - a.score);
    g.added = [];
    for (const c of candidates.slice(0, Math.max(0, Math.min(g.width, g.grown - g.tokens.length)))) {
      g.added.push(g.tokens.length);
      g.tokens.push(c.token);
      g.parents.push(c.parent);
      g.score.push(c.score);
    }
  }

  dispose(): void {
    this.#state.dispose();
  }
}
