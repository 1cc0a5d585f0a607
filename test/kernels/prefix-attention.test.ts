/**
 * Shared-prefix attention against plain attention over each sequence's reassembled keys
 * ([level 0 | level 1 | ... | suffix]), and against the float64 reference on them: uneven and
 * empty suffixes, one sequence per group, empty groups, 3-level hierarchies, GQA, decode and
 * tree verification, f32 / f16 / bf16, quantized levels and suffixes.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { attention, treeAttention } from '../../lib/kernels/attention.js';
import { QuantizedKv, appendQuantizedKv, dequantizeKv, quantizeKvGroups } from '../../lib/kernels/kv-quant.js';
import { type PrefixKv, prefixAttention } from '../../lib/kernels/prefix-attention.js';
import { native } from '../../lib/native/loader.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import type { FloatDType } from '../../lib/tensor/dtype.js';
import { attentionReference, mismatches, randomValues } from '../helpers/attention-reference.js';
import { describeBadInputs, describeNativeBadInputs } from '../helpers/bad-inputs.js';

afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
});

interface Spec {
  /** Per level, the number of sequences of each group (summing to B). */
  groups: number[][];
  /** Per level, the prefix length of each group. */
  prefixLens: number[][];
  suffixLens: number[];
  qlens: number[];
  hq: number;
  hkv: number;
  d: number;
  mask: 'none' | 'causal' | 'tree';
  numSplits?: number;
  /** Rows of NaN after each group's / sequence's keys (never read). */
  pad?: number;
  /** Logit soft-capping and sliding window (absolute positions over the concatenated keys). */
  softcap?: number;
  window?: number;
}

const TOL: Record<FloatDType, [number, number]> = { f32: [2e-5, 2e-5], f16: [2e-4, 1e-3], bf16: [2e-3, 8e-3] };

interface Built {
  q: Tensor;
  levels: Array<{ seqIndptr: number[]; kv: PrefixKv; values: { k: Float32Array; v: Float32Array }; kvIndptr: number[] }>;
  suffix: PrefixKv;
  suffixValues: { k: Float32Array; v: Float32Array };
  suffixIndptr: number[];
  qoIndptr: number[];
  parents: number[];
}

async function tensorOf(values: Float32Array, shape: number[], dtype: FloatDType): Promise<Tensor> {
  const t = Tensor.from(values, { shape });
  return dtype === 'f32' ? t : t.cast(dtype);
}

/** Random keys for groups of the given lengths, concatenated with `pad` NaN rows after each. */
function kvBlock(lens: number[], h: number, d: number, pad: number, seed: number) {
  const indptr = [0];
  lens.forEach((l) => indptr.push(indptr[indptr.length - 1]! + l + pad));
  const rows = indptr[indptr.length - 1]!;
  const k = randomValues(rows * h * d, seed);
  const v = randomValues(rows * h * d, seed + 1);
  lens.forEach((l, g) => {
    k.fill(NaN, (indptr[g]! + l) * h * d, indptr[g + 1]! * h * d);
    v.fill(NaN, (indptr[g]! + l) * h * d, indptr[g + 1]! * h * d);
  });
  return { k, v, indptr, rows };
}

async function build(s: Spec, dtype: FloatDType, seed: number): Promise<Built> {
  const B = s.suffixLens.length;
  const pad = s.pad ?? 0;
  const qoIndptr = [0];
  s.qlens.forEach((l) => qoIndptr.push(qoIndptr[qoIndptr.length - 1]! + l));
  const total = qoIndptr[B]!;
  const q = await tensorOf(randomValues(total * s.hq * s.d, seed), [total, s.hq, s.d], dtype);
  const levels: Built['levels'] = [];
  for (let l = 0; l < s.groups.length; l++) {
    const seqIndptr = [0];
    s.groups[l]!.forEach((n) => seqIndptr.push(seqIndptr[seqIndptr.length - 1]! + n));
    const blk = kvBlock(s.prefixLens[l]!, s.hkv, s.d, pad, seed + 100 * (l + 1));
    const k = await tensorOf(blk.k, [blk.rows, s.hkv, s.d], dtype);
    const v = await tensorOf(blk.v, [blk.rows, s.hkv, s.d], dtype);
    levels.push({
      seqIndptr,
      kv: { k, v, kvIndptr: blk.indptr, ...(pad ? { kvLens: s.prefixLens[l]! } : {}) },
      values: { k: k.toFloat32(), v: v.toFloat32() },
      kvIndptr: blk.indptr,
    });
  }
  const sb = kvBlock(s.suffixLens, s.hkv, s.d, pad, seed + 7);
  const sk = await tensorOf(sb.k, [sb.rows, s.hkv, s.d], dtype);
  const sv = await tensorOf(sb.v, [sb.rows, s.hkv, s.d], dtype);
  const parents: number[] = [];
  for (const l of s.qlens) for (let t = 0; t < l; t++) parents.push(t === 0 ? -1 : t % 3 === 0 ? -1 : Math.floor((t - 1) / 2));
  return {
    q,
    levels,
    suffix: { k: sk, v: sv, kvIndptr: sb.indptr, ...(pad ? { kvLens: s.suffixLens } : {}) },
    suffixValues: { k: sk.toFloat32(), v: sv.toFloat32() },
    suffixIndptr: sb.indptr,
    qoIndptr,
    parents,
  };
}

