/** CUDA shared-prefix attention and quantized-KV attention against the CPU kernels (runs only with a usable GPU). */
import { describe, expect, it } from 'vitest';

import { quantizedAttention } from '../../lib/kernels/attention.js';
import { type KvQuantFormat, QuantizedKv, appendQuantizedKv, quantizeKvGroups } from '../../lib/kernels/kv-quant.js';
import { prefixAttention } from '../../lib/kernels/prefix-attention.js';
import { CudaUnavailableError } from '../../lib/errors.js';
import { cudaInfo } from '../../lib/native/backend.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { mismatches, randomValues } from '../helpers/attention-reference.js';
import { gpuGate } from '../helpers/gpu.js';

const gate = gpuGate('CUDA prefix attention / quantized KV');

describe.runIf(gate.available)('CUDA prefix attention and quantized KV', () => {
  it('prefixAttention (2 levels, decode) equals the CPU kernel', async () => {
    const hq = 16, hkv = 4, d = 128, B = 5;
    const k0 = randomValues(400 * hkv * d, 1), v0 = randomValues(400 * hkv * d, 2);
    const k1 = randomValues(60 * hkv * d, 3), v1 = randomValues(60 * hkv * d, 4);
    const ks = randomValues(50 * hkv * d, 5), vs = randomValues(50 * hkv * d, 6);
    const q = randomValues(B * hq * d, 7);
    const run = async (device: 'cpu' | 'cuda') => {
      const t = async (x: Float32Array, shape: number[]) => Tensor.from(x, { shape }).to(device);
      const { out } = await prefixAttention(await t(q, [B, hq, d]), {
        levels: [
          { seqIndptr: [0, B], kv: { k: await t(k0, [400, hkv, d]), v: await t(v0, [400, hkv, d]), kvIndptr: [0, 400] } },
          { seqIndptr: [0, 2, 5], kv: { k: await t(k1, [60, hkv, d]), v: await t(v1, [60, hkv, d]), kvIndptr: [0, 25, 60] } },
        ],
        suffix: { k: await t(ks, [50, hkv, d]), v: await t(vs, [50, hkv, d]), kvIndptr: [0, 10, 10, 30, 41, 50] },
        mask: 'causal',
      });
      return out.toFloat32();
    };
    expect(mismatches(await run('cuda'), await run('cpu'), 2e-5, 1e-4)).toEqual([]);
  });

  it.each(['int8', 'int4', 'fp8'] as const)('attention over a %s cache equals the CPU kernel', async (format: KvQuantFormat) => {
    const hq = 8, hkv = 2, d = 64, n = 150;
    const build = async (device: 'cpu' | 'cuda') => {
      const cache = new QuantizedKv({ format, rows: 160, numKvHeads: hkv, headDim: d, device, residual: 32, ring: 192 });
      const k = await Tensor.from(randomValues(n * hkv * d, 8), { shape: [n, hkv, d] }).to(device);
      const v = await Tensor.from(randomValues(n * hkv * d, 9), { shape: [n, hkv, d] }).to(device);
      await appendQuantizedKv(cache, k, v, { kvStart: [0], posBefore: [0] });
      if (format === 'int4') await quantizeKvGroups(cache, { kvStart: [0], from: [0], to: [96] });
      const q = await Tensor.from(randomValues(3 * hq * d, 10), { shape: [3, hq, d] }).to(device);
      return quantizedAttention(q, { cache, ...(format === 'int4' ? { quantLens: [96] } : {}) }, { kvIndptr: [0, 160], kvLens: [n], mask: 'causal' });
    };
    const cpu = (await build('cpu')).out.toFloat32();
    const [major, minor] = (cudaInfo().devices[0]?.computeCapability ?? '0.0').split('.').map(Number) as [number, number];
    if (format === 'fp8' && major * 10 + minor < 89) {
      await expect(build('cuda')).rejects.toBeInstanceOf(CudaUnavailableError);
      return;
    }
    expect(mismatches((await build('cuda')).out.toFloat32(), cpu, 2e-5, 1e-4)).toEqual([]);
  });
});
