#!/usr/bin/env node
/** The `canopy` command: one file per subcommand. */

import { Command } from 'commander';

import { packageVersion } from '../info.js';
import { runBenchCli } from './bench.js';
import { runBuild } from './build.js';
import { runInfo } from './info.js';

const program = new Command();
program.name('canopy').description('Fast LLM decoding from Node.js: kernels, models, speculative decoding').version(packageVersion());

program
  .command('info')
  .description('version, native addon, CPU features, CUDA devices (or why there are none)')
  .option('--json', 'print JSON: {version, addon, cpu, cuda}')
  .action((opts: { json?: boolean }) => {
    process.exitCode = runInfo(opts);
  });

program
  .command('bench')
  .description('benchmarks: achieved GB/s or TFLOP/s against this machine\'s limits, with peers measured in the same run')
  .argument('[suites...]', 'attention, tree (default: a quick run of every suite)')
  .option('--quick', 'smaller configurations and time budgets')
  .option('--backend <backend>', 'auto, cpu, cuda or cuda:N', 'auto')
  .option('--json', 'print the report as JSON instead of a table')
  .option('--out <file>', 'also write the JSON report to a file')
  .option('--filter <text>', 'only benchmarks whose label contains the text')
  .action(async (suites: string[], opts: { quick?: boolean; backend?: string; json?: boolean; out?: string; filter?: string }) => {
    process.exitCode = await runBenchCli(suites, opts);
  });

program
  .command('build')
  .description('compile the native addon from source (cmake-js; CUDA too when nvcc is found)')
  .option('--cpu-only', 'skip CUDA even when nvcc is present')
  .option('--cuda-archs <list>', 'CUDA architectures, e.g. "80;90" (default 80;86;89;90)')
  .option('--force', 'reconfigure and rebuild from scratch')
  .action((opts: { cpuOnly?: boolean; cudaArchs?: string; force?: boolean }) => {
    process.exitCode = runBuild(opts);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`canopy: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