/** Each sequence's concatenated keys: its group's prefix at every level, then its suffix. */
function reassemble(s: Spec, b: Built) {
  const B = s.suffixLens.length;
  const row = s.hkv * s.d;
  const ks: number[] = [];
  const vs: number[] = [];
  const kvIndptr = [0];
  for (let seq = 0; seq < B; seq++) {
    for (let l = 0; l < s.groups.length; l++) {
      const lv = b.levels[l]!;
      const g = lv.seqIndptr.findIndex((x, i) => i + 1 < lv.seqIndptr.length && seq >= x && seq < lv.seqIndptr[i + 1]!);
      const start = lv.kvIndptr[g]!;
      const len = s.prefixLens[l]![g]!;
      for (let i = start * row; i < (start + len) * row; i++) {
        ks.push(lv.values.k[i]!);
        vs.push(lv.values.v[i]!);
      }
    }
    const start = b.suffixIndptr[seq]!;
    for (let i = start * row; i < (start + s.suffixLens[seq]!) * row; i++) {
      ks.push(b.suffixValues.k[i]!);
      vs.push(b.suffixValues.v[i]!);
    }
    kvIndptr.push(ks.length / row);
  }
  return { k: Float32Array.from(ks), v: Float32Array.from(vs), kvIndptr };
}

async function check(s: Spec, dtype: FloatDType, seed: number) {
  const b = await build(s, dtype, seed);
  const gemma = { ...(s.softcap !== undefined ? { softcap: s.softcap } : {}), ...(s.window !== undefined ? { window: s.window } : {}) };
  const got = await prefixAttention(b.q, {
    levels: b.levels.map((l) => ({ seqIndptr: l.seqIndptr, kv: l.kv })),
    suffix: b.suffix,
    qoIndptr: b.qoIndptr,
    mask: s.mask,
    returnLse: true,
    ...(s.mask === 'tree' ? { parents: b.parents } : {}),
    ...(s.numSplits !== undefined ? { numSplits: s.numSplits } : {}),
    ...gemma,
  });
  const full = reassemble(s, b);
  const rows = full.kvIndptr[full.kvIndptr.length - 1]!;
  const ref = attentionReference({
    q: Float64Array.from(b.q.toFloat32()),
    k: Float64Array.from(full.k),
    v: Float64Array.from(full.v),
    hq: s.hq,
    hkv: s.hkv,
    d: s.d,
    qoIndptr: b.qoIndptr,
    kvIndptr: full.kvIndptr,
    mask: s.mask,
    ...(s.mask === 'tree' ? { parents: b.parents } : {}),
    scale: 1 / Math.sqrt(s.d),
    ...gemma,
  });
  // Plain attention over the reassembled keys (the kernels' own answer to the same question).
  const kT = await tensorOf(full.k, [rows, s.hkv, s.d], dtype);
  const vT = await tensorOf(full.v, [rows, s.hkv, s.d], dtype);
  const plain =
    s.mask === 'tree'
      ? await treeAttention(b.q, kT, vT, { qoIndptr: b.qoIndptr, kvIndptr: full.kvIndptr, parents: b.parents, returnLse: true, ...gemma })
      : await attention(b.q, kT, vT, { qoIndptr: b.qoIndptr, kvIndptr: full.kvIndptr, mask: s.mask, returnLse: true, ...gemma });
  return { got, ref, plain };
}

