/**
 * Slow, obvious references for GGUF block-quantized weights (csrc/common/quant_blocks.h), in
 * float64, written from the format description (ggml's ggml-common.h layouts and its
 * dequantize_row_* loops), not from the kernels:
 *   dequantizeRef     blocks -> values
 *   quantizeRef       values -> blocks (simple reference quantizers: nearest level on a grid
 *                     fitted to each (sub-)block; valid files, not llama.cpp's searched scales)
 *   roundTripBound    the largest error quantizeRef promises for one value
 *   quantizeActivationsRef / linearQuantRef   the CPU kernel's 8-bit activations, and y = x W^T
 *                     from them (with the bound for the kernel's f32 arithmetic)
 */
import { QUANT_TYPES, type QuantType } from '../../lib/tensor/quant-types.js';
import { fromF16Bits, toF16Bits } from '../../lib/tensor/dtype.js';

export const IQ4NL_GRID = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

const f16 = (b: Uint8Array, at: number) => fromF16Bits(b[at]! | (b[at + 1]! << 8));
const i8 = (v: number) => (v << 24) >> 24;

/**
 * Dequantizes `numel` values (whole blocks) in float64. `offsets`, when given, receives each
 * value's |min term| (dmin m of the K-quants, m of Q4_1 / Q5_1, 0 otherwise).
 */
