/**
 * After a step's verification: proposer feedback and hidden states, metrics, and emission of
 * each sequence's accepted tokens then its next token (EOS, stop strings and maxTokens can cut a
 * run anywhere). Returns what the goodput controller learns from the step, and the time the
 * proposer's feedback took (the proposer's cost: the controller counts it in the draft's).
 */
import type { StepObservation } from './controller.js';
import type { Live, Run, StepOutcome } from './run.js';
import { emitFrom } from './emit-from.js';
import type { DraftTree } from './types.js';

export async function settle(r: Run, live: Live, drafts: DraftTree[], out: StepOutcome, sizes: number[]): Promise<Omit<StepObservation, 'draftMs' | 'draftBudget'> & { feedbackMs: number }> {
  const isTree = drafts.some((d) => d.tokens.length > 0);
  const dim = r.model.config.dim;
  const vocab = r.model.config.vocabSize;
  const k = r.proposer?.wantsTopK ?? 0;
  const observed: StepObservation['sequences'] = [];
  let emitted = 0;
  let feedbackMs = 0;
  let rowBase = 0;
  for (let i = 0; i < live.length; i++) {
    const { st, s } = live[i]!;
    const d = drafts[i]!;
    const res = out.results[i]!;
    const rows = d.tokens.length + 1;
    if (isTree) {
      const depth = r.metrics!.draft(d, res.acceptedNodes.length);
      observed.push({ sequence: s, budget: Number.isFinite(sizes[i]!) ? sizes[i]! : d.tokens.length, drafted: d.tokens.length, depth, accepted: res.acceptedNodes.length });
      const f0 = performance.now();
      await r.proposer!.feedback?.({
        sequence: s,
        pendingToken: st.all[st.all.length - 1]!,
        draft: d,
        acceptedNodes: res.acceptedNodes,
        nextToken: res.nextToken,
        ...(out.logits ? { targetLogits: out.logits.subarray(rowBase * vocab, (rowBase + rows) * vocab) } : {}),
        ...(out.topK ? { targetTopK: out.topK.subarray(rowBase * k, (rowBase + rows) * k) } : {}),
      });
      feedbackMs += performance.now() - f0;
    } else {
      observed.push({ sequence: s, budget: sizes[i]!, drafted: 0, depth: 0, accepted: 0 });
    }
    if (out.hidden) {
      // The row that produced the next token: the last accepted node's (or the pending token's).
      const row = rowBase + (res.acceptedNodes.length ? res.acceptedNodes.at(-1)! + 1 : 0);
      r.proposer!.observeHidden?.(s, out.hidden.slice(row * dim, (row + 1) * dim));
    }
    // Accepted node j was chosen from the row of the node before it on the path (the pending token's first).
    const path = [0, ...res.acceptedNodes.map((n) => n + 1)].map((p) => rowBase + p);
    const rowAt = (j: number) => out.logits?.subarray(path[j]! * vocab, (path[j]! + 1) * vocab);
    rowBase += rows;
    let ok = true;
    for (const [j, n] of res.acceptedNodes.entries()) {
      emitted++;
      if (!(ok = emitFrom(r, st, s, d.tokens[n]!, rowAt(j)))) break;
    }
    if (ok) {
      emitted++;
      emitFrom(r, st, s, res.nextToken, rowAt(res.acceptedNodes.length));
    }
  }
  if (isTree) r.metrics!.step(emitted, live.length);
  return { rows: rowBase, verifyMs: out.forwardMs + out.verifyMs, sequences: observed, feedbackMs };
}
