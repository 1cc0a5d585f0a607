/**
 * Attention logit soft-capping and sliding windows (Gemma 2 / 3): prefill, split-KV decode and
 * tree attention on every CPU path (AVX-512 / AVX2 tiles, the naive kernel, odd head sizes)
 * against the float64 reference, with tiny windows (8) and awkward shapes. The quantized-cache
 * and shared-prefix variants are covered in kv-quant.test.ts and prefix-attention.test.ts.
 * softcap / window 0 must leave results bit-identical to a call without them.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { attention, treeAttention } from '../../lib/kernels/attention.js';
import { ArgumentError } from '../../lib/errors.js';
import type { FloatDType } from '../../lib/tensor/dtype.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { attentionReference, mismatches, randomValues } from '../helpers/attention-reference.js';

const TOL: Record<FloatDType, [number, number]> = { f32: [2e-5, 2e-5], f16: [2e-4, 1e-3], bf16: [2e-3, 8e-3] };
const LSE_TOL: [number, number] = [5e-5, 1e-5];

afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
});

async function tensorOf(values: Float32Array, shape: number[], dtype: FloatDType): Promise<Tensor> {
  const t = Tensor.from(values, { shape });
  return dtype === 'f32' ? t : t.cast(dtype);
}

interface Case {
  qlens: number[];
  kvlens: number[];
  hq: number;
  hkv: number;
  d: number;
  mask: 'none' | 'causal' | 'tree';
  softcap?: number;
  window?: number;
  numSplits?: number;
  /** Scale the queries so that scores are large (soft-capping then matters). */
  qScale?: number;
  qPos?: number[];
  kvPos?: number[];
}

async function run(c: Case, dtype: FloatDType, seed: number, naive = false) {
  const total = c.qlens.reduce((a, b) => a + b, 0);
  const qoIndptr = [0];
  const kvIndptr = [0];
  c.qlens.forEach((l, b) => {
    qoIndptr.push(qoIndptr[b]! + l);
    kvIndptr.push(kvIndptr[b]! + c.kvlens[b]!);
  });
  const kvRows = kvIndptr[kvIndptr.length - 1]!;
  const qv = randomValues(total * c.hq * c.d, seed).map((x) => x * (c.qScale ?? 1));
  const q = await tensorOf(qv, [total, c.hq, c.d], dtype);
  const k = await tensorOf(randomValues(kvRows * c.hkv * c.d, seed + 1), [kvRows, c.hkv, c.d], dtype);
  const v = await tensorOf(randomValues(kvRows * c.hkv * c.d, seed + 2), [kvRows, c.hkv, c.d], dtype);
  const parents: number[] = [];
  for (const l of c.qlens) for (let t = 0; t < l; t++) parents.push(t === 0 || t % 4 === 0 ? -1 : Math.floor((t - 1) / 2));
  const opts = {
    qoIndptr,
    kvIndptr,
    returnLse: true,
    naive,
    ...(c.softcap !== undefined ? { softcap: c.softcap } : {}),
    ...(c.window !== undefined ? { window: c.window } : {}),
    ...(c.numSplits !== undefined ? { numSplits: c.numSplits } : {}),
    ...(c.qPos ? { qPos: c.qPos } : {}),
    ...(c.kvPos ? { kvPos: c.kvPos } : {}),
  };
  const got = c.mask === 'tree' ? await treeAttention(q, k, v, { ...opts, parents }) : await attention(q, k, v, { ...opts, mask: c.mask });
  const ref = attentionReference({
    q: Float64Array.from(q.toFloat32()),
    k: Float64Array.from(k.toFloat32()),
    v: Float64Array.from(v.toFloat32()),
    hq: c.hq,
    hkv: c.hkv,
    d: c.d,
    qoIndptr,
    kvIndptr,
    mask: c.mask,
    ...(c.mask === 'tree' ? { parents } : {}),
    scale: 1 / Math.sqrt(c.d),
    ...(c.softcap !== undefined ? { softcap: c.softcap } : {}),
    ...(c.window !== undefined ? { window: c.window } : {}),
    ...(c.qPos ? { qPos: c.qPos } : {}),
    ...(c.kvPos ? { kvPos: c.kvPos } : {}),
  });
  return { got, ref, q, k, v, opts, parents };
}

const CASES: Array<Case & { name: string }> = [
  { name: 'prefill chunk after a cache, GQA 4, d 64', qlens: [37], kvlens: [100], hq: 8, hkv: 2, d: 64, mask: 'causal' },
  { name: 'ragged batch of prefills and decodes, d 128', qlens: [1, 13, 70, 1], kvlens: [300, 13, 75, 1], hq: 4, hkv: 1, d: 128, mask: 'causal' },
  { name: 'decode, long caches, forced splits', qlens: [1, 1, 1], kvlens: [1031, 9, 257], hq: 16, hkv: 4, d: 64, mask: 'causal', numSplits: 5 },
  { name: 'mask none (bottom-right positions), d 80 (AVX2 tiles only)', qlens: [5, 2], kvlens: [40, 33], hq: 2, hkv: 2, d: 80, mask: 'none' },
  { name: 'tree behind a prefix', qlens: [15, 6], kvlens: [60, 6], hq: 8, hkv: 2, d: 64, mask: 'tree' },
  { name: 'odd head size 12 (naive kernel)', qlens: [9, 1], kvlens: [31, 50], hq: 4, hkv: 2, d: 12, mask: 'causal' },
  { name: 'tiny heads d 8, tree', qlens: [11], kvlens: [40], hq: 2, hkv: 1, d: 8, mask: 'tree' },
];

