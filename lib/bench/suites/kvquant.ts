/**
 * `canopy bench kvquant`: decode attention over a long cache in each storage format (16-bit,
 * int8, int4 KIVI-style, fp8 on GPUs with compute capability 8.9+), one query token per
 * sequence. Each row reports the cache bytes per token, the achieved GB/s (bytes of cache read /
 * time) against the copy bandwidth, and its time relative to the 16-bit cache measured in the
 * same run (the goal: never slower than 16-bit; time should scale with the bytes read).
 */

import { attention, quantizedAttention } from '../../kernels/attention.js';
import { type KvQuantFormat, quantizeKv, quantizedBytesPerToken } from '../../kernels/kv-quant.js';
import { cudaInfo, deviceIndex } from '../../native/backend.js';
import type { Tensor } from '../../tensor/tensor.js';
import { type BenchRow, type Timing, time } from '../harness.js';
import type { Suite, SuiteContext } from './types.js';
import { randomTensor } from './util.js';

interface Shape {
  batch: number;
  kvLen: number;
  hq: number;
  hkv: number;
  d: number;
}

type Format = 'bf16' | 'f16' | KvQuantFormat;

/** Times decode attention over `format` caches of `shape`; returns the timing and the bytes read per call. */
async function measure(ctx: SuiteContext, s: Shape, format: Format): Promise<{ timing: Timing; bytes: number }> {
  const qDtype = format === 'f16' ? 'f16' : 'bf16';
  const rows = s.batch * s.kvLen;
  const q = await randomTensor([s.batch, s.hq, s.d], qDtype, ctx.device, 1);
  const k = await randomTensor([rows, s.hkv, s.d], format === 'f16' ? 'f16' : 'bf16', ctx.device, 2);
  const v = await randomTensor([rows, s.hkv, s.d], format === 'f16' ? 'f16' : 'bf16', ctx.device, 3);
  const qoIndptr = Int32Array.from({ length: s.batch + 1 }, (_, i) => i);
  const kvIndptr = Int32Array.from({ length: s.batch + 1 }, (_, i) => i * s.kvLen);
  const owned: Tensor[] = [q, k, v];
  try {
    if (format === 'bf16' || format === 'f16') {
      const timing = await time(async () => (await attention(q, k, v, { qoIndptr, kvIndptr })).out.dispose(), { budgetMs: ctx.budgetMs });
      return { timing, bytes: rows * quantizedBytesPerToken(format, s.hkv, s.d) };
    }
    // A quantized cache holding the batch's sequences, filled as a model's cache would be (int4:
    // the newest 128 keys of each sequence stay in its 16-bit ring).
    const qc = await quantizeKv(k, v, { format, residual: 128, kvIndptr });
    try {
      const view = { cache: qc.cache, ...(format === 'int4' ? { quantLens: qc.quantLens, resStart: qc.resStart } : {}) };
      const opts = { qoIndptr, kvIndptr: [...qc.kvStart, qc.cache.rows], kvLens: qc.kvLens };
      const timing = await time(async () => (await quantizedAttention(q, view, opts)).out.dispose(), { budgetMs: ctx.budgetMs });
      let bytes = 0;
      for (let b = 0; b < s.batch; b++) {
        const ql = qc.quantLens[b]!;
        bytes += ql * quantizedBytesPerToken(format, s.hkv, s.d, qc.cache.group) + (s.kvLen - ql) * quantizedBytesPerToken('f16', s.hkv, s.d);
      }
      return { timing, bytes };
    } finally {
      qc.cache.dispose();
    }
  } finally {
    owned.forEach((t) => t.dispose());
  }
}

function fp8Supported(ctx: SuiteContext): boolean {
  if (ctx.backend !== 'cuda') return false;
  const cc = cudaInfo().devices[deviceIndex(ctx.device)]?.computeCapability ?? '0.0';
  const [major, minor] = cc.split('.').map(Number) as [number, number];
  return major * 10 + minor >= 89;
}

async function benchFormats(ctx: SuiteContext, s: Shape): Promise<BenchRow[]> {
  const formats: Format[] = ['bf16', 'f16', 'int8', 'int4', ...(fp8Supported(ctx) ? (['fp8'] as const) : [])];
  const rows: BenchRow[] = [];
  let base: number | undefined;
  for (const format of formats) {
    const { timing, bytes } = await measure(ctx, s, format);
    base ??= timing.medianMs;
    rows.push({
      suite: 'kvquant',
      name: `decode ${format}`,
      backend: ctx.backend,
      config: { batch: s.batch, kvLen: s.kvLen, heads: `${s.hq}/${s.hkv}`, headDim: s.d, cache: format },
      timing,
      metric: 'GB/s',
      value: bytes / (timing.medianMs * 1e-3) / 1e9,
      formula: 'bytes of cache read (codes, scales, zero points; int4 also its 16-bit residual keys) / time',
      limit: { value: ctx.limits.copyGBps, what: 'copy bandwidth' },
      peers: format === 'bf16' ? [] : [{ name: 'bf16 cache', medianMs: base, speedup: base / timing.medianMs }],
      notes: {
        'bytes/token/layer': format === 'bf16' || format === 'f16' ? quantizedBytesPerToken(format, s.hkv, s.d) : quantizedBytesPerToken(format, s.hkv, s.d, 32),
        'time vs bf16': timing.medianMs / base,
      },
    });
  }
  return rows;
}

export const kvquantSuite: Suite = {
  name: 'kvquant',
  description: 'decode attention over 16-bit, int8, int4 (and fp8 on cc 8.9+ GPUs) caches at long context',
  plan(ctx) {
    const cpu = ctx.backend === 'cpu';
    const shapes: Shape[] = cpu
      ? ctx.quick
        ? [{ batch: 1, kvLen: 4096, hq: 32, hkv: 8, d: 128 }]
        : [
            { batch: 1, kvLen: 16384, hq: 32, hkv: 8, d: 128 },
            { batch: 1, kvLen: 65536, hq: 32, hkv: 8, d: 128 },
            { batch: 4, kvLen: 16384, hq: 32, hkv: 8, d: 128 },
          ]
      : ctx.quick
        ? [{ batch: 8, kvLen: 16384, hq: 32, hkv: 8, d: 128 }]
        : [
            { batch: 8, kvLen: 16384, hq: 32, hkv: 8, d: 128 },
            { batch: 8, kvLen: 65536, hq: 32, hkv: 8, d: 128 },
            { batch: 1, kvLen: 131072, hq: 32, hkv: 8, d: 128 },
          ];
    // One step per shape: the formats are measured together so the ratios come from one run.
    const steps: Array<{ label: string; run: () => Promise<BenchRow> }> = [];
    for (const s of shapes) {
      let pending: Promise<BenchRow[]> | undefined;
      const formats = ['bf16', 'f16', 'int8', 'int4', ...(fp8Supported(ctx) ? ['fp8'] : [])];
      formats.forEach((f, i) => {
        steps.push({
          label: `decode ${s.batch}x${s.kvLen} ${f}`,
          run: async () => {
            pending ??= benchFormats(ctx, s);
            return (await pending)[i]!;
          },
        });
      });
    }
    return steps;
  },
};
