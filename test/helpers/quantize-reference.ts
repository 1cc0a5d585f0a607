/**
 * Slow, obvious reference of llama.cpp's quantizers (ggml-quants.c quantize_row_*_ref, no
 * importance matrix), written from their description (the searches and rounding rules stated in
 * csrc/common/quantize.h), independently of the C++ in that header.
 *
 * ggml computes in f32. Every operation here is done on JavaScript numbers (float64) and rounded
 * to f32 at once (F = Math.fround): for +, -, *, / and sqrt of f32 operands, the float64 result
 * rounded to f32 is the correctly rounded f32 result, so this reproduces ggml's f32 arithmetic
 * exactly, operation by operation, and the bytes must equal canopy's native quantizer (and
 * llama.cpp's) bit for bit.
 */
import { QUANT_TYPES, type QuantType } from '../../lib/tensor/quant-types.js';
import { fromF16Bits, toF16Bits } from '../../lib/tensor/dtype.js';
import { IQ4NL_GRID } from './quant-reference.js';

const F = Math.fround;
const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);
const GROUP_MAX_EPS = F(1e-15);

/** ggml's nearest_int: f32 v + 1.5 * 2^23, then the low mantissa bits. */
function nearestInt(v: number): number {
  f32[0] = F(v + 12582912);
  return (i32[0]! & 0x007fffff) - 0x00400000;
}
/** C's (int) conversion of a float (NaN: 0; clamped to +-2^30 as csrc/common/quantize.h does). */
function trunc(v: number): number {
  if (Number.isNaN(v)) return 0;
  if (v >= 2 ** 30) return 2 ** 30;
  if (v <= -(2 ** 30)) return -(2 ** 30);
  return Math.trunc(v);
}
/** roundf: half away from zero. */
const roundAway = (v: number) => trunc(Math.sign(v) * Math.floor(Math.abs(v) + 0.5));
const toI8 = (v: number) => (v << 24) >> 24;
const toU8 = (v: number) => v & 255;
const f16 = (v: number) => fromF16Bits(toF16Bits(v));
function setF16(b: Uint8Array, at: number, v: number): void {
  const h = toF16Bits(v);
  b[at] = h & 255;
  b[at + 1] = h >> 8;
}

function q8_0(x: Float32Array, y: Uint8Array): void {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[j]!));
  const d = F(amax / 127);
  const id = d !== 0 ? F(1 / d) : 0;
  setF16(y, 0, d);
  for (let j = 0; j < 32; j++) y[2 + j] = toU8(toI8(roundAway(F(x[j]! * id))));
}

function signedMax(x: Float32Array, n: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < n; j++) {
    if (amax < Math.abs(x[j]!)) {
      amax = Math.abs(x[j]!);
      max = x[j]!;
    }
  }
  return max;
}

function qx_0(x: Float32Array, y: Uint8Array, bits: 4 | 5): void {
  const half = bits === 4 ? 8 : 16;
  const top = 2 * half - 1;
  const d = F(signedMax(x, 32) / -half);
  const id = d !== 0 ? F(1 / d) : 0;
  setF16(y, 0, d);
  const qsAt = bits === 4 ? 2 : 6;
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const a = Math.min(top, toI8(trunc(F(F(x[j]! * id) + half + 0.5))));
    const b = Math.min(top, toI8(trunc(F(F(x[16 + j]! * id) + half + 0.5))));
    y[qsAt + j] = (a & 15) | ((b & 15) << 4);
    qh |= ((a >> 4) & 1) << j;
    qh |= ((b >> 4) & 1) << (j + 16);
  }
  if (bits === 5) for (let k = 0; k < 4; k++) y[2 + k] = (qh >>> (8 * k)) & 255;
}

function qx_1(x: Float32Array, y: Uint8Array, bits: 4 | 5): void {
  const top = bits === 4 ? 15 : 31;
  let min = Infinity;
  let max = -Infinity;
  for (let j = 0; j < 32; j++) {
    min = Math.min(min, x[j]!);
    max = Math.max(max, x[j]!);
  }
  const d = F(F(max - min) / top);
  const id = d !== 0 ? F(1 / d) : 0;
  setF16(y, 0, d);
  setF16(y, 2, min);
  const qsAt = bits === 4 ? 4 : 8;
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const a = Math.min(top, toU8(trunc(F(F(F(x[j]! - min) * id) + 0.5))));
    const b = Math.min(top, toU8(trunc(F(F(F(x[16 + j]! - min) * id) + 0.5))));
    y[qsAt + j] = (a & 15) | ((b & 15) << 4);
    qh |= ((a >> 4) & 1) << j;
    qh |= ((b >> 4) & 1) << (j + 16);
  }
  if (bits === 5) for (let k = 0; k < 4; k++) y[4 + k] = (qh >>> (8 * k)) & 255;
}

