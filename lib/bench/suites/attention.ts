/**
 * `canopy bench attention`: flash prefill (TFLOP/s against the FMA / tensor peak)
 * and split-KV decode (GB/s against the measured copy bandwidth), with the naive
 * baseline (materialised scores, one pass per query and head) measured in the
 * same run on the CPU.
 */

import { attention } from '../../kernels/attention.js';
import { dtypeSize, type FloatDType } from '../../tensor/dtype.js';
import { type BenchRow, time } from '../harness.js';
import type { TorchAttentionJob } from '../peers/torch.js';
import type { BenchStep, SuiteContext, Suite } from './types.js';
import { randomTensor } from './util.js';

interface PrefillConfig {
  tokens: number;
  hq: number;
  hkv: number;
  d: number;
  dtype: FloatDType;
}

interface DecodeConfig {
  batch: number;
  kvLen: number;
  hq: number;
  hkv: number;
  d: number;
  dtype: FloatDType;
}

async function benchPrefill(ctx: SuiteContext, c: PrefillConfig, withNaive: boolean): Promise<BenchRow> {
  const q = await randomTensor([c.tokens, c.hq, c.d], c.dtype, ctx.device, 1);
  const k = await randomTensor([c.tokens, c.hkv, c.d], c.dtype, ctx.device, 2);
  const v = await randomTensor([c.tokens, c.hkv, c.d], c.dtype, ctx.device, 3);
  const run = (naive: boolean) => async () => {
    const { out } = await attention(q, k, v, { mask: 'causal', naive });
    out.dispose();
  };
  const timing = await time(run(false), { budgetMs: ctx.budgetMs });
  // Causal: query i sees i + 1 keys; QK^T and PV are 2 FLOP per multiply-add each.
  const flops = 4 * c.d * c.hq * ((c.tokens * (c.tokens + 1)) / 2);
  const peers = [];
  if (withNaive) {
    const naive = await time(run(true), { budgetMs: ctx.budgetMs / 2, warmup: 0, minRepeats: 1 });
    peers.push({ name: 'naive', medianMs: naive.medianMs, speedup: naive.medianMs / timing.medianMs });
  }
  [q, k, v].forEach((t) => t.dispose());
  const tflops = ctx.backend === 'cuda';
  const value = flops / (timing.medianMs * 1e-3) / (tflops ? 1e12 : 1e9);
  return {
    suite: 'attention',
    name: 'prefill causal',
    backend: ctx.backend,
    config: { tokens: c.tokens, heads: `${c.hq}/${c.hkv}`, headDim: c.d, dtype: c.dtype },
    timing,
    metric: tflops ? 'TFLOP/s' : 'GFLOP/s',
    value,
    formula: '4 * headDim * numQoHeads * tokens * (tokens + 1) / 2 / time',
    ...(ctx.limits.peakGFlops
      ? { limit: { value: tflops ? ctx.limits.peakGFlops / 1000 : ctx.limits.peakGFlops, what: tflops ? 'tensor peak' : 'FMA peak' } }
      : {}),
    peers,
  };
}

async function benchDecode(ctx: SuiteContext, c: DecodeConfig, withNaive: boolean): Promise<BenchRow> {
  const q = await randomTensor([c.batch, c.hq, c.d], c.dtype, ctx.device, 4);
  const k = await randomTensor([c.batch * c.kvLen, c.hkv, c.d], c.dtype, ctx.device, 5);
  const v = await randomTensor([c.batch * c.kvLen, c.hkv, c.d], c.dtype, ctx.device, 6);
  const qoIndptr = Int32Array.from({ length: c.batch + 1 }, (_, i) => i);
  const kvIndptr = Int32Array.from({ length: c.batch + 1 }, (_, i) => i * c.kvLen);
  const run = (naive: boolean) => async () => {
    const { out } = await attention(q, k, v, { qoIndptr, kvIndptr, naive });
    out.dispose();
  };
  const timing = await time(run(false), { budgetMs: ctx.budgetMs });
  const bytes = 2 * c.batch * c.kvLen * c.hkv * c.d * dtypeSize(c.dtype);
  const peers = [];
  if (withNaive) {
    const naive = await time(run(true), { budgetMs: ctx.budgetMs / 2, warmup: 0, minRepeats: 1 });
    peers.push({ name: 'naive', medianMs: naive.medianMs, speedup: naive.medianMs / timing.medianMs });
  }
  [q, k, v].forEach((t) => t.dispose());
  return {
    suite: 'attention',
    name: 'decode split-KV',
    backend: ctx.backend,
    config: { batch: c.batch, kvLen: c.kvLen, heads: `${c.hq}/${c.hkv}`, headDim: c.d, dtype: c.dtype },
    timing,
    metric: 'GB/s',
    value: bytes / (timing.medianMs * 1e-3) / 1e9,
    formula: 'bytes of K and V read (2 * batch * kvLen * numKvHeads * headDim * dtype size) / time',
    limit: { value: ctx.limits.copyGBps, what: 'copy bandwidth' },
    peers,
  };
}

