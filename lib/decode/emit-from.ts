/** Emission with logprobs: a token is recorded (when kept) before the emitter sees it. */
import type { Seq } from './emit.js';
import type { Run } from './run.js';

/**
 * Emits `token` of sequence `s`, chosen from logits `row` (host; needed only with logprobs),
 * recording its logprob first when it is kept (not an error, not end-of-generation), so a
 * stream's piece finds its logprobs. Returns the emitter's answer (false: the sequence ended).
 */
export function emitFrom(r: Run, st: Seq, s: number, token: number, row: ArrayLike<number> | undefined): boolean {
  if (r.logprobs && !st.done && token >= 0 && !r.o.eos.has(token)) r.logprobs.record(s, row!, token);
  return r.emitter.emit(st, s, token);
}
