/**
 * KV commit: after the commit, each sequence's cache equals the cache built
 * by writing only the prefix and then the accepted nodes' rows in order;
 * rows that were not accepted (filled with NaN here) are never read; rows
 * past the new length are left untouched.
 */
import { describe, expect, it } from 'vitest';

import { commitKv, commitKvBatch } from '../../lib/kernels/kv-commit.js';
import { native } from '../../lib/native/loader.js';
import { type BadInputCase, describeBadInputs, describeNativeBadInputs } from '../helpers/bad-inputs.js';
import { type FloatDType, encodeFloats } from '../../lib/tensor/dtype.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { committedRows, rng } from '../helpers/verify-reference.js';

const NAN_BITS: Record<FloatDType, number> = { f32: 0x7fc00000, f16: 0x7e00, bf16: 0x7fc0 };

/** Raw bits of a float tensor's storage, for exact comparison (NaN included). */
function bits(a: Float32Array | Uint16Array): number[] {
  return a instanceof Float32Array ? Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length)) : Array.from(a);
}

/** A cache [layers, capacity, heads, dim] of random values; `nanRows(layer, row)` rows are NaN. */
function makeCache(
  r: () => number,
  dtype: FloatDType,
  layers: number,
  capacity: number,
  rowElems: number,
  nanRows: (row: number) => boolean,
): Float32Array | Uint16Array {
  const values = Array.from({ length: layers * capacity * rowElems }, () => r() * 4 - 2);
  const enc = encodeFloats(values, dtype);
  const view = dtype === 'f32' ? new Uint32Array(enc.buffer) : (enc as Uint16Array);
  for (let l = 0; l < layers; l++) {
    for (let row = 0; row < capacity; row++) {
      if (!nanRows(row)) continue;
      for (let e = 0; e < rowElems; e++) view[(l * capacity + row) * rowElems + e] = NAN_BITS[dtype];
    }
  }
  return enc;
}

interface Seq {
  start: number; // region start row
  prefixLen: number;
  numNodes: number;
  acceptedNodes: number[];
}

/** Checks one cache buffer after a commit, region by region and layer by layer. */
function checkCommitted(before: number[], after: number[], layers: number, capacity: number, rowElems: number, seqs: Seq[]): void {
  const layerSize = capacity * rowElems;
  const touched = new Array<boolean>(layers * capacity).fill(false);
  for (const s of seqs) {
    const newLen = s.prefixLen + s.acceptedNodes.length;
    for (let l = 0; l < layers; l++) {
      const regionBefore = before.slice(l * layerSize + s.start * rowElems);
      const want = committedRows(regionBefore, rowElems, s.prefixLen, s.acceptedNodes);
      const got = after.slice(l * layerSize + s.start * rowElems, l * layerSize + (s.start + newLen) * rowElems);
      expect(got).toEqual(want);
      for (let row = 0; row < newLen; row++) touched[l * capacity + s.start + row] = true;
    }
  }
  // Every other row (past each new length, outside every region) is exactly as before.
  for (let l = 0; l < layers; l++) {
    for (let row = 0; row < capacity; row++) {
      if (touched[l * capacity + row]) continue;
      const off = (l * capacity + row) * rowElems;
      expect(after.slice(off, off + rowElems)).toEqual(before.slice(off, off + rowElems));
    }
  }
}

const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];

