/**
 * Verification of a draft tree (speculative decoding), greedy or lossless
 * sampling, on the CPU or on CUDA (csrc/common/verify.h states the math).
 *
 * A tree of N nodes is `treeTokens` (the draft token of each node) and
 * `parents` (each node's parent, -1 for a child of the committed prefix;
 * topologically ordered: parents[i] < i). A chain of n drafts is
 * parents = [-1, 0, 1, ..., n-2]. The target distributions have N+1 rows:
 * row 0 is the target at the last committed position (it predicts the
 * root's children), row i+1 the target at node i (it predicts node i's
 * children).
 *
 * Batches are ragged (CSR): `treeIndptr` [B+1] splits the nodes into
 * sequences; parents are local to their sequence; sequence b's rows start at
 * treeIndptr[b] + b (each sequence has its nodes + 1 rows).
 *
 * Every step emits the tokens of the accepted nodes, then `nextToken` (the
 * correction, or the bonus token when a leaf was reached).
 *
 * Uniforms (sampling): one per row, N+B values in [0, 1). For sequence b with
 * base = treeIndptr[b] + b, uniforms[base] drives the final sample and
 * uniforms[base + 1 + i] decides whether node i is accepted (used only if node
 * i is tried). Identical uniforms give identical tokens on the CPU and CUDA.
 */

import { ArgumentError, awaitNative } from '../errors.js';
import { native } from '../native/loader.js';
import type { TensorDescriptor } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import { type IntArrayLike, checkIndptr, int32Descriptor, shapeText, toInt32Array } from './args.js';

/** The outcome of verifying one sequence. */
export interface VerifyResult {
  /** Accepted node indices (local to the sequence), root to leaf. */
  acceptedNodes: number[];
  /** The token emitted after the accepted path (correction or bonus). */
  nextToken: number;
}

/** Target logits / probabilities: a [rows, vocab] Tensor (CPU or CUDA) or a Float32Array of rows * vocab values. */
export type RowsLike = Tensor | Float32Array;

/** Uniforms in [0, 1): f64 or f32 (widened exactly). */
export type UniformsLike = Float64Array | Float32Array | readonly number[];

interface CheckedTree {
  indptr: Int32Array;
  tokens: Int32Array;
  parents: Int32Array;
  batch: number;
  rows: number;
}

function checkTree(treeIndptr: unknown, treeTokens: unknown, parents: unknown): CheckedTree {
  const tokens = toInt32Array(treeTokens, 'treeTokens');
  const par = toInt32Array(parents, 'parents');
  if (par.length !== tokens.length) {
    throw new ArgumentError('parents', `an array of ${tokens.length} entries (the length of treeTokens)`, parents);
  }
  const indptr = toInt32Array(treeIndptr, 'treeIndptr');
  const batch = checkIndptr(indptr, 'treeIndptr', tokens.length);
  for (let b = 0; b < batch; b++) {
    for (let j = indptr[b]!; j < indptr[b + 1]!; j++) {
      const i = j - indptr[b]!;
      const p = par[j]!;
      if (p < -1 || p >= i) {
        throw new ArgumentError(
          `parents[${j}]`,
          `-1 or a node index in [0, ${i}) (parents are topologically ordered${batch > 1 ? ' and local to their sequence' : ''})`,
          p,
        );
      }
    }
  }
  return { indptr, tokens, parents: par, batch, rows: tokens.length + batch };
}

function checkTokens(tree: CheckedTree, vocab: number): void {
  for (let j = 0; j < tree.tokens.length; j++) {
    const t = tree.tokens[j]!;
    if (t < 0 || t >= vocab) throw new ArgumentError(`treeTokens[${j}]`, `a token id in [0, ${vocab}) (the vocab of the target rows)`, t);
  }
}

interface CheckedRows {
  desc: TensorDescriptor;
  vocab: number;
  device: string;
}

