/**
 * DraftTreeProposer: a dynamic draft tree in the manner of EAGLE-2: each depth expands the top-k
 * children of the frontier, keeping the `width` nodes of highest cumulative draft probability;
 * the tree returned is the `budget` nodes of highest probability among them (topNodes). Siblings are deterministic (top-k), so sampling verifies them with point
 * masses. The draft model runs one tree forward per depth over its own cache (draft-state.ts).
 */
import type { Model } from '../../model/model.js';
import type { DraftTree, ProposeContext, Proposer } from '../types.js';
import { EMPTY_DRAFT } from '../types.js';
import { DraftState } from './draft-state.js';
import { topIndices } from './top-indices.js';

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
    const budget = Math.min(this.#o.nodes, ctx.budget, this.#state.cache!.free(ctx.sequence) - 1);
    if (budget <= 0) return EMPTY_DRAFT;
    const rootLogits = (await this.#state.sync([{ seq: ctx.sequence, tokens: ctx.tokens }], true))[0]!.logits!;
    const tokens: number[] = [];
    const parents: number[] = [];
    const score: number[] = []; // cumulative log probability of each node
    // frontier: [node index (-1 = pending), its logits, its score]
    let frontier: Array<{ node: number; logits: Float32Array; score: number }> = [{ node: -1, logits: rootLogits, score: 0 }];
    // A tree of `budget` nodes is at most `budget` deep: expand min(depth, budget) levels of
    // min(width, budget) nodes each, then keep the `budget` nodes of highest score (below).
    const depth = Math.min(this.#o.depth, budget);
    const width = Math.min(this.#o.width, budget);
    for (let d = 0; d < depth && frontier.length; d++) {
      const candidates: Array<{ parent: number; token: number; score: number }> = [];
      for (const f of frontier) {
        const lp = logSoftmax(f.logits);
        for (const t of topIndices(lp, this.#o.topK)) candidates.push({ parent: f.node, token: t, score: f.score + lp[t]! });
      }
      candidates.sort((a, b) => b.score - a.score);
      const chosen = candidates.slice(0, width);
      const added: number[] = [];
      for (const c of chosen) {
        added.push(tokens.length);
        tokens.push(c.token);
        parents.push(c.parent);
        score.push(c.score);
      }
      if (d + 1 >= depth) break;
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
    return topNodes(tokens, parents, score, budget);
  }

  dispose(): void {
    this.#state.dispose();
  }
}

/**
 * The `budget` nodes of highest score (cumulative draft log probability; ties to the earlier
 * node), in their original order with parents renumbered (EAGLE-2's reranking). A child's
 * score is at most its parent's and a parent comes first, so the kept nodes form a tree: a
 * small budget keeps the likeliest path (a chain when the draft is confident), a large one
 * adds the likeliest branches.
 */
export function topNodes(tokens: number[], parents: number[], score: number[], budget: number): DraftTree {
  if (tokens.length <= budget) return { tokens, parents };
  const order = tokens.map((_, i) => i).sort((a, b) => score[b]! - score[a]! || a - b);
  const kept = new Set(order.slice(0, budget));
  const out: DraftTree = { tokens: [], parents: [] };
  const index = new Map<number, number>();
  for (let n = 0; n < tokens.length; n++) {
    const p = parents[n]!;
    // (A NaN score could break the order's guarantee: a node whose parent went is dropped.)
    if (!kept.has(n) || (p >= 0 && !index.has(p))) continue;
    index.set(n, out.tokens.length);
    out.tokens.push(tokens[n]!);
    out.parents.push(p < 0 ? -1 : index.get(p)!);
  }
  return out;
}

function logSoftmax(logits: Float32Array): Float64Array {
  let m = -Infinity;
  for (const x of logits) m = Math.max(m, x);
  let z = 0;
  for (const x of logits) z += Math.exp(x - m);
  const lz = m + Math.log(z);
  return Float64Array.from(logits, (x) => x - lz);
}