export function dequantizeRef(type: QuantType, bytes: Uint8Array, numel: number, offsets?: Float64Array): Float64Array {
  const t = QUANT_TYPES[type];
  const out = new Float64Array(numel);
  const off = offsets ?? new Float64Array(numel);
  for (let blk = 0; blk < numel / t.block; blk++) {
    const b = bytes.subarray(blk * t.bytes, (blk + 1) * t.bytes);
    const y = out.subarray(blk * t.block, (blk + 1) * t.block);
    switch (type) {
      case 'Q8_0': {
        const d = f16(b, 0);
        for (let i = 0; i < 32; i++) y[i] = d * i8(b[2 + i]!);
        break;
      }
      case 'Q4_0':
      case 'Q4_1':
      case 'IQ4_NL': {
        const d = f16(b, 0);
        const m = type === 'Q4_1' ? f16(b, 2) : 0;
        const qs = b.subarray(type === 'Q4_1' ? 4 : 2);
        for (let j = 0; j < 16; j++) {
          const lo = qs[j]! & 15;
          const hi = qs[j]! >> 4;
          if (type === 'Q4_1') off[blk * 32 + j] = off[blk * 32 + j + 16] = Math.abs(m);
          if (type === 'Q4_0') {
            y[j] = d * (lo - 8);
            y[j + 16] = d * (hi - 8);
          } else if (type === 'Q4_1') {
            y[j] = d * lo + m;
            y[j + 16] = d * hi + m;
          } else {
            y[j] = d * IQ4NL_GRID[lo]!;
            y[j + 16] = d * IQ4NL_GRID[hi]!;
          }
        }
        break;
      }
      case 'Q5_0':
      case 'Q5_1': {
        const one = type === 'Q5_1';
        const d = f16(b, 0);
        const m = one ? f16(b, 2) : 0;
        const qhAt = one ? 4 : 2;
        const qh = (b[qhAt]! | (b[qhAt + 1]! << 8) | (b[qhAt + 2]! << 16) | (b[qhAt + 3]! << 24)) >>> 0;
        const qs = b.subarray(qhAt + 4);
        for (let j = 0; j < 16; j++) {
          const x0 = (qs[j]! & 15) | (((qh >>> j) & 1) << 4);
          const x1 = (qs[j]! >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          off[blk * 32 + j] = off[blk * 32 + j + 16] = Math.abs(m);
          y[j] = one ? d * x0 + m : d * (x0 - 16);
          y[j + 16] = one ? d * x1 + m : d * (x1 - 16);
        }
        break;
      }
      case 'Q2_K': {
        const d = f16(b, 80);
        const dmin = f16(b, 82);
        let is = 0;
        let o = 0;
        for (let n = 0; n < 2; n++) {
          const q = b.subarray(16 + 32 * n);
          for (let shift = 0; shift < 8; shift += 2) {
            for (let half = 0; half < 2; half++) {
              const sc = b[is++]!;
              for (let l = 0; l < 16; l++) {
                off[blk * 256 + o] = Math.abs(dmin * (sc >> 4));
                y[o++] = d * (sc & 15) * ((q[l + 16 * half]! >> shift) & 3) - dmin * (sc >> 4);
              }
            }
          }
        }
        break;
      }
      case 'Q3_K': {
        const d = f16(b, 108);
        const sb = b.subarray(96, 108);
        const scales: number[] = [];
        for (let j = 0; j < 16; j++) {
          const low = j < 8 ? sb[j]! & 15 : sb[j - 8]! >> 4;
          const high = (sb[8 + (j % 4)]! >> (2 * Math.floor(j / 4))) & 3;
          scales.push((low | (high << 4)) - 32);
        }
        let is = 0;
        let o = 0;
        let m = 1;
        for (let n = 0; n < 2; n++) {
          const q = b.subarray(32 + 32 * n);
          for (let shift = 0; shift < 8; shift += 2) {
            for (let half = 0; half < 2; half++) {
              const dl = d * scales[is++]!;
              for (let l = 0; l < 16; l++) {
                const li = l + 16 * half;
                y[o++] = dl * (((q[li]! >> shift) & 3) - (b[li]! & m ? 0 : 4));
              }
            }
            m <<= 1;
          }
        }
        break;
      }
      case 'Q4_K':
      case 'Q5_K': {
        const five = type === 'Q5_K';
        const d = f16(b, 0);
        const dmin = f16(b, 2);
        const s = b.subarray(4, 16);
        const scaleMin = (j: number): [number, number] =>
          j < 4 ? [s[j]! & 63, s[j + 4]! & 63] : [(s[j + 4]! & 15) | ((s[j - 4]! >> 6) << 4), (s[j + 4]! >> 4) | ((s[j]! >> 6) << 4)];
        const qh = b.subarray(16, 48);
        const ql = b.subarray(five ? 48 : 16);
        let o = 0;
        for (let h = 0; h < 4; h++) {
          const [sc1, m1] = scaleMin(2 * h);
          const [sc2, m2] = scaleMin(2 * h + 1);
          for (let l = 0; l < 32; l++) {
            const hb = five && qh[l]! & (1 << (2 * h)) ? 16 : 0;
            off[blk * 256 + o] = Math.abs(dmin * m1);
            y[o++] = d * sc1 * ((ql[32 * h + l]! & 15) + hb) - dmin * m1;
          }
          for (let l = 0; l < 32; l++) {
            const hb = five && qh[l]! & (2 << (2 * h)) ? 16 : 0;
            off[blk * 256 + o] = Math.abs(dmin * m2);
            y[o++] = d * sc2 * ((ql[32 * h + l]! >> 4) + hb) - dmin * m2;
          }
        }
        break;
      }
      case 'Q6_K': {
        const d = f16(b, 208);
        for (let n = 0; n < 2; n++) {
          const ql = b.subarray(64 * n);
          const qh = b.subarray(128 + 32 * n);
          const sc = (k: number) => i8(b[192 + 8 * n + k]!);
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const q1 = ((ql[l]! & 15) | (((qh[l]! >> 0) & 3) << 4)) - 32;
            const q2 = ((ql[l + 32]! & 15) | (((qh[l]! >> 2) & 3) << 4)) - 32;
            const q3 = ((ql[l]! >> 4) | (((qh[l]! >> 4) & 3) << 4)) - 32;
            const q4 = ((ql[l + 32]! >> 4) | (((qh[l]! >> 6) & 3) << 4)) - 32;
            y[128 * n + l] = d * sc(is) * q1;
            y[128 * n + l + 32] = d * sc(is + 2) * q2;
            y[128 * n + l + 64] = d * sc(is + 4) * q3;
            y[128 * n + l + 96] = d * sc(is + 6) * q4;
          }
        }
        break;
      }
      case 'IQ4_XS': {
        const d = f16(b, 0);
        const scalesH = b[2]! | (b[3]! << 8);
        for (let ib = 0; ib < 8; ib++) {
          const ls = ((b[4 + (ib >> 1)]! >> (4 * (ib % 2))) & 15) | (((scalesH >> (2 * ib)) & 3) << 4);
          const dl = d * (ls - 32);
          const qs = b.subarray(8 + 16 * ib);
          for (let j = 0; j < 16; j++) {
            y[32 * ib + j] = dl * IQ4NL_GRID[qs[j]! & 15]!;
            y[32 * ib + j + 16] = dl * IQ4NL_GRID[qs[j]! >> 4]!;
          }
        }
        break;
      }
    }
  }
  return out;
}

