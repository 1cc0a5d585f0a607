/**
 * Attention kernels: flash-style attention (prefill and split-KV decode),
 * tree attention, and merging of attention states. Shapes, masks and the
 * log-sum-exp convention are documented in csrc/common/attention.h:
 *
 *   q   [numTokens, numQoHeads, headDim]   o like q
 *   k,v [kvRows, numKvHeads, headDim]      lse [numTokens, numQoHeads] f32, natural log
 *
 * Ragged batches: qoIndptr (batch + 1 entries) splits q's rows into sequences;
 * kvIndptr gives each sequence's first key row; kvLens (optional) each
 * sequence's key count, so rows past it (cache capacity) are never read.
 */

import { ArgumentError, awaitNative, callNative } from '../errors.js';
import { native } from '../native/loader.js';
import type { NativeQuantKvView, TensorDescriptor } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import { type IntArrayLike, checkFloat, checkIndptr, checkSame, checkTensor, toInt32Array } from './args.js';
import { QuantizedKv } from './kv-quant.js';

export type AttentionMask = 'none' | 'causal';

export interface AttentionOptions {
  /** Query row offsets per sequence (default: one sequence holding all rows). */
  qoIndptr?: Int32Array | number[];
  /** First key row of each sequence (default: [0, kvRows] for one sequence). */
  kvIndptr?: Int32Array | number[];
  /** Keys used by each sequence (default: kvIndptr[b+1] - kvIndptr[b]). */
  kvLens?: Int32Array | number[];
  /** 'causal' aligns bottom-right: query i of a sequence sees keys up to kvLen - qoLen + i. Default 'none'. */
  mask?: AttentionMask;
  /** Softmax scale, default 1/sqrt(headDim). */
  scale?: number;
  /** Also return the log-sum-exp of the scaled scores (natural log). */
  returnLse?: boolean;
  /** Split-KV count: 0 or undefined chooses by a heuristic, 1 disables splitting. */
  numSplits?: number;
  /** Run the naive baseline instead (CPU only; materialised scores, for benchmarks and checks). */
  naive?: boolean;
  /**
   * Attention logit soft-capping (Gemma 2): scores <- softcap * tanh(scores / softcap), after the
   * scale and before the mask and softmax. 0 or undefined: off.
   */
  softcap?: number;
  /**
   * Sliding window (Gemma 2/3 local layers): on top of the mask, a query at position P sees only
   * keys at positions P - window + 1 .. P. 0 or undefined: off. Key j of sequence b is at
   * position kvPos[b] + j (a tree node's key at its own query's position); query rows at qPos.
   */
  window?: number;
  /** Window positions of the query rows (default: bottom-right, kvPos + kvLen - qoLen + i; trees: + depth instead of i). */
  qPos?: Int32Array | number[];
  /** Window positions: the position of each sequence's key 0 (default 0). */
  kvPos?: Int32Array | number[];
}

export interface TreeAttentionOptions extends Omit<AttentionOptions, 'mask' | 'qoIndptr'> {
  /**
   * Parent of each tree node (local to its sequence; -1 = child of the committed prefix),
   * topologically ordered, one entry per query row. The last qoLen keys of each sequence are
   * the tree nodes' own keys, in node order.
   */
  parents: Int32Array | number[];
  /** Tree node offsets per sequence (default: one tree holding all rows). */
  qoIndptr?: Int32Array | number[];
}

export interface AttentionResult {
  out: Tensor;
  /** [numTokens, numQoHeads] f32, when returnLse was set. */
  lse?: Tensor;
}

const MASK_CODE = { none: 0, causal: 1, tree: 2 } as const;

export interface Checked {
  qoIndptr: Int32Array;
  kvIndptr: Int32Array;
  kvLens?: Int32Array;
  scale: number;
  numSplits: number;
  softcap: number;
  window: number;
  qPos?: Int32Array;
  kvPos?: Int32Array;
}

