/**
 * Lossless sampling verification of a sampled tree step (SpecInfer; csrc/common/verify.h): the
 * processed target distribution of every row, the draft's q rows, one uniform per row from each
 * sequence's seeded generator, then the native verifier.
 */
import { type VerifyResult, verifySamplingBatch } from '../kernels/verify.js';
import { Tensor } from '../tensor/tensor.js';
import { finiteRow } from './pick.js';
import type { Live, Run } from './run.js';
import { processedDistribution } from './sampling.js';
import type { DraftTree } from './types.js';

export async function verifySampled(r: Run, live: Live, drafts: DraftTree[], hostLogits: Float32Array): Promise<VerifyResult[]> {
  const treeIndptr = [0];
  const treeTokens: number[] = [];
  const treeParents: number[] = [];
  drafts.forEach((d) => {
    treeTokens.push(...d.tokens);
    treeParents.push(...d.parents);
    treeIndptr.push(treeTokens.length);
  });
  const vocab = r.model.config.vocabSize;
  const { temperature, topK, topP } = r.o;
  const rows = treeTokens.length + live.length;
  const target = new Float32Array(rows * vocab);
  // A row whose distribution is not finite (NaN or +Infinity logits: broken numbers) gets a uniform stand-in so the verifier can
  // run; the verifier reads a node's row only when the node is accepted (or it is the root), so
  // the stand-in matters only where the path reaches it, and there unbrokenPath() ends the sequence.
  const broken = new Set<number>();
  for (let i = 0; i < rows; i++) {
    const p = processedDistribution(hostLogits.subarray(i * vocab, (i + 1) * vocab), { temperature, topK, topP });
    if (finiteRow(p)) target.set(p, i * vocab);
    else {
      broken.add(i);
      target.fill(1 / vocab, i * vocab, (i + 1) * vocab);
    }
  }
  let draftRows: Float32Array | null = null;
  if (!drafts.every((d) => !d.draftProbs)) {
    draftRows = new Float32Array(rows * vocab);
    let i = 0;
    drafts.forEach((d) => {
      for (let j = 0; j <= d.tokens.length; j++, i++) {
        // Rows the verifier never reads (no children) still hold a valid distribution.
        draftRows!.set(d.draftProbs?.[j] ?? target.subarray(i * vocab, (i + 1) * vocab), i * vocab);
      }
    });
  }
  const uniforms = new Float64Array(rows);
  let u = 0;
  live.forEach(({ st }, i) => {
    for (let j = 0; j <= drafts[i]!.tokens.length; j++) uniforms[u++] = st.random.next();
  });
  const tTarget = Tensor.from(target, { shape: [rows, vocab] });
  const tDraft = draftRows ? Tensor.from(draftRows, { shape: [rows, vocab] }) : null;
  const results = await (r.o.samplingVerifier ?? verifySamplingBatch)(treeIndptr, treeTokens, treeParents, tTarget, tDraft, uniforms);
  return broken.size ? results.map((res, i) => unbrokenPath(res, treeIndptr[i]! + i, broken)) : results;
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