describe.each(['f32', 'f16', 'bf16'] as const)('soft-capping and sliding windows (%s) against the float64 reference', (dtype) => {
  it.each(CASES.map((c, i) => ({ ...c, i })))('$name', async (c) => {
    for (const isa of ['auto', 'avx2']) {
      if (isa === 'avx2') process.env.CANOPY_CPU_ISA = 'avx2';
      else delete process.env.CANOPY_CPU_ISA;
      for (const [softcap, window] of [[0, 8], [5, 0], [5, 8], [30, 1], [2, 33]] as const) {
        for (const naive of dtype === 'f32' ? [false, true] : [false]) {
          const r = await run({ ...c, softcap, window, qScale: 4 }, dtype, 40 + c.i, naive);
          const what = `isa ${isa}, softcap ${softcap}, window ${window}, naive ${naive}`;
          const out = r.got.out.toFloat32();
          expect(out.some(Number.isNaN), what).toBe(false);
          expect(mismatches(out, r.ref.o, ...TOL[dtype]), `out, ${what}`).toEqual([]);
          expect(mismatches(r.got.lse!.toFloat32(), r.ref.lse, ...LSE_TOL), `lse, ${what}`).toEqual([]);
        }
      }
    }
  });
});

describe('soft-capping and windows: equivalences and controls', () => {
  it('softcap 0 and window 0 are bit-identical to leaving them out; a window wider than the cache changes nothing', async () => {
    for (const c of CASES) {
      const base = await run(c, 'f32', 7);
      const off = await run({ ...c, softcap: 0, window: 0 }, 'f32', 7);
      const wide = await run({ ...c, window: 1 << 20 }, 'f32', 7);
      const a = new Uint32Array(base.got.out.toFloat32().buffer);
      expect(Buffer.from(new Uint32Array(off.got.out.toFloat32().buffer).buffer).equals(Buffer.from(a.buffer)), c.name).toBe(true);
      expect(Buffer.from(new Uint32Array(wide.got.out.toFloat32().buffer).buffer).equals(Buffer.from(a.buffer)), c.name).toBe(true);
    }
  });

  it('a negative control: the window and the cap each change the result', async () => {
    const c = CASES[0]!;
    const base = (await run({ ...c, qScale: 4 }, 'f32', 3)).got.out.toFloat32();
    const win = (await run({ ...c, qScale: 4, window: 8 }, 'f32', 3)).got.out.toFloat32();
    const cap = (await run({ ...c, qScale: 4, softcap: 2 }, 'f32', 3)).got.out.toFloat32();
    expect(mismatches(win, base, 1e-4, 1e-4).length).toBeGreaterThan(0);
    expect(mismatches(cap, base, 1e-4, 1e-4).length).toBeGreaterThan(0);
  });

  it('window 1 leaves each query only its own key (output = its value)', async () => {
    const c: Case = { qlens: [6], kvlens: [20], hq: 2, hkv: 1, d: 64, mask: 'causal', window: 1 };
    const r = await run(c, 'f32', 5);
    const out = r.got.out.toFloat32();
    const v = r.v.toFloat32();
    for (let t = 0; t < 6; t++) {
      for (let h = 0; h < 2; h++) {
        for (let x = 0; x < 64; x++) expect(out[(t * 2 + h) * 64 + x]).toBe(v[(14 + t) * 64 + x]);
      }
    }
  });

  it('explicit positions (qPos, kvPos) are honoured and the defaults equal the explicit bottom-right positions', async () => {
    const c: Case = { qlens: [4, 3], kvlens: [50, 20], hq: 4, hkv: 2, d: 64, mask: 'causal', window: 8 };
    const implicit = await run(c, 'f32', 11);
    const explicit = await run({ ...c, qPos: [146, 147, 148, 149, 17, 18, 19], kvPos: [100, 0] }, 'f32', 11);
    expect(mismatches(explicit.got.out.toFloat32(), implicit.got.out.toFloat32(), 0, 0)).toEqual([]);
    const shifted = await run({ ...c, qPos: [40, 41, 42, 43, 12, 13, 14], kvPos: [0, 0] }, 'f32', 11);
    expect(mismatches(shifted.got.out.toFloat32(), shifted.ref.o, ...TOL.f32)).toEqual([]);
    expect(mismatches(shifted.got.out.toFloat32(), implicit.got.out.toFloat32(), 1e-4, 1e-4).length).toBeGreaterThan(0);
  });

  it('rejects bad softcap, window and positions with the argument named', async () => {
    const q = Tensor.from(new Float32Array(64), { shape: [1, 1, 64] });
    const k = Tensor.from(new Float32Array(128), { shape: [2, 1, 64] });
    await expect(attention(q, k, k, { softcap: -1 })).rejects.toThrow(ArgumentError);
    await expect(attention(q, k, k, { softcap: Number.NaN })).rejects.toThrow(/softcap/);
    await expect(attention(q, k, k, { window: 1.5 })).rejects.toThrow(/window must be an integer >= 0/);
    await expect(attention(q, k, k, { window: -2 })).rejects.toThrow(/window/);
    await expect(attention(q, k, k, { window: 4, qPos: [1, 2] })).rejects.toThrow(/qPos/);
    await expect(attention(q, k, k, { window: 4, kvPos: [] })).rejects.toThrow(/kvPos/);
  });
});
