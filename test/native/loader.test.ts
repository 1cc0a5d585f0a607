/**
 * When the addon cannot be loaded, the first use says so: NativeLoadError
 * (ERR_CANOPY_NATIVE_LOAD) with build instructions, not an I/O error about a tensor.
 * Each case loads lib/ afresh with CANOPY_ADDON_PATH pointing at something unusable.
 * (scripts/check-pack.mjs checks the same in an installed package with no prebuilt binary.)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

import { testModel } from '../helpers/test-models.js';

const dir = mkdtempSync(join(tmpdir(), 'canopy-loader-'));
const notAnAddon = join(dir, 'canopy.node');
writeFileSync(notAnAddon, 'this is not a shared library\n');
const saved = process.env.CANOPY_ADDON_PATH;

afterAll(() => {
  if (saved === undefined) delete process.env.CANOPY_ADDON_PATH;
  else process.env.CANOPY_ADDON_PATH = saved;
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  vi.resetModules(); // a fresh loader: it caches the addon (and its load error) per process
});

const story = testModel('stories260K/stories260K.bin', 'native load errors (real model)');

describe('native load errors', () => {
  it('a file that is not an addon: NativeLoadError naming the file, the cause and how to build', async () => {
    process.env.CANOPY_ADDON_PATH = notAnAddon;
    const { loadAddon } = await import('../../lib/native/loader.js');
    const { NativeLoadError } = await import('../../lib/errors.js');
    let error: unknown;
    try {
      loadAddon();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NativeLoadError);
    expect(error).toMatchObject({ code: 'ERR_CANOPY_NATIVE_LOAD' });
    const message = (error as Error).message;
    expect(message).toContain(notAnAddon);
    expect(message).toMatch(/not a native addon for this platform/);
    expect(message).toContain('npx canopy build');
    expect(message).toContain('--cpu-only');
  });

  it('a missing CANOPY_ADDON_PATH file: NativeLoadError', async () => {
    process.env.CANOPY_ADDON_PATH = join(dir, 'missing.node');
    const { loadAddon } = await import('../../lib/native/loader.js');
    expect(() => loadAddon()).toThrow(expect.objectContaining({ code: 'ERR_CANOPY_NATIVE_LOAD', message: expect.stringContaining('does not exist') }));
  });

  it.runIf(story !== undefined)('loadModel rejects with ERR_CANOPY_NATIVE_LOAD, not ERR_CANOPY_IO about a tensor', async () => {
    process.env.CANOPY_ADDON_PATH = notAnAddon;
    const { loadModel } = await import('../../lib/model/load.js');
    const rejection = await loadModel(story!).then(
      () => null,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(rejection?.code).toBe('ERR_CANOPY_NATIVE_LOAD');
    expect(rejection?.message).not.toMatch(/tensor '/);
  });

  it.runIf(story !== undefined)('loading weights directly (no loadModel) passes the load error through unwrapped', async () => {
    process.env.CANOPY_ADDON_PATH = notAnAddon;
    const { loadWeights } = await import('../../lib/model/weights.js');
    let error: (Error & { code?: string }) | undefined;
    try {
      loadWeights(story!).dispose();
    } catch (e) {
      error = e as Error & { code?: string };
    }
    expect(error?.code).toBe('ERR_CANOPY_NATIVE_LOAD');
    expect(error?.message).not.toMatch(/tensor '/);
  });
});