describe('commitKv', () => {
  const acceptedSets: Array<[string, number[]]> = [
    ['none accepted', []],
    ['all accepted (no row moves)', [0, 1, 2, 3, 4, 5]],
    ['overlapping ranges', [1, 2, 4]],
    ['the last node only', [5]],
    ['a gap after an in-place node', [0, 2, 3]],
    ['the deepest nodes', [3, 4, 5]],
  ];

  describe.each(DTYPES)('%s, one sequence [capacity, heads, dim]', (dtype) => {
    it.each(acceptedSets)('%s', async (_name, accepted) => {
      const r = rng(accepted.length * 31 + dtype.length);
      const capacity = 12;
      const heads = 2;
      const dim = 3;
      const prefixLen = 3;
      const numNodes = 6;
      const rowElems = heads * dim;
      // Rejected nodes' rows and the padding past the tree are NaN: a commit that reads them shows it.
      const nanRow = (row: number) => row >= prefixLen + numNodes || (row >= prefixLen && !accepted.includes(row - prefixLen));
      const kData = makeCache(r, dtype, 1, capacity, rowElems, nanRow);
      const vData = makeCache(r, dtype, 1, capacity, rowElems, nanRow);
      const kBefore = bits(kData);
      const vBefore = bits(vData);
      const k = Tensor.from(kData, { dtype, shape: [capacity, heads, dim] });
      const v = Tensor.from(vData, { dtype, shape: [capacity, heads, dim] });
      const newLen = await commitKv(k, v, { prefixLen, numNodes, acceptedNodes: accepted });
      expect(newLen).toBe(prefixLen + accepted.length);
      const seqs = [{ start: 0, prefixLen, numNodes, acceptedNodes: accepted }];
      checkCommitted(kBefore, bits(k.toArray() as Float32Array | Uint16Array), 1, capacity, rowElems, seqs);
      checkCommitted(vBefore, bits(v.toArray() as Float32Array | Uint16Array), 1, capacity, rowElems, seqs);
      // Nothing NaN (unread rows) reached the committed rows.
      const committed = bits(k.toArray() as Float32Array | Uint16Array).slice(0, newLen * rowElems);
      expect(committed.includes(NAN_BITS[dtype])).toBe(false);
    });
  });

  it.each(DTYPES)('%s: ragged batch of a multi-layer cache [layers, capacity, heads, dim] against the row-by-row rebuild', async (dtype) => {
    const r = rng(dtype === 'f32' ? 7 : dtype === 'f16' ? 8 : 9);
    for (let trial = 0; trial < 20; trial++) {
      const layers = 1 + Math.floor(r() * 3);
      const heads = 1 + Math.floor(r() * 3);
      const dim = [1, 4, 7][Math.floor(r() * 3)]!;
      const rowElems = heads * dim;
      const B = 1 + Math.floor(r() * 4);
      const seqs: Seq[] = [];
      const kvIndptr = [1 + Math.floor(r() * 3)]; // regions need not start at row 0
      for (let b = 0; b < B; b++) {
        const numNodes = Math.floor(r() * 9);
        const prefixLen = Math.floor(r() * 5);
        const slack = Math.floor(r() * 3);
        const acceptedNodes = [...Array(numNodes).keys()].filter(() => r() < 0.5);
        seqs.push({ start: kvIndptr[b]!, prefixLen, numNodes, acceptedNodes });
        kvIndptr.push(kvIndptr[b]! + prefixLen + numNodes + slack);
      }
      const capacity = kvIndptr[B]! + Math.floor(r() * 3);
      const nanRow = (row: number) =>
        seqs.some((s) => row >= s.start + s.prefixLen && row < s.start + s.prefixLen + s.numNodes && !s.acceptedNodes.includes(row - s.start - s.prefixLen));
      const kData = makeCache(r, dtype, layers, capacity, rowElems, nanRow);
      const vData = makeCache(r, dtype, layers, capacity, rowElems, nanRow);
      const kBefore = bits(kData);
      const vBefore = bits(vData);
      const k = Tensor.from(kData, { dtype, shape: [layers, capacity, heads, dim] });
      const v = Tensor.from(vData, { dtype, shape: [layers, capacity, heads, dim] });
      const newLens = await commitKvBatch(k, v, kvIndptr, seqs);
      expect(newLens).toEqual(seqs.map((s) => s.prefixLen + s.acceptedNodes.length));
      checkCommitted(kBefore, bits(k.toArray() as Float32Array | Uint16Array), layers, capacity, rowElems, seqs);
      checkCommitted(vBefore, bits(v.toArray() as Float32Array | Uint16Array), layers, capacity, rowElems, seqs);
    }
  });

  it('commits what verifyGreedy accepted: the KV of the accepted path follows the prefix', async () => {
    const { verifyGreedy } = await import('../../lib/kernels/verify.js');
    // root argmax 2 -> node 1 (token 2) accepted; node 1's argmax 0 -> node 3 (token 0) accepted.
    const rows = [
      [0, 0, 1],
      [1, 0, 0],
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ];
    const result = await verifyGreedy([1, 2, 0, 0], [-1, -1, 0, 1], Float32Array.from(rows.flat()));
    expect(result).toEqual({ acceptedNodes: [1, 3], nextToken: 2 });
    // One value per row: the row index, so the committed order is visible.
    const k = Tensor.from(Float32Array.from({ length: 8 }, (_, i) => i), { shape: [8, 1, 1] });
    const v = Tensor.from(Float32Array.from({ length: 8 }, (_, i) => 100 + i), { shape: [8, 1, 1] });
    const newLen = await commitKv(k, v, { prefixLen: 2, numNodes: 4, acceptedNodes: result.acceptedNodes });
    expect(newLen).toBe(4);
    expect(Array.from(k.toArray() as Float32Array).slice(0, newLen)).toEqual([0, 1, 3, 5]);
    expect(Array.from(v.toArray() as Float32Array).slice(0, newLen)).toEqual([100, 101, 103, 105]);
  });
});