const SPECS: Array<Spec & { name: string }> = [
  {
    name: 'decode, one shared prompt, uneven and empty suffixes',
    groups: [[5]],
    prefixLens: [[300]],
    suffixLens: [17, 0, 1, 113, 40],
    qlens: [1, 1, 1, 1, 1],
    hq: 8,
    hkv: 2,
    d: 64,
    mask: 'causal',
  },
  {
    name: '3 levels: system prompt, few-shot blocks of 2/3/1 sequences, per-sequence prefixes',
    groups: [[6], [2, 3, 1], [1, 1, 1, 1, 1, 1]],
    prefixLens: [[97], [33, 0, 64], [5, 0, 17, 1, 0, 40]],
    suffixLens: [7, 3, 0, 12, 5, 9],
    qlens: [3, 1, 1, 5, 2, 1],
    hq: 16,
    hkv: 4,
    d: 128,
    mask: 'causal',
  },
  {
    name: 'one sequence per group, an empty group, mask none, many queries',
    groups: [[1, 0, 1, 1, 1]],
    prefixLens: [[50, 20, 0, 7, 129]],
    suffixLens: [4, 0, 30, 2],
    qlens: [4, 3, 6, 1],
    hq: 4,
    hkv: 4,
    d: 64,
    mask: 'none',
  },
  {
    name: 'tree verification behind a 2-level prefix',
    groups: [[3], [2, 1]],
    prefixLens: [[120], [45, 9]],
    suffixLens: [20, 9, 13],
    qlens: [9, 4, 13],
    hq: 8,
    hkv: 1,
    d: 64,
    mask: 'tree',
  },
  {
    name: 'a group of 80 sequences (more query rows than one tile), GQA 8',
    groups: [[80]],
    prefixLens: [[257]],
    suffixLens: Array.from({ length: 80 }, (_, i) => (i * 37) % 23),
    qlens: Array.from({ length: 80 }, () => 1),
    hq: 32,
    hkv: 4,
    d: 128,
    mask: 'causal',
  },
  {
    name: 'NaN in the padding past every group and suffix never leaks',
    groups: [[2, 2]],
    prefixLens: [[31, 66]],
    suffixLens: [5, 1, 0, 8],
    qlens: [1, 2, 1, 3],
    hq: 8,
    hkv: 2,
    d: 64,
    mask: 'causal',
    pad: 9,
  },
  {
    name: 'odd head size (naive parts)',
    groups: [[2], [1, 1]],
    prefixLens: [[40], [3, 11]],
    suffixLens: [6, 2],
    qlens: [2, 1],
    hq: 4,
    hkv: 2,
    d: 12,
    mask: 'causal',
  },
];

