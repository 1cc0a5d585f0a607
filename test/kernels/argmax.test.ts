/** argmaxRows (greedy decoding's pick): ties to the lowest id, NaN as -inf, -1 for a row with no usable value, bad input named. */
import { describe, expect, it } from 'vitest';

import { argmaxRows } from '../../lib/kernels/sampling.js';
import { Tensor } from '../../lib/tensor/tensor.js';

/** The obvious argmax: strict '>' from -inf over every id; -1 when nothing is above -inf. */
function argmaxReference(row: Float32Array): number {
  let arg = -1;
  let best = -Infinity;
  row.forEach((v, i) => {
    if (v > best) {
      best = v;
      arg = i;
    }
  });
  return arg;
}

describe('argmaxRows (CPU)', () => {
  it('ties keep the lowest id; NaN never wins; rows with nothing above -inf (all NaN: broken numbers) give -1, not token 0', async () => {
    const vocab = 777;
    const rows = [
      Float32Array.from({ length: vocab }, (_, i) => Math.sin(i * 1.3)),
      Float32Array.from({ length: vocab }, (_, i) => (i === 5 || i === 600 ? 3 : 0)),
      Float32Array.from({ length: vocab }, () => -Infinity),
      Float32Array.from({ length: vocab }, (_, i) => (i === 0 || i === 300 ? NaN : i === 400 ? 2 : 1)),
      Float32Array.from({ length: vocab }, () => NaN),
      Float32Array.from({ length: vocab }, (_, i) => (i === vocab - 1 ? Infinity : -i)),
    ];
    const flat = new Float32Array(rows.length * vocab);
    rows.forEach((r, i) => flat.set(r, i * vocab));
    const best = await argmaxRows(Tensor.from(flat, { shape: [rows.length, vocab] }));
    expect(Array.from(best)).toEqual(rows.map(argmaxReference));
    expect(Array.from(best)).toEqual([argmaxReference(rows[0]!), 5, -1, 400, -1, vocab - 1]);
  });

  it('names a bad argument', async () => {
    await expect(argmaxRows(Tensor.from(new Float32Array(4), { shape: [4] }))).rejects.toThrow(/logits/);
    const f16 = await Tensor.from(new Float32Array(4), { shape: [2, 2] }).cast('f16');
    await expect(argmaxRows(f16)).rejects.toThrow(/logits\.dtype/);
  });
});
