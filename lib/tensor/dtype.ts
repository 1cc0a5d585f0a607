/**
 * Element types and exact f16 / bf16 conversions in JavaScript.
 *
 * Storage: f32 in Float32Array; f16 and bf16 as raw bits in Uint16Array (Node
 * 20 has no Float16Array); int8 in Int8Array; uint8 (also packed int4, two
 * values per byte, low nibble first) in Uint8Array; int32 in Int32Array.
 *
 * Conversions round the exact value of a JavaScript number to nearest, ties
 * to even, keep subnormals and overflow to +-inf. For numbers that are f32
 * values they match the native kernels (csrc/common/dtype.h) bit for bit;
 * NaN becomes the canonical quiet NaN (0x7e00 / 0x7fc0, sign kept).
 */

export const DTYPES = ['f32', 'f16', 'bf16', 'int8', 'uint8', 'int32'] as const;
export type DType = (typeof DTYPES)[number];
export type FloatDType = 'f32' | 'f16' | 'bf16';

export type TypedArrayFor<D extends DType> = D extends 'f32'
  ? Float32Array
  : D extends 'f16' | 'bf16'
    ? Uint16Array
    : D extends 'int8'
      ? Int8Array
      : D extends 'uint8'
        ? Uint8Array
        : Int32Array;

export type AnyTypedArray = Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array;

const BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, int8: 1, uint8: 1, int32: 4 };

const ARRAY: Record<DType, { new (buffer: ArrayBufferLike, byteOffset: number, length: number): AnyTypedArray; name: string }> = {
  f32: Float32Array,
  f16: Uint16Array,
  bf16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int32: Int32Array,
};

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && (DTYPES as readonly string[]).includes(value);
}

export function isFloatDType(d: DType): d is FloatDType {
  return d === 'f32' || d === 'f16' || d === 'bf16';
}

export function dtypeSize(d: DType): number {
  return BYTES[d];
}

/** The typed array class that stores `d`. */
export function arrayTypeFor(d: DType): { new (buffer: ArrayBufferLike, byteOffset: number, length: number): AnyTypedArray; name: string } {
  return ARRAY[d];
}

/** Which dtypes a typed array can hold without conversion. */
export function dtypesForArray(a: ArrayBufferView): DType[] {
  if (a instanceof Float32Array) return ['f32'];
  if (a instanceof Uint16Array) return ['f16', 'bf16'];
  if (a instanceof Int8Array) return ['int8'];
  if (a instanceof Uint8Array) return ['uint8'];
  if (a instanceof Int32Array) return ['int32'];
  return [];
}

// Rounds a non-negative finite m (< 2^53) to an integer, ties to even. Exact:
// m - floor(m) is computed without error for such m.
function roundHalfEven(m: number): number {
  const f = Math.floor(m);
  const d = m - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// floor(log2(a)) for a positive finite double, exactly.
function exponentOf(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/**
 * Rounds |x| to a binary float with `mantBits` stored mantissa bits and
 * exponent bias `bias`, returning the unsigned bit pattern (without sign).
 * Multiplying by powers of two is exact, so the only rounding is the one
 * roundHalfEven performs.
 */
function encodeMagnitude(a: number, mantBits: number, bias: number, expBits: number): number {
  const maxExp = (1 << expBits) - 1; // all ones: inf/NaN
  const minNormalExp = 1 - bias;
  const infBits = maxExp << mantBits;
  if (a === Infinity) return infBits;
  if (a === 0) return 0;
  const e = exponentOf(a);
  if (e < minNormalExp) {
    // Subnormal: units of 2^(minNormalExp - mantBits). A carry to 2^mantBits
    // yields exactly the smallest normal's encoding.
    return roundHalfEven(a * 2 ** (mantBits - minNormalExp));
  }
  let r = roundHalfEven(a * 2 ** (mantBits - e)); // in [2^mantBits, 2^(mantBits+1)]
  let exp = e;
  if (r === 2 ** (mantBits + 1)) {
    r = 2 ** mantBits;
    exp++;
  }
  const biased = exp + bias;
  if (biased >= maxExp) return infBits;
  return (biased << mantBits) | (r - 2 ** mantBits);
}

/** The f16 bits of the number nearest to x (ties to even). */
export function toF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  return sign | encodeMagnitude(Math.abs(x), 10, 15, 5);
}

/** The bf16 bits of the number nearest to x (ties to even). */
export function toBF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  return sign | encodeMagnitude(Math.abs(x), 7, 127, 8);
}

/** The value of f16 bits. */
export function fromF16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The value of bf16 bits (exact: bf16 is the top half of an f32). */
export function fromBF16Bits(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** Encodes numbers into the storage of a float dtype. */
export function encodeFloats(values: ArrayLike<number>, dtype: FloatDType): Float32Array | Uint16Array {
  if (dtype === 'f32') return Float32Array.from(values);
  const out = new Uint16Array(values.length);
  const enc = dtype === 'f16' ? toF16Bits : toBF16Bits;
  for (let i = 0; i < values.length; i++) out[i] = enc(values[i]!);
  return out;
}

/** Decodes the storage of a float dtype into a Float32Array (exact: f16 and bf16 widen exactly). */
export function decodeFloats(data: ArrayLike<number>, dtype: FloatDType): Float32Array {
  if (dtype === 'f32') return Float32Array.from(data);
  const out = new Float32Array(data.length);
  const dec = dtype === 'f16' ? fromF16Bits : fromBF16Bits;
  for (let i = 0; i < data.length; i++) out[i] = dec(data[i]!);
  return out;
}
