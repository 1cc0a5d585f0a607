/**
 * Shared prompt prefixes for a decode run: when every prompt of a batch starts with the same
 * tokens (n samples of one prompt, a common system prompt), the cache holds them once, in a
 * prefix slot, and every sequence refers to it (KvCache.attachPrefix): the forward pass then
 * attends to the prefix through prefix attention (csrc/common/llama.h) instead of reading a
 * forked copy per sequence. KV bytes: prefix + B x own rows instead of B x (prefix + own).
 */
import type { LoopOptions } from './loop-options.js';

/** Tokens the prompts have in common at their start. */
export function commonPrefixLength(prompts: readonly (readonly number[])[]): number {
  if (prompts.length === 0) return 0;
  let n = Math.min(...prompts.map((p) => p.length));
  for (const p of prompts) {
    let i = 0;
    while (i < n && p[i] === prompts[0]![i]) i++;
    n = i;
  }
  return n;
}

/**
 * The prefix a run shares (0: none): the prompts' common prefix when it has at least
 * o.sharedPrefix tokens, two sequences or more share it, and nothing rewrites the prompt's rows
 * (a session's cache, context shift). int4 caches also need the prefix within one residual ring
 * (their prefill limit): checked by the cache.
 */
export function sharedPrefixLength(o: LoopOptions): number {
  if (o.sharedPrefix === undefined || o.session || o.contextShift || o.prompts.length < 2) return 0;
  const n = commonPrefixLength(o.prompts);
  return n >= Math.max(1, o.sharedPrefix) ? n : 0;
}