describe('prefixAttention equals attention over each sequence\'s concatenated keys', () => {
  it.each(SPECS.map((s, i) => ({ ...s, i })))('$name', async (s) => {
    for (const isa of ['auto', 'avx2']) {
      if (isa === 'avx2') process.env.CANOPY_CPU_ISA = 'avx2';
      else delete process.env.CANOPY_CPU_ISA;
      for (const numSplits of [undefined, 1, 3]) {
        const r = await check({ ...s, ...(numSplits !== undefined ? { numSplits } : {}) }, 'f32', 10 + s.i);
        const out = r.got.out.toFloat32();
        const what = `isa ${isa}, numSplits ${numSplits ?? 'auto'}`;
        expect(out.some(Number.isNaN), what).toBe(false);
        expect(mismatches(out, r.ref.o, ...TOL.f32), `vs float64, ${what}`).toEqual([]);
        expect(mismatches(r.got.lse!.toFloat32(), r.ref.lse, 5e-5, 1e-5), `lse, ${what}`).toEqual([]);
        expect(mismatches(out, r.plain.out.toFloat32(), 2e-6, 1e-5), `vs attention(), ${what}`).toEqual([]);
      }
    }
  });

  // Gemma-style soft-capping and sliding windows: the window is over absolute positions, so it
  // cuts into shared prefixes (window 8: only the suffix and the end of the last level; 40: into
  // earlier levels) and must agree with attention over the concatenation.
  it.each(SPECS.map((s, i) => ({ ...s, i })))('with softcap 20 and windows 8 / 40: $name', async (s) => {
    for (const isa of ['auto', 'avx2']) {
      if (isa === 'avx2') process.env.CANOPY_CPU_ISA = 'avx2';
      else delete process.env.CANOPY_CPU_ISA;
      for (const window of [8, 40]) {
        for (const numSplits of [undefined, 3]) {
          const r = await check({ ...s, softcap: 20, window, ...(numSplits !== undefined ? { numSplits } : {}) }, 'f32', 60 + s.i);
          const out = r.got.out.toFloat32();
          const what = `isa ${isa}, window ${window}, numSplits ${numSplits ?? 'auto'}`;
          expect(out.some(Number.isNaN), what).toBe(false);
          expect(mismatches(out, r.ref.o, ...TOL.f32), `vs float64, ${what}`).toEqual([]);
          expect(mismatches(r.got.lse!.toFloat32(), r.ref.lse, 5e-5, 1e-5), `lse, ${what}`).toEqual([]);
          expect(mismatches(out, r.plain.out.toFloat32(), 2e-6, 1e-5), `vs attention(), ${what}`).toEqual([]);
        }
      }
    }
    delete process.env.CANOPY_CPU_ISA;
  });

  it.each(['f16', 'bf16'] as const)('in %s (states merged in f32, rounded once)', async (dtype) => {
    for (const s of [SPECS[1]!, SPECS[3]!]) {
      const r = await check(s, dtype, 3);
      expect(mismatches(r.got.out.toFloat32(), r.ref.o, ...TOL[dtype]), s.name).toEqual([]);
    }
  });

  it('with no levels is plain attention over the suffix', async () => {
    const s: Spec = { groups: [], prefixLens: [], suffixLens: [40, 7], qlens: [2, 1], hq: 4, hkv: 2, d: 64, mask: 'causal' };
    const r = await check(s, 'f32', 4);
    expect(mismatches(r.got.out.toFloat32(), r.plain.out.toFloat32(), 1e-6, 1e-6)).toEqual([]);
  });

  it('a negative control: leaving out one key of one group\'s prefix changes the output', async () => {
    const s = SPECS[1]!;
    const b = await build(s, 'f32', 10 + 1);
    const args = { levels: b.levels.map((l) => ({ seqIndptr: l.seqIndptr, kv: l.kv })), suffix: b.suffix, qoIndptr: b.qoIndptr, mask: 'causal' as const };
    const right = (await prefixAttention(b.q, args)).out.toFloat32();
    const lv1 = args.levels[1]!;
    const short = { ...lv1, kv: { ...lv1.kv, kvLens: [32, 0, 64] } };
    const wrong = (await prefixAttention(b.q, { ...args, levels: [args.levels[0]!, short, args.levels[2]!] })).out.toFloat32();
    const rowsOfGroup0 = b.qoIndptr[2]! * s.hq * s.d; // sequences 0 and 1 share that block
    expect(mismatches(wrong.subarray(0, rowsOfGroup0), right.subarray(0, rowsOfGroup0), ...TOL.f32).length).toBeGreaterThan(0);
    expect(mismatches(wrong.subarray(rowsOfGroup0), right.subarray(rowsOfGroup0), 0, 0)).toEqual([]);
  });
});