// ---- bad inputs ------------------------------------------------------------------


const cache = (shape: number[], dtype: FloatDType = 'f32') =>
  Tensor.from(dtype === 'f32' ? new Float32Array(shape.reduce((a, b) => a * b, 1)) : new Uint16Array(shape.reduce((a, b) => a * b, 1)), { dtype, shape });
const k8 = cache([8, 2, 4]);
const v8 = cache([8, 2, 4]);
const disposedK = (() => {
  const t = cache([8, 2, 4]);
  t.dispose();
  return t;
})();
const seq = (prefixLen: number, numNodes: number, acceptedNodes: number[]) => ({ prefixLen, numNodes, acceptedNodes });

const tsCases: BadInputCase[] = [
  ['k not a tensor', () => commitKv(new Float32Array(4) as never, v8, seq(0, 1, [])), /k must be a Tensor; received Float32Array\(4\)/],
  ['disposed k', () => commitKv(disposedK, v8, seq(0, 1, [])), /k \(a f32 tensor of shape \[8, 2, 4\] on cpu\) was used after dispose\(\)/],
  ['int cache', () => commitKv(Tensor.from(new Int32Array(8), { shape: [8, 1, 1] }), Tensor.from(new Int32Array(8), { shape: [8, 1, 1] }), seq(0, 1, [])), /k\.dtype must be one of f32, f16, bf16; received "int32"/],
  ['2-D cache', () => commitKv(cache([8, 8]), cache([8, 8]), seq(0, 1, [])), /k\.shape must be \[capacity, numKvHeads, headDim\] or \[layers, capacity, numKvHeads, headDim\]; received "\[8, 8\]"/],
  ['v of another dtype', () => commitKv(k8, cache([8, 2, 4], 'f16'), seq(0, 1, [])), /v\.dtype must be the dtype of k \(f32\); received "f16"/],
  ['v of another shape', () => commitKv(k8, cache([8, 4, 2]), seq(0, 1, [])), /v\.shape must be the shape of k \[8, 2, 4\]; received "\[8, 4, 2\]"/],
  ['v is k', () => commitKv(k8, k8, seq(0, 1, [])), /v must be a different tensor from k; received "k itself"/],
  ['negative prefix', () => commitKv(k8, v8, seq(-1, 1, [])), /sequence\.prefixLen must be an integer in \[0, 7\]; received -1/],
  ['tree past the capacity', () => commitKv(k8, v8, seq(5, 4, [])), /sequence\.prefixLen must be an integer in \[0, 4\]; received 5/],
  ['too many nodes', () => commitKv(k8, v8, seq(0, 9, [])), /sequence\.numNodes must be an integer in \[0, 8\]; received 9/],
  ['accepted node out of range', () => commitKv(k8, v8, seq(2, 3, [0, 3])), /sequence\.acceptedNodes\[1\] must be a node index in \[1, 3\) \(strictly increasing\); received 3/],
  ['accepted nodes not increasing', () => commitKv(k8, v8, seq(2, 3, [1, 1])), /sequence\.acceptedNodes\[1\] must be a node index in \[2, 3\) \(strictly increasing\); received 1/],
  ['accepted node fractional', () => commitKv(k8, v8, seq(2, 3, [0.5])), /sequence\.acceptedNodes\[0\] must be a node index in \[0, 3\).*received 0\.5/],
  ['acceptedNodes missing', () => commitKv(k8, v8, { prefixLen: 0, numNodes: 1 } as never), /sequence\.acceptedNodes must be an array of node indices; received undefined/],
  ['kvIndptr length', () => commitKvBatch(k8, v8, [0, 4], [seq(0, 1, []), seq(0, 1, [])]), /kvIndptr must be 3 entries \(one more than sequences\); received \[0, 4\]/],
  ['kvIndptr decreasing', () => commitKvBatch(k8, v8, [0, 4, 2], [seq(0, 1, []), seq(0, 1, [])]), /kvIndptr\[2\] must be >= kvIndptr\[1\] = 4 \(non-decreasing\); received 2/],
  ['kvIndptr past the capacity', () => commitKvBatch(k8, v8, [0, 9], [seq(0, 1, [])]), /kvIndptr\[1\] must be at most the cache capacity 8; received 9/],
  ['region too small', () => commitKvBatch(k8, v8, [0, 2, 8], [seq(1, 2, []), seq(0, 1, [])]), /sequences\[0\]\.prefixLen must be an integer in \[0, 0\]; received 1/],
];

