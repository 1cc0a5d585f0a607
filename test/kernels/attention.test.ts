import { afterEach, describe, expect, it } from 'vitest';

import { attention, mergeStates, mergeStatesInPlace, mergeStatesN, treeAttention, treeDepths } from '../../lib/kernels/attention.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import type { FloatDType } from '../../lib/tensor/dtype.js';
import { native } from '../../lib/native/loader.js';
import { attentionReference, mismatches, randomValues } from '../helpers/attention-reference.js';
import { describeBadInputs, describeNativeBadInputs } from '../helpers/bad-inputs.js';
import { ATTENTION_ISAS, useCpuIsa } from '../helpers/cpu-isa.js';

// Tolerances: the reference is float64 on the same (rounded) inputs, so what is
// left is fp32 accumulation (f32) or the final rounding of the output (f16: 2^-11,
// bf16: 2^-8 relative). LSE is always f32.
const TOL: Record<FloatDType, { atol: number; rtol: number }> = {
  f32: { atol: 2e-5, rtol: 2e-5 },
  f16: { atol: 2e-4, rtol: 1e-3 },
  bf16: { atol: 2e-3, rtol: 8e-3 },
};
const LSE_TOL = { atol: 5e-5, rtol: 1e-5 };

async function tensorOf(values: Float32Array, shape: number[], dtype: FloatDType): Promise<Tensor> {
  const t = Tensor.from(values, { shape });
  return dtype === 'f32' ? t : t.cast(dtype);
}

interface Case {
  name: string;
  qlens: number[];
  kvlens: number[];
  hq: number;
  hkv: number;
  d: number;
  mask: 'none' | 'causal';
  dtype: FloatDType;
  numSplits?: number;
  capacity?: number; // extra rows per sequence past kvLen (filled with NaN)
}

async function runCase(c: Case, seed: number) {
  const total = c.qlens.reduce((a, b) => a + b, 0);
  const cap = c.capacity ?? 0;
  const qoIndptr = [0];
  const kvIndptr = [0];
  for (let b = 0; b < c.qlens.length; b++) {
    qoIndptr.push(qoIndptr[b]! + c.qlens[b]!);
    kvIndptr.push(kvIndptr[b]! + c.kvlens[b]! + cap);
  }
  const kvRows = kvIndptr[kvIndptr.length - 1]!;
  const qv = randomValues(total * c.hq * c.d, seed);
  const kv = randomValues(kvRows * c.hkv * c.d, seed + 1);
  const vv = randomValues(kvRows * c.hkv * c.d, seed + 2);
  for (let b = 0; b < c.qlens.length && cap > 0; b++) {
    const from = (kvIndptr[b]! + c.kvlens[b]!) * c.hkv * c.d;
    const to = kvIndptr[b + 1]! * c.hkv * c.d;
    kv.fill(NaN, from, to);
    vv.fill(NaN, from, to);
  }
  const q = await tensorOf(qv, [total, c.hq, c.d], c.dtype);
  const k = await tensorOf(kv, [kvRows, c.hkv, c.d], c.dtype);
  const v = await tensorOf(vv, [kvRows, c.hkv, c.d], c.dtype);
  const kvLens = cap > 0 ? c.kvlens : undefined;
  const { out, lse } = await attention(q, k, v, {
    qoIndptr,
    kvIndptr,
    ...(kvLens ? { kvLens } : {}),
    mask: c.mask,
    returnLse: true,
    ...(c.numSplits !== undefined ? { numSplits: c.numSplits } : {}),
  });
  const ref = attentionReference({
    q: Float64Array.from(q.toFloat32()),
    k: Float64Array.from(k.toFloat32()),
    v: Float64Array.from(v.toFloat32()),
    hq: c.hq,
    hkv: c.hkv,
    d: c.d,
    qoIndptr,
    kvIndptr,
    ...(kvLens ? { kvLens } : {}),
    mask: c.mask,
    scale: 1 / Math.sqrt(c.d),
  });
  return { out: out.toFloat32(), lse: lse!.toFloat32(), ref, q, k, v, qoIndptr, kvIndptr };
}

