/**
 * CUDA attention with logit soft-capping and sliding windows (Gemma 2 / 3) against the float64
 * reference and the CPU kernel, in every variant: prefill, split-KV decode, tree, shared prefix,
 * quantized caches; kernel versions 1 and 2 (CANOPY_CUDA_KERNELS). Runs only with a usable GPU.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { attention, quantizedAttention, treeAttention } from '../../lib/kernels/attention.js';
import { QuantizedKv, appendQuantizedKv } from '../../lib/kernels/kv-quant.js';
import { prefixAttention } from '../../lib/kernels/prefix-attention.js';
import type { FloatDType } from '../../lib/tensor/dtype.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { attentionReference, mismatches, randomValues } from '../helpers/attention-reference.js';
import { gpuGate } from '../helpers/gpu.js';

const gate = gpuGate('CUDA attention soft-capping and windows');
const TOL: Record<FloatDType, [number, number]> = { f32: [2e-5, 1e-4], f16: [1e-3, 2e-3], bf16: [8e-3, 1.6e-2] };

afterEach(() => {
  delete process.env.CANOPY_CUDA_KERNELS;
});

async function onDevice(values: Float32Array, shape: number[], dtype: FloatDType, device: 'cpu' | 'cuda' = 'cuda'): Promise<Tensor> {
  const t = Tensor.from(values, { shape });
  return (dtype === 'f32' ? t : await t.cast(dtype)).to(device);
}

describe.runIf(gate.available)('CUDA attention: soft-capping and sliding windows', () => {
  it.each(['f32', 'f16', 'bf16'] as const)('a ragged causal batch with window 8 and softcap 5 equals the float64 reference (%s, v1 and v2)', async (dtype) => {
    const hq = 8, hkv = 2, d = 128;
    const qoIndptr = [0, 1, 8, 25, 62];
    const kvIndptr = [0, 1000, 1007, 1047, 1160];
    const q = await onDevice(randomValues(62 * hq * d, 1).map((x) => 4 * x), [62, hq, d], dtype);
    const k = await onDevice(randomValues(1160 * hkv * d, 2), [1160, hkv, d], dtype);
    const v = await onDevice(randomValues(1160 * hkv * d, 3), [1160, hkv, d], dtype);
    const ref = attentionReference({
      q: Float64Array.from(q.toFloat32()), k: Float64Array.from(k.toFloat32()), v: Float64Array.from(v.toFloat32()),
      hq, hkv, d, qoIndptr, kvIndptr, mask: 'causal', scale: 1 / Math.sqrt(d), softcap: 5, window: 8,
    });
    for (const version of ['v2', 'v1']) {
      if (version === 'v1') process.env.CANOPY_CUDA_KERNELS = 'v1';
      for (const numSplits of [1, 5, 0]) {
        const { out, lse } = await attention(q, k, v, { qoIndptr, kvIndptr, mask: 'causal', returnLse: true, softcap: 5, window: 8, numSplits });
        expect(mismatches(out.toFloat32(), ref.o, ...TOL[dtype]), `${version}, numSplits ${numSplits}`).toEqual([]);
        expect(mismatches(lse!.toFloat32(), ref.lse, 1e-4, 1e-5), `${version}, numSplits ${numSplits}`).toEqual([]);
      }
    }
  });

  it('softcap 0 and window 0 give the same bits as leaving them out', async () => {
    const q = await onDevice(randomValues(5 * 4 * 64, 4), [5, 4, 64], 'f32');
    const k = await onDevice(randomValues(300 * 2 * 64, 5), [300, 2, 64], 'f32');
    const a = (await attention(q, k, k, { mask: 'causal' })).out.toFloat32();
    const b = (await attention(q, k, k, { mask: 'causal', softcap: 0, window: 0 })).out.toFloat32();
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
  });

  it('tree attention with a window equals the CPU kernel', async () => {
    const parents = [-1, -1, 0, 0, 2, 1, 4, 4, 5, 6, 9];
    const n = parents.length, prefix = 300, hq = 8, hkv = 2, d = 64;
    const qv = randomValues(n * hq * d, 7), kv = randomValues((prefix + n) * hkv * d, 8), vv = randomValues((prefix + n) * hkv * d, 9);
    const run = async (device: 'cpu' | 'cuda') =>
      (await treeAttention(await onDevice(qv, [n, hq, d], 'f32', device), await onDevice(kv, [prefix + n, hkv, d], 'f32', device), await onDevice(vv, [prefix + n, hkv, d], 'f32', device), { parents, softcap: 3, window: 4 })).out.toFloat32();
    expect(mismatches(await run('cuda'), await run('cpu'), 2e-5, 1e-4)).toEqual([]);
  });

  it('prefixAttention with a window over the levels equals the CPU kernel', async () => {
    const hq = 16, hkv = 4, d = 128, B = 5;
    const k0 = randomValues(400 * hkv * d, 1), v0 = randomValues(400 * hkv * d, 2);
    const k1 = randomValues(60 * hkv * d, 3), v1 = randomValues(60 * hkv * d, 4);
    const ks = randomValues(50 * hkv * d, 5), vs = randomValues(50 * hkv * d, 6);
    const q = randomValues(B * hq * d, 7);
    const run = async (device: 'cpu' | 'cuda', window: number) => {
      const t = async (x: Float32Array, shape: number[]) => Tensor.from(x, { shape }).to(device);
      const { out } = await prefixAttention(await t(q, [B, hq, d]), {
        levels: [
          { seqIndptr: [0, B], kv: { k: await t(k0, [400, hkv, d]), v: await t(v0, [400, hkv, d]), kvIndptr: [0, 400] } },
          { seqIndptr: [0, 2, 5], kv: { k: await t(k1, [60, hkv, d]), v: await t(v1, [60, hkv, d]), kvIndptr: [0, 25, 60] } },
        ],
        suffix: { k: await t(ks, [50, hkv, d]), v: await t(vs, [50, hkv, d]), kvIndptr: [0, 10, 10, 30, 41, 50] },
        mask: 'causal',
        softcap: 4,
        window,
      });
      return out.toFloat32();
    };
    for (const window of [8, 40]) expect(mismatches(await run('cuda', window), await run('cpu', window), 2e-5, 1e-4), `window ${window}`).toEqual([]);
  });

  it('attention over an int8 cache with a window equals the CPU kernel', async () => {
    const hq = 8, hkv = 2, d = 64, n = 150;
    const build = async (device: 'cpu' | 'cuda') => {
      const cache = new QuantizedKv({ format: 'int8', rows: 160, numKvHeads: hkv, headDim: d, device });
      const k = await Tensor.from(randomValues(n * hkv * d, 8), { shape: [n, hkv, d] }).to(device);
      const v = await Tensor.from(randomValues(n * hkv * d, 9), { shape: [n, hkv, d] }).to(device);
      await appendQuantizedKv(cache, k, v, { kvStart: [0], posBefore: [0] });
      const q = await Tensor.from(randomValues(3 * hq * d, 10), { shape: [3, hq, d] }).to(device);
      return (await quantizedAttention(q, { cache }, { kvIndptr: [0, 160], kvLens: [n], mask: 'causal', softcap: 6, window: 8 })).out.toFloat32();
    };
    expect(mismatches(await build('cuda'), await build('cpu'), 2e-5, 1e-4)).toEqual([]);
  });
});