function checkRows(value: unknown, argument: string, rows: number, floatTypes: readonly string[]): CheckedRows {
  if (value instanceof Float32Array) {
    if (rows === 0 || value.length === 0 || value.length % rows !== 0) {
      throw new ArgumentError(argument, `a Float32Array of (N+B = ${rows}) * vocab values, vocab >= 1`, value);
    }
    return { desc: { data: value, dtype: 'f32', shape: [rows, value.length / rows] }, vocab: value.length / rows, device: 'cpu' };
  }
  if (!(value instanceof Tensor)) throw new ArgumentError(argument, 'a Tensor or a Float32Array', value);
  const desc = value.descriptor(argument);
  if (!floatTypes.includes(value.dtype)) {
    throw new ArgumentError(`${argument}.dtype`, `one of ${floatTypes.join(', ')}`, value.dtype);
  }
  if (value.shape.length !== 2 || value.shape[0] !== rows || value.shape[1]! < 1) {
    throw new ArgumentError(`${argument}.shape`, `[N+B = ${rows}, vocab >= 1]`, shapeText(value.shape));
  }
  return { desc, vocab: value.shape[1]!, device: value.device };
}

function checkUniforms(value: unknown, rows: number): Float64Array | Float32Array {
  let u: Float64Array | Float32Array;
  if (value instanceof Float64Array || value instanceof Float32Array) {
    u = value;
  } else if (Array.isArray(value)) {
    u = new Float64Array(value.length);
    for (let i = 0; i < value.length; i++) {
      if (typeof value[i] !== 'number') throw new ArgumentError(`uniforms[${i}]`, 'a number in [0, 1)', value[i]);
      u[i] = value[i] as number;
    }
  } else {
    throw new ArgumentError('uniforms', 'a Float64Array, Float32Array or array of numbers', value);
  }
  if (u.length !== rows) throw new ArgumentError('uniforms', `${rows} values (N+B: one per target row)`, value);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    if (!(x >= 0 && x < 1)) throw new ArgumentError(`uniforms[${i}]`, 'a number in [0, 1)', x);
  }
  return u;
}

function results(tree: CheckedTree, count: Int32Array, nodes: Int32Array, next: Int32Array): VerifyResult[] {
  const out: VerifyResult[] = [];
  for (let b = 0; b < tree.batch; b++) {
    const start = tree.indptr[b]!;
    out.push({ acceptedNodes: Array.from(nodes.subarray(start, start + count[b]!)), nextToken: next[b]! });
  }
  return out;
}

function singleIndptr(treeTokens: unknown): Int32Array {
  const n = treeTokens instanceof Int32Array || Array.isArray(treeTokens) ? treeTokens.length : 0;
  return Int32Array.of(0, n);
}

/**
 * Greedy verification of a batch of trees: node c is accepted iff its parent
 * is accepted and its token is the argmax (lowest id on ties) of the parent's
 * logits row; returns the longest accepted path of each sequence and the
 * argmax of its last accepted node's row.
 *
 * @param targetLogits [N+B, vocab] f32 / f16 / bf16 (CPU or CUDA), or a Float32Array.
 */
export async function verifyGreedyBatch(
  treeIndptr: IntArrayLike,
  treeTokens: IntArrayLike,
  parents: IntArrayLike,
  targetLogits: RowsLike,
): Promise<VerifyResult[]> {
  const tree = checkTree(treeIndptr, treeTokens, parents);
  const logits = checkRows(targetLogits, 'targetLogits', tree.rows, ['f32', 'f16', 'bf16']);
  checkTokens(tree, logits.vocab);
  const count = new Int32Array(tree.batch);
  const nodes = new Int32Array(tree.tokens.length);
  const next = new Int32Array(tree.batch);
  await awaitNative(
    native().verifyGreedy(
      int32Descriptor(tree.indptr),
      int32Descriptor(tree.tokens),
      int32Descriptor(tree.parents),
      logits.desc,
      int32Descriptor(count),
      int32Descriptor(nodes),
      int32Descriptor(next),
    ),
  );
  return results(tree, count, nodes, next);
}