const shapes: Array<Omit<Case, 'dtype' | 'name'>> = [
  { qlens: [1], kvlens: [1], hq: 4, hkv: 4, d: 64, mask: 'causal' },
  { qlens: [7], kvlens: [7], hq: 8, hkv: 2, d: 128, mask: 'causal' },
  { qlens: [17, 1, 37], kvlens: [17, 113, 50], hq: 8, hkv: 1, d: 64, mask: 'causal' },
  { qlens: [113], kvlens: [113], hq: 4, hkv: 1, d: 128, mask: 'causal' },
  { qlens: [5, 3], kvlens: [37, 1000], hq: 8, hkv: 8, d: 64, mask: 'none' },
  { qlens: [1, 1, 1], kvlens: [1031, 7, 300], hq: 32, hkv: 4, d: 128, mask: 'causal' },
  // Head sizes off the tuned ones: 8 (tiny models: naive path on AVX-512), 32 and 96 (partial
  // value chunks), 72 (AVX2 tiles only).
  { qlens: [3, 1], kvlens: [9, 40], hq: 8, hkv: 4, d: 8, mask: 'causal' },
  { qlens: [17], kvlens: [40], hq: 4, hkv: 2, d: 32, mask: 'causal' },
  { qlens: [1, 5], kvlens: [70, 5], hq: 4, hkv: 4, d: 96, mask: 'causal' },
  { qlens: [2], kvlens: [33], hq: 2, hkv: 1, d: 72, mask: 'none' },
];

const isas = ATTENTION_ISAS;
afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
});

describe.each(['f32', 'f16', 'bf16'] as const)('attention (%s) against the float64 reference', (dtype) => {
  it.each(shapes.map((s, i) => ({ ...s, name: `q${s.qlens.join('+')} kv${s.kvlens.join('+')} h${s.hq}/${s.hkv} d${s.d} ${s.mask}`, i })))('$name', async (s) => {
    for (const isa of isas) {
      useCpuIsa(isa);
      const r = await runCase({ ...s, dtype }, 100 + s.i);
      expect(mismatches(r.out, r.ref.o, TOL[dtype].atol, TOL[dtype].rtol), `output, isa ${isa}`).toEqual([]);
      expect(mismatches(r.lse, r.ref.lse, LSE_TOL.atol, LSE_TOL.rtol), `lse, isa ${isa}`).toEqual([]);
    }
  });
});

