/** `canopy bench [suite...]`: kernel benchmarks with the machine's limits and peers side by side. */

import { writeFileSync } from 'node:fs';

import { formatTable } from '../bench/harness.js';
import { runBench } from '../bench/run.js';
import type { Backend } from '../native/backend.js';

export interface BenchCliOptions {
  quick?: boolean;
  backend?: string;
  json?: boolean;
  out?: string;
  filter?: string;
  model?: string;
  draft?: string;
}

export async function runBenchCli(suites: string[], opts: BenchCliOptions): Promise<number> {
  // No suite named: the quick tour of every suite. A suite named: that suite in full, unless --quick.
  const quick = opts.quick ?? suites.length === 0;
  const report = await runBench({
    suites, backend: (opts.backend ?? 'auto') as Backend, quick,
    ...(opts.filter ? { filter: opts.filter } : {}),
    ...(opts.model ? { model: opts.model } : {}),
    ...(opts.draft ? { draft: opts.draft } : {}),
  });
  const json = JSON.stringify(report, null, 2);
  if (opts.out) writeFileSync(opts.out, json + '\n');
  if (opts.json) {
    process.stdout.write(json + '\n');
  } else {
    if (report.fallbackReason) process.stdout.write(`backend: cpu (CUDA not used: ${report.fallbackReason})\n`);
    process.stdout.write(formatTable(report.rows, report.limits) + '\n');
  }
  return 0;
}
