/**
 * A table of bad inputs: every one must throw a CanopyError whose message
 * names the argument and says what was received, never crash the process.
 * The second table sends garbage straight to the native addon (bypassing the
 * TypeScript checks) to prove the native second line holds.
 */
import { describe, expect, it } from 'vitest';

import { ArgumentError, CanopyError } from '../../lib/errors.js';
import { native } from '../../lib/native/loader.js';
import { type BadInputCase, describeBadInputs, describeNativeBadInputs } from '../helpers/bad-inputs.js';
import { Tensor } from '../../lib/tensor/tensor.js';


const disposed = (() => {
  const t = Tensor.from(new Float32Array(4));
  t.dispose();
  return t;
})();

const tsCases: BadInputCase[] = [
  ['data is not an array', () => Tensor.from(42 as never), /data must be a typed array or an array of numbers; received 42/],
  ['data is null', () => Tensor.from(null as never), /data must be .*; received null/],
  ['unsupported typed array', () => Tensor.from(new Float64Array(2) as never), /data must be a Float32Array.*; received Float64Array\(2\)/],
  ['wrong dtype for array', () => Tensor.from(new Float32Array(2), { dtype: 'int8' }), /dtype must be one of f32 for a Float32Array; received "int8"/],
  ['unknown dtype', () => Tensor.from([1], { dtype: 'f64' as never }), /dtype must be one of f32, f16, bf16, int8, uint8, int32; received "f64"/],
  ['negative dim', () => Tensor.from(new Float32Array(2), { shape: [-2, -1] }), /shape\[0\] must be a non-negative integer; received -2/],
  ['fractional dim', () => Tensor.from(new Float32Array(2), { shape: [2.5] }), /shape\[0\] must be a non-negative integer; received 2\.5/],
  ['NaN dim', () => Tensor.empty([NaN]), /shape\[0\] must be a non-negative integer; received NaN/],
  ['huge dims', () => Tensor.empty([2 ** 30, 2 ** 30, 8]), /shape must be a shape of at most 2\^50 bytes/],
  ['too many dims', () => Tensor.empty([1, 1, 1, 1, 1, 1, 1, 1, 1]), /shape must be an array of at most 8 dims/],
  ['shape not an array', () => Tensor.empty(5 as never), /shape must be an array of non-negative integers; received 5/],
  ['shape/length mismatch', () => Tensor.from(new Float32Array(6), { shape: [4, 2] }), /shape must be a shape with 6 elements \(the length of data\); received \[4, 2\]/],
  ['bad device', () => Tensor.empty([2], 'f32', { device: 'gpu' as never }), /device must be one of 'auto', 'cpu', 'cuda' or 'cuda:N'; received "gpu"/],
  ['fromFile without options', () => Tensor.fromFile('/nonexistent', undefined as never), /options must be an object/],
  ['fromFile bad offset', () => Tensor.fromFile('/nonexistent', { dtype: 'f32', shape: [1], offset: -4 }), /options\.offset must be a non-negative integer; received -4/],
  ['fromFile bad mode', () => Tensor.fromFile('/nonexistent', { dtype: 'f32', shape: [1], mode: 'stream' as never }), /options\.mode must be 'mmap' or 'read'; received "stream"/],
  ['disposed tensor', () => disposed.toArray(), /tensor \(a f32 tensor of shape \[4\] on cpu\) was used after dispose\(\)/],
  ['cast of int tensor', () => Tensor.from(new Int32Array(2)).cast('f32'), /dtype must be a float dtype \(f32, f16, bf16\) for a int32 tensor; received "f32"/],
];

describeBadInputs('bad inputs to the TypeScript API', tsCases);

const addon = native();
const f32 = (n: number) => ({ data: new Float32Array(n), dtype: 'f32', shape: [n] });

