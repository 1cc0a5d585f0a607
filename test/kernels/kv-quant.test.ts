/**
 * Quantized KV caches (int8, int4 KIVI-style, fp8 e4m3): round trips within the bounds the
 * formats promise, the native dequantization against an independent float64 decoder,
 * attention over the quantized cache against attention over its dequantized copy (tight) and
 * against the original keys (reported), and append / quantize / commit / restore.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { attention, quantizedAttention } from '../../lib/kernels/attention.js';
import {
  QuantizedKv,
  appendQuantizedKv,
  commitQuantizedKv,
  dequantizeKv,
  quantizeKv,
  quantizeKvGroups,
  quantizedBytesPerToken,
  restoreKvGroupsSync,
} from '../../lib/kernels/kv-quant.js';
import { native } from '../../lib/native/loader.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import type { FloatDType } from '../../lib/tensor/dtype.js';
import { attentionReference, mismatches, randomValues } from '../helpers/attention-reference.js';
import { describeBadInputs, describeNativeBadInputs } from '../helpers/bad-inputs.js';
import { decodeSequence, e4m3Value, roundTripBound } from '../helpers/kv-quant-reference.js';
import { ATTENTION_ISAS, useCpuIsa } from '../helpers/cpu-isa.js';

const FORMATS = ['int8', 'int4', 'fp8'] as const;
afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
});

/** Values with per-row magnitudes spread over 1e-3 .. 1e3, plus a zero row and a constant row. */
function awkwardValues(n: number, H: number, D: number, seed: number): Float32Array {
  const x = randomValues(n * H * D, seed);
  const mags = randomValues(n * H, seed + 7);
  for (let r = 0; r < n * H; r++) {
    const m = 10 ** (3 * mags[r]!);
    for (let d = 0; d < D; d++) x[r * D + d] = x[r * D + d]! * m;
  }
  if (n * H > 2) {
    x.fill(0, 0, D); // a zero row: scale 0
    x.fill(0.75, D, 2 * D); // a constant row: int4 value scale 0
  }
  return x;
}

/** Smooth values (a typical KV scale: |x| up to about 2) for attention comparisons. */
function kvValues(n: number, H: number, D: number, seed: number): Float32Array {
  const x = randomValues(n * H * D, seed);
  for (let i = 0; i < x.length; i++) x[i] = x[i]! * 2;
  return x;
}

