/** binding.gyp lists its sources by hand: it must name every CPU and N-API source CMake globs. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');

it('binding.gyp lists every csrc/cpu and csrc/napi source', () => {
  const gyp = readFileSync(join(root, 'binding.gyp'), 'utf8');
  const listed = new Set([...gyp.matchAll(/"(csrc\/[^"]+\.cc)"/g)].map((m) => m[1]));
  const expected = ['cpu', 'napi'].flatMap((d) =>
    readdirSync(join(root, 'csrc', d))
      .filter((f) => f.endsWith('.cc'))
      .map((f) => `csrc/${d}/${f}`),
  );
  expect([...listed].sort()).toEqual(expected.sort());
});
