/** The draft's q rows of a sampled tree step (sampled-step.ts, and the test-hook path of sampled-verify.ts). */
import { Tensor } from '../tensor/tensor.js';
import type { Live, Run } from './run.js';
import type { DraftTree } from './types.js';

/**
 * The draft's q for every step row, or undefined for deterministic drafts. Native q (a draft
 * model's rows on its device, DraftTree.q) is passed by reference when every draft shares one
 * tensor on the target's device; host rows (DraftTree.draftProbs, which win when both are set)
 * are uploaded once. `contiguous`: always one row per step row, in order (for a hooked verifier).
 * `owned`: a tensor made here, the caller disposes it after the step.
 */
export async function draftQ(r: Run, live: Live, drafts: DraftTree[], contiguous: boolean): Promise<{ q?: { tensor: Tensor; rows: number[] }; owned?: Tensor }> {
  const sampled = drafts.filter((d) => d.tokens.length > 0 && (d.draftProbs || d.q));
  if (sampled.length === 0) return {};
  const vocab = r.model.config.vocabSize;
  const rows: number[] = [];
  const shared = !contiguous && sampled.every((d) => !d.draftProbs && d.q && d.q.tensor === sampled[0]!.q!.tensor);
  if (shared) {
    drafts.forEach((d) => rows.push(...(d.q ? d.q.rows : Array.from({ length: d.tokens.length + 1 }, () => -1))));
    const src = sampled[0]!.q!.tensor;
    if (src.device === r.model.device) return { q: { tensor: src, rows } };
    const moved = await src.to(r.model.device);
    return { q: { tensor: moved, rows }, owned: moved };
  }
  // Host rows: [pending, ...draft] per sequence, a row for each (rows without children unread).
  const total = live.reduce((a, _, i) => a + drafts[i]!.tokens.length + 1, 0);
  const host = new Float32Array(total * vocab);
  const natives = new Map<Tensor, Float32Array>();
  let i = 0;
  for (const d of drafts) {
    for (let j = 0; j <= d.tokens.length; j++, i++) {
      rows.push(i);
      let row: Float32Array | undefined = d.draftProbs?.[j];
      if (!row && d.q && d.q.rows[j]! >= 0) {
        if (!natives.has(d.q.tensor)) natives.set(d.q.tensor, d.q.tensor.toFloat32());
        row = natives.get(d.q.tensor)!.subarray(d.q.rows[j]! * vocab, (d.q.rows[j]! + 1) * vocab);
      }
      if (row) host.set(row, i * vocab);
      else host.fill(1 / vocab, i * vocab, (i + 1) * vocab);
    }
  }
  const t = Tensor.from(host, { shape: [total, vocab] });
  if (r.model.device === 'cpu') return { q: { tensor: t, rows }, owned: t };
  const moved = await t.to(r.model.device);
  t.dispose();
  return { q: { tensor: moved, rows }, owned: moved };
}
