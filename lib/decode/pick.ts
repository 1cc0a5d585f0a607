/**
 * Token choice on host logits rows (sampling steps; greedy steps choose natively): argmax or a
 * draw from the processed distribution, and the checks that a row can be decoded at all.
 */
import type { Run } from './run.js';
import { argmax, processedDistribution, sampleFrom } from './sampling.js';

/** Whether a logits row can be decoded: some value above -inf, and (sampling) no NaN. */
function usableLogits(row: Float32Array, sampling: boolean): boolean {
  let any = false;
  for (let i = 0; i < row.length; i++) {
    const x = row[i]!;
    if (x > -Infinity) any = true;
    else if (sampling && x !== x) return false;
  }
  return any;
}

/** Whether every entry is finite (a processed distribution of +Infinity logits is not). */
export function finiteRow(p: ArrayLike<number>): boolean {
  for (let y = 0; y < p.length; y++) if (!Number.isFinite(p[y]!)) return false;
  return true;
}

/**
 * A token from a logits row: argmax, or a draw from the processed distribution; -1 (the
 * emitter ends the sequence with 'error') when the row has nothing to choose from: greedy
 * needs a value above -inf (NaN never is), sampling a finite distribution (no NaN, no +Infinity).
 */
export function pick(r: Run, row: Float32Array, s: number): number {
  const { temperature, topK, topP } = r.o;
  if (!usableLogits(row, r.sampling)) return -1;
  if (!r.sampling) return argmax(row);
  const p = processedDistribution(row, { temperature, topK, topP });
  return finiteRow(p) ? sampleFrom(p, r.seqs[s]!.random.next()) : -1; // +Infinity logits: no distribution
}
