/**
 * A greedy step: ONE native call (Model.step) runs the target over every live sequence's pending
 * token and draft tree, verifies greedily and commits the accepted path; without drafts it is a
 * plain causal step with the argmax chosen natively. Only token ids and accepted nodes cross to
 * JavaScript, plus what the proposer asked for (hidden rows, top-k ids).
 */
import type { DraftTree } from './types.js';
import type { Live, Run, StepOutcome } from './run.js';

export async function greedyStep(r: Run, live: Live, drafts: DraftTree[]): Promise<StepOutcome> {
  const t0 = performance.now();
  const topK = r.proposer?.wantsTopK ?? 0;
  const isTree = drafts.some((d) => d.tokens.length > 0);
  const res = await r.model.step(
    r.cache,
    live.map(({ st, s }, i) => ({ sequence: s, tokens: [st.all[st.all.length - 1]!], ...(isTree ? { draft: drafts[i]! } : {}) })),
    { hidden: r.wantsHidden, ...(isTree && topK > 0 ? { topK } : {}) },
  );
  r.passes++;
  const hidden = res.hidden?.toFloat32();
  res.hidden?.dispose();
  return {
    results: res.sequences.map(({ acceptedNodes, nextToken }) => ({ acceptedNodes, nextToken })),
    ...(hidden ? { hidden } : {}),
    ...(res.topK ? { topK: res.topK } : {}),
    forwardMs: performance.now() - t0,
    verifyMs: 0,
  };
}
