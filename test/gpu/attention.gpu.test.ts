/** CUDA attention against the float64 reference and the CPU kernel (runs only with a usable GPU). */
import { describe, expect, it } from 'vitest';

import { attention, mergeStates, treeAttention } from '../../lib/kernels/attention.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import type { FloatDType } from '../../lib/tensor/dtype.js';
import { attentionReference, mismatches, randomValues } from '../helpers/attention-reference.js';
import { gpuGate } from '../helpers/gpu.js';

const gate = gpuGate('CUDA attention');
const TOL: Record<FloatDType, [number, number]> = { f32: [2e-5, 1e-4], f16: [1e-3, 2e-3], bf16: [8e-3, 1.6e-2] };

async function onDevice(values: Float32Array, shape: number[], dtype: FloatDType): Promise<Tensor> {
  const t = Tensor.from(values, { shape });
  return (dtype === 'f32' ? t : await t.cast(dtype)).to('cuda');
}

describe.runIf(gate.available)('CUDA attention', () => {
  it.each(['f32', 'f16', 'bf16'] as const)('ragged causal batch with GQA equals the float64 reference (%s)', async (dtype) => {
    const hq = 8, hkv = 2, d = 128;
    const qoIndptr = [0, 1, 8, 25, 62];
    const kvIndptr = [0, 1000, 1007, 1047, 1160];
    const q = await onDevice(randomValues(62 * hq * d, 1), [62, hq, d], dtype);
    const k = await onDevice(randomValues(1160 * hkv * d, 2), [1160, hkv, d], dtype);
    const v = await onDevice(randomValues(1160 * hkv * d, 3), [1160, hkv, d], dtype);
    const { out, lse } = await attention(q, k, v, { qoIndptr, kvIndptr, mask: 'causal', returnLse: true });
    const ref = attentionReference({
      q: Float64Array.from(q.toFloat32()), k: Float64Array.from(k.toFloat32()), v: Float64Array.from(v.toFloat32()),
      hq, hkv, d, qoIndptr, kvIndptr, mask: 'causal', scale: 1 / Math.sqrt(d),
    });
    expect(mismatches(out.toFloat32(), ref.o, ...TOL[dtype])).toEqual([]);
    expect(mismatches(lse!.toFloat32(), ref.lse, 1e-4, 1e-5)).toEqual([]);
  });

  it('split-KV decode equals unsplit and the CPU kernel', async () => {
    const hq = 32, hkv = 8, d = 128, L = 4097;
    const qv = randomValues(2 * hq * d, 4), kv = randomValues(2 * L * hkv * d, 5), vv = randomValues(2 * L * hkv * d, 6);
    const opts = { qoIndptr: [0, 1, 2], kvIndptr: [0, L, 2 * L] };
    const cpu = await attention(Tensor.from(qv, { shape: [2, hq, d] }), Tensor.from(kv, { shape: [2 * L, hkv, d] }), Tensor.from(vv, { shape: [2 * L, hkv, d] }), opts);
    const q = await onDevice(qv, [2, hq, d], 'f32'), k = await onDevice(kv, [2 * L, hkv, d], 'f32'), v = await onDevice(vv, [2 * L, hkv, d], 'f32');
    for (const numSplits of [1, 7, 0]) {
      const { out } = await attention(q, k, v, { ...opts, numSplits });
      expect(mismatches(out.toFloat32(), cpu.out.toFloat32(), 2e-5, 1e-4), `numSplits ${numSplits}`).toEqual([]);
    }
  });

  it('tree attention equals the CPU kernel, and merging on the device works', async () => {
    const parents = [-1, -1, 0, 0, 2, 1, 4, 4, 5];
    const n = parents.length, prefix = 300, hq = 8, hkv = 2, d = 64;
    const qv = randomValues(n * hq * d, 7), kv = randomValues((prefix + n) * hkv * d, 8), vv = randomValues((prefix + n) * hkv * d, 9);
    const cpu = await treeAttention(Tensor.from(qv, { shape: [n, hq, d] }), Tensor.from(kv, { shape: [prefix + n, hkv, d] }), Tensor.from(vv, { shape: [prefix + n, hkv, d] }), { parents, returnLse: true });
    const q = await onDevice(qv, [n, hq, d], 'f32'), k = await onDevice(kv, [prefix + n, hkv, d], 'f32'), v = await onDevice(vv, [prefix + n, hkv, d], 'f32');
    const gpu = await treeAttention(q, k, v, { parents, returnLse: true });
    expect(mismatches(gpu.out.toFloat32(), cpu.out.toFloat32(), 2e-5, 1e-4)).toEqual([]);
    const merged = await mergeStates({ v: gpu.out, s: gpu.lse! }, { v: gpu.out, s: gpu.lse! });
    expect(merged.v.device).toBe('cuda:0');
    expect(mismatches(merged.v.toFloat32(), cpu.out.toFloat32(), 2e-5, 1e-4)).toEqual([]);
  });
});
