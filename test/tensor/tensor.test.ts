import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DisposedError, IoError } from '../../lib/errors.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { toBF16Bits, toF16Bits } from '../../lib/tensor/dtype.js';

const dir = mkdtempSync(join(tmpdir(), 'canopy-tensor-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Tensor.from', () => {
  it('shares memory with the typed array (no copy)', () => {
    const data = new Float32Array([1, 2, 3, 4, 5, 6]);
    const t = Tensor.from(data, { shape: [2, 3] });
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('f32');
    expect(t.device).toBe('cpu');
    expect(t.numel).toBe(6);
    expect(t.byteLength).toBe(24);
    data[4] = 42;
    expect(t.toArray()[4]).toBe(42);
    (t.toArray() as Float32Array)[0] = -1;
    expect(data[0]).toBe(-1);
    expect(t.toArray()).toBe(data);
  });

  it('infers dtypes and requires one for Uint16Array', () => {
    expect(Tensor.from(new Int32Array(3)).dtype).toBe('int32');
    expect(Tensor.from(new Int8Array(3)).dtype).toBe('int8');
    expect(Tensor.from(new Uint8Array(3)).dtype).toBe('uint8');
    expect(Tensor.from(new Uint16Array(3), { dtype: 'bf16' }).dtype).toBe('bf16');
    expect(() => Tensor.from(new Uint16Array(3))).toThrow(/dtype must be one of f16, bf16 for a Uint16Array/);
  });

  it('encodes numbers: f16/bf16 rounded to nearest even, integers range-checked', () => {
    const xs = [0.1, -2.5, 65519, 1e-7, 3.14159];
    expect(Array.from(Tensor.from(xs, { dtype: 'f16' }).toArray())).toEqual(xs.map(toF16Bits));
    expect(Array.from(Tensor.from(xs, { dtype: 'bf16' }).toArray())).toEqual(xs.map(toBF16Bits));
    expect(Array.from(Tensor.from([1, -128, 127], { dtype: 'int8' }).toArray())).toEqual([1, -128, 127]);
    expect(() => Tensor.from([1, 128], { dtype: 'int8' })).toThrow(/data\[1\] must be an integer in \[-128, 127\] for int8; received 128/);
    expect(() => Tensor.from([1.5], { dtype: 'int32' })).toThrow(/data\[0\] must be an integer/);
  });

  it('decodes to Float32Array exactly', () => {
    const t = Tensor.from([1.5, -0.25, 1024], { dtype: 'f16' });
    expect(Array.from(t.toFloat32())).toEqual([1.5, -0.25, 1024]);
  });

  it('accepts zero-sized and scalar shapes', () => {
    expect(Tensor.from(new Float32Array(0), { shape: [0, 5] }).numel).toBe(0);
    expect(Tensor.from(new Float32Array([7]), { shape: [] }).numel).toBe(1);
  });
});

describe('Tensor.fromFile', () => {
  const values = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5);
  const path = join(dir, 'weights.bin');
  const header = Buffer.alloc(16, 0xab);
  writeFileSync(path, Buffer.concat([header, Buffer.from(values.buffer)]));

  it.each(['mmap', 'read'] as const)('reads a tensor at an offset (%s)', (mode) => {
    const t = Tensor.fromFile(path, { dtype: 'f32', shape: [10, 100], offset: 16, mode });
    expect(t.shape).toEqual([10, 100]);
    expect(Array.from(t.toArray())).toEqual(Array.from(values));
  });

  it('maps copy-on-write: writes to the tensor never reach the file', () => {
    const before = readFileSync(path);
    const t = Tensor.fromFile(path, { dtype: 'f32', shape: [1000], offset: 16 });
    (t.toArray() as Float32Array).fill(-7);
    expect(t.toArray()[999]).toBe(-7);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('reads (copies) when the offset is not aligned to the element size', () => {
    const t = Tensor.fromFile(path, { dtype: 'int32', shape: [2], offset: 15 });
    const bytes = readFileSync(path).subarray(15, 23);
    expect(Array.from(t.toArray())).toEqual(Array.from(new Int32Array(new Uint8Array(bytes).buffer)));
  });

  it('names the file and the range when the file is too short', () => {
    expect(() => Tensor.fromFile(path, { dtype: 'f32', shape: [1001], offset: 16 })).toThrow(IoError);
    expect(() => Tensor.fromFile(path, { dtype: 'f32', shape: [1001], offset: 16 })).toThrow(/weights\.bin holds 4016 bytes .* needs bytes \[16, 4020\); is the file truncated\?/);
  });

  it('names the file when it does not exist', () => {
    expect(() => Tensor.fromFile(join(dir, 'missing.bin'), { dtype: 'f32', shape: [1] })).toThrow(/cannot open .*missing\.bin/);
  });
});

describe('Tensor lifecycle', () => {
  it('dispose() is idempotent and later use throws DisposedError', async () => {
    const t = Tensor.from(new Float32Array(4));
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.toArray()).toThrow(DisposedError);
    await expect(t.cast('f16')).rejects.toThrow(DisposedError);
    await expect(t.to('cpu')).rejects.toThrow(/was used after dispose/);
  });

  it('supports Symbol.dispose', () => {
    const t = Tensor.from(new Float32Array(4));
    t[Symbol.dispose]();
    expect(t.disposed).toBe(true);
  });

  it("to('cpu') of a CPU tensor is the tensor itself", async () => {
    const t = Tensor.from(new Float32Array(4));
    expect(await t.to('cpu')).toBe(t);
  });

  it('cast runs as a Promise and keeps the shape', async () => {
    const t = Tensor.from(Float32Array.from({ length: 300_000 }, (_, i) => i / 7), { shape: [300, 1000] });
    const p = t.cast('bf16');
    expect(p).toBeInstanceOf(Promise);
    const b = await p;
    expect(b.shape).toEqual([300, 1000]);
    const back = await b.cast('f32');
    const src = t.toArray() as Float32Array;
    const got = back.toArray() as Float32Array;
    for (let i = 0; i < src.length; i += 997) expect(Math.abs(got[i]! - src[i]!)).toBeLessThanOrEqual(Math.abs(src[i]!) * 2 ** -8);
  });
});