function checkCommon(q: Tensor, k: Tensor, v: Tensor, options: LayoutOptions): Checked {
  checkTensor(q, 'q', 3, '[numTokens, numQoHeads, headDim]');
  const [kvRows, numKvHeads, kHeadDim] = checkTensor(k, 'k', 3, '[kvRows, numKvHeads, headDim]') as [number, number, number];
  checkTensor(v, 'v', 3, '[kvRows, numKvHeads, headDim]');
  checkFloat(q, 'q');
  checkSame(k.dtype, q.dtype, 'k.dtype', 'the dtype of q,');
  checkSame(v.dtype, q.dtype, 'v.dtype', 'the dtype of q,');
  checkSame(k.device, q.device, 'k.device', 'the device of q,');
  checkSame(v.device, q.device, 'v.device', 'the device of q,');
  if (kHeadDim !== q.shape[2]) throw new ArgumentError('k.shape[2]', `headDim of q (${q.shape[2]})`, kHeadDim);
  if (v.shape.join() !== k.shape.join()) throw new ArgumentError('v.shape', `the shape of k [${k.shape.join(', ')}]`, v.shape);
  return checkLayout(q, numKvHeads, kvRows, options);
}

/** Checks q's heads against the kv heads, and the batch layout over kvRows key rows (for lib/kernels). */
export interface LayoutOptions {
  qoIndptr?: IntArrayLike | undefined;
  kvIndptr?: IntArrayLike | undefined;
  kvLens?: IntArrayLike | undefined;
  scale?: number | undefined;
  numSplits?: number | undefined;
  softcap?: number | undefined;
  window?: number | undefined;
  qPos?: IntArrayLike | undefined;
  kvPos?: IntArrayLike | undefined;
}

export function checkLayout(q: Tensor, numKvHeads: number, kvRows: number, options: LayoutOptions): Checked {
  const [numTokens, numQoHeads, headDim] = q.shape as [number, number, number];
  if (headDim < 1 || headDim > 256) {
    throw new ArgumentError('headDim', 'in [1, 256] (64 and 128 are the tuned sizes)', headDim);
  }
  if (numKvHeads === 0 || numQoHeads % numKvHeads !== 0) {
    throw new ArgumentError('numQoHeads', `a multiple of numKvHeads (${numKvHeads})`, numQoHeads);
  }
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
  const qoIndptr = toInt32Array(options.qoIndptr ?? [0, numTokens], 'qoIndptr');
  checkIndptr(qoIndptr, 'qoIndptr', numTokens, true, 'the number of query rows');
  const kvIndptr = toInt32Array(options.kvIndptr ?? [0, kvRows], 'kvIndptr');
  checkIndptr(kvIndptr, 'kvIndptr', undefined, false);
  if (kvIndptr.length !== qoIndptr.length) {
    throw new ArgumentError('kvIndptr', `an array of ${qoIndptr.length} entries (like qoIndptr)`, kvIndptr);
  }
  const batch = qoIndptr.length - 1;
  let kvLens: Int32Array | undefined;
  if (options.kvLens !== undefined) {
    kvLens = toInt32Array(options.kvLens, 'kvLens', 0);
    if (kvLens.length !== batch) throw new ArgumentError('kvLens', `an array of batchSize (${batch}) entries`, kvLens);
  }
  for (let b = 0; b < batch; b++) {
    const len = kvLens ? kvLens[b]! : kvIndptr[b + 1]! - kvIndptr[b]!;
    if (kvIndptr[b]! + len > kvRows) {
      throw new ArgumentError(kvLens ? `kvLens[${b}]` : `kvIndptr[${b + 1}]`, `within the ${kvRows} rows of k and v`, kvLens ? len : kvIndptr[b + 1]);
    }
  }
  const scale = options.scale ?? 1 / Math.sqrt(headDim);
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale === 0) throw new ArgumentError('scale', 'a finite non-zero number', scale);
  const numSplits = options.numSplits ?? 0;
  if (!Number.isInteger(numSplits) || numSplits < 0 || numSplits > 1024) throw new ArgumentError('numSplits', 'an integer in [0, 1024]', numSplits);
  const softcap = options.softcap ?? 0;
  if (typeof softcap !== 'number' || !Number.isFinite(softcap) || softcap < 0) throw new ArgumentError('softcap', 'a finite number >= 0 (0 = off)', softcap);
  const window = options.window ?? 0;
  if (!Number.isInteger(window) || window < 0 || window > 0x7fffffff) throw new ArgumentError('window', 'an integer >= 0 (0 = off)', window);
  let qPos: Int32Array | undefined;
  if (options.qPos !== undefined) {
    qPos = toInt32Array(options.qPos, 'qPos');
    if (qPos.length !== numTokens) throw new ArgumentError('qPos', `an array with one entry per query row (${numTokens})`, qPos);
  }
  let kvPos: Int32Array | undefined;
  if (options.kvPos !== undefined) {
    kvPos = toInt32Array(options.kvPos, 'kvPos');
    if (kvPos.length !== batch) throw new ArgumentError('kvPos', `an array of batchSize (${batch}) entries`, kvPos);
  }
  return { qoIndptr, kvIndptr, ...(kvLens ? { kvLens } : {}), scale, numSplits, softcap, window, ...(qPos ? { qPos } : {}), ...(kvPos ? { kvPos } : {}) };
}