describe('round trip within the bound of each format', () => {
  const shapes = [
    { n: 37, H: 1, D: 64 },
    { n: 113, H: 4, D: 128 },
    { n: 200, H: 2, D: 8 },
  ];
  it.each(FORMATS.flatMap((format) => shapes.map((s) => ({ format, ...s }))))('$format n=$n H=$H D=$D', async ({ format, n, H, D }) => {
    const kx = awkwardValues(n, H, D, 11 + n);
    const vx = awkwardValues(n, H, D, 12 + n);
    const k = Tensor.from(kx, { shape: [n, H, D] });
    const v = Tensor.from(vx, { shape: [n, H, D] });
    const { cache, quantLen } = await quantizeKv(k, v, { format, quantizeAll: true, residualDtype: 'f32' });
    const ref = decodeSequence(cache, 0, 0, n, quantLen, 0);
    const native = await dequantizeKv(cache, { kvStart: [0], kvLens: [n], quantLens: [quantLen] });
    for (const [which, x, dec, nat] of [
      ['k', kx, ref.k, native.k.toFloat32()],
      ['v', vx, ref.v, native.v.toFloat32()],
    ] as const) {
      // The kernels' dequantization equals the independent decoder (f32 arithmetic: an ulp or two).
      let amax = 0;
      for (const a of x) amax = Math.max(amax, Math.abs(a));
      expect(mismatches(nat, dec, 1e-6 * amax, 1e-6), `${which}: native dequantize vs decoder`).toEqual([]);
      const bound = roundTripBound(format, x, n, H, D, which, cache.group, quantLen);
      const bad: string[] = [];
      let worst = 0;
      for (let i = 0; i < quantLen * H * D; i++) {
        const err = Math.abs(dec[i]! - x[i]!);
        if (!(err <= bound[i]!)) bad.push(`#${i}: x ${x[i]} decoded ${dec[i]} err ${err} > bound ${bound[i]}`);
        if (bound[i]! > 0) worst = Math.max(worst, err / bound[i]!);
      }
      expect(bad.slice(0, 5), `${which}: round-trip error within the bound`).toEqual([]);
      // The bound is tight: some element comes close to it (a test that cannot fail proves nothing).
      expect(worst, `${which}: worst error / bound`).toBeGreaterThan(0.5);
      // Rows past quantLen (int4 residual, f32 here) hold the exact values.
      for (let i = quantLen * H * D; i < n * H * D; i++) expect(dec[i]).toBe(x[i]);
    }
    // Zero rows decode to exact zeros.
    for (let d = 0; d < D; d++) expect(ref.v[d]).toBe(0);
    cache.dispose();
  });

  it('int8 codes stay in [-127, 127] and fp8 codes are never NaN; e4m3 decodes exactly', async () => {
    const n = 64;
    const x = awkwardValues(n, 2, 64, 5);
    const t = Tensor.from(x, { shape: [n, 2, 64] });
    const i8 = (await quantizeKv(t, t, { format: 'int8' })).cache;
    expect(Math.min(...(i8.k.toArray() as Int8Array))).toBeGreaterThanOrEqual(-127);
    const f8 = (await quantizeKv(t, t, { format: 'fp8' })).cache;
    expect((f8.k.toArray() as Uint8Array).some((b) => (b & 0x7f) === 0x7f)).toBe(false);
    // e4m3 reference values: max 448, min normal 2^-6, min subnormal 2^-9.
    expect([e4m3Value(0x7e), e4m3Value(0x08), e4m3Value(0x01), e4m3Value(0xfe)]).toEqual([448, 2 ** -6, 2 ** -9, -448]);
    i8.dispose();
    f8.dispose();
  });

  it('reports bytes per token: int8 / fp8 about half of 16-bit, int4 under a third', () => {
    const H = 8;
    const D = 128;
    const b16 = quantizedBytesPerToken('bf16', H, D);
    expect(b16).toBe(4096);
    expect(quantizedBytesPerToken('int8', H, D)).toBe(2 * H * (D + 4));
    expect(quantizedBytesPerToken('int4', H, D, 32)).toBe(H * (D + 32 + 8));
    expect(b16 / quantizedBytesPerToken('int4', H, D, 128)).toBeGreaterThan(3);
  });
});

interface AttnCase {
  format: (typeof FORMATS)[number];
  qlens: number[];
  kvlens: number[];
  hq: number;
  hkv: number;
  d: number;
  mask: 'none' | 'causal' | 'tree';
  residual?: number; // int4: keep the newest keys in the ring
  numSplits?: number;
  softcap?: number;
  window?: number;
}

/**
 * Builds a multi-sequence quantized cache (regions of `cap` rows), runs quantizedAttention, and
 * returns it with attention over the dequantized keys and over the original keys.
 */
