import { expect, it } from 'vitest';

import { topIndices } from '../../lib/decode/proposers/draft-model.js';

it('topIndices returns the k largest, largest first, ties to the lower index', () => {
  expect(topIndices([1, 5, 3, 5, 2], 3)).toEqual([1, 3, 2]);
  expect(topIndices([0, 0, 0], 2)).toEqual([0, 1]);
  expect(topIndices([3], 4)).toEqual([0]);
  const v = Array.from({ length: 500 }, (_, i) => Math.sin(i * 12.9898) * 43758.5453 % 1);
  const sorted = v.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, 7).map((x) => x[1]);
  expect(topIndices(v, 7)).toEqual(sorted);
});

import { argmaxRows } from '../../lib/kernels/sampling.js';
import { Tensor } from '../../lib/tensor/tensor.js';

it('argmaxRows picks each row\'s largest logit, ties to the lowest id, and rejects bad input', async () => {
  const t = Tensor.from(new Float32Array([1, 5, 5, 2, -1, 7, 7, 7, 0, 0, 0, 3]), { shape: [3, 4] });
  expect(Array.from(await argmaxRows(t))).toEqual([1, 1, 3]);
  await expect(argmaxRows(Tensor.from(new Float32Array(4)))).rejects.toThrow(/logits\.shape must be \[rows, vocab\] \(2 dims\)/);
});
