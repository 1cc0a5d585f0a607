/**
 * Shared-prefix attention (Hydragen-style, several levels): csrc/common/prefix_attention.h
 * states the layout and the math.
 *
 * A batch of B sequences whose keys are [level 0 prefix | level 1 prefix | ... | own suffix].
 * Order the sequences so each prefix is shared by a contiguous range of them (a depth-first
 * order of the prefix tree); then level l is a ragged list of groups: group g is the prefix of
 * sequences [seqIndptr[g], seqIndptr[g+1]) and its keys are rows [kvIndptr[g], ...) of the
 * level's K/V. The queries of all sequences of a group are batched against the group's prefix
 * in one pass (its K/V is read once per tile of up to 256 query rows, not once per sequence),
 * the suffix is attended per sequence as in decode or tree verification, and the states are
 * merged (mergeStates). The result equals attention over each sequence's concatenated keys.
 *
 *   const { out } = await prefixAttention(q, {
 *     levels: [{ seqIndptr: [0, B], kv: { k: sysK, v: sysV, kvIndptr: [0, sysLen] } }],
 *     suffix: { k: cacheK, v: cacheV, kvIndptr: starts, kvLens: lens },
 *     mask: 'causal',
 *   });
 */

import { ArgumentError, awaitNative, callNative } from '../errors.js';
import { native } from '../native/loader.js';
import type { NativeKvSource } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import { type IntArrayLike, checkFloat, checkIndptr, checkSame, checkTensor, toInt32Array } from './args.js';
import {
  type AttentionResult,
  type Checked,
  type QuantizedKvView,
  checkLayout,
  checkParents,
  checkQuantizedView,
  quantizedViewArrays,
} from './attention.js';

/** Keys and values of a level's groups or of the sequences' suffixes. */
export interface PrefixKv {
  /** Plain keys and values [kvRows, numKvHeads, headDim], in the dtype of q, on its device. */
  k?: Tensor;
  v?: Tensor;
  /** Or one layer of a quantized cache (instead of k and v). */
  quantized?: QuantizedKvView;
  /** [n + 1]: first key row of each group (level) or sequence (suffix). */
  kvIndptr: IntArrayLike;
  /** [n]: keys of each (default: the differences of kvIndptr). */
  kvLens?: IntArrayLike;
}

export interface PrefixLevel {
  /** [numGroups + 1]: group g is the prefix of sequences [seqIndptr[g], seqIndptr[g+1]); from 0 to B. */
  seqIndptr: IntArrayLike;
  kv: PrefixKv;
}

export interface PrefixAttentionOptions {
  /** Shared prefixes, outermost first (any number, including none). */
  levels: PrefixLevel[];
  /** Each sequence's own keys (B = suffix.kvIndptr.length - 1 sequences). */
  suffix: PrefixKv;
  /** [B + 1]: query rows of each sequence (default: one per sequence, decode). */
  qoIndptr?: IntArrayLike;
  /**
   * Mask of the suffix (prefix keys are visible to every query): 'none' (default), 'causal'
   * (bottom-right over the suffix; equal to causal over the concatenation when every query sits
   * after the prefix: qoLen <= suffix length + 1), or 'tree' (the last qoLen suffix keys are the
   * tree's nodes; parents required).
   */
  mask?: 'none' | 'causal' | 'tree';
  parents?: IntArrayLike;
  /** Softmax scale, default 1/sqrt(headDim). */
  scale?: number;
  returnLse?: boolean;
  /** Split-KV count per level and suffix: 0 / undefined chooses, >= 1 forces (testing). */
  numSplits?: number;
  /** Attention logit soft-capping as attention() (0 / undefined: off). */
  softcap?: number;
  /**
   * Sliding window as attention() (0 / undefined: off), over absolute positions: each sequence's
   * keys are [level 0 | level 1 | ... | suffix] at positions 0, 1, ...; its queries sit after them
   * as attention() places them over the suffix (bottom-right; trees by depth).
   */
  window?: number;
}

const MASK = { none: 0, causal: 1, tree: 2 } as const;

/** Prefixes an ArgumentError's message (which starts with the argument's name) with `where`. */
function within<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ArgumentError && !e.message.startsWith(where)) throw new ArgumentError(`${where}${e.message}`, { cause: e });
    throw e;
  }
}

