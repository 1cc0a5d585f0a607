/** Shared argument checks for the kernel wrappers. */

import { ArgumentError, describe } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { isFloatDType } from '../tensor/dtype.js';

/** Checks `t` is a live Tensor with `ndim` dims; returns its shape. */
export function checkTensor(t: unknown, name: string, ndim: number, layout: string): readonly number[] {
  if (t === null || typeof t !== 'object' || typeof (t as Tensor).descriptor !== 'function') {
    throw new ArgumentError(name, `a Tensor of shape ${layout}`, t);
  }
  const tensor = t as Tensor;
  tensor.descriptor(name); // throws DisposedError naming the argument
  if (tensor.shape.length !== ndim) throw new ArgumentError(`${name}.shape`, `${layout} (${ndim} dims)`, tensor.shape);
  return tensor.shape;
}

export function checkFloat(t: Tensor, name: string): void {
  if (!isFloatDType(t.dtype)) throw new ArgumentError(`${name}.dtype`, 'one of f32, f16, bf16', t.dtype);
}

export function checkSame<T>(actual: T, expected: T, name: string, what: string): void {
  if (actual !== expected) throw new ArgumentError(name, `${what} ${describe(expected)}`, actual);
}

/** Converts number[] or Int32Array to an Int32Array of non-negative (or >= min) integers. */
export function toInt32Array(value: unknown, name: string, min = 0): Int32Array {
  let arr: Int32Array;
  if (value instanceof Int32Array) arr = value;
  else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const x = value[i] as unknown;
      if (typeof x !== 'number' || !Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31) {
        throw new ArgumentError(`${name}[${i}]`, 'a 32-bit integer', x);
      }
    }
    arr = Int32Array.from(value as number[]);
  } else {
    throw new ArgumentError(name, 'an Int32Array or an array of integers', value);
  }
  for (let i = 0; i < arr.length; i++) {
    if (arr[i]! < min) throw new ArgumentError(`${name}[${i}]`, `an integer >= ${min}`, arr[i]);
  }
  return arr;
}

/** A CSR index array: starts at 0 (when `fromZero`), non-decreasing, batch + 1 entries. */
export function checkIndptr(arr: Int32Array, name: string, fromZero: boolean): void {
  if (arr.length < 1) throw new ArgumentError(name, 'an index array with batchSize + 1 entries', arr);
  if (fromZero && arr[0] !== 0) throw new ArgumentError(`${name}[0]`, '0', arr[0]);
  for (let i = 1; i < arr.length; i++) {
    if (arr[i]! < arr[i - 1]!) throw new ArgumentError(`${name}[${i}]`, `>= ${name}[${i - 1}] (${arr[i - 1]})`, arr[i]);
  }
}