async function runAttn(c: AttnCase, qdtype: FloatDType, seed: number, naive = false) {
  const gemma = { ...(c.softcap !== undefined ? { softcap: c.softcap } : {}), ...(c.window !== undefined ? { window: c.window } : {}) };
  const B = c.qlens.length;
  const group = 32;
  const cap = Math.ceil(Math.max(...c.kvlens, 1) / group) * group;
  const cache = new QuantizedKv({ format: c.format, rows: B * cap, numKvHeads: c.hkv, headDim: c.d, rings: B, residual: c.residual ?? 32, ring: cap + 64, residualDtype: 'f32' });
  const kvStart = Array.from({ length: B }, (_, b) => b * cap);
  const quantLens: number[] = [];
  const origK: Float32Array[] = [];
  const origV: Float32Array[] = [];
  for (let b = 0; b < B; b++) {
    const n = c.kvlens[b]!;
    const kx = kvValues(n, c.hkv, c.d, seed + 10 * b);
    const vx = kvValues(n, c.hkv, c.d, seed + 10 * b + 1);
    origK.push(kx);
    origV.push(vx);
    await appendQuantizedKv(cache, Tensor.from(kx, { shape: [n, c.hkv, c.d] }), Tensor.from(vx, { shape: [n, c.hkv, c.d] }), {
      kvStart: [kvStart[b]!],
      resStart: [b * cache.ring],
      posBefore: [0],
    });
    const ql = c.format === 'int4' ? Math.max(0, Math.floor((n - (c.residual ?? 0)) / group) * group) : n;
    if (c.format === 'int4' && ql > 0) await quantizeKvGroups(cache, { kvStart: [kvStart[b]!], resStart: [b * cache.ring], from: [0], to: [ql] });
    quantLens.push(ql);
  }
  const total = c.qlens.reduce((a, b) => a + b, 0);
  const qoIndptr = [0];
  c.qlens.forEach((l) => qoIndptr.push(qoIndptr[qoIndptr.length - 1]! + l));
  let q = Tensor.from(randomValues(total * c.hq * c.d, seed + 99), { shape: [total, c.hq, c.d] });
  if (qdtype !== 'f32') q = await q.cast(qdtype);
  const parents: number[] = [];
  for (const l of c.qlens) for (let t = 0; t < l; t++) parents.push(t === 0 ? -1 : Math.floor((t - 1) / 2));
  const opts = {
    qoIndptr,
    kvIndptr: [...kvStart, B * cap],
    kvLens: c.kvlens,
    mask: c.mask,
    returnLse: true,
    naive,
    ...(c.mask === 'tree' ? { parents } : {}),
    ...(c.numSplits !== undefined ? { numSplits: c.numSplits } : {}),
    ...gemma,
  };
  const got = await quantizedAttention(q, { cache, ...(c.format === 'int4' ? { quantLens } : {}) }, opts);
  // The dequantized copy, laid out contiguously per sequence.
  const deq = await dequantizeKv(cache, { kvStart, kvLens: c.kvlens, ...(c.format === 'int4' ? { quantLens } : {}) });
  const contiguous = [0];
  c.kvlens.forEach((l) => contiguous.push(contiguous[contiguous.length - 1]! + l));
  const plainOpts = { ...opts, kvIndptr: contiguous, kvLens: undefined, naive: false };
  delete plainOpts.kvLens;
  const asQ = async (t: Tensor) => (qdtype === 'f32' ? t : t.cast(qdtype));
  const onDeq = c.mask === 'tree'
    ? await (await import('../../lib/kernels/attention.js')).treeAttention(q, await asQ(deq.k), await asQ(deq.v), { ...plainOpts, parents })
    : await attention(q, await asQ(deq.k), await asQ(deq.v), { ...plainOpts, mask: c.mask as 'none' | 'causal' });
  const concat = (parts: Float32Array[]) => {
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  };
  const refOrig = attentionReference({
    q: Float64Array.from(q.toFloat32()),
    k: Float64Array.from(concat(origK)),
    v: Float64Array.from(concat(origV)),
    hq: c.hq,
    hkv: c.hkv,
    d: c.d,
    qoIndptr,
    kvIndptr: contiguous,
    mask: c.mask,
    ...(c.mask === 'tree' ? { parents } : {}),
    scale: 1 / Math.sqrt(c.d),
    ...gemma,
  });
  const refDeq = attentionReference({
    q: Float64Array.from(q.toFloat32()),
    k: Float64Array.from(deq.k.toFloat32()),
    v: Float64Array.from(deq.v.toFloat32()),
    hq: c.hq,
    hkv: c.hkv,
    d: c.d,
    qoIndptr,
    kvIndptr: contiguous,
    mask: c.mask,
    ...(c.mask === 'tree' ? { parents } : {}),
    scale: 1 / Math.sqrt(c.d),
    ...gemma,
  });
  cache.dispose();
  return { got, onDeq, refOrig, refDeq };
}

