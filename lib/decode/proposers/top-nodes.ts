/**
 * topNodes: a draft tree cut to a node budget, EAGLE-2's reranking.
 */
import type { DraftTree } from '../types.js';

/**
 * The `budget` nodes of highest score (cumulative draft log probability; ties to the earlier
 * node), in their original order with parents renumbered. A child's score is at most its
 * parent's and a parent comes first, so the kept nodes form a tree: a small budget keeps the
 * likeliest path (a chain when the draft is confident), a large one adds the likeliest branches.
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
