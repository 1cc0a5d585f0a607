import { spawnSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import { CudaUnavailableError } from '../../lib/errors.js';
import { cudaInfo, selectBackend } from '../../lib/native/backend.js';
import { loadAddon, native } from '../../lib/native/loader.js';

const info = cudaInfo();

describe('backend selection', () => {
  it("'cpu' is always the CPU", () => {
    expect(selectBackend('cpu')).toEqual({ backend: 'cpu', device: 'cpu' });
  });

  it.skipIf(info.available)("'auto' falls back to the CPU and records why (no usable GPU here)", () => {
    const p = selectBackend('auto');
    expect(p.backend).toBe('cpu');
    expect(p.fallbackReason).toBe(info.reason);
    expect(p.fallbackReason).toMatch(/\S/);
  });

  it.skipIf(info.available)("an explicit 'cuda' without a usable GPU throws a typed error saying why", () => {
    let err: unknown;
    try {
      selectBackend('cuda');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CudaUnavailableError);
    const e = err as CudaUnavailableError;
    expect(e.code).toBe('ERR_CANOPY_CUDA_UNAVAILABLE');
    expect(e.message).toContain(info.reason!);
    expect(['not-compiled', 'no-driver', 'no-device', 'compute-capability']).toContain(e.reason);
    expect(() => selectBackend('cuda:0')).toThrow(CudaUnavailableError);
  });

  it.runIf(info.available)("'auto' picks the first usable CUDA device", () => {
    expect(selectBackend('auto').backend).toBe('cuda');
  });

  it('reports cuda.compiled as the build says, with a reason whenever unavailable', () => {
    expect(info.compiled).toBe(native().buildInfo().cudaCompiled);
    if (!info.available) expect(info.reason).toMatch(/\S/);
    else expect(info.devices.some((d) => d.usable)).toBe(true);
  });

  it('a device that does not exist is reported by name', () => {
    if (!info.available) return expect(() => selectBackend('cuda:7')).toThrow(CudaUnavailableError);
    expect(() => selectBackend(`cuda:${info.devices.length}`)).toThrow(/does not exist/);
  });
});

describe('native runtime', () => {
  it('loads the local build or a prebuilt binary and says which', () => {
    const { path, source } = loadAddon();
    expect(path).toMatch(/\.node$/);
    expect(['prebuilt', 'local build', 'CANOPY_ADDON_PATH']).toContain(source);
  });

  it('sizes the thread pool from CANOPY_THREADS', () => {
    const { path } = loadAddon();
    const script = `console.log(require(${JSON.stringify(path)}).cpuInfo().threads)`;
    const run = (threads: string | undefined) => {
      const env = { ...process.env };
      delete env.CANOPY_THREADS;
      if (threads !== undefined) env.CANOPY_THREADS = threads;
      return spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' }).stdout.trim();
    };
    const hardware = run(undefined);
    expect(Number(hardware)).toBeGreaterThan(0);
    expect(run('3')).toBe('3');
    // An invalid value is ignored: the pool falls back to the hardware threads.
    expect(run('many')).toBe(hardware);
    expect(run('0')).toBe(hardware);
  });

  it('reports CPU features for the portable baseline it was built for', () => {
    const cpu = native().cpuInfo();
    expect(cpu.threads).toBeGreaterThan(0);
    if (process.arch === 'x64') expect(cpu.features).toEqual(expect.arrayContaining(['avx2', 'fma', 'f16c']));
  });
});

describe('cudaMemInfo (device memory for bench rows)', () => {
  it.skipIf(info.available)('reports why where CUDA is unusable', () => {
    expect(() => native().cudaMemInfo(0)).toThrow(expect.objectContaining({ code: 'ERR_CANOPY_CUDA_UNAVAILABLE' }));
  });

  it.runIf(info.available)('gives free <= total bytes on a usable device', () => {
    const m = native().cudaMemInfo(0);
    expect(m.total).toBeGreaterThan(0);
    expect(m.free).toBeLessThanOrEqual(m.total);
  });

  it('names a bad device argument', () => {
    expect(() => native().cudaMemInfo(-1)).toThrow(/device must be >= 0; received -1/);
    expect(() => native().cudaMemInfo('x' as never)).toThrow(/device must be a CUDA device index/);
  });
});