/** Checks tree parents (one per query row, topological per sequence) and that each tree's keys fit (for lib/kernels). */
export function checkParents(value: unknown, numTokens: number, c: Checked): Int32Array {
  const parents = toInt32Array(value, 'parents', -1);
  if (parents.length !== numTokens) throw new ArgumentError('parents', `an array with one entry per query row (${numTokens})`, parents);
  const batch = c.qoIndptr.length - 1;
  for (let b = 0; b < batch; b++) {
    const start = c.qoIndptr[b]!;
    const n = c.qoIndptr[b + 1]! - start;
    const kvLen = c.kvLens ? c.kvLens[b]! : c.kvIndptr[b + 1]! - c.kvIndptr[b]!;
    if (n > kvLen) throw new ArgumentError(`kvLens[${b}]`, `at least the ${n} tree nodes of sequence ${b} (their keys follow the prefix)`, kvLen);
    for (let t = 0; t < n; t++) {
      const p = parents[start + t]!;
      if (p < -1 || p >= t) throw new ArgumentError(`parents[${start + t}]`, `-1 or the index of an earlier node of its tree (0..${t - 1})`, p);
    }
  }
  return parents;
}

type KvArgs = { k: TensorDescriptor; v: TensorDescriptor } | { kvQuant: NativeQuantKvView };

async function run(q: Tensor, kv: KvArgs | [Tensor, Tensor], c: Checked, mask: number, returnLse: boolean, naive: boolean, parents?: Int32Array): Promise<AttentionResult> {
  if (naive && q.device !== 'cpu') throw new ArgumentError('naive', "false for tensors on a CUDA device (the naive baseline is CPU only)", naive);
  const out = Tensor.empty(q.shape, q.dtype, { device: q.device });
  const lse = returnLse ? Tensor.empty([q.shape[0]!, q.shape[1]!], 'f32', { device: q.device }) : undefined;
  try {
    await awaitNative(
      callNative(() => native().attention({
        q: q.descriptor('q'),
        ...(Array.isArray(kv) ? { k: kv[0].descriptor('k'), v: kv[1].descriptor('v') } : kv),
        o: out.descriptor('o'),
        ...(lse ? { lse: lse.descriptor('lse') } : {}),
        qoIndptr: c.qoIndptr,
        kvIndptr: c.kvIndptr,
        ...(c.kvLens ? { kvLens: c.kvLens } : {}),
        mask,
        scale: c.scale,
        ...(parents ? { parents } : {}),
        numSplits: c.numSplits,
        naive,
        softcap: c.softcap,
        window: c.window,
        ...(c.qPos ? { qPos: c.qPos } : {}),
        ...(c.kvPos ? { kvPos: c.kvPos } : {}),
      })),
    );
  } catch (e) {
    out.dispose();
    lse?.dispose();
    throw e;
  }
  return lse ? { out, lse } : { out };
}

