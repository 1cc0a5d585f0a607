/**
 * What the sampled step (sampled-step.ts) shares with its test-hook path: each tree row's penalty
 * context (its own ancestor path), the draft's q rows, and the hooked path itself (a test's
 * verifier, LoopOptions.samplingVerifier, in place of the native verification: the negative
 * controls of the losslessness tests). The native step does the verification otherwise.
 */
import { chainHasPenalties, samplingChain } from '../kernels/sampling.js';
import type { VerifyResult } from '../kernels/verify.js';
import type { Tensor } from '../tensor/tensor.js';
import { draftQ } from './draft-q.js';
import type { Live, Run, StepOutcome } from './run.js';
import type { DraftTree } from './types.js';

/**
 * The chain step with a test's verifier (LoopOptions.samplingVerifier, the negative controls of
 * the losslessness tests): forward, the sampler chain's p rows (each penalised from its own
 * ancestor path), the hooked verifier, then the commit, as separate calls.
 */
export async function hookedSampledStep(r: Run, live: Live, drafts: DraftTree[]): Promise<StepOutcome> {
  const t0 = performance.now();
  const step = live.map(({ st, s }, i) => ({ sequence: s, tokens: [st.all[st.all.length - 1]!, ...drafts[i]!.tokens], parents: [-1, ...drafts[i]!.parents.map((p) => p + 1)] }));
  const { logits } = await r.model.forward(r.cache, step, { logits: 'all' });
  r.passes++;
  const t1 = performance.now();
  let results: VerifyResult[];
  try {
    results = await verifySampled(r, live, drafts, logits);
  } finally {
    logits.dispose();
  }
  await r.cache.commit(live.map(({ s }, i) => ({ sequence: s, numNodes: drafts[i]!.tokens.length + 1, acceptedNodes: [0, ...results[i]!.acceptedNodes.map((n) => n + 1)] })));
  return { results, forwardMs: t1 - t0, verifyMs: performance.now() - t1 };
}

async function verifySampled(r: Run, live: Live, drafts: DraftTree[], logits: Tensor): Promise<VerifyResult[]> {
  const treeIndptr = [0];
  const treeTokens: number[] = [];
  const treeParents: number[] = [];
  drafts.forEach((d) => {
    treeTokens.push(...d.tokens);
    treeParents.push(...d.parents);
    treeIndptr.push(treeTokens.length);
  });
  const contexts = chainHasPenalties(r.chain) ? rowContexts(r, live, drafts) : undefined;
  const { tokens: chosen, probs } = await samplingChain(logits, r.chain, { ...(contexts ? { contexts } : {}), probs: true });
  const tTarget = probs!;
  const broken = new Set<number>();
  chosen.forEach((t, i) => t < 0 && broken.add(i));
  const rows = treeTokens.length + live.length;
  const uniforms = new Float64Array(rows);
  let u = 0;
  live.forEach(({ st }, i) => {
    for (let j = 0; j <= drafts[i]!.tokens.length; j++) uniforms[u++] = st.random.next();
  });
  const { q, owned } = await draftQ(r, live, drafts, true);
  try {
    const results = await r.o.samplingVerifier!(treeIndptr, treeTokens, treeParents, tTarget, q ? q.tensor : null, uniforms);
    return broken.size ? results.map((res, i) => unbrokenPath(res, treeIndptr[i]! + i, broken)) : results;
  } finally {
    tTarget.dispose();
    owned?.dispose();
  }
}

/**
 * The penalty context of every row of a tree step: row 0 of a sequence continues its tokens
 * (pending token last), row 1 + i the same followed by node i's ancestors and node i itself.
 * Only the window's worth of the sequence's tokens is kept.
 */
export function rowContexts(r: Run, live: Live, drafts: DraftTree[]): number[][] {
  const n = r.chain.penaltyLastN;
  const out: number[][] = [];
  live.forEach(({ st }, i) => {
    const base = n < 0 ? st.all : st.all.slice(Math.max(0, st.all.length - n));
    const d = drafts[i]!;
    const paths: number[][] = [];
    out.push(base);
    d.tokens.forEach((t, j) => {
      paths.push([...(d.parents[j]! >= 0 ? paths[d.parents[j]!]! : []), t]);
      out.push([...base, ...paths[j]!]);
    });
  });
  return out;
}

/**
 * A sequence's verification cut where its path reaches a broken row (rowBase: its root's row):
 * the nodes accepted from healthy rows stay; the next token, which would come from the broken
 * row, is -1 (the emitter ends the sequence with a NumericError).
 */
function unbrokenPath(res: VerifyResult, rowBase: number, broken: Set<number>): VerifyResult {
  const path = [0, ...res.acceptedNodes.map((n) => n + 1)];
  const j = path.findIndex((row) => broken.has(rowBase + row));
  return j < 0 ? res : { acceptedNodes: res.acceptedNodes.slice(0, j), nextToken: -1 };
}