describe('attention equivalences', () => {
  it('split-KV equals unsplit (forced splits 2, 3, 8 and the heuristic)', async () => {
    const base = { qlens: [1, 2, 1], kvlens: [2000, 513, 40], hq: 8, hkv: 2, d: 128, mask: 'causal' as const, dtype: 'f32' as const, name: '' };
    const unsplit = await runCase({ ...base, numSplits: 1 }, 7);
    for (const numSplits of [2, 3, 8, 0]) {
      const split = await runCase({ ...base, numSplits }, 7);
      expect(mismatches(split.out, unsplit.out, 1e-6, 1e-5), `numSplits ${numSplits}`).toEqual([]);
      expect(mismatches(split.lse, unsplit.lse, 1e-6, 1e-6), `numSplits ${numSplits}`).toEqual([]);
      expect(mismatches(split.out, split.ref.o, 2e-5, 2e-5)).toEqual([]);
    }
  });

  it('NaN written past the kv lengths never reaches the output', async () => {
    for (const numSplits of [1, 4]) {
      const r = await runCase({ name: '', qlens: [3, 1], kvlens: [40, 70], hq: 4, hkv: 2, d: 64, mask: 'causal', dtype: 'f32', capacity: 25, numSplits }, 3);
      expect(r.out.some(Number.isNaN)).toBe(false);
      expect(mismatches(r.out, r.ref.o, 2e-5, 2e-5)).toEqual([]);
    }
  });

  it('fully masked rows give output 0 and LSE -inf (more queries than keys; empty caches)', async () => {
    const r = await runCase({ name: '', qlens: [5, 2], kvlens: [3, 0], hq: 2, hkv: 2, d: 32, mask: 'causal', dtype: 'f32' }, 5);
    // sequence 0: rows 0 and 1 sit before the first key; sequence 1 has no keys.
    for (const row of [0, 1, 5, 6]) {
      for (let h = 0; h < 2; h++) {
        expect(r.lse[row * 2 + h]).toBe(-Infinity);
        expect(Array.from(r.out.subarray((row * 2 + h) * 32, (row * 2 + h + 1) * 32)).every((x) => x === 0)).toBe(true);
      }
    }
    expect(r.lse[2 * 2]).toBeGreaterThan(-Infinity);
  });

  it('merging the states of two halves equals attention over the whole (two-way, in place, n-way)', async () => {
    const d = 64;
    const hq = 4;
    const kvLen = 300;
    const q = Tensor.from(randomValues(3 * hq * d, 1), { shape: [3, hq, d] });
    const k = Tensor.from(randomValues(kvLen * 2 * d, 2), { shape: [kvLen, 2, d] });
    const v = Tensor.from(randomValues(kvLen * 2 * d, 3), { shape: [kvLen, 2, d] });
    const whole = await attention(q, k, v, { returnLse: true });
    const cut = 113;
    const a = await attention(q, k, v, { kvIndptr: [0, cut], returnLse: true });
    const b = await attention(q, k, v, { kvIndptr: [cut, kvLen], returnLse: true });
    const merged = await mergeStates({ v: a.out, s: a.lse! }, { v: b.out, s: b.lse! });
    expect(mismatches(merged.v.toFloat32(), whole.out.toFloat32(), 1e-6, 1e-5)).toEqual([]);
    expect(mismatches(merged.s.toFloat32(), whole.lse!.toFloat32(), 1e-6, 1e-6)).toEqual([]);
    // n-way: stack [tokens, 2, heads, d]
    const vs = new Float32Array(3 * 2 * hq * d);
    const ss = new Float32Array(3 * 2 * hq);
    for (let t = 0; t < 3; t++) {
      vs.set((a.out.toArray() as Float32Array).subarray(t * hq * d, (t + 1) * hq * d), (t * 2) * hq * d);
      vs.set((b.out.toArray() as Float32Array).subarray(t * hq * d, (t + 1) * hq * d), (t * 2 + 1) * hq * d);
      ss.set((a.lse!.toArray() as Float32Array).subarray(t * hq, (t + 1) * hq), t * 2 * hq);
      ss.set((b.lse!.toArray() as Float32Array).subarray(t * hq, (t + 1) * hq), (t * 2 + 1) * hq);
    }
    const mn = await mergeStatesN(Tensor.from(vs, { shape: [3, 2, hq, d] }), Tensor.from(ss, { shape: [3, 2, hq] }));
    expect(mismatches(mn.v.toFloat32(), whole.out.toFloat32(), 1e-6, 1e-5)).toEqual([]);
    await mergeStatesInPlace({ v: a.out, s: a.lse! }, { v: b.out, s: b.lse! });
    expect(mismatches(a.out.toFloat32(), whole.out.toFloat32(), 1e-6, 1e-5)).toEqual([]);
  });

  it('merging with an empty (-inf) state returns the other state, and two empty states give 0 / -inf without NaN', async () => {
    const d = 32;
    const vA = Tensor.from(randomValues(2 * d, 9), { shape: [2, 1, d] });
    const sA = Tensor.from(new Float32Array([0.5, -Infinity]), { shape: [2, 1] });
    const vB = Tensor.from(new Float32Array(2 * d).fill(NaN), { shape: [2, 1, d] }); // NaN must not leak from empty states
    const sB = Tensor.from(new Float32Array([-Infinity, -Infinity]), { shape: [2, 1] });
    const m = await mergeStates({ v: vA, s: sA }, { v: vB, s: sB });
    const out = m.v.toFloat32();
    expect(Array.from(out.subarray(0, d))).toEqual(Array.from(vA.toFloat32().subarray(0, d)));
    expect(Array.from(out.subarray(d))).toEqual(new Array(d).fill(0));
    expect(Array.from(m.s.toFloat32())).toEqual([0.5, -Infinity]);
  });
});

