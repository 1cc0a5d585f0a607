/**
 * Argument checks shared by the kernel wrappers: every failure is an
 * ArgumentError naming the argument, the expectation and the received value.
 */

import { ArgumentError } from '../errors.js';
import type { TensorDescriptor } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';

/** Integers as an Int32Array or a plain array. */
export type IntArrayLike = Int32Array | readonly number[];

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** Checks `value` is an Int32Array or an array of int32 integers; returns an Int32Array (a copy for arrays). */
export function toInt32Array(value: unknown, argument: string): Int32Array {
  if (value instanceof Int32Array) return value;
  if (!Array.isArray(value)) throw new ArgumentError(argument, 'an Int32Array or an array of integers', value);
  const out = new Int32Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const v = value[i] as unknown;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
      throw new ArgumentError(`${argument}[${i}]`, 'an int32 integer', v);
    }
    out[i] = v;
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

/** A CSR index pointer: [0, ..., total], non-decreasing, `entries` + 1 long when `entries` is given. */
export function checkIndptr(indptr: Int32Array, argument: string, total: number | undefined, first0 = true): number {
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
    throw new ArgumentError(`${argument}[${indptr.length - 1}]`, `the number of nodes ${total}`, last);
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
