/**
 * CUDA suite: runs where a usable GPU is present, skipped with the reason
 * printed where none is; `npm run test:gpu` sets CANOPY_REQUIRE_GPU=1 and
 * then a missing GPU fails.
 */
import { describe, expect, it } from 'vitest';

import { DisposedError, OutOfMemoryError } from '../../lib/errors.js';
import { selectBackend } from '../../lib/native/backend.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { gpuGate } from '../helpers/gpu.js';

const gate = gpuGate('CUDA tensors');

function randomF32(n: number): Float32Array {
  const u = new Uint32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    u[i] = (s ^ (s >>> 13) ^ Math.imul(s, 0x9e3779b1)) >>> 0;
  }
  return new Float32Array(u.buffer);
}

describe.runIf(gate.available)('CUDA tensors', () => {
  it("selects CUDA for 'auto' and 'cuda'", () => {
    expect(selectBackend('auto').backend).toBe('cuda');
    expect(selectBackend('cuda').device).toBe('cuda:0');
  });

  it.each([0, 1, 7, 113, 1 << 20])('round-trips %i f32 values host -> device -> host', async (n) => {
    const src = Tensor.from(randomF32(n));
    const dev = await src.to('cuda');
    expect(dev.device).toBe('cuda:0');
    const back = await dev.to('cpu');
    expect(Buffer.from((back.toArray() as Float32Array).buffer).equals(Buffer.from((src.toArray() as Float32Array).buffer))).toBe(true);
    dev.dispose();
  });

  it.each([
    ['f32', 'f16'],
    ['f32', 'bf16'],
    ['f16', 'f32'],
    ['bf16', 'f32'],
    ['f16', 'bf16'],
    ['bf16', 'f16'],
  ] as const)('cast %s -> %s on CUDA equals the CPU kernel bit for bit', async (from, to) => {
    const n = 1_000_003;
    const raw = randomF32(n);
    const host = from === 'f32' ? Tensor.from(raw) : Tensor.from(new Uint16Array(raw.buffer, 0, n), { dtype: from });
    const cpu = await host.cast(to);
    const dev = await host.to('cuda:0');
    const devOut = await dev.cast(to);
    expect(devOut.device).toBe('cuda:0');
    const got = devOut.toArray();
    const want = cpu.toArray();
    let mismatches = 0;
    for (let i = 0; i < n; i++) if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) mismatches++;
    expect(mismatches).toBe(0);
    dev.dispose();
    devOut.dispose();
  });

  it('out of memory is a typed error and the device stays usable', () => {
    expect(() => Tensor.empty([2 ** 47], 'uint8', { device: 'cuda' })).toThrow(OutOfMemoryError);
    const t = Tensor.empty([1024], 'f32', { device: 'cuda' });
    t.dispose();
  });

  it('a disposed device tensor throws DisposedError, and dispose during a copy is safe', async () => {
    const t = await Tensor.from(randomF32(1 << 22)).to('cuda');
    const pending = t.to('cpu');
    t.dispose(); // deferred by the native busy count until the copy finishes
    const back = await pending;
    expect(back.numel).toBe(1 << 22);
    expect(() => t.toArray()).toThrow(DisposedError);
  });
});
