/** `canopy bench [suite...]`: benchmarks with the machine's limits and peers side by side. */

import { writeFileSync } from 'node:fs';

import { ArgumentError } from '../errors.js';
import { installPeers, peersDir } from '../bench/peers/llama-cpp.js';
import { formatCsv, formatReport } from '../bench/report.js';
import { runBench } from '../bench/run.js';
import type { Backend } from '../native/backend.js';
import { setThreads } from '../native/threads.js';

export interface BenchCliOptions {
  quick?: boolean;
  backend?: string;
  json?: boolean;
  csv?: boolean;
  out?: string;
  filter?: string;
  /** Real model files to add greedy rows for (repeatable); the first is the decode suite's target. */
  model?: string[];
  /** Draft model for the decode suite. */
  draft?: string;
  installPeers?: boolean;
  threads?: string;
}

export async function runBenchCli(suites: string[], opts: BenchCliOptions): Promise<number> {
  if (opts.json && opts.csv) throw new ArgumentError('--csv', 'absent when --json is given (one format on stdout; --out always writes JSON)', true);
  let status = 0;
  if (opts.installPeers) {
    const dir = peersDir();
    const r = await installPeers(dir, (line) => process.stderr.write(`canopy bench: ${line}\n`));
    process.stderr.write(`canopy bench: ${r.message}\n`);
    if (!r.ok) status = 1;
  }
  if (opts.threads !== undefined) {
    const n = Number(opts.threads);
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new ArgumentError('--threads', 'an integer in [1, 1024]', opts.threads);
    setThreads(n);
  }
  // No suite named: the quick tour of every suite. A suite named: that suite in full, unless --quick.
  const quick = opts.quick ?? suites.length === 0;
  const report = await runBench({
    suites,
    backend: (opts.backend ?? 'auto') as Backend,
    quick,
    ...(opts.filter ? { filter: opts.filter } : {}),
    ...(opts.model?.length ? { models: opts.model } : {}),
    ...(opts.draft ? { draft: opts.draft } : {}),
  });
  const json = JSON.stringify(report, null, 2);
  if (opts.out) writeFileSync(opts.out, json + '\n');
  if (opts.json) process.stdout.write(json + '\n');
  else if (opts.csv) process.stdout.write(formatCsv(report));
  else process.stdout.write(formatReport(report) + '\n');
  return report.errors.length ? 1 : status;
}