describe('prefixAttention over quantized caches', () => {
  it.each(['int8', 'int4', 'fp8'] as const)('%s levels and suffix equal prefixAttention over the dequantized keys', async (format) => {
    // Level 0: one prompt of 200 keys shared by 4 sequences; level 1: two blocks; suffixes in a
    // multi-sequence quantized cache (int4: with residual keys in the rings).
    const H = 2;
    const D = 64;
    const hq = 8;
    const mk = (rows: number, rings = 1) => new QuantizedKv({ format, rows, numKvHeads: H, headDim: D, rings, group: 32, residual: 32, ring: 320, residualDtype: 'f32' });
    const fill = async (cache: QuantizedKv, starts: number[], lens: number[], seed: number, residual = 0) => {
      const quantLens: number[] = [];
      for (let i = 0; i < starts.length; i++) {
        const n = lens[i]!;
        const k = Tensor.from(randomValues(n * H * D, seed + i), { shape: [n, H, D] });
        const v = Tensor.from(randomValues(n * H * D, seed + 50 + i), { shape: [n, H, D] });
        if (n > 0) await appendQuantizedKv(cache, k, v, { kvStart: [starts[i]!], resStart: [i * 320], posBefore: [0] });
        const ql = format === 'int4' ? Math.max(0, Math.floor((n - residual) / 32) * 32) : n;
        if (format === 'int4' && ql > 0) await quantizeKvGroups(cache, { kvStart: [starts[i]!], resStart: [i * 320], from: [0], to: [ql] });
        quantLens.push(ql);
      }
      return quantLens;
    };
    const l0 = mk(224);
    const l0q = await fill(l0, [0], [200], 1);
    const l1 = mk(128, 2);
    const l1q = await fill(l1, [0, 64], [50, 33], 2, 32);
    const suf = mk(4 * 96, 4);
    const sufLens = [70, 0, 9, 95];
    const sufStarts = [0, 96, 192, 288];
    const sufq = await fill(suf, sufStarts, sufLens, 3, 32);
    const q = Tensor.from(randomValues(5 * hq * D, 4), { shape: [5, hq, D] });
    const qoIndptr = [0, 1, 2, 4, 5];
    const int4 = format === 'int4';
    const res = (n: number) => Array.from({ length: n }, (_, i) => i * 320);
    const quantized = {
      levels: [
        { seqIndptr: [0, 4], kv: { quantized: { cache: l0, ...(int4 ? { quantLens: l0q, resStart: res(1) } : {}) }, kvIndptr: [0, 224], kvLens: [200] } },
        { seqIndptr: [0, 3, 4], kv: { quantized: { cache: l1, ...(int4 ? { quantLens: l1q, resStart: res(2) } : {}) }, kvIndptr: [0, 64, 128], kvLens: [50, 33] } },
      ],
      suffix: { quantized: { cache: suf, ...(int4 ? { quantLens: sufq, resStart: res(4) } : {}) }, kvIndptr: [...sufStarts, 384], kvLens: sufLens },
      qoIndptr,
      mask: 'causal' as const,
      returnLse: true,
    };
    const got = await prefixAttention(q, quantized);
    // The same problem over dequantized copies (plain f32 keys).
    const deq = async (cache: QuantizedKv, starts: number[], lens: number[], ql: number[], rings: number) => {
      const d = await dequantizeKv(cache, { kvStart: starts, ...(int4 ? { resStart: res(rings) } : {}), kvLens: lens, ...(int4 ? { quantLens: ql } : {}) });
      const indptr = [0];
      lens.forEach((l) => indptr.push(indptr[indptr.length - 1]! + l));
      return { k: d.k, v: d.v, kvIndptr: indptr };
    };
    const plain = await prefixAttention(q, {
      levels: [
        { seqIndptr: [0, 4], kv: await deq(l0, [0], [200], l0q, 1) },
        { seqIndptr: [0, 3, 4], kv: await deq(l1, [0, 64], [50, 33], l1q, 2) },
      ],
      suffix: await deq(suf, sufStarts, sufLens, sufq, 4),
      qoIndptr,
      mask: 'causal',
      returnLse: true,
    });
    expect(mismatches(got.out.toFloat32(), plain.out.toFloat32(), 2e-6, 2e-6)).toEqual([]);
    expect(mismatches(got.lse!.toFloat32(), plain.lse!.toFloat32(), 2e-6, 2e-6)).toEqual([]);
    expect(got.lse!.toFloat32().every(Number.isFinite)).toBe(true); // every query saw keys
    if (int4) expect(sufq).toEqual([32, 0, 0, 32]); // quantized keys and ring keys both read
    [l0, l1, suf].forEach((c) => c.dispose());
  });
});

// ---------------------------------------------------------------------------
const f32t = (shape: number[]) => Tensor.from(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape });
const q3 = f32t([3, 8, 64]);
const pk = f32t([40, 2, 64]);
const sk = f32t([30, 2, 64]);
const suffix = { k: sk, v: sk, kvIndptr: [0, 10, 20, 30] };
const lvl = (seqIndptr: number[], kvIndptr: number[]) => ({ seqIndptr, kv: { k: pk, v: pk, kvIndptr } });