export const attentionSuite: Suite = {
  name: 'attention',
  description: 'flash prefill and split-KV decode against the naive baseline and the machine limits',
  plan(ctx) {
    const cpu = ctx.backend === 'cpu';
    const steps: BenchStep[] = [];
    if (cpu) {
      steps.push({ label: 'prefill 2k f32', run: () => benchPrefill(ctx, { tokens: 2048, hq: 8, hkv: 8, d: 128, dtype: 'f32' }, true) });
      if (!ctx.quick) steps.push({ label: 'prefill 1k GQA bf16', run: () => benchPrefill(ctx, { tokens: 1024, hq: 32, hkv: 8, d: 128, dtype: 'bf16' }, false) });
      steps.push({ label: 'decode 16k f32', run: () => benchDecode(ctx, { batch: 1, kvLen: 16384, hq: 32, hkv: 8, d: 128, dtype: 'f32' }, true) });
      if (!ctx.quick) {
        steps.push({ label: 'decode 8x4k f32', run: () => benchDecode(ctx, { batch: 8, kvLen: 4096, hq: 32, hkv: 8, d: 128, dtype: 'f32' }, false) });
        steps.push({ label: 'decode 16k bf16', run: () => benchDecode(ctx, { batch: 1, kvLen: 16384, hq: 32, hkv: 8, d: 128, dtype: 'bf16' }, false) });
      }
    } else {
      // PyTorch SDPA (flash, cuDNN) times the same shapes when torch is present (attached by the runner).
      const torch = (id: string, mode: 'prefill' | 'decode', c: { batch: number; qLen: number; kvLen: number; hq: number; hkv: number; d: number; dtype: 'f16' | 'bf16' }): TorchAttentionJob[] => [
        { id, kind: 'attention', mode, batch: c.batch, qLen: c.qLen, kvLen: c.kvLen, numQoHeads: c.hq, numKvHeads: c.hkv, headDim: c.d, dtype: c.dtype },
      ];
      const lens = ctx.quick ? [4096] : [4096, 16384];
      for (const dtype of ['f16', 'bf16'] as const) {
        for (const tokens of lens) {
          steps.push({
            label: `prefill ${tokens} ${dtype}`,
            run: () => benchPrefill(ctx, { tokens, hq: 32, hkv: 32, d: 128, dtype }, false),
            torch: torch(`attention:prefill:${tokens}:${dtype}`, 'prefill', { batch: 1, qLen: tokens, kvLen: tokens, hq: 32, hkv: 32, d: 128, dtype }),
          });
        }
      }
      const batch = ctx.quick ? 16 : 64;
      steps.push({
        label: `decode ${batch}x8k bf16`,
        run: () => benchDecode(ctx, { batch, kvLen: 8192, hq: 32, hkv: 8, d: 128, dtype: 'bf16' }, false),
        torch: torch(`attention:decode:${batch}x8192`, 'decode', { batch, qLen: 1, kvLen: 8192, hq: 32, hkv: 8, d: 128, dtype: 'bf16' }),
      });
      steps.push({
        label: 'decode 1x32k bf16',
        run: () => benchDecode(ctx, { batch: 1, kvLen: 32768, hq: 32, hkv: 8, d: 128, dtype: 'bf16' }, false),
        torch: torch('attention:decode:1x32768', 'decode', { batch: 1, qLen: 1, kvLen: 32768, hq: 32, hkv: 8, d: 128, dtype: 'bf16' }),
      });
    }
    return steps;
  },
};

