/** The benchmark harness: timing statistics, the report shape, the table. Not a timed test. */
import { describe, expect, it } from 'vitest';

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bestLimits, formatTable, time } from '../../lib/bench/harness.js';
import { cudaVersionString, describeMachine, otherCpuShare, parseCpuSnapshot, physicalCores } from '../../lib/bench/machine.js';
import { MemorySampler } from '../../lib/bench/memory.js';
import { findBenchModel, modelFolders } from '../../lib/bench/models.js';
import { CSV_COLUMNS, csvField, formatCsv, formatReport } from '../../lib/bench/report.js';
import { runBench } from '../../lib/bench/run.js';
import { runBenchCli } from '../../lib/cli/bench.js';
import { testModelsDir } from '../helpers/test-models.js';
import { benchTree } from '../../lib/bench/suites/tree.js';
import { treeDepths } from '../../lib/kernels/attention.js';

describe('bench harness', () => {
  it('excludes warm-up calls and reports ordered percentiles', async () => {
    let calls = 0;
    const t = await time(async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 1));
    }, { budgetMs: 20, warmup: 2, minRepeats: 4, maxRepeats: 10 });
    expect(t.repeats).toBeGreaterThanOrEqual(4);
    expect(t.repeats).toBeLessThanOrEqual(10);
    expect(calls).toBe(t.repeats + 2);
    expect(t.p10Ms).toBeLessThanOrEqual(t.medianMs);
    expect(t.medianMs).toBeLessThanOrEqual(t.p90Ms);
  });

  it('builds valid draft-tree shapes for the tree benchmark', () => {
    for (const n of [1, 16, 64]) {
      const parents = benchTree(n);
      expect(parents.length).toBe(n);
      expect(() => treeDepths(parents)).not.toThrow();
      expect(parents[0]).toBe(-1);
    }
  });

  it('runs a filtered suite and reports rows with formulas, limits and peers', async () => {
    const report = await runBench({ suites: ['attention'], backend: 'cpu', quick: true, filter: 'decode' });
    expect(report.backend).toBe('cpu');
    expect(report.limits.copyGBps).toBeGreaterThan(0);
    expect(report.rows.length).toBe(1);
    const row = report.rows[0]!;
    expect(row.name).toBe('decode split-KV');
    expect(row.metric).toBe('GB/s');
    expect(row.value).toBeGreaterThan(0);
    expect(row.formula).toMatch(/bytes of K and V/);
    expect(row.peers.map((p) => p.name)).toEqual(['naive']);
    const table = formatTable(report.rows, report.limits);
    expect(table).toMatch(/decode split-KV/);
    expect(table).toMatch(/% of copy bandwidth/);
  });

  it('the report carries the machine, the peers (absent here, with why) and peak memory per row; text and CSV forms', async () => {
    const peers = mkdtempSync(join(tmpdir(), 'canopy-no-peers-'));
    try {
      const report = await runBench({ suites: ['attention'], backend: 'cpu', quick: true, filter: 'decode', peersDir: peers });
      expect(report.version).toBe(2);
      const m = report.machine;
      expect(m.cpu.model).toMatch(/\S/);
      expect(m.cpu.threads).toBeGreaterThan(0);
      expect(m.memory.totalBytes).toBeGreaterThan(0);
      expect(m.node).toBe(process.version);
      expect(m.canopy.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(m.os.platform).toBe(process.platform);
      expect(Array.isArray(m.cuda.gpus)).toBe(true);
      expect(report.peers.map((p) => [p.name, p.available])).toEqual([
        ['llama.cpp', false],
        ['PyTorch', false],
      ]);
      expect(report.peers[0]!.detail).toMatch(/--install-peers/);
      expect(report.peers[1]!.detail).toMatch(/CUDA backend/);
      expect(report.rows[0]!.memory!.peakRssMiB).toBeGreaterThan(10);
      expect(report.rows[0]!.memory!.peakDeviceMiB).toBeUndefined();
      expect(report.errors).toEqual([]);
      const text = formatReport(report);
      expect(text).toMatch(/^system: .*Node v\d+/m);
      expect(text).toMatch(/peak RSS/);
      expect(text).toMatch(/llama\.cpp: absent — node-llama-cpp is not installed/);
      expect(text).toMatch(/PyTorch: absent — GPU peer/);
      if (process.platform === 'linux') expect(text).toMatch(/other processes used \d+% of the machine's CPU during the run/);
      const csv = formatCsv(report).trimEnd().split('\n');
      expect(csv[0]).toBe(CSV_COLUMNS.join(','));
      expect(csv).toHaveLength(2);
      expect(csv[1]!.startsWith('attention,decode split-KV,cpu,batch=1 kvLen=16384 heads=32/8 headDim=128 dtype=f32,')).toBe(true);
    } finally {
      rmSync(peers, { recursive: true, force: true });
    }
  });

  it('CSV fields are quoted when they must be', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a, b')).toBe('"a, b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField(1.5)).toBe('1.5');
    expect(csvField(NaN)).toBe('');
    expect(csvField(undefined)).toBe('');
  });

  it('--json and --csv together are refused, naming the argument', async () => {
    await expect(runBenchCli([], { json: true, csv: true })).rejects.toThrow(/--csv must be absent when --json is given/);
  });

  it('a real model that is not found is skipped with where it was looked for', async () => {
    const saved = process.env.CANOPY_MODELS;
    process.env.CANOPY_MODELS = join(tmpdir(), 'no-models-here');
    try {
      expect(modelFolders()).toEqual([join(tmpdir(), 'no-models-here')]);
      const report = await runBench({ suites: ['generate'], backend: 'cpu', quick: true, filter: 'stories' });
      expect(report.rows).toEqual([]);
      expect(report.skipped).toEqual([{ label: 'generate: greedy stories260K', reason: expect.stringMatching(/stories260K\.gguf not found in .*no-models-here \(set CANOPY_MODELS/) }]);
      expect(formatReport(report)).toMatch(/skipped:\n  generate: greedy stories260K: /);
    } finally {
      if (saved === undefined) delete process.env.CANOPY_MODELS;
      else process.env.CANOPY_MODELS = saved;
    }
  });

  const models = testModelsDir('bench greedy row on stories260K');
  it.runIf(models)('stories260K gets a greedy row: tokens/s, TTFT, and the llama.cpp peer absent with why', async () => {
    const saved = process.env.CANOPY_MODELS;
    process.env.CANOPY_MODELS = models!;
    const peers = mkdtempSync(join(tmpdir(), 'canopy-no-peers-'));
    try {
      expect(findBenchModel('stories260K/stories260K.gguf').path).toBe(join(models!, 'stories260K', 'stories260K.gguf'));
      const report = await runBench({ suites: ['generate'], backend: 'cpu', quick: true, filter: 'stories', peersDir: peers });
      expect(report.errors).toEqual([]);
      const row = report.rows[0]!;
      expect(row.name).toBe('greedy');
      expect(row.config).toMatchObject({ model: 'stories260K', prompt: 5, new: 128, batch: 1 });
      expect(row.notes!['tokens/s']).toBeGreaterThan(0);
      expect(row.notes!['TTFT ms']).toBeGreaterThan(0);
      expect(row.timing.repeats).toBe(3);
      expect(row.peers).toEqual([{ name: 'llama.cpp', absent: expect.stringMatching(/not installed/) }]);
    } finally {
      rmSync(peers, { recursive: true, force: true });
      if (saved === undefined) delete process.env.CANOPY_MODELS;
      else process.env.CANOPY_MODELS = saved;
    }
  });

  it('peak RSS of a row covers the memory resident while it ran', async () => {
    const sampler = new MemorySampler();
    sampler.start();
    const big = Buffer.alloc(256 * 2 ** 20, 1);
    await new Promise((r) => setTimeout(r, 20));
    const resident = process.memoryUsage.rss() / 2 ** 20; // big is alive until after stop()
    const m = sampler.stop();
    expect(big.length).toBe(256 * 2 ** 20);
    expect(m.peakRssMiB).toBeGreaterThanOrEqual(resident - 1);
    expect(m.peakRssMiB).toBeGreaterThan(256);
    expect(m.startRssMiB).toBeLessThanOrEqual(m.peakRssMiB);
  });

  it('machine facts: physical cores from /proc/cpuinfo text, CUDA version numbers, one-line description', () => {
    const cpuinfo = 'processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\nprocessor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\nprocessor\t: 2\nphysical id\t: 1\ncore id\t: 0\n';
    expect(physicalCores(cpuinfo)).toBe(2);
    expect(physicalCores('')).toBeUndefined();
    expect(cudaVersionString(12080)).toBe('12.8');
    expect(cudaVersionString(13000)).toBe('13.0');
    expect(cudaVersionString(0)).toBeUndefined();
    const line = describeMachine({
      cpu: { model: 'Xeon', cores: 2, threads: 4, canopyThreads: 4, features: [] },
      memory: { totalBytes: 16 * 2 ** 30 },
      os: { platform: 'linux', type: 'Linux', release: '6.1', version: '#1', arch: 'x64', distribution: 'Debian 12' },
      node: 'v20.0.0',
      canopy: { version: '0.1.0', addon: 'local build' },
      cuda: {
        compiled: true,
        available: true,
        reason: null,
        driver: '550.54',
        runtime: '12.4',
        gpus: [{ index: 0, name: 'H100', computeCapability: '9.0', totalMemoryBytes: 80 * 2 ** 30, multiprocessors: 132, clockKHz: 1980000 }],
      },
    });
    expect(line).toBe('Xeon (2 cores, 4 threads), 16.0 GiB RAM, H100 (80 GiB, driver 550.54, CUDA runtime 12.4), Debian 12 (Linux 6.1, x64), Node v20.0.0, canopy 0.1.0');
  });

  it('keeps the better of two limit measurements and updates the rows compared to them', () => {
    const a = { backend: 'cpu' as const, device: 'cpu' as const, copyGBps: 12, readGBps: 11, peakGFlops: 400, description: 'CPU, 2 threads: measured copy 12.0 GB/s, read 11.0 GB/s, FMA peak 400 GFLOP/s (512-bit vectors)' };
    const b = { ...a, copyGBps: 25, readGBps: 20, peakGFlops: 300, description: 'CPU, 2 threads: measured copy 25.0 GB/s, read 20.0 GB/s, FMA peak 300 GFLOP/s (512-bit vectors)' };
    const timing = { medianMs: 1, p10Ms: 1, p90Ms: 1, repeats: 1 };
    const rows = [
      { suite: 's', name: 'bw', backend: 'cpu' as const, config: {}, timing, metric: 'GB/s' as const, value: 20, formula: '', limit: { value: 12, what: 'copy bandwidth' }, peers: [] },
      { suite: 's', name: 'flops', backend: 'cpu' as const, config: {}, timing, metric: 'GFLOP/s' as const, value: 100, formula: '', limit: { value: 300, what: 'FMA peak' }, peers: [] },
    ];
    const best = bestLimits(a, b, rows);
    expect([best.copyGBps, best.readGBps, best.peakGFlops]).toEqual([25, 20, 400]);
    expect(best.description).toBe('CPU, 2 threads: measured copy 25.0 GB/s, read 20.0 GB/s, FMA peak 400 GFLOP/s (512-bit vectors)');
    expect(rows.map((r) => r.limit.value)).toEqual([25, 400]);
  });

  it('the CPU share other processes used comes from /proc/stat minus this process and its children', () => {
    const a = parseCpuSnapshot('cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n', '42 (node (x)) R 1 1 1 0 -1 0 0 0 0 0 30 10 5 5 20 0')!;
    expect(a).toEqual({ busy: 150, total: 1000, own: 50 });
    const b = parseCpuSnapshot('cpu  200 0 100 900 100 0 0 0 0 0\n', '42 (node (x)) R 1 1 1 0 -1 0 0 0 0 0 60 20 10 10 20 0')!;
    // machine busy +150 of +300 ticks; own +50: others used 100 / 300.
    expect(otherCpuShare(a, b)).toBeCloseTo(1 / 3, 12);
    expect(parseCpuSnapshot('', '')).toBeUndefined();
  });

  it('rejects an unknown suite by name', async () => {
    await expect(runBench({ suites: ['nope'], backend: 'cpu', quick: true })).rejects.toThrow(/suite must be one of attention, tree, prefix, kvquant, generate, decode, linear, linear-quant, sampling; received "nope"/);
  });
});
