/**
 * A chain step (sampling, or greedy with bias / penalties) in ONE native call (Model.step with
 * options.sampling): the target forward over every live sequence's pending token and draft tree,
 * the native sampler chain (csrc/common/sampling.h) on the logits where they are, each tree row
 * penalised from its own ancestor path; without drafts a token per sequence, with drafts
 * SpecInfer sampling verification against the draft's q (or point masses) and the KV commit.
 * Only token ids, accepted nodes and counts cross to JavaScript, plus the logits rows when
 * logprobs are recorded. A test's broken verifier (LoopOptions.samplingVerifier: the negative
 * controls) runs through sampled-verify.ts instead.
 */
import type { Live, Run, StepOutcome } from './run.js';
import { draftQ } from './draft-q.js';
import { hookedSampledStep, rowContexts } from './sampled-verify.js';
import type { DraftTree } from './types.js';
import { chainHasPenalties } from '../kernels/sampling.js';

export async function sampledStep(r: Run, live: Live, drafts: DraftTree[]): Promise<StepOutcome> {
  const isTree = drafts.some((d) => d.tokens.length > 0);
  if (isTree && r.o.samplingVerifier) return hookedSampledStep(r, live, drafts);
  const t0 = performance.now();
  const k = r.proposer?.wantsTopK ?? 0;
  const penalised = chainHasPenalties(r.chain);
  let uniforms: Float64Array | undefined;
  if (r.sampling) {
    // One uniform per row from each sequence's generator: causal, the sequence's draw; tree,
    // verify.h's rows (the final draw, then each node's acceptance test).
    const n = isTree ? live.reduce((a, _, i) => a + drafts[i]!.tokens.length + 1, 0) : live.length;
    uniforms = new Float64Array(n);
    let u = 0;
    live.forEach(({ st }, i) => {
      for (let j = 0; j <= (isTree ? drafts[i]!.tokens.length : 0); j++) uniforms![u++] = st.random.next();
    });
  }
  const contexts = penalised ? (isTree ? rowContexts(r, live, drafts) : live.map(({ st }) => st.all)) : undefined;
  const { q, owned } = isTree && r.sampling ? await draftQ(r, live, drafts, false) : { q: undefined, owned: undefined };
  let res;
  try {
    res = await r.model.step(
      r.cache,
      live.map(({ st, s }, i) => ({ sequence: s, tokens: [st.all[st.all.length - 1]!], ...(isTree ? { draft: drafts[i]! } : {}) })),
      {
        sampling: { chain: r.chain, ...(uniforms ? { uniforms } : {}), ...(contexts ? { contexts } : {}), ...(q ? { draftProbs: q } : {}) },
        hidden: r.wantsHidden,
        logits: r.logprobs !== undefined,
        ...(isTree && k > 0 ? { topK: k } : {}),
      },
    );
  } finally {
    owned?.dispose();
  }
  r.passes++;
  const hidden = res.hidden?.toFloat32();
  res.hidden?.dispose();
  const logits = res.logits ? Float32Array.from(res.logits.toFloat32()) : undefined;
  res.logits?.dispose();
  return {
    results: res.sequences.map(({ acceptedNodes, nextToken }) => ({ acceptedNodes, nextToken })),
    ...(hidden ? { hidden } : {}),
    ...(logits ? { logits } : {}),
    ...(res.topK ? { topK: res.topK } : {}),
    forwardMs: performance.now() - t0,
    verifyMs: 0,
  };
}