/** The nearest grid index by a linear scan (the lower index on a tie): bisection's result. */
function bestIndex(v: number): number {
  if (v <= IQ4NL_GRID[0]!) return 0;
  if (v >= IQ4NL_GRID[15]!) return 15;
  let k = 0;
  while (IQ4NL_GRID[k + 1]! <= v) k++; // grid[k] <= v < grid[k + 1]
  return F(v - IQ4NL_GRID[k]!) < F(IQ4NL_GRID[k + 1]! - v) ? k : k + 1;
}

function iq4(x: Float32Array, y: Uint8Array, nsub: 1 | 8): void {
  const scales = new Array<number>(8).fill(0);
  const L = new Uint8Array(256);
  let maxScale = 0;
  let amaxScale = 0;
  for (let ib = 0; ib < nsub; ib++) {
    const xb = x.subarray(32 * ib, 32 * ib + 32);
    const w = Array.from(xb, (v) => F(v * v));
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      if (Math.abs(xb[j]!) > amax) {
        amax = Math.abs(xb[j]!);
        max = xb[j]!;
      }
    }
    if (amax < GROUP_MAX_EPS) continue;
    const fit = (id: number, keep: boolean) => {
      let sqx = 0;
      let sq2 = 0;
      for (let j = 0; j < 32; j++) {
        const l = bestIndex(F(id * xb[j]!));
        if (keep) L[32 * ib + j] = l;
        const q = IQ4NL_GRID[l]!;
        sqx = F(sqx + F(F(w[j]! * q) * xb[j]!));
        sq2 = F(sq2 + F(F(w[j]! * q) * q));
      }
      return [sqx, sq2] as const;
    };
    let d = F(-max / IQ4NL_GRID[0]!);
    let [sumqx, sumq2] = fit(F(1 / d), true);
    d = F(sumqx / sumq2);
    let best = F(d * sumqx);
    for (let t = -7; t <= 7; t++) {
      [sumqx, sumq2] = fit(F((t + IQ4NL_GRID[0]!) / max), false);
      if (sumq2 > 0 && F(sumqx * sumqx) > F(best * sumq2)) {
        d = F(sumqx / sumq2);
        best = F(d * sumqx);
      }
    }
    scales[ib] = d;
    if (Math.abs(d) > amaxScale) {
      amaxScale = Math.abs(d);
      maxScale = d;
    }
  }
  if (nsub === 8) {
    const d = F(-maxScale / 32);
    setF16(y, 0, d);
    const id = d !== 0 ? F(1 / d) : 0;
    let scalesH = 0;
    for (let ib = 0; ib < 8; ib++) {
      let l = Math.max(-32, Math.min(31, nearestInt(F(id * scales[ib]!))));
      const dl = F(d * l);
      const idl = dl !== 0 ? F(1 / dl) : 0;
      for (let j = 0; j < 32; j++) L[32 * ib + j] = bestIndex(F(idl * x[32 * ib + j]!));
      l += 32;
      y[4 + (ib >> 1)]! |= (l & 15) << (4 * (ib & 1));
      scalesH |= (l >> 4) << (2 * ib);
    }
    y[2] = scalesH & 255;
    y[3] = scalesH >> 8;
  } else {
    setF16(y, 0, scales[0]!);
    const id = scales[0] !== 0 ? F(1 / scales[0]!) : 0;
    for (let j = 0; j < 32; j++) L[j] = bestIndex(F(id * x[j]!));
  }
  const at = nsub === 8 ? 8 : 2;
  for (let i = 0; i < nsub; i++) for (let j = 0; j < 16; j++) y[at + 16 * i + j] = L[32 * i + j]! | (L[32 * i + 16 + j]! << 4);
}