/** Flash attention over a ragged batch (prefill chunks or decode steps; split-KV for long caches). */
export async function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Promise<AttentionResult> {
  const c = checkCommon(q, k, v, options);
  const mask = options.mask ?? 'none';
  if (mask !== 'none' && mask !== 'causal') throw new ArgumentError('mask', "'none' or 'causal'", mask);
  return run(q, [k, v], c, MASK_CODE[mask], options.returnLse === true, options.naive === true);
}

/**
 * Tree attention for verifying draft trees: each node attends to its sequence's whole
 * committed prefix and to its ancestors and itself. Position ids for RoPE are
 * prefixLen + depth (treeDepths). The prefix K/V is read once for all nodes of a tree.
 */
export async function treeAttention(q: Tensor, k: Tensor, v: Tensor, options: TreeAttentionOptions): Promise<AttentionResult> {
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object with parents', options);
  const c = checkCommon(q, k, v, options);
  const parents = checkParents(options.parents, q.shape[0]!, c);
  return run(q, [k, v], c, MASK_CODE.tree, options.returnLse === true, options.naive === true, parents);
}

/**
 * One layer of a quantized cache as attention reads it. Sequence b's keys are rows
 * kvIndptr[b] + j of the cache (kvIndptr and kvLens in the attention options, as for plain
 * caches).
 */
export interface QuantizedKvView {
  cache: QuantizedKv;
  /** Layer of the cache (default 0). */
  layer?: number;
  /** int4 [B]: keys [0, quantLens[b]) are quantized, the rest are in the sequence's ring (default: all quantized). */
  quantLens?: IntArrayLike;
  /** int4 [B]: first ring row of each sequence (default: b * ring). */
  resStart?: IntArrayLike;
}

/** Checks a quantized view against q and the batch layout; returns the native view. */
export function checkQuantizedView(q: Tensor, kv: QuantizedKvView, name: string): { view: NativeQuantKvView; numKvHeads: number; kvRows: number } {
  if (kv === null || typeof kv !== 'object') throw new ArgumentError(name, 'a quantized KV view {cache, layer?, quantLens?, resStart?}', kv);
  const cache = kv.cache;
  if (!(cache instanceof QuantizedKv)) throw new ArgumentError(`${name}.cache`, 'a QuantizedKv', cache);
  if (cache.disposed) throw new ArgumentError(`${name}.cache`, 'a QuantizedKv that was not disposed', 'a disposed QuantizedKv');
  if (cache.headDim !== q.shape[2]) throw new ArgumentError(`${name}.cache.headDim`, `headDim of q (${q.shape[2]})`, cache.headDim);
  checkSame(cache.device, q.device, `${name}.cache.device`, 'the device of q,');
  const layer = kv.layer ?? 0;
  if (!Number.isInteger(layer) || layer < 0 || layer >= cache.layers) throw new ArgumentError(`${name}.layer`, `an integer in [0, ${cache.layers - 1}]`, layer);
  return { view: { cache: cache.descriptor(`${name}.cache`), layer }, numKvHeads: cache.numKvHeads, kvRows: cache.rows };
}