// ---- reference quantizers -----------------------------------------------------------------

/** Rounds to the nearest f16 value. */
const h = (x: number) => fromF16Bits(toF16Bits(x));
const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
const setF16 = (b: Uint8Array, at: number, x: number) => {
  const bits = toF16Bits(x);
  b[at] = bits & 255;
  b[at + 1] = bits >> 8;
};
/** The value of largest magnitude (signed). */
function signedMax(x: ArrayLike<number>, from: number, n: number): number {
  let m = 0;
  for (let i = from; i < from + n; i++) if (Math.abs(x[i]!) > Math.abs(m)) m = x[i]!;
  return m;
}
function nearestGrid(v: number): number {
  let best = 0;
  for (let k = 1; k < 16; k++) if (Math.abs(IQ4NL_GRID[k]! - v) < Math.abs(IQ4NL_GRID[best]! - v)) best = k;
  return best;
}
/** Packs 32 4-bit codes: low nibbles hold codes 0..15, high nibbles 16..31. */
function packNibbles32(codes: number[], out: Uint8Array, at: number): void {
  for (let j = 0; j < 16; j++) out[at + j] = (codes[j]! & 15) | ((codes[j + 16]! & 15) << 4);
}

/** Asymmetric sub-block fit: levels 0..maxQ over [min(0, lo), hi]; returns the step and the (non-negative) offset. */
function affineFit(x: ArrayLike<number>, from: number, n: number, maxQ: number): { step: number; off: number } {
  let lo = 0;
  let hi = -Infinity;
  for (let i = from; i < from + n; i++) {
    lo = Math.min(lo, x[i]!);
    hi = Math.max(hi, x[i]!);
  }
  return { step: (Math.max(hi, lo) - lo) / maxQ, off: -lo };
}