const ATTN_CASES: Array<Omit<AttnCase, 'format'>> = [
  { qlens: [1], kvlens: [113], hq: 4, hkv: 4, d: 64, mask: 'causal' },
  { qlens: [1, 1, 1], kvlens: [1031, 7, 300], hq: 32, hkv: 4, d: 128, mask: 'causal' },
  { qlens: [17, 1, 5], kvlens: [37, 113, 70], hq: 8, hkv: 1, d: 64, mask: 'causal', residual: 40 },
  { qlens: [3, 2], kvlens: [250, 33], hq: 16, hkv: 2, d: 128, mask: 'none', numSplits: 3 },
  { qlens: [9, 4], kvlens: [120, 64], hq: 8, hkv: 2, d: 64, mask: 'tree', residual: 48 },
  { qlens: [2, 1], kvlens: [40, 70], hq: 4, hkv: 2, d: 8, mask: 'causal' }, // tiny heads: AVX2 tiles
  { qlens: [2], kvlens: [90], hq: 2, hkv: 1, d: 12, mask: 'causal' }, // not a multiple of 8: naive path
];

const TOL: Record<FloatDType, [number, number]> = { f32: [2e-5, 2e-5], f16: [2e-4, 1e-3], bf16: [2e-3, 8e-3] };

describe.each(FORMATS)('attention over a %s cache', (format) => {
  it.each(ATTN_CASES.map((c, i) => ({ ...c, i, name: `q${c.qlens.join('+')} kv${c.kvlens.join('+')} h${c.hq}/${c.hkv} d${c.d} ${c.mask}` })))(
    'equals attention over the dequantized cache: $name',
    async (c) => {
      for (const isa of ATTENTION_ISAS) {
        useCpuIsa(isa);
        const r = await runAttn({ ...c, format }, 'f32', 300 + c.i);
        // Tight: the same f32 arithmetic on the same dequantized values.
        expect(mismatches(r.got.out.toFloat32(), r.onDeq.out.toFloat32(), 2e-6, 2e-6), `vs dequantized, isa ${isa}`).toEqual([]);
        expect(mismatches(r.got.lse!.toFloat32(), r.onDeq.lse!.toFloat32(), 2e-6, 2e-6)).toEqual([]);
        // And against the float64 reference on the dequantized keys (independent of the kernels).
        expect(mismatches(r.got.out.toFloat32(), r.refDeq.o, 2e-5, 2e-5), `vs float64 on dequantized, isa ${isa}`).toEqual([]);
      }
    },
  );

  it.each(ATTN_CASES.map((c, i) => ({ ...c, i, name: `q${c.qlens.join('+')} kv${c.kvlens.join('+')} h${c.hq}/${c.hkv} d${c.d} ${c.mask}` })))(
    'with softcap 15 and a window of 8 equals the float64 reference on the dequantized cache: $name',
    async (c) => {
      for (const isa of ['auto', 'avx2']) {
        if (isa === 'avx2') process.env.CANOPY_CPU_ISA = 'avx2';
        else delete process.env.CANOPY_CPU_ISA;
        for (const naive of [false, true]) {
          const r = await runAttn({ ...c, format, softcap: 15, window: 8 }, 'f32', 500 + c.i, naive);
          const what = `isa ${isa}, naive ${naive}`;
          expect(mismatches(r.got.out.toFloat32(), r.refDeq.o, 2e-5, 2e-5), `vs float64 on dequantized, ${what}`).toEqual([]);
          expect(mismatches(r.got.lse!.toFloat32(), r.refDeq.lse, 5e-5, 1e-5), `lse, ${what}`).toEqual([]);
        }
      }
      delete process.env.CANOPY_CPU_ISA;
    },
  );

  it.each(['f16', 'bf16'] as const)('with %s queries equals the float64 reference on the dequantized cache', async (qdtype) => {
    const r = await runAttn({ ...ATTN_CASES[2]!, format }, qdtype, 77);
    expect(mismatches(r.got.out.toFloat32(), r.refDeq.o, ...TOL[qdtype])).toEqual([]);
  });

  it('the naive baseline reads the quantized cache the same way', async () => {
    const c = { ...ATTN_CASES[2]!, format };
    const flash = await runAttn(c, 'f32', 55);
    const naive = await runAttn(c, 'f32', 55, true);
    expect(mismatches(naive.got.out.toFloat32(), flash.got.out.toFloat32(), 1e-5, 1e-5)).toEqual([]);
  });

  it('stays close to attention over the original keys (error reported)', async () => {
    // Typical decode shapes; the error against the unquantized cache is what quantization costs.
    const r = await runAttn({ format, qlens: [1, 1, 1, 1], kvlens: [500, 1031, 64, 257], hq: 32, hkv: 8, d: 128, mask: 'causal', residual: 32 }, 'f32', 9);
    const got = r.got.out.toFloat32();
    let maxErr = 0;
    let sumSq = 0;
    let refSq = 0;
    for (let i = 0; i < got.length; i++) {
      const e = got[i]! - r.refOrig.o[i]!;
      maxErr = Math.max(maxErr, Math.abs(e));
      sumSq += e * e;
      refSq += r.refOrig.o[i]! ** 2;
    }
    const rel = Math.sqrt(sumSq / refSq);
    console.log(`[report] ${format} decode attention vs the original f32 keys: max abs error ${maxErr.toExponential(2)}, relative RMS ${rel.toExponential(2)}`);
    // Loose sanity limits (random keys of magnitude ~1: int8 ~1e-3, fp8 ~1e-2, int4 ~1e-1 RMS).
    const limit = { int8: 0.01, fp8: 0.05, int4: 0.25 }[format];
    expect(rel).toBeLessThan(limit);
    expect(rel).toBeGreaterThan(0); // it is quantized
  });
});

