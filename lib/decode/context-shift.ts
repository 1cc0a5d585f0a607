/**
 * Context shift (llama.cpp's n_keep / n_discard): when a sequence's KV cache reaches the
 * model's context length, keep its first `keep` tokens (the system prompt, or BOS), drop the
 * oldest half of the rest, and continue.
 *
 * Method: re-prefill, not a RoPE K-shift. The kept tokens and the pending token are computed
 * afresh at their new positions 0 .. n-1 in one causal forward (chunked for int4 caches, whose
 * residual ring bounds a step), and the next token is chosen from its last row. So the
 * continuation after a shift is exactly what a fresh generate() on those tokens produces
 * (greedy: token for token), for every cache type (f32 / f16 / bf16 / int8 / int4 / fp8), at
 * the price of one prefill of about half the context per shift. (A K-shift would rotate the
 * cached keys in place instead: cheaper, but the values and the later layers' keys were
 * computed with the dropped tokens in view, so it only approximates that fresh prefill.)
 *
 * The sequence's own token history (Seq.all, what proposers see) stays whole; this module
 * tracks which tokens the cache rows hold.
 */
import type { KvCache } from '../model/kv-cache.js';
import type { Model } from '../model/model.js';
import type { Seq } from './emit.js';

/** Per sequence: the tokens the cache held after the last shift, and where in Seq.all the later ones start. */
interface Shifted {
  base: number[];
  mark: number;
}

export class ContextShifter {
  /** Shifts per sequence. */
  readonly shifts: number[];
  readonly #shifted = new Map<number, Shifted>();

  constructor(
    readonly keep: number[],
    readonly limit: number,
  ) {
    this.shifts = keep.map(() => 0);
  }

  /**
   * The tokens of sequence `s` in cache row order, the pending token (not in the cache yet)
   * last: the cache holds the first cache.length(s) of them.
   */
  cachedTokens(st: Seq, s: number): number[] {
    const sh = this.#shifted.get(s);
    return sh ? [...sh.base, ...st.all.slice(sh.mark)] : [...st.all];
  }

  /**
   * The sequences among `active` whose cache is full at the context length: each is shifted
   * (one forward for all of them) and its next token chosen with `pick` and emitted with
   * `emit`. A sequence with nothing to drop (keep covers the context) finishes with 'context'.
   * Returns the forward passes made (0 or 1, or the int4 chunks).
   */
  async shift(
    model: Model,
    cache: KvCache,
    active: Array<{ st: Seq; s: number }>,
    pick: (row: Float32Array, s: number) => Promise<number>,
    emit: (st: Seq, s: number, token: number, row: Float32Array) => void,
  ): Promise<number> {
    const full = active.filter(({ s }) => cache.length(s) >= this.limit);
    if (full.length === 0) return 0;
    const jobs: Array<{ st: Seq; s: number; tokens: number[] }> = [];
    for (const { st, s } of full) {
      const cached = this.cachedTokens(st, s).slice(0, cache.length(s));
      const keep = Math.min(this.keep[s] ?? 0, cached.length);
      const discard = Math.floor((cached.length - keep) / 2);
      if (discard < 1) {
        st.done = 'context';
        continue;
      }
      jobs.push({ st, s, tokens: [...cached.slice(0, keep), ...cached.slice(keep + discard), st.all[st.all.length - 1]!] });
    }
    if (jobs.length === 0) return 0;
    for (const j of jobs) cache.truncate(j.s, 0);
    // int4 caches take at most their residual ring per step: prefill in chunks there.
    const chunk = cache.dtype === 'int4' ? 64 : Infinity;
    const longest = Math.max(...jobs.map((j) => j.tokens.length));
    const vocab = model.config.vocabSize;
    let passes = 0;
    const last = new Map<number, Float32Array>();
    for (let at = 0; at < longest; at += chunk) {
      const step = jobs.filter((j) => j.tokens.length > at).map((j) => ({ sequence: j.s, tokens: j.tokens.slice(at, at + chunk) }));
      const out = await model.forward(cache, step);
      passes++;
      const rows = out.logits.toFloat32();
      out.logits.dispose();
      // forward() orders its rows by sequence index.
      [...step].sort((a, b) => a.sequence - b.sequence).forEach((x, i) => {
        if (at + chunk >= jobs.find((j) => j.s === x.sequence)!.tokens.length) last.set(x.sequence, Float32Array.from(rows.subarray(i * vocab, (i + 1) * vocab)));
      });
    }
    for (const j of jobs) {
      this.shifts[j.s]!++;
      this.#shifted.set(j.s, { base: j.tokens, mark: j.st.all.length });
      const row = last.get(j.s)!;
      emit(j.st, j.s, await pick(row, j.s), row);
    }
    return passes;
  }
}
