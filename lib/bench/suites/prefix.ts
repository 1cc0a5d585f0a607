/**
 * `canopy bench prefix`: one decode step of B sequences that share a prefix of P keys and each
 * have a 128-key suffix, with prefixAttention (the B queries batched against the prefix, which
 * is read once per tile) against plain per-sequence decode attention in the same run (each
 * sequence reads the prefix for itself: one attention over the prefix rows, every sequence
 * pointing at the same physical rows as a paged cache with prefix sharing would, one over the
 * suffixes, and a merge). Reports the speedup and the cost of growing the prefix.
 *
 * Then the same inside the model ("shared-prefix model step"): n = 4 and 8 sequences that
 * share a long prompt of P tokens and each hold S own tokens take one greedy decode step
 * (Model.step, one token each), the prompt held once in a prefix slot of the cache
 * (KvCache.attachPrefix: prefix attention in every layer) against forked copies of it (each
 * sequence's own rows hold the whole prompt), on stories260K (P = 448) and a SmolLM-135M shape
 * with random weights (P = 1024; --quick 512). KV bytes of exactly sized caches:
 *   forked  n (P + S) rows,   shared  P + n S rows,   a row = 2 layers kvHeads headDim bytes(dtype).
 */
import { join } from 'node:path';

import { loadModel } from '../../model/load.js';
import { Model } from '../../model/model.js';
import type { KvCache } from '../../model/kv-cache.js';
import { MODEL_PRESETS } from '../../model/presets.js';
import { findBenchModel } from '../models.js';
import { fastRandomWeights } from './generate.js';

import { attention, mergeStates } from '../../kernels/attention.js';
import { prefixAttention } from '../../kernels/prefix-attention.js';
import { dtypeSize, type FloatDType } from '../../tensor/dtype.js';
import { type BenchRow, type Timing, time } from '../harness.js';
import type { BenchStep, Suite, SuiteContext } from './types.js';
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

function timingOf(samples: number[]): Timing {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))]!;
  return { medianMs: at(0.5), p10Ms: at(0.1), p90Ms: at(0.9), repeats: s.length };
}

/**
 * One greedy decode step of n sequences, shared prefix against forked copies, on `model`:
 * prefill once each way, then alternate timed steps (each rolled back after timing, so every
 * step sees the same cache) until the budget is spent.
 */
async function modelStep(ctx: SuiteContext, model: Model, label: string, n: number, P: number): Promise<BenchRow> {
  const vocab = model.config.vocabSize;
  const S = 16; // own tokens per sequence before the timed step
  const prompt = Array.from({ length: P }, (_, i) => 1 + ((i * 7919) % (vocab - 1)));
  const own = (b: number) => Array.from({ length: S }, (_, i) => 1 + ((b * 131 + i * 17) % (vocab - 1)));
  const seqs = Array.from({ length: n }, (_, b) => b);
  const shared = model.createCache({ capacity: S + 1, sequences: n, prefixes: 1, prefixCapacity: P });
  const forked = model.createCache({ capacity: P + S + 1, sequences: n });
  const caches: KvCache[] = [shared, forked];
  try {
    const slot = shared.prefixSlot(0);
    await model.forward(shared, [{ sequence: slot, tokens: prompt }]).then((r) => r.logits.dispose());
    seqs.forEach((b) => shared.attachPrefix(b, slot));
    await model.forward(forked, [{ sequence: 0, tokens: prompt }]).then((r) => r.logits.dispose());
    seqs.slice(1).forEach((b) => forked.fork(0, b));
    for (const c of caches) await model.forward(c, seqs.map((b) => ({ sequence: b, tokens: own(b) }))).then((r) => r.logits.dispose());
    const step = async (c: KvCache) => {
      const t0 = performance.now();
      await model.step(c, seqs.map((b) => ({ sequence: b, tokens: [1 + (b % (vocab - 1))] })));
      const ms = performance.now() - t0;
      seqs.forEach((b) => c.truncate(b, P + S));
      return ms;
    };
    const samples: number[][] = [[], []];
    for (const c of caches) await step(c); // warm-up
    const start = performance.now();
    while (samples[0]!.length < 3 || (performance.now() - start < 2 * ctx.budgetMs && samples[0]!.length < 50)) {
      for (let i = 0; i < 2; i++) samples[i]!.push(await step(caches[i]!));
    }
    const [ts, tf] = samples.map(timingOf) as [Timing, Timing];
    const c = model.config;
    const rowBytes = 2 * c.nLayers * c.nKvHeads * c.headDim * 4; // f32 cache
    return {
      suite: 'prefix',
      name: 'shared-prefix model step',
      backend: ctx.backend,
      config: { model: label, n, prompt: P, own: S, kv: 'f32' },
      timing: ts,
      metric: 'tokens/s',
      value: (n * 1000) / ts.medianMs,
      formula: 'n tokens per greedy decode step (Model.step) / time; KV bytes: forked n (P + S) rows, shared P + n S rows, a row = 2 layers kvHeads headDim 4',
      peers: [{ name: 'forked copies', medianMs: tf.medianMs, speedup: tf.medianMs / ts.medianMs }],
      notes: {
        'KV MB shared': ((P + n * S) * rowBytes) / 1e6,
        'KV MB forked': (n * (P + S) * rowBytes) / 1e6,
        'KV forked / shared': (n * (P + S)) / (P + n * S),
        'allocated MB shared / forked': `${(shared.bytes / 1e6).toFixed(2)} / ${(forked.bytes / 1e6).toFixed(2)}`,
      },
    };
  } finally {
    caches.forEach((x) => x.dispose());
  }
}

/** The model-step rows: the tiny real model (when found) and a bigger random shape. */
function modelSteps(ctx: SuiteContext): BenchStep[] {
  const steps: BenchStep[] = [];
  const stories = findBenchModel(join('stories260K', 'stories260K.bin'));
  for (const n of [4, 8]) {
    steps.push(
      stories.path
        ? {
            label: `model step stories260K n=${n}`,
            run: async () => {
              const { model } = await loadModel(stories.path!, { backend: ctx.device });
              try {
                return await modelStep(ctx, model, 'stories260K', n, 448);
              } finally {
                model.dispose();
              }
            },
          }
        : { label: `model step stories260K n=${n}`, run: async () => Promise.reject(new Error(stories.reason)), skip: stories.reason! },
    );
  }
  const preset = 'smollm-135m';
  const P = ctx.quick ? 512 : 1024;
  for (const n of [4, 8]) {
    steps.push({
      label: `model step ${preset} n=${n}`,
      run: async () => {
        const tensors = fastRandomWeights(preset);
        const model = await Model.fromWeights({ config: MODEL_PRESETS[preset]!, tensors }, { backend: ctx.device, dtype: 'f32' });
        tensors.forEach((t) => t.dispose());
        try {
          return await modelStep(ctx, model, `${preset} (random)`, n, P);
        } finally {
          model.dispose();
        }
      },
    });
  }
  return steps;
}

export const prefixSuite: Suite = {
  name: 'prefix',
  description: 'shared-prefix (Hydragen) decode attention against per-sequence decode attention; a model decode step with the prompt shared against forked copies',
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
    return [...steps, ...modelSteps(ctx)];
  },
};