/** make_qkx2_quants: returns [scale, theMin] and fills L (levels 0..nmax). */
function qkx2(x: Float32Array, w: number[], nmax: number, L: Uint8Array, rmin: number, rdelta: number, nstep: number, mad: boolean): [number, number] {
  const n = x.length;
  let min = x[0]!;
  let max = x[0]!;
  let sumW = w[0]!;
  let sumX = F(sumW * x[0]!);
  for (let i = 1; i < n; i++) {
    if (x[i]! < min) min = x[i]!;
    if (x[i]! > max) max = x[i]!;
    sumW = F(sumW + w[i]!);
    sumX = F(sumX + F(w[i]! * x[i]!));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0);
    return [0, -min];
  }
  const err = (scale: number, mn: number, levels: ArrayLike<number>) => {
    let e = 0;
    for (let i = 0; i < n; i++) {
      let diff = F(F(F(scale * levels[i]!) + mn) - x[i]!);
      diff = mad ? Math.abs(diff) : F(diff * diff);
      e = F(e + F(w[i]! * diff));
    }
    return e;
  };
  let iscale = F(nmax / F(max - min));
  let scale = F(1 / iscale);
  for (let i = 0; i < n; i++) L[i] = Math.max(0, Math.min(nmax, nearestInt(F(iscale * F(x[i]! - min)))));
  let bestError = err(scale, min, L);
  const aux = new Uint8Array(n);
  for (let is = 0; is <= nstep; is++) {
    iscale = F(F(F(rmin + F(rdelta * is)) + nmax) / F(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(F(iscale * F(x[i]! - min)))));
      aux[i] = l;
      sumL = F(sumL + F(w[i]! * l));
      sumL2 = F(sumL2 + F(F(w[i]! * l) * l));
      sumXL = F(sumXL + F(F(w[i]! * l) * x[i]!));
    }
    const D = F(F(sumW * sumL2) - F(sumL * sumL));
    if (D > 0) {
      let thisScale = F(F(F(sumW * sumXL) - F(sumX * sumL)) / D);
      let thisMin = F(F(F(sumL2 * sumX) - F(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = F(sumXL / sumL2);
      }
      const cur = err(thisScale, thisMin, aux);
      if (cur < bestError) {
        L.set(aux);
        bestError = cur;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/** make_qx_quants, rmse_type 1: codes L + nmax. */
function qx(x: Float32Array, nmax: number, L: Uint8Array): number {
  const n = x.length;
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    if (Math.abs(x[i]!) > amax) {
      amax = Math.abs(x[i]!);
      max = x[i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0);
    return 0;
  }
  const levels = (iscale: number) => Array.from(x, (v) => Math.max(-nmax, Math.min(nmax - 1, nearestInt(F(iscale * v)))));
  const sums = (ls: number[]) => {
    let slx = 0;
    let sl2 = 0;
    for (let i = 0; i < n; i++) {
      const w = F(x[i]! * x[i]!);
      slx = F(slx + F(F(w * x[i]!) * ls[i]!));
      sl2 = F(sl2 + F(F(w * ls[i]!) * ls[i]!));
    }
    return [slx, sl2] as const;
  };
  let ls = levels(F(-nmax / max));
  ls.forEach((l, i) => (L[i] = l + nmax));
  let [sumlx, suml2] = sums(ls);
  let scale = suml2 !== 0 ? F(sumlx / suml2) : 0;
  let best = F(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = F(-F(nmax + F(F(0.1) * is)) / max);
    ls = levels(iscale);
    [sumlx, suml2] = sums(ls);
    if (suml2 > 0 && F(sumlx * sumlx) > F(best * suml2)) {
      ls.forEach((l, i) => (L[i] = l + nmax));
      scale = F(sumlx / suml2);
      best = F(scale * sumlx);
    }
  }
  return scale;
}

/** make_q3_quants with do_rmse: codes L + nmax. */
function q3(x: Float32Array, nmax: number, out: Uint8Array): number {
  const n = x.length;
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    if (Math.abs(x[i]!) > amax) {
      amax = Math.abs(x[i]!);
      max = x[i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    out.fill(0);
    return 0;
  }
  const iscale = F(-nmax / max);
  const L: number[] = [];
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(F(iscale * x[i]!))));
    L.push(l);
    const w = F(x[i]! * x[i]!);
    sumlx = F(sumlx + F(F(w * x[i]!) * l));
    suml2 = F(suml2 + F(F(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const w = F(x[i]! * x[i]!);
      let slx = F(sumlx - F(F(w * x[i]!) * L[i]!));
      if (slx > 0) {
        let sl2 = F(suml2 - F(F(w * L[i]!) * L[i]!));
        const nl = Math.max(-nmax, Math.min(nmax - 1, nearestInt(F(F(x[i]! * sl2) / slx))));
        if (nl !== L[i]) {
          slx = F(slx + F(F(w * x[i]!) * nl));
          sl2 = F(sl2 + F(F(w * nl) * nl));
          if (sl2 > 0 && F(F(slx * slx) * suml2) > F(F(sumlx * sumlx) * sl2)) {
            L[i] = nl;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  L.forEach((l, i) => (out[i] = l + nmax));
  return F(sumlx / suml2);
}

function q2_K(x: Float32Array, y: Uint8Array): void {
  const L = new Uint8Array(256);
  const scales: number[] = [];
  const mins: number[] = [];
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; j++) {
    const xs = x.subarray(16 * j, 16 * j + 16);
    const [s, m] = qkx2(xs, Array.from(xs, Math.abs), 3, L.subarray(16 * j, 16 * j + 16), F(-0.5), F(0.1), 15, true);
    scales.push(s);
    mins.push(m);
    if (s > maxScale) maxScale = s;
    if (m > maxMin) maxMin = m;
  }
  if (maxScale > 0) {
    const is = F(15 / maxScale);
    for (let j = 0; j < 16; j++) y[j] = toU8(nearestInt(F(is * scales[j]!)));
    setF16(y, 80, F(maxScale / 15));
  }
  if (maxMin > 0) {
    const is = F(15 / maxMin);
    for (let j = 0; j < 16; j++) y[j] = toU8(y[j]! | (nearestInt(F(is * mins[j]!)) << 4));
    setF16(y, 82, F(maxMin / 15));
  }
  const dd = fromF16Bits(y[80]! | (y[81]! << 8));
  const dmin = fromF16Bits(y[82]! | (y[83]! << 8));
  for (let j = 0; j < 16; j++) {
    const d = F(dd * (y[j]! & 15));
    if (d === 0) continue;
    const dm = F(dmin * (y[j]! >> 4));
    for (let i = 0; i < 16; i++) L[16 * j + i] = Math.max(0, Math.min(3, nearestInt(F(F(x[16 * j + i]! + dm) / d))));
  }
  for (let i = 0; i < 256; i++) y[16 + 32 * (i >> 7) + (i & 31)]! |= L[i]! << (2 * ((i >> 5) & 3));
}

function q3_K(x: Float32Array, y: Uint8Array): void {
  const L = new Uint8Array(256);
  const scales: number[] = [];
  let maxScale = 0;
  let amax = 0;
  for (let j = 0; j < 16; j++) {
    const s = q3(x.subarray(16 * j, 16 * j + 16), 4, L.subarray(16 * j, 16 * j + 16));
    scales.push(s);
    if (Math.abs(s) > amax) {
      amax = Math.abs(s);
      maxScale = s;
    }
  }
  const S = new Array<number>(16).fill(32);
  if (maxScale !== 0) {
    const is = F(-32 / maxScale);
    for (let j = 0; j < 16; j++) S[j] = Math.max(-32, Math.min(31, toI8(nearestInt(F(is * scales[j]!))))) + 32;
    setF16(y, 108, F(1 / is));
  }
  if (maxScale !== 0) {
    for (let j = 0; j < 16; j++) {
      if (j < 8) y[96 + j]! |= S[j]! & 15;
      else y[96 + j - 8]! |= (S[j]! & 15) << 4;
      y[104 + (j % 4)]! |= (S[j]! >> 4) << (2 * Math.floor(j / 4));
    }
  }
  const dd = fromF16Bits(y[108]! | (y[109]! << 8));
  for (let j = 0; j < 16; j++) {
    const d = F(dd * (maxScale !== 0 ? S[j]! - 32 : -32));
    if (d === 0) continue;
    for (let i = 0; i < 16; i++) L[16 * j + i] = Math.max(-4, Math.min(3, nearestInt(F(x[16 * j + i]! / d)))) + 4;
  }
  for (let i = 0; i < 256; i++) {
    let l = L[i]!;
    if (l > 3) {
      y[i % 32]! |= 1 << Math.floor(i / 32);
      l -= 4;
    }
    y[32 + 32 * (i >> 7) + (i & 31)]! |= l << (2 * ((i >> 5) & 3));
  }
}

function q45_K(x: Float32Array, y: Uint8Array, five: boolean): void {
  const nmax = five ? 31 : 15;
  const L = new Uint8Array(256);
  const scales: number[] = [];
  const mins: number[] = [];
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const xs = x.subarray(32 * j, 32 * j + 32);
    let sumX2 = 0;
    for (const v of xs) sumX2 = F(sumX2 + F(v * v));
    const av = F(Math.sqrt(F(sumX2 / 32)));
    const w = Array.from(xs, (v) => F(av + Math.abs(v)));
    const [s, m] = five
      ? qkx2(xs, w, 31, L.subarray(32 * j, 32 * j + 32), F(-0.5), F(0.1), 15, false)
      : qkx2(xs, w, 15, L.subarray(32 * j, 32 * j + 32), -1, F(0.1), 20, false);
    scales.push(s);
    mins.push(m);
    if (s > maxScale) maxScale = s;
    if (m > maxMin) maxMin = m;
  }
  const invScale = maxScale > 0 ? F(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? F(63 / maxMin) : 0;
  const sc: number[] = [];
  const mn: number[] = [];
  for (let j = 0; j < 8; j++) {
    sc.push(Math.min(63, toU8(nearestInt(F(invScale * scales[j]!)))));
    mn.push(Math.min(63, toU8(nearestInt(F(invMin * mins[j]!)))));
  }
  // The packing of quant_blocks.h's ScaleMinK4, inverted.
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      y[4 + j]! |= sc[j]!;
      y[8 + j]! |= mn[j]!;
    } else {
      y[8 + j] = (sc[j]! & 15) | ((mn[j]! & 15) << 4);
      y[4 + j - 4]! |= (sc[j]! >> 4) << 6;
      y[4 + j]! |= (mn[j]! >> 4) << 6;
    }
  }
  setF16(y, 0, F(maxScale / 63));
  setF16(y, 2, F(maxMin / 63));
  const dd = f16(F(maxScale / 63));
  const dmin = f16(F(maxMin / 63));
  for (let j = 0; j < 8; j++) {
    const d = F(dd * sc[j]!);
    if (d === 0) continue;
    const dm = F(dmin * mn[j]!);
    for (let i = 0; i < 32; i++) L[32 * j + i] = Math.max(0, Math.min(nmax, nearestInt(F(F(x[32 * j + i]! + dm) / d))));
  }
  for (let i = 0; i < 256; i++) {
    const h = i >> 6, s = (i >> 5) & 1, l = i & 31;
    y[(five ? 48 : 16) + 32 * h + l]! |= (L[i]! & 15) << (4 * s);
    if (five && L[i]! > 15) y[16 + l]! |= 1 << (2 * h + s);
  }
}

function q6_K(x: Float32Array, y: Uint8Array): void {
  const L = new Uint8Array(256);
  const scales: number[] = [];
  let maxScale = 0;
  let maxAbs = 0;
  for (let j = 0; j < 16; j++) {
    const s = qx(x.subarray(16 * j, 16 * j + 16), 32, L.subarray(16 * j, 16 * j + 16));
    scales.push(s);
    if (Math.abs(s) > maxAbs) {
      maxAbs = Math.abs(s);
      maxScale = s;
    }
  }
  if (maxAbs < GROUP_MAX_EPS) return; // all zero bytes
  const is = F(-128 / maxScale);
  setF16(y, 208, F(1 / is));
  const dd = f16(F(1 / is));
  for (let j = 0; j < 16; j++) {
    const sc = toI8(Math.min(127, nearestInt(F(is * scales[j]!))));
    y[192 + j] = toU8(sc);
    const d = F(dd * sc);
    if (d === 0) continue;
    for (let i = 0; i < 16; i++) L[16 * j + i] = Math.max(-32, Math.min(31, nearestInt(F(x[16 * j + i]! / d)))) + 32;
  }
  for (let i = 0; i < 256; i++) {
    const h = i >> 7, s = (i >> 5) & 3, l = i & 31;
    y[64 * h + 32 * (s & 1) + l]! |= (L[i]! & 15) << (4 * (s >> 1));
    y[128 + 32 * h + l]! |= (L[i]! >> 4) << (2 * s);
  }
}

/** llama.cpp's reference quantization of `values` (f32; length a multiple of the block) into blocks of `type`. */
export function quantizeLlamaRef(type: QuantType, values: Float32Array): Uint8Array {
  const t = QUANT_TYPES[type];
  const out = new Uint8Array((values.length / t.block) * t.bytes);
  for (let b = 0; b < values.length / t.block; b++) {
    const x = values.subarray(b * t.block, (b + 1) * t.block);
    const y = out.subarray(b * t.bytes, (b + 1) * t.bytes);
    switch (type) {
      case 'Q8_0':
        q8_0(x, y);
        break;
      case 'Q4_0':
        qx_0(x, y, 4);
        break;
      case 'Q5_0':
        qx_0(x, y, 5);
        break;
      case 'Q4_1':
        qx_1(x, y, 4);
        break;
      case 'Q5_1':
        qx_1(x, y, 5);
        break;
      case 'IQ4_NL':
        iq4(x, y, 1);
        break;
      case 'IQ4_XS':
        iq4(x, y, 8);
        break;
      case 'Q2_K':
        q2_K(x, y);
        break;
      case 'Q3_K':
        q3_K(x, y);
        break;
      case 'Q4_K':
        q45_K(x, y, false);
        break;
      case 'Q5_K':
        q45_K(x, y, true);
        break;
      case 'Q6_K':
        q6_K(x, y);
        break;
    }
  }
  return out;
}