describeBadInputs('bad inputs to prefixAttention', [
  ['no options', () => prefixAttention(q3, undefined as never), /options must be an object \{levels, suffix\}; received undefined/],
  ['levels not an array', () => prefixAttention(q3, { levels: {} as never, suffix }), /levels must be an array of \{seqIndptr, kv\}; received an object/],
  ['seqIndptr short of the sequences', () => prefixAttention(q3, { levels: [lvl([0, 2], [0, 40])], suffix }), /levels\[0\]\.seqIndptr\[1\] must be the number of sequences 3; received 2/],
  ['seqIndptr decreasing', () => prefixAttention(q3, { levels: [lvl([0, 2, 1, 3], [0, 10, 20, 40])], suffix }), /levels\[0\]\.seqIndptr\[2\] must be >= levels\[0\]\.seqIndptr\[1\] = 2 \(non-decreasing\); received 1/],
  ['level kvIndptr per group', () => prefixAttention(q3, { levels: [lvl([0, 3], [0, 20, 40])], suffix }), /levels\[0\]\.kv\.kvIndptr must be an array of 2 entries \(like qoIndptr\)/],
  ['level keys past the rows', () => prefixAttention(q3, { levels: [lvl([0, 3], [0, 41])], suffix }), /levels\[0\]\.kv\.kvIndptr\[1\] must be within the 40 rows of k and v; received 41/],
  ['level kv heads differ', () => prefixAttention(q3, { levels: [{ seqIndptr: [0, 3], kv: { k: f32t([8, 4, 64]), v: f32t([8, 4, 64]), kvIndptr: [0, 8] } }], suffix }), /levels\[0\]\.kv must be keys with the 2 kv heads of the suffix; received 4/],
  ['level dtype differs', async () => prefixAttention(q3, { levels: [{ seqIndptr: [0, 3], kv: { k: await pk.cast('bf16'), v: pk, kvIndptr: [0, 8] } }], suffix }), /levels\[0\]\.kv\.k\.dtype must be the dtype of q, "f32"; received "bf16"/],
  ['suffix head dim differs', () => prefixAttention(q3, { levels: [], suffix: { k: f32t([30, 2, 32]), v: f32t([30, 2, 32]), kvIndptr: [0, 10, 20, 30] } }), /suffix\.k\.shape\[2\] must be headDim of q \(64\); received 32/],
  ['qoIndptr length', () => prefixAttention(q3, { levels: [], suffix, qoIndptr: [0, 3] }), /qoIndptr must be 4 entries \(one more than the sequences of suffix\.kvIndptr\)/],
  ['tree without parents', () => prefixAttention(q3, { levels: [], suffix, mask: 'tree' }), /parents must be an Int32Array or an array of integers; received undefined/],
  ['unknown mask', () => prefixAttention(q3, { levels: [], suffix, mask: 'sliding' as never }), /mask must be 'none', 'causal' or 'tree'; received "sliding"/],
  ['quantized and plain at once', () => prefixAttention(q3, { levels: [], suffix: { ...suffix, quantized: { cache: new QuantizedKv({ format: 'int8', rows: 30, numKvHeads: 2, headDim: 64 }) } } }), /suffix\.k must be absent when quantized is given/],
]);

const addon = native();
describeNativeBadInputs('bad inputs sent straight to the native prefixAttention', [
  ['no options', () => addon.prefixAttention(undefined as never), /prefixAttention: expected an options object/],
  ['seqIndptr not covering the batch', () => addon.prefixAttention({ q: q3.descriptor(), o: f32t([3, 8, 64]).descriptor(), qoIndptr: Int32Array.of(0, 1, 2, 3), scale: 0.125, mask: 0, levels: [{ seqIndptr: Int32Array.of(0, 2), kv: { k: pk.descriptor(), v: pk.descriptor(), kvIndptr: Int32Array.of(0, 40) } }], suffix: { k: sk.descriptor(), v: sk.descriptor(), kvIndptr: Int32Array.of(0, 10, 20, 30) } }), /prefixAttention: levels\[0\]\.seqIndptr\[1\] must be the number of sequences 3; received 2/],
  ['level keys past the rows', () => addon.prefixAttention({ q: q3.descriptor(), o: f32t([3, 8, 64]).descriptor(), qoIndptr: Int32Array.of(0, 1, 2, 3), scale: 0.125, mask: 0, levels: [{ seqIndptr: Int32Array.of(0, 3), kv: { k: pk.descriptor(), v: pk.descriptor(), kvIndptr: Int32Array.of(0, 99) } }], suffix: { k: sk.descriptor(), v: sk.descriptor(), kvIndptr: Int32Array.of(0, 10, 20, 30) } }), /prefixAttention levels\[0\]: attention: sequence 0 reads keys \[0, 99\) but k and v hold 40 rows/],
  ['suffix kvIndptr length', () => addon.prefixAttention({ q: q3.descriptor(), o: f32t([3, 8, 64]).descriptor(), qoIndptr: Int32Array.of(0, 1, 2, 3), scale: 0.125, mask: 0, levels: [], suffix: { k: sk.descriptor(), v: sk.descriptor(), kvIndptr: Int32Array.of(0, 30) } }), /suffix\.kvIndptr must have 4 entries; received 2/],
]);