/** Quantizes `values` (length a multiple of the block) into blocks of `type`. */
export function quantizeRef(type: QuantType, values: ArrayLike<number>): Uint8Array {
  const t = QUANT_TYPES[type];
  const nb = values.length / t.block;
  const out = new Uint8Array(nb * t.bytes);
  for (let blk = 0; blk < nb; blk++) {
    const x0 = blk * t.block;
    const b = out.subarray(blk * t.bytes, (blk + 1) * t.bytes);
    switch (type) {
      case 'Q8_0': {
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(values[x0 + i]!));
        const d = h(amax / 127);
        setF16(b, 0, d);
        for (let i = 0; i < 32; i++) b[2 + i] = (d === 0 ? 0 : clamp(Math.round(values[x0 + i]! / d), -128, 127)) & 255;
        break;
      }
      case 'Q4_0':
      case 'Q5_0': {
        const levels = type === 'Q4_0' ? 8 : 16;
        const d = h(signedMax(values, x0, 32) / -levels);
        setF16(b, 0, d);
        const codes = [];
        for (let i = 0; i < 32; i++) codes.push(d === 0 ? levels : clamp(Math.round(values[x0 + i]! / d) + levels, 0, 2 * levels - 1));
        if (type === 'Q4_0') {
          packNibbles32(codes, b, 2);
        } else {
          let qh = 0;
          for (let i = 0; i < 32; i++) qh |= ((codes[i]! >> 4) & 1) << i;
          b[2] = qh & 255;
          b[3] = (qh >>> 8) & 255;
          b[4] = (qh >>> 16) & 255;
          b[5] = (qh >>> 24) & 255;
          packNibbles32(codes, b, 6);
        }
        break;
      }
      case 'Q4_1':
      case 'Q5_1': {
        const maxQ = type === 'Q4_1' ? 15 : 31;
        let lo = Infinity;
        let hi = -Infinity;
        for (let i = 0; i < 32; i++) {
          lo = Math.min(lo, values[x0 + i]!);
          hi = Math.max(hi, values[x0 + i]!);
        }
        const d = h((hi - lo) / maxQ);
        const m = h(lo);
        setF16(b, 0, d);
        setF16(b, 2, m);
        const codes = [];
        for (let i = 0; i < 32; i++) codes.push(d === 0 ? 0 : clamp(Math.round((values[x0 + i]! - m) / d), 0, maxQ));
        if (type === 'Q4_1') {
          packNibbles32(codes, b, 4);
        } else {
          let qh = 0;
          for (let i = 0; i < 32; i++) qh |= ((codes[i]! >> 4) & 1) << i;
          for (let k = 0; k < 4; k++) b[4 + k] = (qh >>> (8 * k)) & 255;
          packNibbles32(codes, b, 8);
        }
        break;
      }
      case 'IQ4_NL': {
        const d = h(signedMax(values, x0, 32) / IQ4NL_GRID[0]!);
        setF16(b, 0, d);
        const codes = [];
        for (let i = 0; i < 32; i++) codes.push(d === 0 ? 8 : nearestGrid(values[x0 + i]! / d));
        packNibbles32(codes, b, 2);
        break;
      }
      case 'Q4_K':
      case 'Q5_K':
      case 'Q2_K': {
        const maxQ = type === 'Q4_K' ? 15 : type === 'Q5_K' ? 31 : 3;
        const maxS = type === 'Q2_K' ? 15 : 63;
        const nsub = 256 / t.sub;
        const fits = [];
        for (let j = 0; j < nsub; j++) fits.push(affineFit(values, x0 + j * t.sub, t.sub, maxQ));
        const d = h(Math.max(...fits.map((f) => f.step)) / maxS);
        const dmin = h(Math.max(...fits.map((f) => f.off)) / maxS);
        const sc = fits.map((f) => (d === 0 ? 0 : clamp(Math.round(f.step / d), 0, maxS)));
        const mn = fits.map((f) => (dmin === 0 ? 0 : clamp(Math.round(f.off / dmin), 0, maxS)));
        const q: number[] = [];
        for (let i = 0; i < 256; i++) {
          const j = Math.floor(i / t.sub);
          const step = d * sc[j]!;
          q.push(step === 0 ? 0 : clamp(Math.round((values[x0 + i]! + dmin * mn[j]!) / step), 0, maxQ));
        }
        if (type === 'Q2_K') {
          for (let j = 0; j < 16; j++) b[j] = sc[j]! | (mn[j]! << 4);
          for (let i = 0; i < 256; i++) {
            const hh = i >> 7, s = (i >> 5) & 3, l = i & 31;
            b[16 + 32 * hh + l]! |= q[i]! << (2 * s);
          }
          setF16(b, 80, d);
          setF16(b, 82, dmin);
        } else {
          setF16(b, 0, d);
          setF16(b, 2, dmin);
          const s = b.subarray(4, 16);
          for (let j = 0; j < 8; j++) {
            if (j < 4) {
              s[j] = sc[j]! & 63;
              s[j + 4] = mn[j]! & 63;
            } else {
              s[j + 4] = (sc[j]! & 15) | ((mn[j]! & 15) << 4);
              s[j - 4]! |= (sc[j]! >> 4) << 6;
              s[j]! |= (mn[j]! >> 4) << 6;
            }
          }
          const five = type === 'Q5_K';
          for (let i = 0; i < 256; i++) {
            const hh = i >> 6, sh = (i >> 5) & 1, l = i & 31;
            b[(five ? 48 : 16) + 32 * hh + l]! |= (q[i]! & 15) << (4 * sh);
            if (five) b[16 + l]! |= (q[i]! >> 4) << (2 * hh + sh);
          }
        }
        break;
      }
      case 'Q6_K':
      case 'Q3_K': {
        const six = type === 'Q6_K';
        const half = six ? 32 : 4; // codes in [-half, half - 1]
        const scales = [];
        for (let j = 0; j < 16; j++) scales.push(signedMax(values, x0 + 16 * j, 16) / -half);
        const maxSc = six ? 127 : 31;
        const d = h(Math.max(...scales.map(Math.abs)) / maxSc);
        const sc = scales.map((s) => (d === 0 ? 0 : clamp(Math.round(s / d), six ? -128 : -32, maxSc)));
        const q: number[] = [];
        for (let i = 0; i < 256; i++) {
          const step = d * sc[i >> 4]!;
          q.push(step === 0 ? 0 : clamp(Math.round(values[x0 + i]! / step), -half, half - 1));
        }
        if (six) {
          for (let i = 0; i < 256; i++) {
            const hh = i >> 7, s = (i >> 5) & 3, l = i & 31;
            const u = q[i]! + 32;
            b[64 * hh + 32 * (s & 1) + l]! |= (u & 15) << (4 * (s >> 1));
            b[128 + 32 * hh + l]! |= (u >> 4) << (2 * s);
          }
          for (let j = 0; j < 16; j++) b[192 + j] = sc[j]! & 255;
          setF16(b, 208, d);
        } else {
          for (let i = 0; i < 256; i++) {
            const hh = i >> 7, s = (i >> 5) & 3, l = i & 31;
            const u = q[i]! + 4; // 0..7: low two bits in qs, the third in hmask
            b[32 + 32 * hh + l]! |= (u & 3) << (2 * s);
            if (u & 4) b[l]! |= 1 << (4 * hh + s);
          }
          const S = sc.map((v) => v + 32);
          for (let j = 0; j < 16; j++) {
            if (j < 8) b[96 + j]! |= S[j]! & 15;
            else b[96 + j - 8]! |= (S[j]! & 15) << 4;
            b[96 + 8 + (j % 4)]! |= (S[j]! >> 4) << (2 * Math.floor(j / 4));
          }
          setF16(b, 108, d);
        }
        break;
      }
      case 'IQ4_XS': {
        const scales = [];
        for (let j = 0; j < 8; j++) scales.push(signedMax(values, x0 + 32 * j, 32) / IQ4NL_GRID[0]!);
        const d = h(Math.max(...scales.map(Math.abs)) / 31);
        const ls = scales.map((s) => (d === 0 ? 0 : clamp(Math.round(s / d), -32, 31)));
        setF16(b, 0, d);
        let scalesH = 0;
        for (let j = 0; j < 8; j++) {
          const u = ls[j]! + 32;
          b[4 + (j >> 1)]! |= (u & 15) << (4 * (j & 1));
          scalesH |= (u >> 4) << (2 * j);
          const step = d * ls[j]!;
          const codes = [];
          for (let i = 0; i < 32; i++) codes.push(step === 0 ? 8 : nearestGrid(values[x0 + 32 * j + i]! / step));
          packNibbles32(codes, b, 8 + 16 * j);
        }
        b[2] = scalesH & 255;
        b[3] = scalesH >> 8;
        break;
      }
    }
  }
  return out;
}

