/**
 * `canopy bench prefix`: one decode step of B sequences that share a prefix of P keys and each
 * have a 128-key suffix, with prefixAttention (the B queries batched against the prefix, which
 * is read once per tile) against plain per-sequence decode attention in the same run (each
 * sequence reads the prefix for itself: one attention over the prefix rows, every sequence
 * pointing at the same physical rows as a paged cache with prefix sharing would, one over the
 * suffixes, and a merge). Reports the speedup and the cost of growing the prefix.
 */

import { attention, mergeStates } from '../../kernels/attention.js';
import { prefixAttention } from '../../kernels/prefix-attention.js';
import { dtypeSize, type FloatDType } from '../../tensor/dtype.js';
import { type BenchRow, type Timing, time } from '../harness.js';
import type { Suite, SuiteContext } from './types.js';
import { randomTensor } from './util.js';

interface PrefixConfig {
  batch: number;
  prefix: number;
  suffix: number;
  hq: number;
  hkv: number;
  d: number;
  dtype: FloatDType;
}

/** Times prefixAttention and the per-sequence baseline on the same data. */
async function measure(ctx: SuiteContext, c: PrefixConfig): Promise<{ prefix: Timing; plain: Timing }> {
  const B = c.batch;
  const q = await randomTensor([B, c.hq, c.d], c.dtype, ctx.device, 1);
  const pk = await randomTensor([c.prefix, c.hkv, c.d], c.dtype, ctx.device, 2);
  const pv = await randomTensor([c.prefix, c.hkv, c.d], c.dtype, ctx.device, 3);
  const sk = await randomTensor([B * c.suffix, c.hkv, c.d], c.dtype, ctx.device, 4);
  const sv = await randomTensor([B * c.suffix, c.hkv, c.d], c.dtype, ctx.device, 5);
  const suffixIndptr = Int32Array.from({ length: B + 1 }, (_, b) => b * c.suffix);
  const budget = { budgetMs: ctx.budgetMs, minRepeats: 2 };
  try {
    const prefix = await time(async () => {
      const r = await prefixAttention(q, {
        levels: [{ seqIndptr: [0, B], kv: { k: pk, v: pv, kvIndptr: [0, c.prefix] } }],
        suffix: { k: sk, v: sv, kvIndptr: suffixIndptr },
        mask: 'causal',
      });
      r.out.dispose();
    }, budget);
    // Baseline: every sequence attends to the shared prefix rows on its own (kvIndptr all 0).
    const shared = Int32Array.from({ length: B + 1 }, () => 0);
    const lens = Int32Array.from({ length: B }, () => c.prefix);
    const plain = await time(async () => {
      const a = await attention(q, pk, pv, { kvIndptr: shared, kvLens: lens, qoIndptr: suffixIndptr.map((_, b) => b), returnLse: true });
      const s = await attention(q, sk, sv, { kvIndptr: suffixIndptr, qoIndptr: suffixIndptr.map((_, b) => b), mask: 'causal', returnLse: true });
      const m = await mergeStates({ v: a.out, s: a.lse! }, { v: s.out, s: s.lse! });
      [a.out, a.lse!, s.out, s.lse!, m.v, m.s].forEach((t) => t.dispose());
    }, budget);
    return { prefix, plain };
  } finally {
    [q, pk, pv, sk, sv].forEach((t) => t.dispose());
  }
}

function row(ctx: SuiteContext, c: PrefixConfig, m: { prefix: Timing; plain: Timing }, base?: Timing): BenchRow {
  // Bytes the shared-prefix kernel must read at least: the prefix once and every suffix.
  const bytes = 2 * (c.prefix + c.batch * c.suffix) * c.hkv * c.d * dtypeSize(c.dtype);
  return {
    suite: 'prefix',
    name: 'shared-prefix decode',
    backend: ctx.backend,
    config: { batch: c.batch, prefix: c.prefix, suffix: c.suffix, heads: `${c.hq}/${c.hkv}`, headDim: c.d, dtype: c.dtype },
    timing: m.prefix,
    metric: 'GB/s',
    value: bytes / (m.prefix.medianMs * 1e-3) / 1e9,
    formula: 'bytes of K and V read once (2 * (prefix + batch * suffix) * numKvHeads * headDim * dtype size) / time',
    limit: { value: ctx.limits.copyGBps, what: 'copy bandwidth' },
    peers: [{ name: 'per-sequence decode', medianMs: m.plain.medianMs, speedup: m.plain.medianMs / m.prefix.medianMs }],
    notes: {
      // Attention FLOPs: QK^T and PV over prefix + suffix for every query head.
      'GFLOP/s': (4 * c.d * c.hq * c.batch * (c.prefix + c.suffix)) / (m.prefix.medianMs * 1e-3) / 1e9,
      ...(base ? { 'time vs prefix 1k': m.prefix.medianMs / base.medianMs } : {}),
    },
  };
}

export const prefixSuite: Suite = {
  name: 'prefix',
  description: 'shared-prefix (Hydragen) decode attention against per-sequence decode attention',
  plan(ctx) {
    const cpu = ctx.backend === 'cpu';
    const dtype: FloatDType = 'bf16';
    const batches = ctx.quick ? [16, 64] : [16, 64, 256];
    const prefixes = ctx.quick ? [1024, 4096] : [1024, 4096, 16384];
    const steps: Array<{ label: string; run: () => Promise<BenchRow> }> = [];
    for (const batch of batches) {
      let base: Timing | undefined; // the 1k-prefix time at this batch
      for (const prefix of prefixes) {
        const c: PrefixConfig = { batch, prefix, suffix: 128, hq: 32, hkv: 8, d: 128, dtype };
        steps.push({
          label: `B=${batch} prefix ${prefix}${cpu ? '' : ' (cuda)'}`,
          run: async () => {
            const m = await measure(ctx, c);
            if (prefix === prefixes[0]) base = m.prefix;
            return row(ctx, c, m, prefix === prefixes[0] ? undefined : base);
          },
        });
      }
    }
    return steps;
  },
};
