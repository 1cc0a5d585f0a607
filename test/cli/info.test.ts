import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { formatInfo } from '../../lib/cli/info.js';
import { info } from '../../lib/info.js';

const root = join(import.meta.dirname, '..', '..');
const cli = join(root, 'dist', 'cli', 'index.js');

describe('canopy info', () => {
  it('reports {version, addon, cpu, cuda} with the documented fields', () => {
    const i = info();
    expect(i.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(i.addon.error).toBeUndefined();
    expect(i.addon.path).toMatch(/\.node$/);
    expect(['prebuilt', 'local build', 'CANOPY_ADDON_PATH']).toContain(i.addon.source);
    expect(i.cpu.threads).toBeGreaterThan(0);
    expect(Array.isArray(i.cpu.features)).toBe(true);
    expect(typeof i.cuda.compiled).toBe('boolean');
    expect(typeof i.cuda.available).toBe('boolean');
    expect(Array.isArray(i.cuda.devices)).toBe(true);
    if (!i.cuda.available) expect(i.cuda.reason).toMatch(/\S/);
    for (const d of i.cuda.devices) expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
  });

  it('prints a readable summary', () => {
    const text = formatInfo(info());
    expect(text).toMatch(/^canopy-llm \d/);
    expect(text).toMatch(/cuda: +compiled (yes|no)/);
  });

  it.skipIf(!existsSync(cli))('the built CLI prints the same JSON (dist/ is built by npm install)', () => {
    const r = spawnSync(process.execPath, [cli, 'info', '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const parsed = JSON.parse(r.stdout) as ReturnType<typeof info>;
    expect(Object.keys(parsed)).toEqual(['version', 'addon', 'cpu', 'cuda']);
    expect(parsed.cuda.compiled).toBe(info().cuda.compiled);
  });

  it.skipIf(!existsSync(cli))('explains how to build when no addon can be found', () => {
    const r = spawnSync(process.execPath, [cli, 'info'], {
      encoding: 'utf8',
      env: { ...process.env, CANOPY_ADDON_PATH: join(root, 'no-such-addon.node') },
    });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/addon: +not loaded: CANOPY_ADDON_PATH points to .*no-such-addon\.node/);
  });
});