function checkKv(q: Tensor, kv: PrefixKv, name: string, qoIndptr: Int32Array, options: PrefixAttentionOptions): { native: NativeKvSource; numKvHeads: number; c: Checked } {
  if (kv === null || typeof kv !== 'object') throw new ArgumentError(name, '{k, v, kvIndptr, kvLens?} or {quantized, kvIndptr, kvLens?}', kv);
  const layoutOptions = { qoIndptr, kvIndptr: kv.kvIndptr, ...(kv.kvLens !== undefined ? { kvLens: kv.kvLens } : {}), ...(options.scale !== undefined ? { scale: options.scale } : {}), ...(options.numSplits !== undefined ? { numSplits: options.numSplits } : {}), ...(options.softcap !== undefined ? { softcap: options.softcap } : {}), ...(options.window !== undefined ? { window: options.window } : {}) };
  if (kv.quantized !== undefined) {
    if (kv.k !== undefined || kv.v !== undefined) throw new ArgumentError(`${name}.k`, 'absent when quantized is given', kv.k);
    const { view, numKvHeads, kvRows } = within(`${name}.`, () => checkQuantizedView(q, kv.quantized!, 'quantized'));
    const c = within(`${name}.`, () => checkLayout(q, numKvHeads, kvRows, layoutOptions));
    const arrays = within(`${name}.`, () => quantizedViewArrays(kv.quantized!, c, 'quantized'));
    return { native: { kvIndptr: c.kvIndptr, ...(c.kvLens ? { kvLens: c.kvLens } : {}), kvQuant: { ...view, ...arrays } }, numKvHeads, c };
  }
  const [kvRows, numKvHeads, headDim] = checkTensor(kv.k, `${name}.k`, 3, '[kvRows, numKvHeads, headDim]') as [number, number, number];
  checkTensor(kv.v, `${name}.v`, 3, '[kvRows, numKvHeads, headDim]');
  const k = kv.k!;
  const v = kv.v!;
  checkSame(k.dtype, q.dtype, `${name}.k.dtype`, 'the dtype of q,');
  checkSame(v.dtype, q.dtype, `${name}.v.dtype`, 'the dtype of q,');
  checkSame(k.device, q.device, `${name}.k.device`, 'the device of q,');
  checkSame(v.device, q.device, `${name}.v.device`, 'the device of q,');
  if (headDim !== q.shape[2]) throw new ArgumentError(`${name}.k.shape[2]`, `headDim of q (${q.shape[2]})`, headDim);
  if (v.shape.join() !== k.shape.join()) throw new ArgumentError(`${name}.v.shape`, `the shape of ${name}.k [${k.shape.join(', ')}]`, v.shape);
  const c = within(`${name}.`, () => checkLayout(q, numKvHeads, kvRows, layoutOptions));
  return { native: { k: k.descriptor(`${name}.k`), v: v.descriptor(`${name}.v`), kvIndptr: c.kvIndptr, ...(c.kvLens ? { kvLens: c.kvLens } : {}) }, numKvHeads, c };
}

/** Shared-prefix attention; the result equals attention over each sequence's concatenated keys. */
export async function prefixAttention(q: Tensor, options: PrefixAttentionOptions): Promise<AttentionResult> {
  const [numTokens, numQoHeads] = checkTensor(q, 'q', 3, '[numTokens, numQoHeads, headDim]') as [number, number, number];
  checkFloat(q, 'q');
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object {levels, suffix}', options);
  if (!Array.isArray(options.levels)) throw new ArgumentError('levels', 'an array of {seqIndptr, kv}', options.levels);
  if (options.levels.length > 30) throw new ArgumentError('levels', 'at most 30 levels', options.levels.length);
  if (options.suffix === null || typeof options.suffix !== 'object') throw new ArgumentError('suffix', '{k, v, kvIndptr, kvLens?}', options.suffix);
  const B = toInt32Array(options.suffix.kvIndptr, 'suffix.kvIndptr').length - 1;
  if (B < 0) throw new ArgumentError('suffix.kvIndptr', 'an index pointer with B+1 >= 1 entries', options.suffix.kvIndptr);
  const qoIndptr = toInt32Array(options.qoIndptr ?? Array.from({ length: B + 1 }, (_, b) => b), 'qoIndptr');
  if (qoIndptr.length !== B + 1) throw new ArgumentError('qoIndptr', `${B + 1} entries (one more than the sequences of suffix.kvIndptr)`, qoIndptr);
  checkIndptr(qoIndptr, 'qoIndptr', numTokens, true, 'the number of query rows');
  const mask = options.mask ?? 'none';
  if (mask !== 'none' && mask !== 'causal' && mask !== 'tree') throw new ArgumentError('mask', "'none', 'causal' or 'tree'", mask);

  const suffix = checkKv(q, options.suffix, 'suffix', qoIndptr, options);
  const parents = mask === 'tree' ? checkParents(options.parents, numTokens, suffix.c) : undefined;
  const levels = options.levels.map((level, l) => {
    const name = `levels[${l}]`;
    if (level === null || typeof level !== 'object') throw new ArgumentError(name, 'an object {seqIndptr, kv}', level);
    const seqIndptr = toInt32Array(level.seqIndptr, `${name}.seqIndptr`);
    checkIndptr(seqIndptr, `${name}.seqIndptr`, B, true, 'the number of sequences');
    // Group g's queries: the rows of its sequences.
    const groupQo = Int32Array.from(seqIndptr, (s) => qoIndptr[s]!);
    const kv = checkKv(q, level.kv, `${name}.kv`, groupQo, options);
    if (kv.numKvHeads !== suffix.numKvHeads) throw new ArgumentError(`${name}.kv`, `keys with the ${suffix.numKvHeads} kv heads of the suffix`, kv.numKvHeads);
    return { seqIndptr, kv: kv.native };
  });
  if (numQoHeads % suffix.numKvHeads !== 0) throw new ArgumentError('numQoHeads', `a multiple of numKvHeads (${suffix.numKvHeads})`, numQoHeads);

  const out = Tensor.empty(q.shape, q.dtype, { device: q.device });
  const lse = options.returnLse ? Tensor.empty([numTokens, numQoHeads], 'f32', { device: q.device }) : undefined;
  try {
    await awaitNative(
      callNative(() =>
        native().prefixAttention({
          q: q.descriptor('q'),
          o: out.descriptor('o'),
          ...(lse ? { lse: lse.descriptor('lse') } : {}),
          qoIndptr,
          scale: suffix.c.scale,
          mask: MASK[mask],
          ...(parents ? { parents } : {}),
          numSplits: suffix.c.numSplits,
          softcap: suffix.c.softcap,
          window: suffix.c.window,
          levels,
          suffix: suffix.native,
        }),
      ),
    );
  } catch (e) {
    out.dispose();
    lse?.dispose();
    throw e;
  }
  return lse ? { out, lse } : { out };
}