/**
 * The largest error quantizeRef allows for a value of block-local data `x` (the block holding
 * index i): half a quantization step of the fitted grid, plus what rounding the sub-block scales
 * and mins to their integer grids (and d to f16) can add at the ends of the range.
 */
export function roundTripBound(type: QuantType, values: ArrayLike<number>, i: number): number {
  const t = QUANT_TYPES[type];
  const x0 = Math.floor(i / t.block) * t.block;
  const sub0 = Math.floor(i / t.sub) * t.sub;
  let amax = 0;
  for (let k = x0; k < x0 + t.block; k++) amax = Math.max(amax, Math.abs(values[k]!));
  let sAmax = 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = sub0; k < sub0 + t.sub; k++) {
    sAmax = Math.max(sAmax, Math.abs(values[k]!));
    lo = Math.min(lo, values[k]!);
    hi = Math.max(hi, values[k]!);
  }
  const ulp = 2 ** -10; // f16 relative rounding of the scales, with margin
  switch (type) {
    case 'Q8_0':
      return (amax / 127) * (0.5 + 128 * ulp);
    // The symmetric types map the value of largest magnitude to the most negative level, so the
    // opposite end has one level fewer: up to a whole step of error there.
    case 'Q4_0':
      return (amax / 8) * (1 + 8 * ulp);
    case 'Q5_0':
      return (amax / 16) * (1 + 16 * ulp);
    case 'Q4_1':
    case 'Q5_1': {
      const maxQ = type === 'Q4_1' ? 15 : 31;
      return ((hi - lo) / maxQ) * (0.5 + maxQ * ulp) + Math.abs(lo) * ulp;
    }
    case 'IQ4_NL': // the grid's widest gap is 23 (half: 11.5); its top is 113, 14 short of 127
      return (amax / 127) * (14 + 127 * ulp);
    case 'Q2_K':
    case 'Q4_K':
    case 'Q5_K': {
      const maxQ = type === 'Q4_K' ? 15 : type === 'Q5_K' ? 31 : 3;
      const maxS = type === 'Q2_K' ? 15 : 63;
      // d <= block range / maxQ / maxS, dmin <= block |min| / maxS: the rounded scale is off by
      // at most d/2 per level (maxQ/2 levels at the range's end), the rounded min by dmin/2.
      let bLo = 0;
      let bRange = 0;
      for (let s = x0; s < x0 + t.block; s += t.sub) {
        let l = 0;
        let u = -Infinity;
        for (let k = s; k < s + t.sub; k++) {
          l = Math.min(l, values[k]!);
          u = Math.max(u, values[k]!);
        }
        bLo = Math.min(bLo, l);
        bRange = Math.max(bRange, Math.max(u, l) - l);
      }
      const d = (bRange / maxQ / maxS) * (1 + ulp);
      const dmin = (Math.abs(bLo) / maxS) * (1 + ulp);
      const step = (Math.max(hi, Math.min(0, lo)) - Math.min(0, lo)) / maxQ + d / 2;
      return step / 2 + (maxQ * d) / 2 + dmin / 2 + 1e-12;
    }
    case 'Q6_K':
    case 'Q3_K': {
      const half = type === 'Q6_K' ? 32 : 4;
      const maxSc = type === 'Q6_K' ? 127 : 31;
      const d = (amax / half / maxSc) * (1 + ulp);
      const step = sAmax / half + d / 2;
      return step + (half * d) / 2 + 1e-12;
    }
    case 'IQ4_XS': {
      const d = (amax / 127 / 31) * (1 + ulp);
      const step = sAmax / 127 + d / 2;
      return step * 14 + (127 * d) / 2 + 1e-12;
    }
  }
}

