/**
 * Prefill and cache room. Prefill feeds each distinct prompt once (n samples of one prompt
 * share it: the other sequences get a copy of its KV by fork and take their first token from
 * the same logits); greedy runs take the first token in the same native call (Model.step).
 * Float caches start small and grow as they fill; quantized ones cannot grow.
 */
import type { KvCacheDtype } from '../model/kv-cache.js';
import { Tensor } from '../tensor/tensor.js';
import { emitFrom } from './emit-from.js';
import { chooseTokens } from './pick.js';
import type { Live, Run } from './run.js';

export async function prefill(r: Run): Promise<void> {
  const { cache, seqs, proposer } = r;
  const vocab = r.model.config.vocabSize;
  const dim = r.model.config.dim;
  const leaderOf = new Map<string, number>();
  const leader = seqs.map((st, s) => {
    const key = cache.forkable ? st.prompt.join(',') : String(s); // quantized caches: prefill each
    if (!leaderOf.has(key)) leaderOf.set(key, s);
    return leaderOf.get(key)!;
  });
  const leaders = [...leaderOf.values()].sort((a, b) => a - b);
  const skip = r.o.session?.reuse ?? 0; // a session's cache already holds these prompt tokens
  const step = leaders.map((s) => ({ sequence: s, tokens: seqs[s]!.prompt.slice(skip) }));
  let first: (row: number, s: number) => number;
  let hidden: Float32Array | undefined;
  let hostLogits: Float32Array | undefined;
  if (r.chainStep) {
    const pre = await r.model.forward(cache, step, { hidden: r.wantsHidden });
    const logits = pre.logits.toFloat32();
    hostLogits = logits;
    pre.logits.dispose();
    hidden = pre.hidden?.toFloat32();
    pre.hidden?.dispose();
    // Each open sequence's first token from its leader's row (n samples of one prompt: one row, own uniforms).
    const open = seqs.map((_, s) => s).filter((s) => !seqs[s]!.done);
    const rows = new Float32Array(open.length * vocab);
    open.forEach((s, i) => {
      const row = leaders.indexOf(leader[s]!);
      rows.set(logits.subarray(row * vocab, (row + 1) * vocab), i * vocab);
    });
    const chosen = open.length ? await chooseTokens(r, Tensor.from(rows, { shape: [open.length, vocab] }), open) : new Int32Array(0);
    first = (_row, s) => chosen[open.indexOf(s)]!;
  } else {
    const pre = await r.model.step(cache, step, { hidden: r.wantsHidden });
    hidden = pre.hidden?.toFloat32();
    pre.hidden?.dispose();
    first = (row) => pre.sequences[row]!.nextToken;
  }
  r.passes++;
  seqs.forEach((st, s) => {
    const row = leaders.indexOf(leader[s]!);
    if (leader[s] !== s) cache.fork(leader[s]!, s);
    if (hidden) proposer!.observeHidden?.(s, hidden.slice(row * dim, (row + 1) * dim));
    if (!st.done) emitFrom(r, st, s, first(row, s), hostLogits?.subarray(row * vocab, (row + 1) * vocab));
  });
}

/** Float caches start small and grow in chunks as they fill; quantized ones cannot grow. */
export const growable = (dtype: KvCacheDtype | undefined): boolean => dtype === undefined || dtype === 'f32' || dtype === 'f16' || dtype === 'bf16';

/** Grows a float cache (doubling, up to the run's capacity) when a live sequence has less than one draft tree of room. */
function ensureRoom(r: Run, sequences: number[]): void {
  const { cache, capacity } = r;
  if (!growable(cache.dtype) || cache.capacity >= capacity) return;
  if (sequences.some((s) => cache.free(s) < 65)) cache.grow(Math.min(capacity, Math.max(cache.capacity * 2, cache.capacity + 65)));
}

/** The sequences that can take a step (ending those out of cache room); empty when none. */
export function liveSequences(r: Run): Live {
  const active = r.seqs.map((st, s) => ({ st, s })).filter((x) => !x.st.done);
  ensureRoom(r, active.map((x) => x.s));
  for (const { st, s } of active) if (r.cache.free(s) < 1) st.done = 'context';
  return active.filter((x) => !x.st.done);
}
