/**
 * linearQuant on CUDA (csrc/cuda/linear_quant.cu; Q8_0, Q4_0, Q4_K, Q6_K) against the float64
 * reference on the f32 activations and against the CPU kernel, on odd shapes (out 1, 3, 17, 64;
 * in 256, 512, 2816; rows 1, 2, 5, 16, 64 on the GEMV kernel and 65, 130 on the tiled one), each row
 * bit-identical for every row count up to 64; the other block types refused on CUDA.
 *
 * Tolerances (csrc/common/linear.h): CUDA dots the f32-dequantized weights with the f32 activations,
 * so against the float64 product of the float64-dequantized weights it is within f32 rounding:
 * (in + 16) * 2^-23 of the magnitude sum (|w| + 2 |dmin m|) |x| (accumulation, and one rounding of
 * each dequantization term); against the CPU kernel, additionally the CPU's 8-bit activation
 * rounding (half a step per value times |w|) and the CPU's own f32 bound.
 *
 * Runs where a usable GPU is present (skips, saying why, elsewhere; fails under CANOPY_REQUIRE_GPU=1).
 */
import { describe, expect, it } from 'vitest';

import { linearQuant } from '../../lib/kernels/linear-quant.js';
import { CUDA_QUANT_TYPES, QUANT_TYPES, QUANT_TYPE_NAMES } from '../../lib/tensor/quant-types.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { gpuGate } from '../helpers/gpu.js';
import { linearQuantRef, quantizeRef } from '../helpers/quant-reference.js';
import { rng } from '../helpers/verify-reference.js';

const gate = gpuGate('CUDA linearQuant');

function randomValues(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() + r() + r() - 1.5) * (r() < 0.05 ? 20 : 1));
}

describe.runIf(gate.available)('linearQuant on CUDA', () => {
  for (const type of CUDA_QUANT_TYPES) {
    it(`${type}: against float64 and the CPU kernel; rows 1..64 bitwise`, async () => {
      for (const inF of [256, 512, 2816]) {
        for (const outF of [1, 3, 17, 64]) {
          const wBytes = quantizeRef(type, randomValues(outF * inF, inF + outF));
          const wCpu = Tensor.from(wBytes, { dtype: 'uint8', shape: [wBytes.length] });
          const wGpu = await wCpu.to('cuda');
          const xAll = randomValues(130 * inF, 3 * inF + outF);
          let first: Float32Array | undefined;
          for (const rows of [64, 1, 2, 5, 16, 65, 130]) {
            const xv = xAll.subarray(0, rows * inF);
            const ref = linearQuantRef(type, wBytes, xv, rows, inF, outF, 'f32');
            const cpuRef = linearQuantRef(type, wBytes, xv, rows, inF, outF, 'kernel');
            const xCpu = Tensor.from(Float32Array.from(xv), { shape: [rows, inF] });
            const xGpu = await xCpu.to('cuda');
            const yGpu = await linearQuant(xGpu, wGpu, type, outF);
            expect(yGpu.device).toBe('cuda:0');
            const got = yGpu.toFloat32();
            const yCpu = await linearQuant(xCpu, wCpu, type, outF);
            const cpu = yCpu.toFloat32();
            const nb = inF / QUANT_TYPES[type].block;
            for (let k = 0; k < got.length; k++) {
              const at = `${type} in ${inF} out ${outF} rows ${rows} [${Math.floor(k / outF)}, ${k % outF}]`;
              const f32 = (inF + 16) * 2 ** -23 * (ref.magnitude[k]! + 2 * ref.actBound[k]!) + 1e-30; // actBound covers values the 8-bit magnitude rounds to 0
              const e1 = Math.abs(got[k]! - ref.y[k]!);
              if (!(e1 <= f32)) throw new Error(`${at}: cuda ${got[k]} vs float64 ${ref.y[k]} (error ${e1} > ${f32})`);
              const cpuTol = ref.actBound[k]! * 1.01 + f32 + (nb + 4) * 2 ** -23 * cpuRef.magnitude[k]!;
              const e2 = Math.abs(got[k]! - cpu[k]!);
              if (!(e2 <= cpuTol)) throw new Error(`${at}: cuda ${got[k]} vs cpu ${cpu[k]} (difference ${e2} > ${cpuTol})`);
            }
            if (rows === 64) first = got;
            else if (rows < 64) {
              const want = first!.subarray(0, got.length);
              const same = Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength));
              expect(same, `${type} in ${inF} out ${outF}: rows ${rows} differ bitwise from rows 64`).toBe(true);
            }
            for (const t of [xCpu, xGpu, yGpu, yCpu]) t.dispose();
          }
          wCpu.dispose();
          wGpu.dispose();
        }
      }
    }, 120_000);
  }

  it('refuses the block types without a CUDA kernel, naming them', async () => {
    for (const type of QUANT_TYPE_NAMES.filter((t) => !CUDA_QUANT_TYPES.includes(t))) {
      const inF = 256;
      const bytes = QUANT_TYPES[type].bytes * (inF / QUANT_TYPES[type].block);
      const wCpu = Tensor.from(new Uint8Array(bytes), { dtype: 'uint8', shape: [bytes] });
      const xCpu = Tensor.from(new Float32Array(inF), { shape: [1, inF] });
      const [w, x] = [await wCpu.to('cuda'), await xCpu.to('cuda')];
      await expect(linearQuant(x, w, type, 1)).rejects.toThrow(new RegExp(`${type}`));
      for (const t of [w, x, wCpu, xCpu]) t.dispose();
    }
  });
});