// ---- the kernel's activations and a float64 linear layer --------------------------------------

/** Round half to even (the kernel's nearbyint). */
function rint(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** The kernel's 8-bit activations (csrc/cpu/linear_quant_cpu.h): per block, f32 scale d, codes q. */
export function quantizeActivationsRef(x: Float32Array, rows: number, inF: number, block: number): { q: Int8Array; d: Float32Array } {
  const q = new Int8Array(rows * inF);
  const d = new Float32Array((rows * inF) / block);
  for (let t = 0; t < d.length; t++) {
    let amax = 0;
    for (let i = 0; i < block; i++) amax = Math.max(amax, Math.abs(x[t * block + i]!));
    if (amax === 0) continue;
    d[t] = Math.fround(amax / 127);
    const id = Math.fround(127 / amax);
    for (let i = 0; i < block; i++) q[t * block + i] = clamp(rint(Math.fround(x[t * block + i]! * id)), -127, 127);
  }
  return { q, d };
}

/**
 * y = x W^T in float64 with W dequantized; `activations` 'kernel' uses the kernel's own 8-bit
 * activations (q * d), 'f32' the f32 x itself. Also returns, per output, the magnitude sum of the
 * per-block products and the per-output bound of the activation rounding (sum |w| d / 2).
 */
export function linearQuantRef(
  type: QuantType,
  w: Uint8Array,
  x: Float32Array,
  rows: number,
  inF: number,
  outF: number,
  activations: 'kernel' | 'f32',
): { y: Float64Array; magnitude: Float64Array; actBound: Float64Array } {
  const block = QUANT_TYPES[type].block;
  const offsets = new Float64Array(outF * inF);
  const wd = dequantizeRef(type, w, outF * inF, offsets);
  const act = quantizeActivationsRef(x, rows, inF, block);
  const y = new Float64Array(rows * outF);
  const magnitude = new Float64Array(rows * outF);
  const actBound = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = 0;
      let mag = 0;
      let ab = 0;
      for (let b = 0; b < inF / block; b++) {
        let bs = 0;
        let babs = 0;
        let wabs = 0;
        const da = act.d[(r * inF) / block + b]!;
        for (let i = b * block; i < (b + 1) * block; i++) {
          const wi = wd[o * inF + i]!;
          const xi = activations === 'kernel' ? act.q[r * inF + i]! * da : x[r * inF + i]!;
          bs += wi * xi;
          babs += (Math.abs(wi) + 2 * offsets[o * inF + i]!) * Math.abs(act.q[r * inF + i]! * da);
          wabs += Math.abs(wi);
        }
        s += bs;
        mag += babs;
        ab += (wabs * da) / 2;
      }
      y[r * outF + o] = s;
      magnitude[r * outF + o] = mag;
      actBound[r * outF + o] = ab;
    }
  }
  return { y, magnitude, actBound };
}
