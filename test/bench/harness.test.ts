/** The benchmark harness: timing statistics, the report shape, the table. Not a timed test. */
import { describe, expect, it } from 'vitest';

import { formatTable, time } from '../../lib/bench/harness.js';
import { runBench } from '../../lib/bench/run.js';
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

  it('rejects an unknown suite by name', async () => {
    await expect(runBench({ suites: ['nope'], backend: 'cpu', quick: true })).rejects.toThrow(/suite must be one of attention, tree, prefix, kvquant, generate, decode; received "nope"/);
  });
});
