/** scripts/node-gyp/binding.gyp lists its sources by hand: it must name every CPU and N-API source CMake globs. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');

it('scripts/node-gyp/binding.gyp lists every csrc/cpu and csrc/napi source', () => {
  const gyp = readFileSync(join(root, 'scripts', 'node-gyp', 'binding.gyp'), 'utf8');
  // Paths are relative to the .gyp file's folder.
  const listed = new Set([...gyp.matchAll(/"\.\.\/\.\.\/(csrc\/[^"]+\.cc)"/g)].map((m) => m[1]));
  const expected = ['cpu', 'napi'].flatMap((d) =>
    readdirSync(join(root, 'csrc', d))
      .filter((f) => f.endsWith('.cc'))
      .map((f) => `csrc/${d}/${f}`),
  );
  expect([...listed].sort()).toEqual(expected.sort());
});

it('no binding.gyp in the package root (npm would give the package an install script)', () => {
  expect(existsSync(join(root, 'binding.gyp'))).toBe(false);
});
