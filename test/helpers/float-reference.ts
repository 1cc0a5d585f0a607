/**
 * Slow, obvious float64 references for f16 and bf16 rounding: decode every
 * bit pattern from the format's definition, sort the finite values, and
 * round by searching for the nearest one (ties to the even bit pattern).
 */

export interface FloatFormat {
  name: 'f16' | 'bf16';
  expBits: number;
  mantBits: number;
  bias: number;
}

export const F16: FloatFormat = { name: 'f16', expBits: 5, mantBits: 10, bias: 15 };
export const BF16: FloatFormat = { name: 'bf16', expBits: 8, mantBits: 7, bias: 127 };

/** The value of a bit pattern straight from the definition: (-1)^s * 2^(e-bias) * (1 + m/2^M), subnormals 2^(1-bias) * m/2^M. */
export function decodeReference(bits: number, f: FloatFormat): number {
  const sign = (bits >> (f.expBits + f.mantBits)) & 1 ? -1 : 1;
  const e = (bits >> f.mantBits) & ((1 << f.expBits) - 1);
  const m = bits & ((1 << f.mantBits) - 1);
  if (e === (1 << f.expBits) - 1) return m === 0 ? sign * Infinity : NaN;
  if (e === 0) return sign * Math.pow(2, 1 - f.bias) * (m / Math.pow(2, f.mantBits));
  return sign * Math.pow(2, e - f.bias) * (1 + m / Math.pow(2, f.mantBits));
}

interface Table {
  values: number[]; // non-negative finite values, ascending
  bits: number[];
  overflow: number; // the value at and above which rounding gives inf
}

const tables = new Map<string, Table>();

function table(f: FloatFormat): Table {
  let t = tables.get(f.name);
  if (t) return t;
  const values: number[] = [];
  const bits: number[] = [];
  const positiveCount = 1 << (f.expBits + f.mantBits);
  for (let b = 0; b < positiveCount; b++) {
    const v = decodeReference(b, f);
    if (Number.isFinite(v)) {
      values.push(v);
      bits.push(b);
    }
  }
  // Positive patterns increase monotonically with their value.
  const max = values[values.length - 1]!;
  const ulp = max - values[values.length - 2]!;
  t = { values, bits, overflow: max + ulp / 2 };
  tables.set(f.name, t);
  return t;
}

/** Round-to-nearest-even by search. NaN maps to NaN (returned as -1 here; callers check NaN separately). */
export function encodeReference(x: number, f: FloatFormat): number {
  if (Number.isNaN(x)) return -1;
  const signBit = x < 0 || Object.is(x, -0) ? 1 << (f.expBits + f.mantBits) : 0;
  const a = Math.abs(x);
  const t = table(f);
  const infBits = ((1 << f.expBits) - 1) << f.mantBits;
  if (a >= t.overflow) {
    // Exactly at the midpoint to the next power of two, ties-to-even also goes
    // up: the largest finite value has an odd (all-ones) mantissa.
    return signBit | infBits;
  }
  let lo = 0;
  let hi = t.values.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (t.values[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - t.values[lo]!;
  const dh = t.values[hi]! - a;
  let pick: number;
  if (dl < dh) pick = lo;
  else if (dh < dl) pick = hi;
  else pick = t.bits[lo]! % 2 === 0 ? lo : hi;
  return signBit | t.bits[pick]!;
}

/** Every midpoint between consecutive finite values, and the f32 neighbours of each. */
export function interestingF32Inputs(f: FloatFormat): Float32Array {
  const t = table(f);
  const out: number[] = [];
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const step = f.name === 'bf16' ? 7 : 1; // bf16 has ~65k values: sample every 7th gap (all exponents covered)
  for (let i = 0; i + 1 < t.values.length; i += step) {
    const mid = (t.values[i]! + t.values[i + 1]!) / 2;
    f32[0] = mid;
    if (f32[0] !== mid) continue; // not representable in f32 (only for tiny bf16 gaps)
    const bits = u32[0]!;
    for (const d of [-1, 0, 1]) {
      u32[0] = bits + d;
      out.push(f32[0]!, -f32[0]!);
    }
  }
  out.push(0, -0, Infinity, -Infinity, t.overflow, -t.overflow, 65504, 65519.99, 65520, 1e-8, 5.960464477539063e-8, 2.980232238769531e-8);
  return Float32Array.from(out);
}
