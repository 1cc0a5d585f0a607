/**
 * Slow, obvious references for quantized KV caches (csrc/common/kv_quant.h), in float64:
 * decoding a cache's raw codes and scales (written from the format description, not from the
 * kernels), and the error bound each format promises for a round trip.
 */
import type { QuantizedKv } from '../../lib/kernels/kv-quant.js';
import { decodeFloats } from '../../lib/tensor/dtype.js';

/** e4m3 (E4M3FN) bits -> value: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7f/0xff NaN. */
export function e4m3Value(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 15;
  const m = b & 7;
  if (e === 15 && m === 7) return NaN;
  if (e === 0) return sign * m * 2 ** -9;
  return sign * (1 + m / 8) * 2 ** (e - 7);
}

/** Keys and values of one sequence, decoded in float64: [len][H][D] each. */
export function decodeSequence(
  cache: QuantizedKv,
  layer: number,
  kvStart: number,
  len: number,
  quantLen = len,
  resStart = 0,
): { k: Float64Array; v: Float64Array } {
  const H = cache.numKvHeads;
  const D = cache.headDim;
  const k = new Float64Array(len * H * D);
  const v = new Float64Array(len * H * D);
  const codesK = cache.k.toArray();
  const codesV = cache.v.toArray();
  const kScale = cache.kScale.toFloat32();
  const vScale = cache.vScale.toFloat32();
  const kZero = cache.kZero?.toFloat32();
  const vZero = cache.vZero?.toFloat32();
  const resK = cache.resK ? decodeFloats(cache.resK.toArray(), cache.residualDtype) : undefined;
  const resV = cache.resV ? decodeFloats(cache.resV.toArray(), cache.residualDtype) : undefined;
  const rows = cache.rows;
  for (let j = 0; j < len; j++) {
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < D; d++) {
        const out = (j * H + h) * D + d;
        if (cache.format === 'int4' && j >= quantLen) {
          const rr = resStart + (j % cache.ring);
          const at = ((layer * cache.rings * cache.ring + rr) * H + h) * D + d;
          k[out] = resK![at]!;
          v[out] = resV![at]!;
          continue;
        }
        const row = kvStart + j;
        const rh = (layer * rows + row) * H + h;
        if (cache.format === 'int8') {
          k[out] = (codesK[rh * D + d] as number) * kScale[rh]!;
          v[out] = (codesV[rh * D + d] as number) * vScale[rh]!;
        } else if (cache.format === 'fp8') {
          k[out] = e4m3Value(codesK[rh * D + d] as number) * kScale[rh]!;
          v[out] = e4m3Value(codesV[rh * D + d] as number) * vScale[rh]!;
        } else {
          const byteK = codesK[rh * (D / 2) + (d >> 1)] as number;
          const byteV = codesV[rh * (D / 2) + (d >> 1)] as number;
          const qk = d % 2 === 0 ? byteK & 15 : byteK >> 4;
          const qv = d % 2 === 0 ? byteV & 15 : byteV >> 4;
          const g = Math.floor(row / cache.group);
          const pk = ((layer * (rows / cache.group) + g) * H + h) * D + d;
          k[out] = qk * kScale[pk]! + kZero![pk]!;
          v[out] = qv * vScale[rh]! + vZero![rh]!;
        }
      }
    }
  }
  return { k, v };
}

/**
 * The round-trip error bound of each element of x ([len][H][D], the values that were quantized)
 * for `format`: int8 s/2 (s = max|row| / 127); fp8 2^-4 |x| + 2^-10 s (s = max|row| / 448); int4
 * keys s/2 with s = (max - min) / 15 over the element's channel in its group of G tokens, int4
 * values s/2 over the element's row. Plus a small f32 rounding allowance.
 */
export function roundTripBound(
  format: 'int8' | 'int4' | 'fp8',
  x: Float32Array | Float64Array,
  len: number,
  H: number,
  D: number,
  which: 'k' | 'v',
  group = 32,
  quantLen = len,
): Float64Array {
  const bound = new Float64Array(len * H * D);
  const f32 = 2 ** -22; // a few f32 ulps, relative
  for (let j = 0; j < len; j++) {
    for (let h = 0; h < H; h++) {
      const row = (j * H + h) * D;
      let amax = 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let d = 0; d < D; d++) {
        amax = Math.max(amax, Math.abs(x[row + d]!));
        lo = Math.min(lo, x[row + d]!);
        hi = Math.max(hi, x[row + d]!);
      }
      for (let d = 0; d < D; d++) {
        const xi = x[row + d]!;
        let b: number;
        if (format === 'int8') b = amax / 127 / 2 + f32 * amax;
        else if (format === 'fp8') b = 2 ** -4 * Math.abs(xi) + (2 ** -10 * amax) / 448 + f32 * amax;
        else if (j >= quantLen) b = 0; // residual: compared separately (16-bit rounding)
        else if (which === 'v') b = (hi - lo) / 15 / 2 + f32 * Math.max(Math.abs(lo), Math.abs(hi));
        else {
          const g0 = Math.floor(j / group) * group;
          let clo = Infinity;
          let chi = -Infinity;
          for (let t = g0; t < g0 + group; t++) {
            clo = Math.min(clo, x[(t * H + h) * D + d]!);
            chi = Math.max(chi, x[(t * H + h) * D + d]!);
          }
          b = (chi - clo) / 15 / 2 + f32 * Math.max(Math.abs(clo), Math.abs(chi));
        }
        bound[row + d] = b;
      }
    }
  }
  return bound;
}