/** Greedy verification of one tree; `targetLogits` has N+1 rows. See verifyGreedyBatch. */
export async function verifyGreedy(treeTokens: IntArrayLike, parents: IntArrayLike, targetLogits: RowsLike): Promise<VerifyResult> {
  return (await verifyGreedyBatch(singleIndptr(treeTokens), treeTokens, parents, targetLogits))[0]!;
}

/**
 * Lossless sampling verification (SpecInfer multi-candidate) of a batch of
 * trees. At the current node (starting at the root) with target distribution
 * p, its children are tried in index order: child c with token x is accepted
 * with probability min(1, p(x)/q(x)) (q = the draft row of the current node);
 * on rejection p <- norm(max(0, p - q)). With `draftProbs` null (deterministic
 * drafts: top-k, n-grams) q is a point mass: accept with p(x), else p(x) <- 0
 * and renormalise. An accepted child becomes the current node (p = its target
 * row). When no child is accepted, the next token is sampled from p. The
 * emitted tokens are distributed exactly as sampling the target.
 *
 * @param targetProbs [N+B, vocab] f32 probabilities (after temperature / top-k / top-p); each row read must sum to 1.
 * @param draftProbs [N+B, vocab] f32 on the same device: row base+0 is the distribution the root's children were
 *   sampled from (i.i.d.), row base+1+i the one node i's children were sampled from; or null.
 * @param uniforms N+B values in [0, 1) (see the module comment for which decides what).
 */
export async function verifySamplingBatch(
  treeIndptr: IntArrayLike,
  treeTokens: IntArrayLike,
  parents: IntArrayLike,
  targetProbs: RowsLike,
  draftProbs: RowsLike | null,
  uniforms: UniformsLike,
): Promise<VerifyResult[]> {
  const tree = checkTree(treeIndptr, treeTokens, parents);
  const target = checkRows(targetProbs, 'targetProbs', tree.rows, ['f32']);
  let draft: CheckedRows | null = null;
  if (draftProbs !== null) {
    if (draftProbs === undefined) throw new ArgumentError('draftProbs', 'a Tensor, a Float32Array or null', draftProbs);
    draft = checkRows(draftProbs, 'draftProbs', tree.rows, ['f32']);
    if (draft.vocab !== target.vocab) {
      throw new ArgumentError('draftProbs', `rows of the targetProbs vocab ${target.vocab}`, `rows of ${draft.vocab}`);
    }
    if (draft.device !== target.device) throw new ArgumentError('draftProbs', `on the device of targetProbs (${target.device})`, draft.device);
  }
  checkTokens(tree, target.vocab);
  const u = checkUniforms(uniforms, tree.rows);
  const count = new Int32Array(tree.batch);
  const nodes = new Int32Array(tree.tokens.length);
  const next = new Int32Array(tree.batch);
  await awaitNative(
    native().verifySampling(
      int32Descriptor(tree.indptr),
      int32Descriptor(tree.tokens),
      int32Descriptor(tree.parents),
      target.desc,
      draft ? draft.desc : null,
      u,
      int32Descriptor(count),
      int32Descriptor(nodes),
      int32Descriptor(next),
    ),
  );
  return results(tree, count, nodes, next);
}

/** Sampling verification of one tree (N+1 rows, N+1 uniforms). See verifySamplingBatch. */
export async function verifySampling(
  treeTokens: IntArrayLike,
  parents: IntArrayLike,
  targetProbs: RowsLike,
  draftProbs: RowsLike | null,
  uniforms: UniformsLike,
): Promise<VerifyResult> {
  return (await verifySamplingBatch(singleIndptr(treeTokens), treeTokens, parents, targetProbs, draftProbs, uniforms))[0]!;
}
