import type { DraftTree } from '../types.js';

/** Merges chains into a prefix tree (trie), breadth-first, up to `budget` nodes. */
export function mergeChains(chains: number[][], budget: number): DraftTree {
  const tokens: number[] = [];
  const parents: number[] = [];
  const child = new Map<string, number>(); // `${parent}:${token}` -> node
  // Insert level by level so a budget cut keeps shallow nodes of every chain.
  const depth = Math.max(0, ...chains.map((c) => c.length));
  const at: number[] = chains.map(() => -1); // current node of each chain
  for (let d = 0; d < depth; d++) {
    for (let c = 0; c < chains.length; c++) {
      if (d >= chains[c]!.length || at[c] === -2) continue;
      const key = `${at[c]}:${chains[c]![d]}`;
      let node = child.get(key);
      if (node === undefined) {
        if (tokens.length >= budget) {
          at[c] = -2; // this chain is cut here
          continue;
        }
        node = tokens.length;
        tokens.push(chains[c]![d]!);
        parents.push(at[c]!);
        child.set(key, node);
      }
      at[c] = node;
    }
  }
  return { tokens, parents };
}