/** The int4 per-sequence arrays of a view, checked against the layout c. */
export function quantizedViewArrays(kv: QuantizedKvView, c: { kvIndptr: Int32Array; kvLens?: Int32Array }, name: string): { quantLens?: Int32Array; resStart?: Int32Array } {
  const cache = kv.cache;
  const batch = c.kvIndptr.length - 1;
  if (cache.format !== 'int4') return {};
  const out: { quantLens?: Int32Array; resStart?: Int32Array } = {};
  for (let b = 0; b < batch; b++) {
    if (c.kvIndptr[b]! % cache.group !== 0) throw new ArgumentError(`kvIndptr[${b}]`, `a multiple of the int4 group ${cache.group}`, c.kvIndptr[b]);
  }
  if (kv.quantLens !== undefined) {
    const ql = toInt32Array(kv.quantLens, `${name}.quantLens`, 0);
    if (ql.length !== batch) throw new ArgumentError(`${name}.quantLens`, `${batch} entries (one per sequence)`, ql);
    for (let b = 0; b < batch; b++) {
      const len = c.kvLens ? c.kvLens[b]! : c.kvIndptr[b + 1]! - c.kvIndptr[b]!;
      if (ql[b]! > len || ql[b]! % cache.group !== 0 || len - ql[b]! > cache.ring) {
        throw new ArgumentError(`${name}.quantLens[${b}]`, `a multiple of ${cache.group} in [${Math.max(0, len - cache.ring)}, ${len}]`, ql[b]);
      }
    }
    out.quantLens = ql;
    const rs = kv.resStart === undefined ? Int32Array.from({ length: batch }, (_, b) => b * cache.ring) : toInt32Array(kv.resStart, `${name}.resStart`, 0);
    if (rs.length !== batch) throw new ArgumentError(`${name}.resStart`, `${batch} entries (one per sequence)`, rs);
    for (let b = 0; b < batch; b++) {
      if (rs[b]! + cache.ring > cache.rings * cache.ring) {
        throw new ArgumentError(`${name}.resStart[${b}]`, `at most ${cache.rings * cache.ring - cache.ring} (rings of ${cache.ring} rows)`, rs[b]);
      }
    }
    out.resStart = rs;
  }
  return out;
}

export interface QuantizedAttentionOptions extends Omit<AttentionOptions, 'mask'> {
  /** 'none', 'causal' (default 'none') or 'tree' (then parents is required, as in treeAttention). */
  mask?: AttentionMask | 'tree';
  parents?: Int32Array | number[];
}

/**
 * Attention over one layer of a quantized cache (int8, int4, fp8), dequantizing keys and values
 * as they are loaded; the options are attention()'s (kvIndptr: each sequence's first cache row),
 * plus tree masks. The output equals attention over the dequantized cache (dequantizeKv).
 */
export async function quantizedAttention(q: Tensor, kv: QuantizedKvView, options: QuantizedAttentionOptions = {}): Promise<AttentionResult> {
  checkTensor(q, 'q', 3, '[numTokens, numQoHeads, headDim]');
  checkFloat(q, 'q');
  const { view, numKvHeads, kvRows } = checkQuantizedView(q, kv, 'kv');
  const c = checkLayout(q, numKvHeads, kvRows, options);
  const mask = options.mask ?? 'none';
  if (mask !== 'none' && mask !== 'causal' && mask !== 'tree') throw new ArgumentError('mask', "'none', 'causal' or 'tree'", mask);
  const parents = mask === 'tree' ? checkParents(options.parents, q.shape[0]!, c) : undefined;
  const kvQuant: NativeQuantKvView = { ...view, ...quantizedViewArrays(kv, c, 'kv') };
  return run(q, { kvQuant }, c, MASK_CODE[mask], options.returnLse === true, options.naive === true, parents);
}

/** Depth of each node (children of the prefix: 0); the RoPE position of node i is prefixLen + depth[i]. */
export function treeDepths(parents: Int32Array | number[]): Int32Array {
  const p = toInt32Array(parents, 'parents', -1);
  const depth = new Int32Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const par = p[i]!;
    if (par >= i) throw new ArgumentError(`parents[${i}]`, `-1 or an earlier node (0..${i - 1})`, par);
    depth[i] = par < 0 ? 0 : depth[par]! + 1;
  }
  return depth;
}

export interface AttentionState {
  /** [tokens, heads, headDim] */
  v: Tensor;
  /** [tokens, heads] f32 log-sum-exp (natural log) */
  s: Tensor;
}

