/**
 * A sampled step (temperature > 0): the target forward over every live sequence's pending token
 * and draft tree, then a draw from the processed distribution (no drafts) or lossless sampling
 * verification (lib/decode/sampled-verify.ts) and the KV commit. The logits rows come to the host
 * for the TypeScript samplers; the native sampler chain (csrc/common/sampling.h) is to take this
 * over as a choice of Model.step.
 */
import { topIndices } from './proposers/top-indices.js';
import { pick } from './pick.js';
import type { Live, Run, StepOutcome } from './run.js';
import { verifySampled } from './sampled-verify.js';
import type { DraftTree } from './types.js';

export async function sampledStep(r: Run, live: Live, drafts: DraftTree[]): Promise<StepOutcome> {
  const t0 = performance.now();
  const vocab = r.model.config.vocabSize;
  const isTree = drafts.some((d) => d.tokens.length > 0);
  const step = live.map(({ st, s }, i) => {
    const pending = st.all[st.all.length - 1]!;
    return isTree ? { sequence: s, tokens: [pending, ...drafts[i]!.tokens], parents: [-1, ...drafts[i]!.parents.map((p) => p + 1)] } : { sequence: s, tokens: [pending] };
  });
  const { logits, hidden } = await r.model.forward(r.cache, step, { logits: isTree ? 'all' : 'last', hidden: r.wantsHidden });
  r.passes++;
  const host = Float32Array.from(logits.toFloat32());
  logits.dispose();
  const hostHidden = hidden ? Float32Array.from(hidden.toFloat32()) : undefined;
  hidden?.dispose();
  const t1 = performance.now();
  const results = isTree
    ? await verifySampled(r, live, drafts, host)
    : live.map(({ s }, i) => ({ acceptedNodes: [], nextToken: pick(r, host.subarray(i * vocab, (i + 1) * vocab), s) }));
  if (isTree) {
    await r.cache.commit(live.map(({ s }, i) => ({ sequence: s, numNodes: drafts[i]!.tokens.length + 1, acceptedNodes: [0, ...results[i]!.acceptedNodes.map((n) => n + 1)] })));
  }
  const k = r.proposer?.wantsTopK ?? 0;
  const topK = isTree && k > 0 ? hostTopK(host, vocab, k) : undefined;
  return {
    results,
    logits: host,
    ...(hostHidden ? { hidden: hostHidden } : {}),
    ...(topK ? { topK } : {}),
    forwardMs: t1 - t0,
    verifyMs: performance.now() - t1,
  };
}

/** The ids of the k largest logits of every row (topIndices' order), -1 where a row has fewer. */
function hostTopK(host: Float32Array, vocab: number, k: number): Int32Array {
  const rows = host.length / vocab;
  const out = new Int32Array(rows * k).fill(-1);
  for (let i = 0; i < rows; i++) topIndices(host.subarray(i * vocab, (i + 1) * vocab), k).forEach((id, j) => (out[i * k + j] = id));
  return out;
}
