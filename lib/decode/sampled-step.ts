/**
 * A chain step (sampling, or greedy with bias / penalties): the target forward over every live
 * sequence's pending token and draft tree, then the native sampler chain (csrc/common/sampling.h)
 * on the logits where they are: a token per sequence (no drafts), or every tree row processed
 * from its own ancestor path and verified (lib/decode/sampled-verify.ts), and the KV commit.
 * The logits rows come to the host only for proposers that learn from them. (The chain is to
 * become a choice of Model.step, as greedy token choice is.)
 */
import { topIndices } from './proposers/top-indices.js';
import { chooseTokens } from './pick.js';
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
  const k = r.proposer?.wantsTopK ?? 0;
  const needHost = r.proposer?.feedback !== undefined || (isTree && k > 0) || r.logprobs !== undefined;
  const host = needHost ? Float32Array.from(logits.toFloat32()) : undefined;
  const hostHidden = hidden ? Float32Array.from(hidden.toFloat32()) : undefined;
  hidden?.dispose();
  const t1 = performance.now();
  let results;
  try {
    results = isTree
      ? await verifySampled(r, live, drafts, logits)
      : Array.from(await chooseTokens(r, logits, live.map(({ s }) => s)), (nextToken) => ({ acceptedNodes: [] as number[], nextToken }));
  } finally {
    logits.dispose();
  }
  if (isTree) {
    await r.cache.commit(live.map(({ s }, i) => ({ sequence: s, numNodes: drafts[i]!.tokens.length + 1, acceptedNodes: [0, ...results[i]!.acceptedNodes.map((n) => n + 1)] })));
  }
  const topK = isTree && k > 0 ? hostTopK(host!, vocab, k) : undefined;
  return {
    results,
    ...(host ? { logits: host } : {}),
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