function checkState(st: AttentionState, name: string): [number, number, number] {
  if (st === null || typeof st !== 'object') throw new ArgumentError(name, 'an attention state {v, s}', st);
  const shape = checkTensor(st.v, `${name}.v`, 3, '[tokens, heads, headDim]') as [number, number, number];
  checkFloat(st.v, `${name}.v`);
  const sShape = checkTensor(st.s, `${name}.s`, 2, '[tokens, heads]');
  if (st.s.dtype !== 'f32') throw new ArgumentError(`${name}.s.dtype`, 'f32', st.s.dtype);
  if (sShape[0] !== shape[0] || sShape[1] !== shape[1]) throw new ArgumentError(`${name}.s.shape`, `[${shape[0]}, ${shape[1]}]`, sShape);
  return shape;
}

async function merge(a: AttentionState, b: AttentionState, into: AttentionState): Promise<void> {
  await awaitNative(
    native().mergeStates({
      va: a.v.descriptor('a.v'),
      sa: a.s.descriptor('a.s'),
      vb: b.v.descriptor('b.v'),
      sb: b.s.descriptor('b.s'),
      vOut: into.v.descriptor('out.v'),
      sOut: into.s.descriptor('out.s'),
    }),
  );
}

function checkPair(a: AttentionState, b: AttentionState): void {
  const sa = checkState(a, 'a');
  const sb = checkState(b, 'b');
  if (sa.join() !== sb.join()) throw new ArgumentError('b.v.shape', `the shape of a.v [${sa.join(', ')}]`, sb);
  checkSame(b.v.dtype, a.v.dtype, 'b.v.dtype', 'the dtype of a.v,');
  checkSame(b.v.device, a.v.device, 'b.v.device', 'the device of a.v,');
}

/** The state of the union of two disjoint key sets (see csrc/common/merge_states.h). */
export async function mergeStates(a: AttentionState, b: AttentionState): Promise<AttentionState> {
  checkPair(a, b);
  const out = { v: Tensor.empty(a.v.shape, a.v.dtype, { device: a.v.device }), s: Tensor.empty(a.s.shape, 'f32', { device: a.v.device }) };
  try {
    await merge(a, b, out);
  } catch (e) {
    out.v.dispose();
    out.s.dispose();
    throw e;
  }
  return out;
}

/** Merges b into a, in place. */
export async function mergeStatesInPlace(a: AttentionState, b: AttentionState): Promise<void> {
  checkPair(a, b);
  await merge(a, b, a);
}

/** Merges n states: v [tokens, numStates, heads, headDim], s [tokens, numStates, heads]. */
export async function mergeStatesN(v: Tensor, s: Tensor): Promise<AttentionState> {
  const [tokens, n, heads, headDim] = checkTensor(v, 'v', 4, '[tokens, numStates, heads, headDim]') as [number, number, number, number];
  checkFloat(v, 'v');
  const sShape = checkTensor(s, 's', 3, '[tokens, numStates, heads]');
  if (s.dtype !== 'f32') throw new ArgumentError('s.dtype', 'f32', s.dtype);
  if (sShape.join() !== [tokens, n, heads].join()) throw new ArgumentError('s.shape', `[${tokens}, ${n}, ${heads}]`, sShape);
  if (n < 1) throw new ArgumentError('v.shape[1]', 'at least 1 state', n);
  checkSame(s.device, v.device, 's.device', 'the device of v,');
  const out = { v: Tensor.empty([tokens, heads, headDim], v.dtype, { device: v.device }), s: Tensor.empty([tokens, heads], 'f32', { device: v.device }) };
  try {
    await awaitNative(native().mergeStatesN({ v: v.descriptor('v'), s: s.descriptor('s'), vOut: out.v.descriptor('out.v'), sOut: out.s.descriptor('out.s') }));
  } catch (e) {
    out.v.dispose();
    out.s.dispose();
    throw e;
  }
  return out;
}
