#!/usr/bin/env node
/** The `canopy` command: one file per subcommand. */

import { Command } from 'commander';

import { packageVersion } from '../info.js';
import { type BenchCliOptions, runBenchCli } from './bench.js';
import { runBuild } from './build.js';
import { type ChatCliOptions, runChatCli } from './chat.js';
import { type GenerateCliOptions, runGenerateCli } from './generate.js';
import { runInfo } from './info.js';
import { type QuantizeCliOptions, runQuantizeCli } from './quantize.js';
import { addModelOptions, addSamplingOptions } from './options.js';

const program = new Command();
program.name('canopy').description('Fast LLM decoding from Node.js: kernels, models, speculative decoding').version(packageVersion());

program
  .command('info')
  .description('version, native addon, CPU features, CUDA devices (or why there are none)')
  .option('--json', 'print JSON: {version, addon, cpu, cuda}')
  .action((opts: { json?: boolean }) => {
    process.exitCode = runInfo(opts);
  });

const generateCmd = program.command('generate').description('generate text with a model from disk (llama2.c .bin, GGUF, or a Hugging Face folder)');
addModelOptions(generateCmd).requiredOption('--prompt <text>', "the prompt ('-': read it from stdin)");
addSamplingOptions(generateCmd, { maxTokens: '256', maxTokensHelp: 'new tokens at most', temperature: '0.8' })
  .option('--draft <path>', 'draft model (speculative strategies)')
  .option('--strategy <name>', 'decoding strategy (default: speculative with --draft, else autoregressive)')
  .option('--speculation-k <k>', 'draft length to start from (speculative, lookup)')
  .option('--threads <n>', 'CPU threads (default: CANOPY_THREADS, else the physical cores)')
  .option('--stop <text>', 'stop when the text ends with this string (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
  .option('--n <n>', 'samples of the prompt (a batch)')
  .option('--chat', "send the prompt as a user message through the model's chat template")
  .option('--system <text>', 'a system message (implies --chat)')
  .option('--template <file>', 'a Jinja chat template file overriding the model\'s (implies --chat)')
  .option('--verbose', 'also report why CUDA is not used')
  .option('--json', 'print {text, tokens, finishReason, stats} as JSON')
  .action(async (opts: GenerateCliOptions) => {
    process.exitCode = await runGenerateCli(opts);
  });

const chatCmd = program
  .command('chat')
  .description("chat with an instruct model in the terminal (its chat template; Ctrl-C stops a reply, Ctrl-D or /exit quits, /reset starts over)");
addModelOptions(chatCmd);
addSamplingOptions(chatCmd, { maxTokens: '512', maxTokensHelp: 'new tokens per reply at most', temperature: '0.7' })
  .option('--template <file>', "a Jinja chat template file overriding the model's")
  .option('--system <text>', 'a system message')
  .option('--no-context-shift', 'end a reply at the context length instead of dropping the oldest turns (kept: the system message)')
  .option('--verbose', 'report cache reuse per turn and why CUDA is not used')
  .action(async (opts: ChatCliOptions) => {
    process.exitCode = await runChatCli(opts);
  });

program
  .command('bench')
  .description('benchmarks: achieved GB/s or TFLOP/s against this machine\'s limits, with peers (llama.cpp, PyTorch) measured in the same run')
  .argument('[suites...]', 'attention, tree, prefix, kvquant, generate, decode, linear, linear-quant, sampling (default: a quick run of every suite)')
  .option('--quick', 'smaller configurations and time budgets')
  .option('--backend <backend>', 'auto, cpu, cuda or cuda:N', 'auto')
  .option('--json', 'print the report as JSON instead of tables')
  .option('--csv', 'print the rows as CSV instead of tables')
  .option('--out <file>', 'also write the JSON report (with the machine description) to a file')
  .option('--filter <text>', 'only benchmarks whose label contains the text')
  .option('--threads <n>', 'CPU threads for canopy (default: CANOPY_THREADS, else the physical cores)')
  .option('--model <path>', 'also run greedy generation on this model file (repeatable; GGUF files get the llama.cpp peer)', (v: string, acc: string[] = []) => [...acc, v])
  .option('--draft <path>', 'decode suite: a draft model for the speculative and tree strategies')
  .option('--install-peers', 'first install the llama.cpp peer (node-llama-cpp, prebuilt) into CANOPY_PEERS_DIR or ~/.cache/canopy/peers')
  .action(async (suites: string[], opts: BenchCliOptions) => {
    process.exitCode = await runBenchCli(suites, opts);
  });

program
  .command('quantize')
  .description("write a model (F32/F16/BF16 GGUF, Hugging Face folder or llama2.c file) as a quantized GGUF with llama.cpp's presets and per-tensor rules")
  .argument('<input>', 'model file or folder')
  .argument('<output>', 'the GGUF file to write')
  .requiredOption('--type <preset>', 'Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_M, IQ4_NL or IQ4_XS')
  .option('--threads <n>', 'CPU threads (default: CANOPY_THREADS, else the physical cores)')
  .option('--quiet', 'no progress bar')
  .action(async (input: string, output: string, opts: QuantizeCliOptions) => {
    process.exitCode = await runQuantizeCli(input, output, opts);
  });

program
  .command('build')
  .description(
    'compile the native addon from source: cmake-js (CUDA too when nvcc is found; installs cmake-js on first use), ' +
      'or, without cmake, a CPU-only build with node-gyp (bundled with npm)',
  )
  .option('--cpu-only', 'skip CUDA even when nvcc is present')
  .option('--node-gyp', 'CPU-only build with node-gyp (scripts/node-gyp/binding.gyp), even when cmake is present')
  .option('--cuda-archs <list>', 'CUDA architectures, e.g. "80;90" (default 80;86;89;90)')
  .option('--force', 'reconfigure and rebuild from scratch')
  .action((opts: { cpuOnly?: boolean; nodeGyp?: boolean; cudaArchs?: string; force?: boolean }) => {
    process.exitCode = runBuild(opts);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`canopy: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
