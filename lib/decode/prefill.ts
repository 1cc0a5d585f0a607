/**
 * Prefill and cache room. Prefill feeds each distinct prompt once (n samples of one prompt
 * share it: the other sequences get a copy of its KV by fork and take their first token from
 * the same logits); greedy runs take the first token in the same native call (Model.step).
 * With a shared prefix (Run.shared, lib/decode/shared-prefix.ts) the prefix is fed first, once,
 * into the cache's prefix slot, every sequence refers to it, and then the rest of each prompt.
 * Float caches start small and grow as they fill; quantized ones cannot grow.
 */
import type { KvCacheDtype } from '../model/kv-cache.js';
import { Tensor } from '../tensor/tensor.js';
import { emitFrom } from './emit-from.js';
import { chooseTokens } from './pick.js';
import type { Live, Run } from './run.js';

/** One prefill pass over `step`: each wanted sequence's first token comes from row `row` of it. */
interface PassOutput {
  first: (row: number, s: number) => number;
  hidden?: Float32Array;
  logits?: Float32Array;
}

async function pass(r: Run, step: Array<{ sequence: number; tokens: number[] }>, want: Array<{ s: number; row: number }>): Promise<PassOutput> {
  const { cache, seqs } = r;
  const vocab = r.model.config.vocabSize;
  let out: PassOutput;
  if (r.chainStep) {
    const pre = await r.model.forward(cache, step, { hidden: r.wantsHidden });
    const logits = pre.logits.toFloat32();
    pre.logits.dispose();
    const hidden = pre.hidden?.toFloat32();
    pre.hidden?.dispose();
    // Each open sequence's first token from its row (n samples of one prompt: one row, own uniforms).
    const open = want.filter((x) => !seqs[x.s]!.done);
    const rows = new Float32Array(open.length * vocab);
    open.forEach((x, i) => rows.set(logits.subarray(x.row * vocab, (x.row + 1) * vocab), i * vocab));
    const chosen = open.length ? await chooseTokens(r, Tensor.from(rows, { shape: [open.length, vocab] }), open.map((x) => x.s)) : new Int32Array(0);
    out = { first: (_row, s) => chosen[open.findIndex((x) => x.s === s)]!, logits, ...(hidden ? { hidden } : {}) };
  } else {
    const pre = await r.model.step(cache, step, { hidden: r.wantsHidden });
    const hidden = pre.hidden?.toFloat32();
    pre.hidden?.dispose();
    out = { first: (row) => pre.sequences[row]!.nextToken, ...(hidden ? { hidden } : {}) };
  }
  r.passes++;
  return out;
}

export async function prefill(r: Run): Promise<void> {
  const { cache, seqs, proposer } = r;
  const vocab = r.model.config.vocabSize;
  const dim = r.model.config.dim;
  const skip = r.o.session?.reuse ?? 0; // a session's cache already holds these prompt tokens
  const L = r.shared;
  // A shared prefix first, into prefix slot 0 (sequences whose prompt it is take their first token there).
  const atPrefix = seqs.map((st) => L > 0 && st.prompt.length === L);
  let prefixOut: PassOutput | undefined;
  if (L > 0) {
    const slot = cache.prefixSlot(0);
    const want = seqs.map((_, s) => ({ s, row: 0 })).filter((x) => atPrefix[x.s]);
    prefixOut = await pass(r, [{ sequence: slot, tokens: seqs[0]!.prompt.slice(0, L) }], want);
    // int4: pack the prefix's completed groups now, as a forked copy's next step would (the slot stays frozen).
    if (cache.dtype === 'int4') await cache.quantizeCompleted();
    seqs.forEach((_, s) => cache.attachPrefix(s, slot, L));
  }
  // The rest of each prompt: each distinct rest once (forkable caches; the others fork its rows).
  const rest = seqs.map((st) => st.prompt.slice(L > 0 ? L : skip));
  const leaderOf = new Map<string, number>();
  const leader = seqs.map((_, s) => {
    if (atPrefix[s]) return -1;
    const key = cache.forkable ? rest[s]!.join(',') : String(s); // quantized caches: prefill each
    if (!leaderOf.has(key)) leaderOf.set(key, s);
    return leaderOf.get(key)!;
  });
  const leaders = [...leaderOf.values()].sort((a, b) => a - b);
  const rowOf = (s: number) => (atPrefix[s] ? 0 : leaders.indexOf(leader[s]!));
  const restOut = leaders.length
    ? await pass(r, leaders.map((s) => ({ sequence: s, tokens: rest[s]! })), seqs.map((_, s) => ({ s, row: rowOf(s) })).filter((x) => !atPrefix[x.s]))
    : undefined;
  seqs.forEach((st, s) => {
    const out = atPrefix[s] ? prefixOut! : restOut!;
    const row = rowOf(s);
    if (!atPrefix[s] && leader[s] !== s) cache.fork(leader[s]!, s);
    if (out.hidden) proposer!.observeHidden?.(s, out.hidden.slice(row * dim, (row + 1) * dim));
    if (!st.done) emitFrom(r, st, s, out.first(row, s), out.logits?.subarray(row * vocab, (row + 1) * vocab));
  });
}

/** Float caches start small and grow in chunks as they fill; quantized ones cannot grow. */
export const growable = (dtype: KvCacheDtype | undefined): boolean => dtype === undefined || dtype === 'f32' || dtype === 'f16' || dtype === 'bf16';

/** Grows a float cache (doubling, up to the run's capacity) when a live sequence has less than one draft tree of room. */
function ensureRoom(r: Run, sequences: number[]): void {
  const { cache } = r;
  const capacity = r.capacity - r.shared; // own rows: a shared prefix stays in its slot
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
