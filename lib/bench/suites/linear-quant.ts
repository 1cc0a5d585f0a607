/**
 * `canopy bench linear-quant`: the CPU linear layer over GGUF block-quantized weights
 * (lib/kernels/linear-quant.ts) on a 1B-model-shaped matrix (in 2048, out 5632: a feed-forward
 * gate), for M = 1, 2, 4, 8, 16, 64 activation rows: decode, verification of a few drafted tokens,
 * draft trees, short prefills. A decode step reads every weight byte once, so the figure is the
 * weight bytes read per second against the machine's measured read bandwidth; successive calls
 * use successive copies of the matrix, 1 GiB in all, so the weights come from memory and not from
 * a cache (as in a model's decode step). The weights are random blocks (every code pattern,
 * finite scales): no data-dependent shortcut can apply.
 */

import { linearQuant } from '../../kernels/linear-quant.js';
import { QUANT_TYPES, QUANT_TYPE_NAMES, type QuantType, quantRowBytes } from '../../tensor/quant-types.js';
import { toF16Bits } from '../../tensor/dtype.js';
import { Tensor } from '../../tensor/tensor.js';
import { type BenchRow, time } from '../harness.js';
import type { BenchStep, Suite, SuiteContext } from './types.js';
import { randomValues } from './util.js';

const IN = 2048;
const OUT = 5632;
/** Bytes of weight copies the calls rotate through (beyond any last-level cache). */
const ROTATE_BYTES = 2 ** 30;

/** Random blocks of `type` with finite f16 scales in [-0.02, 0.02]. */
function randomBlocks(type: QuantType, rows: number, inF: number, seed: number): Uint8Array {
  const t = QUANT_TYPES[type];
  const bytes = new Uint8Array(rows * quantRowBytes(type, inF));
  const noise = randomValues(bytes.length, seed);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor((noise[i]! + 1) * 128) & 255;
  for (let b = 0; b < bytes.length / t.bytes; b++) {
    for (const f of t.f16At) {
      const bits = toF16Bits(0.02 * noise[b]!);
      bytes[b * t.bytes + f] = bits & 255;
      bytes[b * t.bytes + f + 1] = bits >> 8;
    }
  }
  return bytes;
}

async function benchLinearQuant(ctx: SuiteContext, type: QuantType, rows: number): Promise<BenchRow> {
  const wBytes = randomBlocks(type, OUT, IN, 3);
  const copies = Math.max(1, Math.ceil(ROTATE_BYTES / wBytes.length));
  const all = new Uint8Array(copies * wBytes.length);
  for (let c = 0; c < copies; c++) all.set(wBytes, c * wBytes.length);
  const ws = Array.from({ length: copies }, (_, c) => Tensor.from(all.subarray(c * wBytes.length, (c + 1) * wBytes.length), { dtype: 'uint8', shape: [wBytes.length] }));
  const x = Tensor.from(randomValues(rows * IN, 5), { shape: [rows, IN] });
  const y = Tensor.empty([rows, OUT], 'f32');
  let next = 0;
  const timing = await time(() => linearQuant(x, ws[next++ % copies]!, type, OUT, { out: y }), { budgetMs: ctx.budgetMs });
  [...ws, x, y].forEach((t) => t.dispose());
  const read = ctx.limits.readGBps ?? ctx.limits.copyGBps;
  const gbps = wBytes.length / (timing.medianMs * 1e-3) / 1e9;
  return {
    suite: 'linear-quant',
    name: `linear ${type}`,
    backend: 'cpu',
    config: { type, rows, in: IN, out: OUT, 'weight MB': +(wBytes.length / 1e6).toFixed(2) },
    timing,
    metric: 'GB/s',
    value: gbps,
    formula: 'weight bytes (out * in / block * bytes per block) / time, each call on the next of 1 GiB of copies',
    limit: { value: read, what: 'read bandwidth' },
    peers: [],
    notes: {
      'of read bandwidth': `${((gbps / read) * 100).toFixed(0)}%`,
      'bandwidth floor ms': (wBytes.length / (read * 1e9)) * 1e3,
      'GMAC/s': (rows * IN * OUT) / (timing.medianMs * 1e-3) / 1e9,
    },
  };
}

export const linearQuantSuite: Suite = {
  name: 'linear-quant',
  description: 'CPU linear layer over GGUF block-quantized weights (in 2048, out 5632) at M = 1, 2, 4, 8, 16, 64',
  plan(ctx) {
    if (ctx.backend !== 'cpu') return [];
    const types: QuantType[] = ctx.quick ? ['Q8_0', 'Q4_0', 'Q4_K', 'Q6_K'] : QUANT_TYPE_NAMES;
    const steps: BenchStep[] = [];
    for (const type of types) {
      for (const rows of [1, 2, 4, 8, 16, 64]) steps.push({ label: `${type} M=${rows}`, run: () => benchLinearQuant(ctx, type, rows) });
    }
    return steps;
  },
};
