/**
 * Draft-model proposers: a smaller model sharing the tokenizer guesses ahead.
 *
 *   DraftChainProposer  k tokens drawn autoregressively from the draft (draft-chain.ts)
 *   DraftTreeProposer   a dynamic tree in the manner of EAGLE-2 (draft-tree.ts)
 *
 * The draft keeps its own KV cache per sequence (draft-state.ts).
 */
export { DraftChainProposer, growShrinkPolicy, type DraftChainOptions, type DraftLengthPolicy } from './draft-chain.js';
export { DraftTreeProposer, type DraftTreeOptions } from './draft-tree.js';
export { topIndices } from './top-indices.js';
