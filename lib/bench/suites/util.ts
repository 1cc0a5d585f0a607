import type { Device } from '../../native/backend.js';
import { Tensor } from '../../tensor/tensor.js';
import type { FloatDType } from '../../tensor/dtype.js';

/** Deterministic pseudo-random values in [-1, 1) (xorshift32, seeded). */
export function randomValues(n: number, seed: number): Float32Array {
  const values = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    values[i] = s / 2 ** 31 - 1;
  }
  return values;
}

/** A tensor of randomValues, cast and moved to `device`. */
export async function randomTensor(shape: number[], dtype: FloatDType, device: Device, seed: number): Promise<Tensor> {
  let t = Tensor.from(randomValues(shape.reduce((a, b) => a * b, 1), seed), { shape });
  if (dtype !== 'f32') t = await t.cast(dtype);
  if (device === 'cpu') return t;
  const moved = await t.to(device);
  t.dispose();
  return moved;
}

/** The median of a non-empty list (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
