/**
 * Verification of a chain step's tree (csrc/common/verify.h) with every row through the native
 * sampler chain, each penalised from its own ancestor path: sampling: the target's p rows, the
 * draft's q rows, one uniform per row from each sequence's seeded generator, then SpecInfer
 * sampling verification; greedy with bias / penalties: greedy verification of the processed logits.
 */
import { chainHasPenalties, chainProcessesLogits, samplingChain } from '../kernels/sampling.js';
import { type VerifyResult, verifyGreedyBatch, verifySamplingBatch } from '../kernels/verify.js';
import { Tensor } from '../tensor/tensor.js';
import type { Live, Run } from './run.js';
import type { DraftTree } from './types.js';

export async function verifySampled(r: Run, live: Live, drafts: DraftTree[], logits: Tensor): Promise<VerifyResult[]> {
  const treeIndptr = [0];
  const treeTokens: number[] = [];
  const treeParents: number[] = [];
  drafts.forEach((d) => {
    treeTokens.push(...d.tokens);
    treeParents.push(...d.parents);
    treeIndptr.push(treeTokens.length);
  });
  const contexts = chainHasPenalties(r.chain) ? rowContexts(r, live, drafts) : undefined;
  if (!r.sampling) {
    if (!chainProcessesLogits(r.chain)) return verifyGreedyBatch(treeIndptr, treeTokens, treeParents, logits);
    const { processedLogits } = await samplingChain(logits, r.chain, { ...(contexts ? { contexts } : {}), processedLogits: true });
    try {
      return await verifyGreedyBatch(treeIndptr, treeTokens, treeParents, processedLogits!);
    } finally {
      processedLogits!.dispose();
    }
  }
  const vocab = r.model.config.vocabSize;
  const rows = treeTokens.length + live.length;
  // The target's p per row, natively. A row with no finite distribution (NaN or +Infinity
  // logits) comes back as -1 with a uniform stand-in so the verifier can run; the verifier reads
  // a node's row only when the node is accepted (or it is the root), so the stand-in matters only
  // where the path reaches it, and there unbrokenPath() ends the sequence.
  const { tokens: chosen, probs } = await samplingChain(logits, r.chain, { ...(contexts ? { contexts } : {}), probs: true });
  const tTarget = probs!;
  const broken = new Set<number>();
  chosen.forEach((t, i) => t < 0 && broken.add(i));
  let draftRows: Float32Array | null = null;
  if (!drafts.every((d) => !d.draftProbs)) {
    draftRows = new Float32Array(rows * vocab);
    let i = 0;
    drafts.forEach((d) => {
      for (let j = 0; j <= d.tokens.length; j++, i++) {
        // Rows the verifier never reads (no children) still hold a valid distribution.
        if (d.draftProbs?.[j]) draftRows!.set(d.draftProbs[j]!, i * vocab);
        else draftRows!.fill(1 / vocab, i * vocab, (i + 1) * vocab);
      }
    });
  }
  const uniforms = new Float64Array(rows);
  let u = 0;
  live.forEach(({ st }, i) => {
    for (let j = 0; j <= drafts[i]!.tokens.length; j++) uniforms[u++] = st.random.next();
  });
  const hostDraft = draftRows ? Tensor.from(draftRows, { shape: [rows, vocab] }) : null;
  const tDraft = hostDraft && tTarget.device !== 'cpu' ? await hostDraft.to(tTarget.device) : hostDraft;
  try {
    const results = await (r.o.samplingVerifier ?? verifySamplingBatch)(treeIndptr, treeTokens, treeParents, tTarget, tDraft, uniforms);
    return broken.size ? results.map((res, i) => unbrokenPath(res, treeIndptr[i]! + i, broken)) : results;
  } finally {
    tTarget.dispose();
    if (tDraft !== hostDraft) tDraft?.dispose();
  }
}

/**
 * The penalty context of every row of a tree step: row 0 of a sequence continues its tokens
 * (pending token last), row 1 + i the same followed by node i's ancestors and node i itself.
 * Only the window's worth of the sequence's tokens is kept.
 */
function rowContexts(r: Run, live: Live, drafts: DraftTree[]): number[][] {
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