describeBadInputs('bad inputs to commitKv', tsCases);

const addon = native();
const i32 = (...v: number[]) => ({ data: Int32Array.from(v), dtype: 'int32', shape: [v.length] }) as never;
const kd = (n = 8) => ({ data: new Float32Array(n * 4), dtype: 'f32', shape: [n, 2, 2] }) as never;

const nativeCases: BadInputCase[] = [
  ['no arguments', () => (addon.commitKv as unknown as () => unknown)(), /k must be a tensor descriptor/],
  ['k and v share memory', () => {
    const shared = { data: new Float32Array(32), dtype: 'f32', shape: [8, 2, 2] } as never;
    return addon.commitKv(shared, shared, i32(0, 8), i32(0), i32(0, 1), i32(0), i32(-1), i32(0));
  }, /commitKv: k and v must not share memory/],
  ['v shape differs', () => addon.commitKv(kd(8), kd(7), i32(0, 8), i32(0), i32(0, 1), i32(0), i32(-1), i32(0)), /v must have the shape, dtype and device of k/],
  ['prefix past the region', () => addon.commitKv(kd(), kd(), i32(0, 8), i32(8), i32(0, 1), i32(0), i32(-1), i32(0)), /commitKv: prefixLens\[0\] must be in \[0, 7\].*received 8/],
  ['accepted count above the nodes', () => addon.commitKv(kd(), kd(), i32(0, 8), i32(0), i32(0, 1), i32(2), i32(0), i32(0)), /commitKv: acceptedCount\[0\] must be in \[0, 1\]; received 2/],
  ['accepted nodes not increasing', () => addon.commitKv(kd(), kd(), i32(0, 8), i32(0), i32(0, 3), i32(2), i32(1, 0, -1), i32(0)), /commitKv: acceptedNodes\[1\] must be a node index in \[2, 3\).*received 0/],
  ['treeIndptr total', () => addon.commitKv(kd(), kd(), i32(0, 8), i32(0), i32(0, 2), i32(0), i32(-1), i32(0)), /commitKv: treeIndptr\[1\] must equal the number of nodes 1; received 2/],
  ['kvIndptr past the capacity', () => addon.commitKv(kd(), kd(), i32(0, 9), i32(0), i32(0, 1), i32(0), i32(-1), i32(0)), /commitKv: kvIndptr\[1\] must be <= the cache capacity 8; received 9/],
  ['newLens missing', () => addon.commitKv(kd(), kd(), i32(0, 8), i32(0), i32(0, 1), i32(0), i32(-1), undefined as never), /newLens must be a tensor descriptor/],
  ['plan in f32', () => addon.commitKv(kd(), kd(), { data: new Float32Array(2), dtype: 'f32', shape: [2] } as never, i32(0), i32(0, 1), i32(0), i32(-1), i32(0)), /kvIndptr must be an int32 tensor; received f32/],
];

describeNativeBadInputs('bad inputs sent straight to the native commitKv', nativeCases);