describe('tree attention', () => {
  // A tree of 9 nodes: 0 and 1 are children of the prefix; chains and branches below.
  const parents = [-1, -1, 0, 0, 2, 1, 4, 4, 5];
  const d = 64;
  const hq = 8;
  const hkv = 2;
  const prefix = 45;
  const n = parents.length;

  async function setup(dtype: FloatDType) {
    const kvLen = prefix + n;
    const q = await tensorOf(randomValues(n * hq * d, 11), [n, hq, d], dtype);
    const k = await tensorOf(randomValues(kvLen * hkv * d, 12), [kvLen, hkv, d], dtype);
    const v = await tensorOf(randomValues(kvLen * hkv * d, 13), [kvLen, hkv, d], dtype);
    return { q, k, v, kvLen };
  }

  it.each(['f32', 'bf16'] as const)('equals the float64 reference (%s)', async (dtype) => {
    const { q, k, v } = await setup(dtype);
    const { out, lse } = await treeAttention(q, k, v, { parents, returnLse: true });
    const ref = attentionReference({
      q: Float64Array.from(q.toFloat32()), k: Float64Array.from(k.toFloat32()), v: Float64Array.from(v.toFloat32()),
      hq, hkv, d, qoIndptr: [0, n], kvIndptr: [0, prefix + n], mask: 'tree', parents, scale: 1 / Math.sqrt(d),
    });
    expect(mismatches(out.toFloat32(), ref.o, TOL[dtype].atol, TOL[dtype].rtol)).toEqual([]);
    expect(mismatches(lse!.toFloat32(), ref.lse, LSE_TOL.atol, LSE_TOL.rtol)).toEqual([]);
  });

  it.each(ATTENTION_ISAS)('NaN in one node\'s key and value reaches only that node and its descendants (isa %s)', async (isa) => {
    // A broken draft node (NaN weights, overflow) must not corrupt its siblings: masked keys add
    // nothing to P V, even NaN ones (0 * NaN would be NaN).
    useCpuIsa(isa);
    const { q, k, v, kvLen } = await setup('f32');
    const clean = (await treeAttention(q, k, v, { parents })).out.toFloat32();
    const broken = 2; // children 4, then 6 and 7 below it
    const ka = k.toFloat32().slice();
    const va = v.toFloat32().slice();
    ka.fill(NaN, (prefix + broken) * hkv * d, (prefix + broken + 1) * hkv * d);
    va.fill(NaN, (prefix + broken) * hkv * d, (prefix + broken + 1) * hkv * d);
    const got = (await treeAttention(q, Tensor.from(ka, { shape: [kvLen, hkv, d] }), Tensor.from(va, { shape: [kvLen, hkv, d] }), { parents })).out.toFloat32();
    const below = new Set([broken]);
    parents.forEach((p, node) => {
      if (below.has(p)) below.add(node);
    });
    expect([...below].sort()).toEqual([2, 4, 6, 7]);
    for (let node = 0; node < n; node++) {
      const row = got.subarray(node * hq * d, (node + 1) * hq * d);
      if (below.has(node)) expect(row.some(Number.isNaN), `node ${node}`).toBe(true);
      else expect(mismatches(row, clean.subarray(node * hq * d, (node + 1) * hq * d), 0, 0), `node ${node}`).toEqual([]);
    }
  });

  it("each node's row equals causal attention over its root-to-node path", async () => {
    const { q, k, v } = await setup('f32');
    const { out } = await treeAttention(q, k, v, { parents });
    const got = out.toFloat32();
    const qa = q.toFloat32();
    const ka = k.toFloat32();
    const va = v.toFloat32();
    for (let node = 0; node < n; node++) {
      const path: number[] = [];
      for (let x = node; x >= 0; x = parents[x]!) path.unshift(x);
      // Keys: the prefix, then the path's nodes in order; the query is the node itself (last row of the chunk).
      const rows = [...Array.from({ length: prefix }, (_, j) => j), ...path.map((p) => prefix + p)];
      const kPath = new Float32Array(rows.length * hkv * d);
      const vPath = new Float32Array(rows.length * hkv * d);
      rows.forEach((r, i) => {
        kPath.set(ka.subarray(r * hkv * d, (r + 1) * hkv * d), i * hkv * d);
        vPath.set(va.subarray(r * hkv * d, (r + 1) * hkv * d), i * hkv * d);
      });
      const causal = await attention(
        Tensor.from(qa.slice(node * hq * d, (node + 1) * hq * d), { shape: [1, hq, d] }),
        Tensor.from(kPath, { shape: [rows.length, hkv, d] }),
        Tensor.from(vPath, { shape: [rows.length, hkv, d] }),
        { mask: 'causal' },
      );
      expect(mismatches(got.subarray(node * hq * d, (node + 1) * hq * d), causal.out.toFloat32(), 1e-6, 1e-5), `node ${node}`).toEqual([]);
    }
  });

  it('a chain tree equals causal attention, batched over sequences with different prefixes', async () => {
    const lens = [4, 1, 6];
    const prefixes = [10, 0, 33];
    const qoIndptr = [0];
    const kvIndptr = [0];
    const chainParents: number[] = [];
    lens.forEach((l, b) => {
      qoIndptr.push(qoIndptr[b]! + l);
      kvIndptr.push(kvIndptr[b]! + prefixes[b]! + l);
      for (let i = 0; i < l; i++) chainParents.push(i - 1);
    });
    const total = qoIndptr[3]!;
    const rows = kvIndptr[3]!;
    const q = Tensor.from(randomValues(total * hq * d, 21), { shape: [total, hq, d] });
    const k = Tensor.from(randomValues(rows * hkv * d, 22), { shape: [rows, hkv, d] });
    const v = Tensor.from(randomValues(rows * hkv * d, 23), { shape: [rows, hkv, d] });
    const tree = await treeAttention(q, k, v, { parents: chainParents, qoIndptr, kvIndptr, returnLse: true });
    const causal = await attention(q, k, v, { qoIndptr, kvIndptr, mask: 'causal', returnLse: true });
    expect(mismatches(tree.out.toFloat32(), causal.out.toFloat32(), 1e-6, 1e-5)).toEqual([]);
    expect(mismatches(tree.lse!.toFloat32(), causal.lse!.toFloat32(), 1e-6, 1e-6)).toEqual([]);
  });

  it('gives RoPE depths from parents', () => {
    expect(Array.from(treeDepths(parents))).toEqual([0, 0, 1, 1, 2, 1, 3, 3, 2]);
  });

  it('the naive baseline agrees with the flash kernel (causal and tree)', async () => {
    const { q, k, v } = await setup('f32');
    const flash = await treeAttention(q, k, v, { parents, returnLse: true });
    const naive = await treeAttention(q, k, v, { parents, returnLse: true, naive: true });
    expect(mismatches(naive.out.toFloat32(), flash.out.toFloat32(), 1e-5, 1e-5)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// Bad inputs: each names the argument, never crashes.
const f32t = (shape: number[]) => Tensor.from(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape });
const q4 = f32t([4, 8, 64]);
const k9 = f32t([9, 2, 64]);
const v9 = f32t([9, 2, 64]);
const disposedK = (() => {
  const t = f32t([9, 2, 64]);
  t.dispose();
  return t;
})();

describeBadInputs('bad inputs to attention, treeAttention and mergeStates', [
  ['q not a tensor', () => attention(new Float32Array(4) as never, k9, v9), /q must be a Tensor of shape \[numTokens, numQoHeads, headDim\]; received Float32Array\(4\)/],
  ['q with 2 dims', () => attention(f32t([4, 64]), k9, v9), /q\.shape must be \[numTokens, numQoHeads, headDim\] \(3 dims\); received \[4, 64\]/],
  ['integer q', () => attention(Tensor.from(new Int32Array(4 * 8 * 64), { shape: [4, 8, 64] }), k9, v9), /q\.dtype must be one of f32, f16, bf16; received "int32"/],
  ['k dtype differs', async () => attention(q4, await k9.cast('bf16'), v9), /k\.dtype must be the dtype of q, "f32"; received "bf16"/],
  ['head dim 320', () => attention(f32t([4, 8, 320]), f32t([9, 2, 320]), f32t([9, 2, 320])), /headDim must be in \[1, 256\].*; received 320/],
  ['head dims differ', () => attention(q4, f32t([9, 2, 128]), f32t([9, 2, 128])), /k\.shape\[2\] must be headDim of q \(64\); received 128/],
  ['qo heads not a multiple of kv heads', () => attention(f32t([4, 6, 64]), f32t([9, 4, 64]), f32t([9, 4, 64])), /numQoHeads must be a multiple of numKvHeads \(4\); received 6/],
  ['v shape differs', () => attention(q4, k9, f32t([8, 2, 64])), /v\.shape must be the shape of k \[9, 2, 64\]; received \[8, 2, 64\]/],
  ['qoIndptr does not cover q', () => attention(q4, k9, v9, { qoIndptr: [0, 3], kvIndptr: [0, 9] }), /qoIndptr\[1\] must be the number of query rows 4; received 3/],
  ['qoIndptr decreasing', () => attention(q4, k9, v9, { qoIndptr: [0, 3, 2, 4], kvIndptr: [0, 3, 6, 9] }), /qoIndptr\[2\] must be >= qoIndptr\[1\] = 3 \(non-decreasing\); received 2/],
  ['qoIndptr not integers', () => attention(q4, k9, v9, { qoIndptr: [0, 1.5, 4], kvIndptr: [0, 3, 9] }), /qoIndptr\[1\] must be an int32 integer; received 1\.5/],
  ['kvIndptr length', () => attention(q4, k9, v9, { qoIndptr: [0, 2, 4], kvIndptr: [0, 9] }), /kvIndptr must be an array of 3 entries \(like qoIndptr\); received Int32Array \[0, 9\]/],
  ['kvIndptr past the rows', () => attention(q4, k9, v9, { kvIndptr: [0, 10] }), /kvIndptr\[1\] must be within the 9 rows of k and v; received 10/],
  ['kvLens past the rows', () => attention(q4, k9, v9, { kvIndptr: [5, 9], kvLens: [6] }), /kvLens\[0\] must be within the 9 rows of k and v; received 6/],
  ['negative kvLens', () => attention(q4, k9, v9, { kvLens: [-1] }), /kvLens\[0\] must be an integer >= 0; received -1/],
  ['unknown mask', () => attention(q4, k9, v9, { mask: 'sliding' as never }), /mask must be 'none' or 'causal'; received "sliding"/],
  ['NaN scale', () => attention(q4, k9, v9, { scale: NaN }), /scale must be a finite non-zero number; received NaN/],
  ['negative numSplits', () => attention(q4, k9, v9, { numSplits: -1 }), /numSplits must be an integer in \[0, 1024\]; received -1/],
  ['disposed k', () => attention(q4, disposedK, v9), /k \(a f32 tensor of shape \[9, 2, 64\] on cpu\) was used after dispose\(\)/],
  ['tree without parents', () => treeAttention(q4, k9, v9, {} as never), /parents must be an Int32Array or an array of integers; received undefined/],
  ['parents not topological', () => treeAttention(q4, k9, v9, { parents: [-1, 2, 0, 0] }), /parents\[1\] must be -1 or the index of an earlier node of its tree \(0\.\.0\); received 2/],
  ['parents length', () => treeAttention(q4, k9, v9, { parents: [-1, 0] }), /parents must be an array with one entry per query row \(4\); received/],
  ['more tree nodes than keys', () => treeAttention(q4, f32t([3, 2, 64]), f32t([3, 2, 64]), { parents: [-1, 0, 1, 2] }), /kvLens\[0\] must be at least the 4 tree nodes of sequence 0/],
  ['merge shapes differ', () => mergeStates({ v: f32t([2, 1, 32]), s: f32t([2, 1]) }, { v: f32t([3, 1, 32]), s: f32t([3, 1]) }), /b\.v\.shape must be the shape of a\.v \[2, 1, 32\]; received \[3, 1, 32\]/],
  ['merge lse not f32', async () => mergeStates({ v: f32t([2, 1, 32]), s: await f32t([2, 1]).cast('bf16') }, { v: f32t([2, 1, 32]), s: f32t([2, 1]) }), /a\.s\.dtype must be f32; received "bf16"/],
]);

const addonRaw = native();
describeNativeBadInputs('bad inputs sent straight to the native attention', [
  ['no options', () => addonRaw.attention(undefined as never), /attention: expected an options object/],
  ['o shape differs', () => addonRaw.attention({ q: q4.descriptor(), k: k9.descriptor(), v: v9.descriptor(), o: f32t([3, 8, 64]).descriptor(), qoIndptr: Int32Array.of(0, 4), kvIndptr: Int32Array.of(0, 9), mask: 0, scale: 0.125 }), /o must have shape \[4, 8, 64\]; received \[3, 8, 64\]/],
  ['indptr not Int32Array', () => addonRaw.attention({ q: q4.descriptor(), k: k9.descriptor(), v: v9.descriptor(), o: f32t([4, 8, 64]).descriptor(), qoIndptr: [0, 4] as never, kvIndptr: Int32Array.of(0, 9), mask: 0, scale: 0.125 }), /qoIndptr must be an Int32Array; received an array/],
  ['kv past the rows', () => addonRaw.attention({ q: q4.descriptor(), k: k9.descriptor(), v: v9.descriptor(), o: f32t([4, 8, 64]).descriptor(), qoIndptr: Int32Array.of(0, 4), kvIndptr: Int32Array.of(0, 90), mask: 0, scale: 0.125 }), /attention: sequence 0 reads keys \[0, 90\) but k and v hold 9 rows/],
  ['bad tree parents', () => addonRaw.attention({ q: q4.descriptor(), k: k9.descriptor(), v: v9.descriptor(), o: f32t([4, 8, 64]).descriptor(), qoIndptr: Int32Array.of(0, 4), kvIndptr: Int32Array.of(0, 9), mask: 2, scale: 0.125, parents: Int32Array.of(-1, 5, 0, 0) }), /parents\[1\] must be -1 or the index of an earlier node/],
  ['mask code', () => addonRaw.attention({ q: q4.descriptor(), k: k9.descriptor(), v: v9.descriptor(), o: f32t([4, 8, 64]).descriptor(), qoIndptr: Int32Array.of(0, 4), kvIndptr: Int32Array.of(0, 9), mask: 7, scale: 0.125 }), /mask must be 0 \(none\), 1 \(causal\) or 2 \(tree\)/],
]);
