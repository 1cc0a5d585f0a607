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