const nativeCases: BadInputCase[] = [
  ['cast with no arguments', () => addon.cast(undefined as never, undefined as never), /src must be a tensor descriptor/],
  ['cast with a typed array instead of a descriptor', () => addon.cast(new Float32Array(2) as never, f32(2) as never), /src must be a tensor descriptor .*received a typed array/],
  ['unknown dtype', () => addon.cast({ ...f32(2), dtype: 'f64' } as never, f32(2) as never), /src\.dtype must be one of f32, f16, bf16, int8, uint8, int32; received 'f64'/],
  ['shape is not an array', () => addon.cast({ ...f32(2), shape: 2 } as never, f32(2) as never), /src\.shape must be an array of integers/],
  ['negative dim', () => addon.cast({ ...f32(2), shape: [-1] } as never, f32(2) as never), /src\.shape\[0\] must be a non-negative integer; received -1/],
  ['huge dims', () => addon.cast({ ...f32(2), shape: [2 ** 40, 2 ** 40] } as never, f32(2) as never), /shape is too large/],
  ['too many dims', () => addon.cast({ ...f32(1), shape: [1, 1, 1, 1, 1, 1, 1, 1, 1] } as never, f32(1) as never), /at most 8 dims/],
  ['data smaller than shape', () => addon.cast({ ...f32(2), shape: [3] } as never, f32(3) as never), /src: shape and dtype need 12 bytes but data holds 8 bytes/],
  ['data of the wrong kind', () => addon.cast({ ...f32(2), data: 'abc' } as never, f32(2) as never), /src\.data must be a typed array, an ArrayBuffer or a DeviceBuffer; received 'abc'/],
  ['misaligned data', () => addon.cast({ data: new Uint8Array(9).subarray(1), dtype: 'f32', shape: [2] } as never, f32(2) as never), /src\.data is not aligned to 4 bytes/],
  ['non-contiguous strides', () => addon.cast({ ...f32(6), shape: [2, 3], strides: [1, 2] } as never, { ...f32(6), shape: [2, 3] } as never), /src must be contiguous \(row-major\): strides\[1\] must be 1; received 2/],
  ['element count mismatch', () => addon.cast(f32(4) as never, { data: new Uint16Array(3), dtype: 'f16', shape: [3] } as never), /cast: dst has 3 elements but src has 4/],
  ['integer cast', () => addon.cast({ data: new Int32Array(2), dtype: 'int32', shape: [2] } as never, f32(2) as never), /dtype pair int32 -> f32 is not supported/],
  ['copy size mismatch', () => addon.copySync(f32(2) as never, f32(3) as never), /copy: dst holds 8 bytes but src holds 12/],
  ['mapFile of a missing file', () => addon.mapFile('/definitely/not/here.bin', 0, 4), /cannot open \/definitely\/not\/here\.bin/],
  ['mapFile beyond the end', () => addon.mapFile('/proc/self/exe', 0, 2 ** 52), /lies beyond the end of the file/],
  ['mapFile negative offset', () => addon.mapFile('/proc/self/exe', -1, 4), /offset must be a non-negative integer; received -1/],
  ['DeviceBuffer with a negative size', () => new addon.DeviceBuffer(0, -5), /bytes must be a non-negative integer/],
  ['DeviceBuffer without arguments', () => new (addon.DeviceBuffer as unknown as new () => unknown)(), /expected \(device: number, bytes: number\)/],
];

describeNativeBadInputs('bad inputs sent straight to the native addon', nativeCases);
describe('native errors', () => {
  it('native errors become CanopyError subclasses with a JavaScript stack', async () => {
    const { callNative, awaitNative, OutOfMemoryError, CudaUnavailableError } = await import('../../lib/errors.js');
    let err: unknown;
    try {
      callNative(() => addon.copySync(f32(2) as never, f32(3) as never));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ArgumentError);
    expect((err as Error).stack).toMatch(/bad-inputs\.test\.ts/);
    expect((err as Error).cause).toBeInstanceOf(Error);

    // A rejection as the async workers produce it (Error + code, created on
    // the main thread with no JavaScript frames of its own).
    const oom = Object.assign(new Error('CUDA out of memory on cuda:0: allocating 8 bytes'), { code: 'ERR_CANOPY_OUT_OF_MEMORY' });
    const wrapped = await awaitNative(Promise.reject(oom)).catch((e: unknown) => e);
    expect(wrapped).toBeInstanceOf(OutOfMemoryError);
    expect((wrapped as Error).stack).toMatch(/bad-inputs\.test\.ts/);
    const noDriver = Object.assign(new Error('CUDA is unavailable: no NVIDIA driver found'), { code: 'ERR_CANOPY_CUDA_UNAVAILABLE' });
    const cu = await awaitNative(Promise.reject(noDriver)).catch((e: unknown) => e);
    expect(cu).toBeInstanceOf(CudaUnavailableError);
    expect((cu as InstanceType<typeof CudaUnavailableError>).reason).toBe('no-driver');
  });
});
