/**
 * KV commit after verification (csrc/common/kv_commit.h): keep the K/V rows
 * of the accepted draft nodes, in path order, right after the committed
 * prefix; the rejected nodes' rows are dropped (left as stale data past the
 * new length, never read).
 *
 * Cache layout: k and v are [capacity, numKvHeads, headDim] (one layer) or
 * [layers, capacity, numKvHeads, headDim] (every layer committed alike), in
 * f32 / f16 / bf16, on the CPU or CUDA. For a batch, sequence b owns rows
 * [kvIndptr[b], kvIndptr[b+1]) of each layer (its region); inside the region
 * rows [0, prefixLen) hold the committed prefix and the tree's nodes were
 * written at rows [prefixLen, prefixLen + numNodes).
 *
 * After the commit, region row prefixLen + j holds what was at row
 * prefixLen + acceptedNodes[j], and the new length is prefixLen + accepted.
 */

import { ArgumentError, awaitNative } from '../errors.js';
import { native } from '../native/loader.js';
import { Tensor } from '../tensor/tensor.js';
import { type IntArrayLike, checkCount, checkIndptr, int32Descriptor, shapeText, toInt32Array } from './args.js';

/** One sequence of a commit. */
export interface KvCommitSequence {
  /** Rows [0, prefixLen) of the sequence's region hold the committed prefix. */
  prefixLen: number;
  /** The tree's nodes' K/V are at region rows [prefixLen, prefixLen + numNodes). */
  numNodes: number;
  /** Accepted node indices in path order (strictly increasing), e.g. VerifyResult.acceptedNodes. */
  acceptedNodes: ArrayLike<number>;
}

function checkCache(k: unknown, v: unknown): { kT: Tensor; vT: Tensor; capacity: number } {
  if (!(k instanceof Tensor)) throw new ArgumentError('k', 'a Tensor', k);
  if (!(v instanceof Tensor)) throw new ArgumentError('v', 'a Tensor', v);
  k.descriptor('k');
  v.descriptor('v');
  if (k.dtype !== 'f32' && k.dtype !== 'f16' && k.dtype !== 'bf16') throw new ArgumentError('k.dtype', 'one of f32, f16, bf16', k.dtype);
  if (k.shape.length !== 3 && k.shape.length !== 4) {
    throw new ArgumentError('k.shape', '[capacity, numKvHeads, headDim] or [layers, capacity, numKvHeads, headDim]', shapeText(k.shape));
  }
  if (v === k) throw new ArgumentError('v', 'a different tensor from k', 'k itself');
  if (v.dtype !== k.dtype) throw new ArgumentError('v.dtype', `the dtype of k (${k.dtype})`, v.dtype);
  if (shapeText(v.shape) !== shapeText(k.shape)) throw new ArgumentError('v.shape', `the shape of k ${shapeText(k.shape)}`, shapeText(v.shape));
  if (v.device !== k.device) throw new ArgumentError('v', `on the device of k (${k.device})`, v.device);
  return { kT: k, vT: v, capacity: k.shape[k.shape.length - 3]! };
}

/**
 * Commits a batch: for each sequence, moves the accepted nodes' rows down
 * after its prefix. Returns the new lengths (prefixLen + accepted).
 *
 * @param kvIndptr [B+1] region boundaries in rows (non-decreasing, within the capacity).
 */
export async function commitKvBatch(k: Tensor, v: Tensor, kvIndptr: IntArrayLike, sequences: readonly KvCommitSequence[]): Promise<number[]> {
  const { kT, vT, capacity } = checkCache(k, v);
  if (!Array.isArray(sequences)) throw new ArgumentError('sequences', 'an array of {prefixLen, numNodes, acceptedNodes}', sequences);
  const indptr = toInt32Array(kvIndptr, 'kvIndptr');
  if (indptr.length !== sequences.length + 1) {
    throw new ArgumentError('kvIndptr', `${sequences.length + 1} entries (one more than sequences)`, kvIndptr);
  }
  checkIndptr(indptr, 'kvIndptr', undefined, false);
  if (indptr[indptr.length - 1]! > capacity) {
    throw new ArgumentError(`kvIndptr[${indptr.length - 1}]`, `at most the cache capacity ${capacity}`, indptr[indptr.length - 1]);
  }
  const B = sequences.length;
  const prefixLens = new Int32Array(B);
  const treeIndptr = new Int32Array(B + 1);
  const acceptedCount = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const s = sequences[b] as KvCommitSequence | undefined;
    const name = B === 1 ? 'sequence' : `sequences[${b}]`;
    if (s === null || typeof s !== 'object') throw new ArgumentError(name, 'an object {prefixLen, numNodes, acceptedNodes}', s);
    const region = indptr[b + 1]! - indptr[b]!;
    const numNodes = checkCount(s.numNodes, `${name}.numNodes`, region);
    const prefixLen = checkCount(s.prefixLen, `${name}.prefixLen`, region - numNodes);
    const acc = s.acceptedNodes as unknown;
    if (acc === null || typeof acc !== 'object' || typeof (acc as ArrayLike<number>).length !== 'number') {
      throw new ArgumentError(`${name}.acceptedNodes`, 'an array of node indices', acc);
    }
    const nodes = acc as ArrayLike<number>;
    if (nodes.length > numNodes) throw new ArgumentError(`${name}.acceptedNodes`, `at most numNodes = ${numNodes} entries`, acc);
    for (let j = 0; j < nodes.length; j++) {
      const lo = j === 0 ? 0 : nodes[j - 1]! + 1;
      const x = nodes[j] as unknown;
      if (typeof x !== 'number' || !Number.isInteger(x) || x < lo || x >= numNodes) {
        throw new ArgumentError(`${name}.acceptedNodes[${j}]`, `a node index in [${lo}, ${numNodes}) (strictly increasing)`, x);
      }
    }
    prefixLens[b] = prefixLen;
    treeIndptr[b + 1] = treeIndptr[b]! + numNodes;
    acceptedCount[b] = nodes.length;
  }
  const acceptedNodes = new Int32Array(treeIndptr[B]!).fill(-1);
  for (let b = 0; b < B; b++) {
    const nodes = sequences[b]!.acceptedNodes;
    for (let j = 0; j < nodes.length; j++) acceptedNodes[treeIndptr[b]! + j] = nodes[j]!;
  }
  const newLens = new Int32Array(B);
  await awaitNative(
    native().commitKv(
      kT.descriptor('k'),
      vT.descriptor('v'),
      int32Descriptor(indptr),
      int32Descriptor(prefixLens),
      int32Descriptor(treeIndptr),
      int32Descriptor(acceptedCount),
      int32Descriptor(acceptedNodes),
      int32Descriptor(newLens),
    ),
  );
  return Array.from(newLens);
}

/**
 * Commits one sequence whose region is the whole cache (rows [0, capacity)).
 * Returns the new length prefixLen + acceptedNodes.length.
 */
export async function commitKv(k: Tensor, v: Tensor, sequence: KvCommitSequence): Promise<number> {
  const { capacity } = checkCache(k, v);
  return (await commitKvBatch(k, v, [0, capacity], [sequence]))[0]!;
}
