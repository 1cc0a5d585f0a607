/**
 * topNodes (lib/decode/proposers/top-nodes.ts): a draft tree cut to a node budget keeps the
 * nodes of highest cumulative draft log probability, stays a tree (every kept node's parent
 * kept, parents renumbered, topological order), and with a confident draft a small budget is
 * the likeliest chain, the shape that verifies as deep as a chain of that length.
 */
import { describe, expect, it } from 'vitest';

import { topNodes } from '../../lib/decode/proposers/top-nodes.js';
import { Random } from '../../lib/decode/sampling.js';

/** A tree expanded level by level: `width` nodes per level, each below one of the previous level's. */
function randomTree(rnd: Random, levels: number, width: number) {
  const tokens: number[] = [];
  const parents: number[] = [];
  const score: number[] = [];
  let prev = [-1];
  for (let d = 0; d < levels; d++) {
    const level: number[] = [];
    for (let w = 0; w < width; w++) {
      const p = prev[Math.floor(rnd.next() * prev.length)]!;
      level.push(tokens.length);
      tokens.push(tokens.length + 100);
      parents.push(p);
      score.push((p < 0 ? 0 : score[p]!) + Math.log(rnd.next() + 1e-9));
    }
    prev = level;
  }
  return { tokens, parents, score };
}

describe('topNodes', () => {
  it('keeps the budget nodes of highest score, as a tree in topological order (random trees, every budget)', () => {
    const rnd = new Random(3);
    for (let t = 0; t < 50; t++) {
      const { tokens, parents, score } = randomTree(rnd, 1 + Math.floor(rnd.next() * 6), 1 + Math.floor(rnd.next() * 4));
      for (let budget = 1; budget <= tokens.length + 1; budget++) {
        const out = topNodes(tokens, parents, score, budget);
        expect(out.tokens.length).toBe(Math.min(budget, tokens.length));
        // The kept nodes (tokens are ids + 100) are those of highest score, ties to the earlier node.
        const want = tokens.map((_, i) => i).sort((a, b) => score[b]! - score[a]! || a - b).slice(0, budget).sort((a, b) => a - b);
        expect(out.tokens).toEqual(want.map((i) => tokens[i]!));
        out.parents.forEach((p, i) => {
          expect(p).toBeLessThan(i);
          // The renumbered parent is the original parent.
          const orig = parents[out.tokens[i]! - 100]!;
          expect(p < 0 ? -1 : out.tokens[p]! - 100).toBe(orig);
        });
      }
    }
  });

  it('a confident draft: a small budget is the likeliest chain, a larger one adds the likeliest branch', () => {
    // Level 1: a (p .9), b (.1); below a: c (.8), d (.2); below c: e (.9).
    const tokens = [1, 2, 3, 4, 5];
    const parents = [-1, -1, 0, 0, 2];
    const lp = Math.log;
    const score = [lp(0.9), lp(0.1), lp(0.9 * 0.8), lp(0.9 * 0.2), lp(0.9 * 0.8 * 0.9)];
    expect(topNodes(tokens, parents, score, 3)).toEqual({ tokens: [1, 3, 5], parents: [-1, 0, 1] });
    expect(topNodes(tokens, parents, score, 4)).toEqual({ tokens: [1, 3, 4, 5], parents: [-1, 0, 0, 1] });
  });

  it('ties (a child as likely as its parent) keep the parent first', () => {
    expect(topNodes([7, 8, 9], [-1, 0, -1], [0, 0, 0], 2)).toEqual({ tokens: [7, 8], parents: [-1, 0] });
  });
});
