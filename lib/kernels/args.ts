/**
 * Argument checks shared by the kernel wrappers: every failure is an
 * ArgumentError naming the argument, the expectation and the received value.
 */

import { ArgumentError, describe } from '../errors.js';
import type { TensorDescriptor } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import { isFloatDType } from '../tensor/dtype.js';

/** Integers as an Int32Array or a plain array. */
export type IntArrayLike = Int32Array | readonly number[];

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * Checks `value` is an Int32Array or an array of int32 integers, each >= `min` when given;
 * returns an Int32Array (a copy for arrays).
 */
export function toInt32Array(value: unknown, argument: string, min?: number): Int32Array {
  let out: Int32Array;
  if (value instanceof Int32Array) {
    out = value;
  } else {
    if (!Array.isArray(value)) throw new ArgumentError(argument, 'an Int32Array or an array of integers', value);
    out = new Int32Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const v = value[i] as unknown;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
        throw new ArgumentError(`${argument}[${i}]`, 'an int32 integer', v);
      }
      out[i] = v;
    }
  }
  if (min !== undefined) {
    for (let i = 0; i < out.length; i++) {
      if (out[i]! < min) throw new ArgumentError(`${argument}[${i}]`, `an integer >= ${min}`, out[i]);
    }
  }
  return out;
}

/** Checks a non-negative safe integer. */
export function checkCount(value: unknown, argument: string, max = INT32_MAX): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new ArgumentError(argument, max === INT32_MAX ? 'a non-negative integer' : `an integer in [0, ${max}]`, value);
  }
  return value;
}

/**
 * A CSR index pointer: non-decreasing, starting at 0 (when `first0`), ending at `total` (when
 * given; `totalWhat` names it in the message). Returns the batch size (entries - 1).
 */
export function checkIndptr(indptr: Int32Array, argument: string, total: number | undefined, first0 = true, totalWhat = 'the number of nodes'): number {
  if (indptr.length < 1) throw new ArgumentError(argument, 'an index pointer with B+1 >= 1 entries', indptr);
  if (first0 && indptr[0] !== 0) throw new ArgumentError(`${argument}[0]`, '0', indptr[0]);
  if (!first0 && indptr[0]! < 0) throw new ArgumentError(`${argument}[0]`, 'a non-negative integer', indptr[0]);
  for (let b = 1; b < indptr.length; b++) {
    if (indptr[b]! < indptr[b - 1]!) {
      throw new ArgumentError(`${argument}[${b}]`, `>= ${argument}[${b - 1}] = ${indptr[b - 1]} (non-decreasing)`, indptr[b]);
    }
  }
  const last = indptr[indptr.length - 1]!;
  if (total !== undefined && last !== total) {
    throw new ArgumentError(`${argument}[${indptr.length - 1}]`, `${totalWhat} ${total}`, last);
  }
  return indptr.length - 1;
}

/** Descriptor of a host int32 array. */
export function int32Descriptor(a: Int32Array): TensorDescriptor {
  return { data: a, dtype: 'int32', shape: [a.length] };
}

/** Shape as text for messages. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Checks `value` is a Tensor (not disposed) and returns its descriptor. */
export function tensorDescriptor(value: unknown, argument: string): { tensor: Tensor; desc: TensorDescriptor } {
  if (!(value instanceof Tensor)) throw new ArgumentError(argument, 'a Tensor', value);
  return { tensor: value, desc: value.descriptor(argument) };
}

/** Checks `t` is a live Tensor with `ndim` dims (`layout` names them in messages); returns its shape. */
export function checkTensor(t: unknown, name: string, ndim: number, layout: string): readonly number[] {
  if (!(t instanceof Tensor)) throw new ArgumentError(name, `a Tensor of shape ${layout}`, t);
  t.descriptor(name); // throws DisposedError naming the argument
  if (t.shape.length !== ndim) throw new ArgumentError(`${name}.shape`, `${layout} (${ndim} dims)`, t.shape);
  return t.shape;
}

export function checkFloat(t: Tensor, name: string): void {
  if (!isFloatDType(t.dtype)) throw new ArgumentError(`${name}.dtype`, 'one of f32, f16, bf16', t.dtype);
}

/** `actual` must equal `expected`: "<name> must be <what> <expected>; received <actual>". */
export function checkSame<T>(actual: T, expected: T, name: string, what: string): void {
  if (actual !== expected) throw new ArgumentError(name, `${what} ${describe(expected)}`, actual);
}
