import { describe, expect, it } from 'vitest';

import { Tensor } from '../../lib/tensor/tensor.js';
import { fromBF16Bits, fromF16Bits, toBF16Bits, toF16Bits } from '../../lib/tensor/dtype.js';
import { BF16, F16, type FloatFormat, decodeReference, encodeReference, interestingF32Inputs } from '../helpers/float-reference.js';

const formats: Array<{ name: string; format: FloatFormat; encode: (x: number) => number; decode: (b: number) => number }> = [
  { name: 'f16', format: F16, encode: toF16Bits, decode: fromF16Bits },
  { name: 'bf16', format: BF16, encode: toBF16Bits, decode: fromBF16Bits },
];

function randomF32(n: number, seed: number): Float32Array {
  // Random bit patterns: every exponent, subnormals, infinities and NaNs.
  const u = new Uint32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    let t = s;
    t ^= t >>> 15;
    t = Math.imul(t, 0x2c1b3c6d) >>> 0;
    u[i] = t;
  }
  return new Float32Array(u.buffer);
}

function firstMismatches(got: ArrayLike<number>, want: ArrayLike<number>, inputs: ArrayLike<number>, limit = 5): string[] {
  const out: string[] = [];
  for (let i = 0; i < want.length && out.length < limit; i++) {
    if (got[i] !== want[i]) out.push(`#${i}: input ${inputs[i]} -> 0x${got[i]!.toString(16)}, want 0x${want[i]!.toString(16)}`);
  }
  return out;
}

describe.each(formats)('$name conversions', ({ format, encode, decode }) => {
  it('decodes every bit pattern exactly as the definition says', () => {
    const bad: string[] = [];
    for (let b = 0; b < 1 << 16; b++) {
      const want = decodeReference(b, format);
      const got = decode(b);
      if (!(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)))) bad.push(`0x${b.toString(16)}: ${got} vs ${want}`);
      if (bad.length > 5) break;
    }
    expect(bad).toEqual([]);
  });

  it('round-trips every non-NaN bit pattern through encode(decode(b))', () => {
    const bad: number[] = [];
    for (let b = 0; b < 1 << 16; b++) {
      const v = decode(b);
      if (Number.isNaN(v)) continue;
      if (encode(v) !== b) bad.push(b);
    }
    expect(bad.slice(0, 5)).toEqual([]);
  });

  it('rounds to nearest even on midpoints, their f32 neighbours and random f32 values (JS encoder vs reference)', () => {
    const inputs = Float32Array.from([...interestingF32Inputs(format), ...randomF32(50_000, 7)]);
    const got: number[] = [];
    const want: number[] = [];
    for (const x of inputs) {
      if (Number.isNaN(x)) continue;
      got.push(encode(x));
      want.push(encodeReference(x, format));
    }
    expect(firstMismatches(got, want, inputs)).toEqual([]);
  });

  it('rounds numbers that are not f32 values once, not twice (JS encoder vs reference)', () => {
    // x = midpoint + tiny: an f32 round first would land on the midpoint and tie.
    const xs = [1 + 2 ** -11 + 2 ** -40, 1 + 2 ** -8 + 2 ** -40, 1 + 2 ** -11 - 2 ** -40, 2049.0000001, 1e-7 + 1e-20];
    for (const x of xs) expect(encode(x), `x=${x}`).toBe(encodeReference(x, format));
  });

  it('maps NaN to a NaN and keeps the sign of zero and infinity', () => {
    expect(Number.isNaN(decode(encode(NaN)))).toBe(true);
    expect(Object.is(decode(encode(-0)), -0)).toBe(true);
    expect(decode(encode(-Infinity))).toBe(-Infinity);
    expect(decode(encode(1e300))).toBe(Infinity);
  });

  it('native cast f32 -> ' + format.name + ' equals the reference bit for bit', async () => {
    const inputs = Float32Array.from([...interestingF32Inputs(format), ...randomF32(100_003, 11)]);
    const src = Tensor.from(inputs);
    const out = await src.cast(format.name);
    const got = out.toArray() as Uint16Array;
    const want = new Uint16Array(inputs.length);
    const gotFiltered = new Uint16Array(inputs.length);
    for (let i = 0; i < inputs.length; i++) {
      if (Number.isNaN(inputs[i]!)) {
        // NaN: quiet, sign kept, payload truncated (csrc/common/dtype.h).
        expect(Number.isNaN(decode(got[i]!))).toBe(true);
        continue;
      }
      want[i] = encodeReference(inputs[i]!, format);
      gotFiltered[i] = got[i]!;
    }
    expect(firstMismatches(gotFiltered, want, inputs)).toEqual([]);
  });

  it('native cast ' + format.name + ' -> f32 decodes every bit pattern exactly', async () => {
    const all = new Uint16Array(1 << 16).map((_, i) => i);
    const out = await Tensor.from(all, { dtype: format.name }).cast('f32');
    const got = out.toArray() as Float32Array;
    for (let b = 0; b < all.length; b++) {
      const want = decodeReference(b, format);
      if (Number.isNaN(want)) expect(Number.isNaN(got[b]!)).toBe(true);
      else if (!Object.is(got[b], want)) expect(`0x${b.toString(16)} -> ${got[b]}`).toBe(`0x${b.toString(16)} -> ${want}`);
    }
  });
});

describe('f16 <-> bf16 native cast', () => {
  it('equals rounding the exact f16 value to bf16', async () => {
    const all = new Uint16Array(1 << 16).map((_, i) => i);
    const out = (await Tensor.from(all, { dtype: 'f16' }).cast('bf16')).toArray() as Uint16Array;
    for (let b = 0; b < all.length; b++) {
      const v = decodeReference(b, F16);
      if (Number.isNaN(v)) continue;
      if (out[b] !== encodeReference(v, BF16)) expect(`0x${b.toString(16)} -> 0x${out[b]!.toString(16)}`).toBe(`expected 0x${encodeReference(v, BF16).toString(16)}`);
    }
  });
});
