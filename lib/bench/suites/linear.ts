/**
 * `canopy bench linear`: the linear layer y = x w^T on the CPU (or CUDA), per weight type and
 * number of rows M, on TinyLlama-1.1B's shapes (the FFN's 2048 -> 5632 and the attention's
 * 2048 -> 2048). Each row reports the median time, the weights read per second, the FLOP
 * rate, and the roofline: max(weight bytes / measured read bandwidth, 2*M*in*out FLOPs /
 * measured peak for the arithmetic used), as "roofline ms" and "x roofline" (time / roofline;
 * the goal is <= 1.2 at every M, and M = 1 at >= 85% of read bandwidth).
 *
 * Quantized weight types add themselves to LINEAR_BENCH_TYPES (a weight maker and its bytes
 * per element); the rows and the roofline come for free.
 */

import { linear } from '../../kernels/linear.js';
import { native } from '../../native/loader.js';
import { Tensor } from '../../tensor/tensor.js';
import type { FloatDType } from '../../tensor/dtype.js';
import { type BenchRow, time } from '../harness.js';
import type { BenchStep, Suite, SuiteContext } from './types.js';
import { randomTensor } from './util.js';

/** A weight type the suite benchmarks: how to make [out, in] weights of it, and its size. */
export interface LinearBenchType {
  name: string;
  /** Bytes per weight (a block format: block bytes / block elements, e.g. Q8_0 34/32). */
  bytesPerWeight: number;
  /** Random weights [out, in] of this type on the device (seeded). */
  makeWeights(shape: [number, number], ctx: SuiteContext, seed: number): Promise<Tensor>;
  /**
   * The peak of the arithmetic its kernel uses, GFLOP/s (multiply-adds x 2): defaults to the
   * machine's measured f32 FMA peak. An int8 (VNNI) or bf16-dot kernel names its own.
   */
  peakGFlops?(ctx: SuiteContext): { value: number; what: string } | undefined;
}

function floatType(dtype: FloatDType): LinearBenchType {
  return {
    name: dtype,
    bytesPerWeight: dtype === 'f32' ? 4 : 2,
    makeWeights: (shape, ctx, seed) => randomTensor(shape, dtype, ctx.device, seed),
  };
}

/** The weight types of the suite, in table order. Quantized types are pushed here by their module. */
export const LINEAR_BENCH_TYPES: LinearBenchType[] = [floatType('f32'), floatType('f16'), floatType('bf16')];

/** TinyLlama-1.1B: hidden 2048, FFN 5632. */
const SHAPES: Array<{ label: string; in: number; out: number }> = [
  { label: 'ffn up 2048->5632', in: 2048, out: 5632 },
  { label: 'attn 2048->2048', in: 2048, out: 2048 },
];

const ROWS = [1, 4, 8, 16, 64, 512];

interface LinearConfig {
  type: LinearBenchType;
  in: number;
  out: number;
  rows: number;
  shape: string;
}

/**
 * Calls rotate over copies of the weights totalling at least this many bytes, so each call
 * reads its weights from memory as a decode step does (a model's weights never fit in the
 * cache; one 46 MB matrix read over and over would, in a large L3, and the figures would be
 * cache bandwidth).
 */
const ROTATION_BYTES = 1 << 30;

/** `n` copies of w (w itself first). */
function copies(w: Tensor, n: number): Tensor[] {
  const out = [w];
  for (let i = 1; i < n; i++) {
    const t = Tensor.empty(w.shape, w.dtype, { device: w.device });
    native().copySync(t.descriptor(), w.descriptor());
    out.push(t);
  }
  return out;
}

async function benchLinear(ctx: SuiteContext, c: LinearConfig): Promise<BenchRow> {
  const weightBytes = c.in * c.out * c.type.bytesPerWeight;
  const ws = copies(await c.type.makeWeights([c.out, c.in], ctx, 11), Math.max(1, Math.min(64, Math.ceil(ROTATION_BYTES / weightBytes))));
  const x = await randomTensor([c.rows, c.in], 'f32', ctx.device, 12);
  const y = Tensor.empty([c.rows, c.out], 'f32', { device: ctx.device });
  let call = 0;
  try {
    const timing = await time(() => linear(x, ws[call++ % ws.length]!, { out: y }), { budgetMs: ctx.budgetMs, warmup: 2, minRepeats: 5, maxRepeats: 400 });
    const s = timing.medianMs * 1e-3;
    const flops = 2 * c.rows * c.in * c.out;
    const gbps = weightBytes / s / 1e9;
    const gflops = flops / s / 1e9;
    const read = ctx.limits.readGBps ?? ctx.limits.copyGBps;
    const peak = c.type.peakGFlops?.(ctx) ?? (ctx.limits.peakGFlops !== undefined ? { value: ctx.limits.peakGFlops, what: 'FMA peak' } : undefined);
    const memMs = (weightBytes / (read * 1e9)) * 1e3;
    const computeMs = peak ? (flops / (peak.value * 1e9)) * 1e3 : 0;
    const roofMs = Math.max(memMs, computeMs);
    const bound = memMs >= computeMs;
    return {
      suite: 'linear',
      name: `linear ${c.type.name}`,
      backend: ctx.backend,
      config: { shape: c.shape, M: c.rows, w: c.type.name },
      timing,
      metric: bound ? 'GB/s' : 'GFLOP/s',
      value: bound ? gbps : gflops,
      formula: bound
        ? 'weight bytes (out * in * bytes per weight) / time (memory-bound rows: roofline from read bandwidth)'
        : '2 * M * in * out / time (compute-bound rows: roofline from the FMA peak)',
      limit: bound ? { value: read, what: ctx.limits.readGBps !== undefined ? 'read bandwidth' : 'copy bandwidth' } : { value: peak!.value, what: peak!.what },
      peers: [],
      notes: {
        'GB/s': gbps,
        'GFLOP/s': gflops,
        'roofline ms': roofMs,
        'x roofline': timing.medianMs / roofMs,
        bound: bound ? 'memory' : 'compute',
        threads: ctx.threads,
        'weight copies': ws.length,
      },
    };
  } finally {
    ws.forEach((w) => w.dispose());
    x.dispose();
    y.dispose();
  }
}

export const linearSuite: Suite = {
  name: 'linear',
  description: 'the linear layer per weight type and row count M against its roofline (TinyLlama shapes)',
  plan(ctx) {
    const steps: BenchStep[] = [];
    const rows = ctx.quick ? [1, 8, 64] : ROWS;
    const shapes = ctx.quick ? SHAPES.slice(0, 1) : SHAPES;
    for (const type of LINEAR_BENCH_TYPES) {
      for (const shape of shapes) {
        for (const m of rows) {
          const config: LinearConfig = { type, in: shape.in, out: shape.out, rows: m, shape: shape.label.split(' ').pop()! };
          steps.push({ label: `${type.name} ${shape.label} M=${m}`, run: () => benchLinear(ctx, config) });
        }
      }
    }
    return steps;
  },
};
