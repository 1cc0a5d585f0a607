// The native quantizers (lib/kernels/quantize.ts, csrc/common/quantize.h) against the reference of
// llama.cpp's quantize_row_*_ref (test/helpers/quantize-reference.ts): the same bytes, on awkward
// data (zeros, constant blocks, one outlier, mixed scales, subnormal-small blocks), and the round
// trip through the float64 dequantizer within each format's bound.
import { describe, expect, it } from 'vitest';

import { quantizeMatrix } from '../../lib/kernels/quantize.js';
import { QUANT_TYPES, QUANT_TYPE_NAMES, type QuantType, quantRowBytes } from '../../lib/tensor/quant-types.js';
import { encodeFloats } from '../../lib/tensor/dtype.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { dequantizeRef } from '../helpers/quant-reference.js';
import { quantizeLlamaRef } from '../helpers/quantize-reference.js';
import { rng } from '../helpers/verify-reference.js';

/** Rows of `cols` values: per block of 32 a different kind of data. */
function awkward(rows: number, cols: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const kind = Math.floor(i / 32) % 11;
    const g = r() + r() + r() - 1.5;
    out[i] =
      kind === 0 ? 0 // an all-zero block
      : kind === 1 ? 0.25 // a constant block
      : kind === 2 ? (i % 32 === 7 ? 30 : g * 0.01) // one outlier
      : kind === 3 ? Math.abs(g) + 0.5 // all positive (a min above 0)
      : kind === 4 ? -Math.abs(g) - 0.5 // all negative
      : kind === 5 ? g * 1e-3
      : kind === 6 ? g * 40
      : kind === 7 ? (r() < 0.5 ? 0 : g) // half zeros
      : kind === 8 ? Math.round(g * 8) / 8 // values on a grid (ties)
      : g;
  }
  return out;
}

/**
 * The largest round-trip error, as a fraction of the largest |x| of the (super-)block, each from
 * the format (f16 rounding of d adds 128 * 2^-11 / 127 at most, included in the margins):
 *   Q8_0   half a step of amax / 127
 *   Q4_0 / Q5_0   a whole step (amax / 8, amax / 16) at the end opposite the largest value
 *   Q4_1 / Q5_1   half a step of the range (<= 2 amax) over 15 / 31 levels
 *   IQ4_NL the grid's 113 top vs the fitted 127 (14 / 127), its widest half-gap being smaller
 *   K-quants half a sub-block step (range over levels) plus what rounding the sub-block scale (and
 *          min) to 6 bits (4 for Q2_K) adds over the levels: Q2_K 2/3/2 + 0.07 + 0.03,
 *          Q3_K a step amax / 4 at the clamped end + 0.02, Q4_K 1/15 + 0.016 + 0.008,
 *          Q5_K 1/31 + 0.016 + 0.008, Q6_K 1/64 + 0.004 + clamping margin
 *   IQ4_XS IQ4_NL's plus the 6-bit sub-block scale rounding (127 / 113 / 64)
 * plus, for blocks so small that d (or dmin) is an f16 subnormal, the absolute rounding of d
 * (2^-25 at most) times the largest code * scale the format decodes (LARGEST_CODE).
 */
const LARGEST_CODE: Record<QuantType, number> = {
  Q8_0: 128, Q4_0: 8, Q5_0: 16, Q4_1: 16, Q5_1: 32, IQ4_NL: 127,
  Q2_K: 60, Q3_K: 128, Q4_K: 63 * 16, Q5_K: 63 * 32, Q6_K: 128 * 32, IQ4_XS: 32 * 127,
};
const RELATIVE_BOUND: Record<QuantType, number> = {
  Q8_0: 0.0045, Q4_0: 0.126, Q5_0: 0.0635, Q4_1: 0.07, Q5_1: 0.035, IQ4_NL: 0.12,
  Q2_K: 0.45, Q3_K: 0.27, Q4_K: 0.09, Q5_K: 0.058, Q6_K: 0.025, IQ4_XS: 0.14,
};

describe('quantizeMatrix: llama.cpp reference quantizers', () => {
  for (const type of QUANT_TYPE_NAMES) {
    it(`${type}: bytes equal the reference; round trip within the format's error`, async () => {
      const block = QUANT_TYPES[type].block;
      const rows = 5;
      const cols = block * (block === 32 ? 11 : 3);
      const x = awkward(rows, cols, 7 + QUANT_TYPES[type].id);
      const q = await quantizeMatrix(Tensor.from(x, { shape: [rows, cols] }), type);
      expect(q.shape).toEqual([rows, quantRowBytes(type, cols)]);
      const got = q.toArray() as Uint8Array;
      const want = quantizeLlamaRef(type, x);
      let firstDiff = -1;
      for (let i = 0; i < want.length && firstDiff < 0; i++) if (got[i] !== want[i]) firstDiff = i;
      expect(firstDiff, `first differing byte (block ${Math.floor(firstDiff / QUANT_TYPES[type].bytes)})`).toBe(-1);
      // Round trip: every value within RELATIVE_BOUND[type] * max |x| of its (super-)block.
      const back = dequantizeRef(type, got, x.length);
      for (let b = 0; b < x.length / block; b++) {
        let amax = 0;
        for (let i = block * b; i < block * b + block; i++) amax = Math.max(amax, Math.abs(x[i]!));
        for (let i = block * b; i < block * b + block; i++) {
          if (!(Math.abs(back[i]! - x[i]!) <= RELATIVE_BOUND[type] * amax + LARGEST_CODE[type] * 2 ** -25)) {
            throw new Error(`${type} value ${i}: ${x[i]} came back as ${back[i]} (bound ${RELATIVE_BOUND[type] * amax})`);
          }
        }
      }
      q.dispose();
    });
  }

  it('reads f16 and bf16 rows as their f32 values', async () => {
    const x = awkward(3, 256, 99);
    for (const dt of ['f16', 'bf16'] as const) {
      const bits = encodeFloats(x, dt);
      const asF32 = new Float32Array(x.length);
      const t16 = Tensor.from(bits, { dtype: dt, shape: [3, 256] });
      asF32.set(t16.toFloat32());
      const q = await quantizeMatrix(t16, 'Q4_K');
      expect(Buffer.from(q.toArray() as Uint8Array).equals(Buffer.from(quantizeLlamaRef('Q4_K', asF32)))).toBe(true);
    }
  });

  it('refuses bad input with errors naming it', async () => {
    await expect(quantizeMatrix(Tensor.from(new Float32Array(48), { shape: [1, 48] }), 'Q8_0')).rejects.toThrow(/x\.shape\[1\].*multiple of Q8_0's block of 32/);
    await expect(quantizeMatrix(Tensor.from(new Float32Array(32), { shape: [1, 32] }), 'Q7' as QuantType)).rejects.toThrow(/type/);
    const nan = new Float32Array(64);
    nan[40] = NaN;
    await expect(quantizeMatrix(Tensor.from(nan, { shape: [2, 32] }), 'Q8_0')).rejects.toThrow(/row 1, column 8/);
  });
});