describe('append, quantize, commit and roll back', () => {
  /** A cache with two sequences' regions (128 rows each) and rings of 96 rows. */
  const make = (format: (typeof FORMATS)[number], residualDtype: FloatDType = 'f32') =>
    new QuantizedKv({ format, rows: 256, numKvHeads: 2, headDim: 64, layers: 2, rings: 2, group: 32, residual: 32, ring: 96, residualDtype });
  const H = 2;
  const D = 64;
  const rowsOf = (x: Float32Array, idx: number[]) => {
    const out = new Float32Array(idx.length * H * D);
    idx.forEach((r, i) => out.set(x.subarray(r * H * D, (r + 1) * H * D), i * H * D));
    return Tensor.from(out, { shape: [idx.length, H, D] });
  };

  it.each(FORMATS)('%s: committing accepted tree nodes gives the cache that appending only them gives (every layer)', async (format) => {
    const P = [70, 40];
    const nodes = 6;
    const accepted = [[1, 3, 4], []];
    const seqData = P.map((p, b) => ({ k: kvValues(p + nodes, H, D, 40 + b), v: kvValues(p + nodes, H, D, 50 + b) }));
    const a = make(format);
    const fresh = make(format);
    const seqs = { kvStart: [0, 128], resStart: [0, 96] };
    for (const layer of [0, 1]) {
      for (let b = 0; b < 2; b++) {
        const all = Array.from({ length: P[b]! + nodes }, (_, i) => i);
        const one = { kvStart: [seqs.kvStart[b]!], resStart: [seqs.resStart[b]!], layer };
        // a: the prefix, then the draft tree's nodes, uncommitted.
        await appendQuantizedKv(a, rowsOf(seqData[b]!.k, all), rowsOf(seqData[b]!.v, all), { ...one, posBefore: [0] });
        // fresh: the prefix and the accepted nodes only.
        const kept = [...all.slice(0, P[b]!), ...accepted[b]!.map((j) => P[b]! + j)];
        await appendQuantizedKv(fresh, rowsOf(seqData[b]!.k, kept), rowsOf(seqData[b]!.v, kept), { ...one, posBefore: [0] });
      }
    }
    const newLens = await commitQuantizedKv(a, seqs, P.map((p, b) => ({ prefixLen: p, numNodes: nodes, acceptedNodes: accepted[b]! })));
    expect(newLens).toEqual([73, 40]);
    if (format === 'int4') {
      // Quantize what the committed lengths allow (groups older than the newest 32 keys).
      const to = newLens.map((l) => Math.max(0, Math.floor((l - 32) / 32) * 32));
      await quantizeKvGroups(a, { ...seqs, from: [0, 0], to });
      await quantizeKvGroups(fresh, { ...seqs, from: [0, 0], to });
    }
    for (const layer of [0, 1]) {
      const ql = format === 'int4' ? newLens.map((l) => Math.max(0, Math.floor((l - 32) / 32) * 32)) : newLens;
      const x = await dequantizeKv(a, { ...seqs, layer, kvLens: newLens, quantLens: ql });
      const y = await dequantizeKv(fresh, { ...seqs, layer, kvLens: newLens, quantLens: ql });
      expect(Array.from(x.k.toFloat32())).toEqual(Array.from(y.k.toFloat32()));
      expect(Array.from(x.v.toFloat32())).toEqual(Array.from(y.v.toFloat32()));
    }
  });

  it('commit moves the accepted nodes (a negative control: without the commit the caches differ)', async () => {
    const a = make('int8');
    const x = kvValues(10, H, D, 3);
    const idx = Array.from({ length: 10 }, (_, i) => i);
    await appendQuantizedKv(a, rowsOf(x, idx), rowsOf(x, idx), { kvStart: [0], posBefore: [0] });
    const before = (await dequantizeKv(a, { kvStart: [0], kvLens: [6] })).k.toFloat32();
    await commitQuantizedKv(a, { kvStart: [0] }, [{ prefixLen: 4, numNodes: 6, acceptedNodes: [2, 5] }]);
    const after = (await dequantizeKv(a, { kvStart: [0], kvLens: [6] })).k.toFloat32();
    const row = H * D;
    expect(Array.from(after.subarray(0, 4 * row))).toEqual(Array.from(before.subarray(0, 4 * row)));
    expect(Array.from(after.subarray(4 * row, 5 * row))).not.toEqual(Array.from(before.subarray(4 * row, 5 * row)));
    const full = (await dequantizeKv(a, { kvStart: [0], kvLens: [10] })).k.toFloat32();
    expect(Array.from(after.subarray(4 * row, 6 * row))).toEqual([...full.subarray(6 * row, 7 * row), ...full.subarray(9 * row, 10 * row)]);
  });

  it.each(['f32', 'f16'] as const)('int4 restore: rolling back into a quantized group keeps the values attention saw (%s ring)', async (residualDtype) => {
    const c = make('int4', residualDtype);
    const n = 90;
    const kx = kvValues(n, H, D, 8);
    const idx = Array.from({ length: n }, (_, i) => i);
    for (const layer of [0, 1]) await appendQuantizedKv(c, rowsOf(kx, idx), rowsOf(kx, idx), { kvStart: [0], resStart: [0], posBefore: [0], layer });
    await quantizeKvGroups(c, { kvStart: [0], resStart: [0], from: [0], to: [32] });
    const seen = (await dequantizeKv(c, { kvStart: [0], resStart: [0], kvLens: [n], quantLens: [32], layer: 1 })).k.toFloat32();
    // Truncate to 20 keys: group 0 (keys 0..31) is quantized; keys 0..19 go back to the ring.
    restoreKvGroupsSync(c, { kvStart: [0], resStart: [0], from: [0], to: [20] });
    const back = (await dequantizeKv(c, { kvStart: [0], resStart: [0], kvLens: [20], quantLens: [0], layer: 1 })).k.toFloat32();
    const tol = residualDtype === 'f32' ? 0 : 2 ** -11;
    expect(mismatches(back, seen.subarray(0, back.length), 1e-7, tol)).toEqual([]);
    // Negative control: the ring held the original (unquantized) keys before the restore.
    expect(mismatches(kx.subarray(0, back.length), seen.subarray(0, back.length), 1e-7, tol).length).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------
const f32t = (shape: number[]) => Tensor.from(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape });
const i8cache = new QuantizedKv({ format: 'int8', rows: 16, numKvHeads: 2, headDim: 64 });
const i4cache = new QuantizedKv({ format: 'int4', rows: 128, numKvHeads: 2, headDim: 64, residual: 32, ring: 64 });
const q4 = f32t([4, 8, 64]);

describeBadInputs('bad inputs to quantized caches and their ops', [
  ['unknown format', () => new QuantizedKv({ format: 'int2' as never, rows: 16, numKvHeads: 1, headDim: 64 }), /format must be 'int8', 'int4' or 'fp8'; received "int2"/],
  ['int4 odd head dim', () => new QuantizedKv({ format: 'int4', rows: 32, numKvHeads: 1, headDim: 63 }), /headDim must be even for int4/],
  ['int4 group 16', () => new QuantizedKv({ format: 'int4', rows: 32, numKvHeads: 1, headDim: 64, group: 16 as never }), /group must be 32, 64 or 128; received 16/],
  ['int4 rows not a multiple of the group', () => new QuantizedKv({ format: 'int4', rows: 40, numKvHeads: 1, headDim: 64 }), /rows must be a multiple of the group 32 for int4; received 40/],
  ['int4 residual below the group', () => new QuantizedKv({ format: 'int4', rows: 64, numKvHeads: 1, headDim: 64, residual: 8 }), /residual must be an integer >= the group 32; received 8/],
  ['int4 ring too small', () => new QuantizedKv({ format: 'int4', rows: 64, numKvHeads: 1, headDim: 64, residual: 32, ring: 40 }), /ring must be an integer >= residual \+ group \(64\); received 40/],
  ['append k of the wrong shape', () => appendQuantizedKv(i8cache, f32t([3, 2, 32]), f32t([3, 2, 32]), { kvStart: [0], posBefore: [0] }), /k\.shape must be \[3, 2, 64\]; received \[3, 2, 32\]/],
  ['append past the rows', () => appendQuantizedKv(i8cache, f32t([3, 2, 64]), f32t([3, 2, 64]), { kvStart: [0], posBefore: [15] }), /appendKv: sequence 0 writes positions \[15, 18\) from row 0 but the cache holds 16 rows/],
  ['append layer out of range', () => appendQuantizedKv(i8cache, f32t([1, 2, 64]), f32t([1, 2, 64]), { kvStart: [0], posBefore: [0], layer: 1 }), /layer must be an integer in \[0, 0\]; received 1/],
  ['int4 append overflowing the ring', () => appendQuantizedKv(i4cache, f32t([65, 2, 64]), f32t([65, 2, 64]), { kvStart: [0], posBefore: [0] }), /appendKv: sequence 0 would hold 65 unquantized keys but its residual ring holds 64/],
  ['int4 kvStart not aligned', () => appendQuantizedKv(i4cache, f32t([1, 2, 64]), f32t([1, 2, 64]), { kvStart: [16], posBefore: [0] }), /kvStart\[0\] must be a multiple of the int4 group 32; received 16/],
  ['quantize groups of an int8 cache', () => quantizeKvGroups(i8cache, { kvStart: [0], from: [0], to: [32] }), /cache\.format must be 'int4' \(only int4 caches have groups\); received "int8"/],
  ['quantize a partial group', () => quantizeKvGroups(i4cache, { kvStart: [0], from: [0], to: [20] }), /quantizeKvGroups: sequence 0: from and to must be multiples of 32; received \[0, 20\)/],
  ['commit nodes out of order', () => commitQuantizedKv(i8cache, { kvStart: [0] }, [{ prefixLen: 2, numNodes: 4, acceptedNodes: [2, 1] }]), /entries\[0\]\.acceptedNodes\[1\] must be a node index in \[3, 4\) \(strictly increasing\); received 1/],
  ['commit past the cache', () => commitQuantizedKv(i8cache, { kvStart: [0] }, [{ prefixLen: 14, numNodes: 4, acceptedNodes: [0] }]), /commitKv: prefixLens\[0\] \+ the tree's 4 nodes must fit in the cache; received 14/],
  ['attention head dim differs', () => quantizedAttention(f32t([4, 8, 32]), { cache: i8cache }), /kv\.cache\.headDim must be headDim of q \(32\); received 64/],
  ['attention past the rows', () => quantizedAttention(q4, { cache: i8cache }, { kvIndptr: [0, 17] }), /kvIndptr\[1\] must be within the 16 rows of k and v; received 17/],
  ['attention int4 quantLens not a group multiple', () => quantizedAttention(q4, { cache: i4cache, quantLens: [10] }, { kvIndptr: [0, 40] }), /kv\.quantLens\[0\] must be a multiple of 32 in \[0, 40\]; received 10/],
  ['attention with a disposed cache', () => {
    const c = new QuantizedKv({ format: 'int8', rows: 4, numKvHeads: 2, headDim: 64 });
    c.dispose();
    return quantizedAttention(q4, { cache: c });
  }, /kv\.cache must be a QuantizedKv that was not disposed/],
  ['tree mask without parents', () => quantizedAttention(q4, { cache: i8cache }, { mask: 'tree' }), /parents must be an Int32Array or an array of integers; received undefined/],
]);

const addon = native();
describeNativeBadInputs('bad quantized caches sent straight to the native addon', [
  ['format', () => addon.kvDequantize({ cache: { ...i8cache.descriptor(), format: 'int3' as never }, layer: 0, kvStart: Int32Array.of(0), kvLens: Int32Array.of(1), kOut: f32t([1, 2, 64]).descriptor(), vOut: f32t([1, 2, 64]).descriptor() }), /cache\.format must be 'int8', 'int4' or 'fp8'/],
  ['scale shape', () => addon.kvDequantize({ cache: { ...i8cache.descriptor(), kScale: f32t([1, 15, 2]).descriptor() }, layer: 0, kvStart: Int32Array.of(0), kvLens: Int32Array.of(1), kOut: f32t([1, 2, 64]).descriptor(), vOut: f32t([1, 2, 64]).descriptor() }), /cache\.kScale must have shape \[1, 16, 2\]; received \[1, 15, 2\]/],
  ['codes dtype', () => addon.kvDequantize({ cache: { ...i8cache.descriptor(), k: Tensor.empty([1, 16, 2, 64], 'uint8').descriptor() }, layer: 0, kvStart: Int32Array.of(0), kvLens: Int32Array.of(1), kOut: f32t([1, 2, 64]).descriptor(), vOut: f32t([1, 2, 64]).descriptor() }), /cache\.k\.dtype must be int8; received uint8/],
  ['dequantize past the rows', () => addon.kvDequantize({ cache: i8cache.descriptor(), layer: 0, kvStart: Int32Array.of(10), kvLens: Int32Array.of(7), kOut: f32t([7, 2, 64]).descriptor(), vOut: f32t([7, 2, 64]).descriptor() }), /dequantizeKv: kvLens\[0\] must fit in the cache; received 7/],
  ['int4 ring missing', () => addon.kvDequantize({ cache: { ...i4cache.descriptor(), resK: undefined } as never, layer: 0, kvStart: Int32Array.of(0), resStart: Int32Array.of(0), kvLens: Int32Array.of(1), kOut: f32t([1, 2, 64]).descriptor(), vOut: f32t([1, 2, 64]).descriptor() }), /cache\.resK must be a tensor descriptor/],
  ['attention quantized lens', () => addon.attention({ q: q4.descriptor(), o: f32t([4, 8, 64]).descriptor(), kvQuant: { cache: i4cache.descriptor(), quantLens: Int32Array.of(40), resStart: Int32Array.of(0) }, qoIndptr: Int32Array.of(0, 4), kvIndptr: Int32Array.of(0, 40), mask: 0, scale: 0.125 }), /attention: quantLens\[0\] must be a multiple of 32 in \[0, 40\]; received 40/],
  ['append ring overflow', () => addon.kvQuantAppend({ cache: i4cache.descriptor(), layer: 0, kvStart: Int32Array.of(0), resStart: Int32Array.of(0), posBefore: Int32Array.of(40), quantLen: Int32Array.of(0), qoIndptr: Int32Array.of(0, 25), k: f32t([25, 2, 64]).descriptor(), v: f32t([25, 2, 64]).descriptor() }), /appendKv: sequence 0 would hold 65 unquantized keys but its residual ring holds 64/],
]);
