/**
 * The CPU peer: llama.cpp through the node-llama-cpp npm package, run on the same GGUF
 * file as canopy (batch 1, greedy, same prompt ids and length).
 *
 * node-llama-cpp is never a dependency of canopy-llm. `canopy bench --install-peers`
 * installs it into a cache folder outside any project (CANOPY_PEERS_DIR, else
 * $XDG_CACHE_HOME/canopy/peers, else ~/.cache/canopy/peers): a private package.json there
 * and `npm install node-llama-cpp@NODE_LLAMA_CPP_VERSION` plus the one prebuilt binary
 * package for this platform, with install scripts off (node-llama-cpp's postinstall would
 * otherwise try to download and compile llama.cpp when no prebuilt binary fits) and the
 * other platforms' optional binaries (CUDA, Vulkan: about 600 MB) left out. Loading uses
 * the prebuilt binary only (`build: 'never'`): a machine it does not fit gets a reason,
 * never a compile.
 *
 * The peer runs in a child process (llama-cpp-worker.js): its threads, memory and any
 * crash stay out of canopy's measurements; the worker reports its own peak RSS.
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type { PeerStatus } from './types.js';

/** The node-llama-cpp version installed: engines node >= 20, prebuilt binaries for Linux, macOS and Windows. */
export const NODE_LLAMA_CPP_VERSION = '3.22.1';

/** The cache folder peers are installed into (outside any repository). */
export function peersDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CANOPY_PEERS_DIR) return env.CANOPY_PEERS_DIR;
  const cache = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'canopy', 'peers');
}

/** node-llama-cpp's prebuilt CPU binary package for a platform, or undefined where it has none. */
export function prebuiltPackage(platform: string = process.platform, arch: string = process.arch): string | undefined {
  const table: Record<string, string> = {
    'linux-x64': 'linux-x64',
    'linux-arm64': 'linux-arm64',
    'linux-arm': 'linux-armv7l',
    'darwin-arm64': 'mac-arm64-metal',
    'darwin-x64': 'mac-x64',
    'win32-x64': 'win-x64',
    'win32-arm64': 'win-arm64',
  };
  const name = table[`${platform}-${arch}`];
  return name ? `@node-llama-cpp/${name}` : undefined;
}

export interface FoundPeer {
  /** The resolved entry file of node-llama-cpp, when installed. */
  entry?: string;
  version?: string;
  /** Why it cannot be used, when it cannot. */
  reason?: string;
}

const INSTALL_HINT = 'run `npx canopy bench --install-peers` to install it (into a cache folder, not into your project)';

/** Looks for node-llama-cpp in the peers folder. */
export function findNodeLlamaCpp(dir: string = peersDir()): FoundPeer {
  const manifest = join(dir, 'node_modules', 'node-llama-cpp', 'package.json');
  if (!existsSync(manifest)) return { reason: `node-llama-cpp is not installed in ${dir}; ${INSTALL_HINT}` };
  let version: string;
  try {
    version = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
  } catch (e) {
    return { reason: `${manifest} is unreadable (${(e as Error).message}); ${INSTALL_HINT}` };
  }
  const prebuilt = prebuiltPackage();
  if (!prebuilt) return { version, reason: `node-llama-cpp has no prebuilt llama.cpp binary for ${process.platform}-${process.arch}, and canopy does not compile llama.cpp` };
  if (!existsSync(join(dir, 'node_modules', ...prebuilt.split('/'), 'package.json'))) {
    return { version, reason: `${prebuilt} (node-llama-cpp's prebuilt binary) is missing from ${dir}; ${INSTALL_HINT}` };
  }
  try {
    const entry = createRequire(join(dir, 'package.json')).resolve('node-llama-cpp');
    return { entry, version };
  } catch (e) {
    return { version, reason: `node-llama-cpp in ${dir} does not resolve (${(e as Error).message}); ${INSTALL_HINT}` };
  }
}

function npmCommand(): { command: string; args: string[] } {
  // Under npx/npm, npm_execpath is npm's own CLI script: run it with this node.
  const execPath = process.env.npm_execpath;
  if (execPath && /npm-cli\.js$/.test(execPath)) return { command: process.execPath, args: [execPath] };
  return { command: process.platform === 'win32' ? 'npm.cmd' : 'npm', args: [] };
}

/** Runs a command, resolving with its exit and output (never rejects; `error` when it could not start). */
export function runProcess(command: string, args: string[], options: { cwd?: string; input?: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; error?: Error; timedOut: boolean }> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr, error, timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

function tail(text: string, lines = 12): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

export interface InstallResult {
  ok: boolean;
  dir: string;
  /** What was done, or why it failed (with npm's last lines). */
  message: string;
}

/**
 * Installs node-llama-cpp (NODE_LLAMA_CPP_VERSION) and its prebuilt binary for this
 * platform into the peers folder, then checks the binary loads without compiling.
 */
export async function installPeers(dir: string = peersDir(), log: (line: string) => void = () => {}): Promise<InstallResult> {
  const prebuilt = prebuiltPackage();
  if (!prebuilt) {
    return { ok: false, dir, message: `node-llama-cpp has no prebuilt llama.cpp binary for ${process.platform}-${process.arch}; canopy does not compile llama.cpp, so the llama.cpp peer is unavailable here` };
  }
  mkdirSync(dir, { recursive: true });
  const pkg = join(dir, 'package.json');
  if (!existsSync(pkg)) {
    writeFileSync(
      pkg,
      JSON.stringify({ name: 'canopy-bench-peers', private: true, description: 'Peers installed by `canopy bench --install-peers` (not part of any project)' }, null, 2) + '\n',
    );
  }
  const { command, args } = npmCommand();
  const spec = [`node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, `${prebuilt}@${NODE_LLAMA_CPP_VERSION}`];
  const npmArgs = [...args, 'install', '--no-audit', '--no-fund', '--ignore-scripts', '--omit=optional', '--save-exact', ...spec];
  log(`installing ${spec.join(' ')} into ${dir} (npm registry only; no compiler, no other downloads)`);
  const r = await runProcess(command, npmArgs, { cwd: dir, timeoutMs: 15 * 60_000, env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' } });
  if (r.error || r.code !== 0) {
    const why = r.error ? r.error.message : r.timedOut ? 'timed out after 15 minutes' : `exited with ${r.code ?? r.signal}`;
    return { ok: false, dir, message: `npm install ${spec.join(' ')} failed (${why}):\n${tail(r.stderr || r.stdout)}` };
  }
  const probe = await runLlamaCppWorker({ threads: [1], jobs: [] }, 120_000, dir);
  if (!probe.output) return { ok: false, dir, message: `installed, but llama.cpp does not load: ${probe.reason}` };
  return { ok: true, dir, message: `installed node-llama-cpp ${NODE_LLAMA_CPP_VERSION} (llama.cpp ${probe.output.llamaCpp}, ${probe.output.buildType} binary) into ${dir}` };
}

// ------------------------------------------------------------------- the jobs

/** One greedy generation to time with llama.cpp. */
export interface LlamaCppJob {
  id: string;
  modelPath: string;
  /** Prompt token ids (canopy's, so both run the same prompt). */
  prompt: number[];
  /** New tokens per run (EOS does not stop it). */
  maxTokens: number;
  /** Untimed runs, then timed runs. */
  warmup: number;
  repeats: number;
  /**
   * llama.cpp's speculation, through node-llama-cpp's token predictors: 'draft' is its
   * DraftSequenceTokenPredictor (a draft model's greedy chain, verified by the target in one
   * batch; the draft a GGUF file on the same vocabulary), 'lookup' its InputLookupTokenPredictor
   * (prompt lookup: continuations of n-grams already in the context). Options left out keep
   * node-llama-cpp's defaults (draft: up to 16 tokens while the draft's confidence is >= 0.6;
   * minTokens 0: the target does not wait for the draft, which drafts alongside). Absent: plain
   * decoding. Greedy output is the same either way (the target verifies).
   */
  predictor?: { type: 'draft'; draftModelPath: string; minTokens?: number; maxTokens?: number; minConfidence?: number } | { type: 'lookup' };
}

/** node-llama-cpp's prediction counters over one run (validated + refuted = predictions checked). */
export interface LlamaCppPredictions {
  used: number;
  unused: number;
  validated: number;
  refuted: number;
}

export interface LlamaCppRun {
  /** From the call to the first generated token (prompt evaluation included), ms. */
  ttftMs: number;
  /** Mean time per generated token after the first, ms. */
  msPerToken: number;
}

/** The timed runs of one job at one thread count. */
export interface LlamaCppVariant {
  threads: number;
  runs: LlamaCppRun[];
  /** Why it was not timed: its warm-up was over twice (and 0.5 ms) slower per token than the best count so far. */
  abandoned?: string;
}

export interface LlamaCppJobResult {
  id: string;
  /** Why the job failed, when it did. */
  error?: string;
  loadMs?: number;
  /** Timed runs per thread count tried. */
  variants?: LlamaCppVariant[];
  /** Greedy tokens of the last run, and llama.cpp's detokenization of them (prompt as context). */
  tokens?: number[];
  text?: string;
  /** With a predictor: its counters over the last timed run. */
  predictions?: LlamaCppPredictions;
}

export interface LlamaCppOutput {
  /** node-llama-cpp version. */
  version: string;
  /** llama.cpp release of the binary. */
  llamaCpp: string;
  buildType: string;
  results: LlamaCppJobResult[];
  /** Peak resident set of the worker process, MiB. */
  maxRssMiB: number;
}

export interface LlamaCppRequest {
  /**
   * Thread counts to try (each job is timed at each; the bench reports the best). llama.cpp
   * spin-waits between its threads, so on a small or busy machine fewer threads than cores
   * can be much faster: giving it the choice keeps the comparison fair to the peer.
   */
  threads: number[];
  jobs: LlamaCppJob[];
}

// The subset of node-llama-cpp's API the jobs use.
interface NlcSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: number[], options?: { temperature?: number }): AsyncGenerator<number, void, void>;
  readonly tokenPredictions?: LlamaCppPredictions;
}
interface NlcContext {
  getSequence(options?: { tokenPredictor?: unknown }): NlcSequence;
  dispose(): Promise<void>;
}
interface NlcModel {
  createContext(o: { contextSize: number; batchSize: number; sequences: number; threads: number }): Promise<NlcContext>;
  detokenize(tokens: readonly number[], specialTokens?: boolean, lastTokens?: readonly number[]): string;
  dispose(): Promise<void>;
}
interface NlcLlama {
  buildType: string;
  llamaCppRelease: { release: string };
  loadModel(o: { modelPath: string; gpuLayers: number; useMmap: boolean }): Promise<NlcModel>;
  dispose(): Promise<void>;
}
interface NlcModule {
  getLlama(o: Record<string, unknown>): Promise<NlcLlama>;
  LlamaLogLevel: Record<string, unknown>;
  DraftSequenceTokenPredictor?: new (draftSequence: NlcSequence, options?: { minTokens?: number; maxTokens?: number; minConfidence?: number }) => unknown;
  InputLookupTokenPredictor?: new () => unknown;
}

/**
 * Runs the jobs in this process with node-llama-cpp loaded from `entry` (the worker calls
 * it; tests call it with a stand-in module). Each job: load the model (CPU, mmap), one
 * context of prompt + maxTokens, then warm-up and timed greedy runs from an empty history.
 */
export async function runLlamaCppJobs(entry: string, request: LlamaCppRequest): Promise<LlamaCppOutput> {
  const mod = (await import(pathToFileURL(entry).href)) as NlcModule;
  const version = (() => {
    try {
      return (JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      return 'unknown';
    }
  })();
  const threads = [...new Set(request.threads)].filter((t) => Number.isInteger(t) && t > 0);
  if (threads.length === 0) throw new Error(`threads must be positive integers; received ${JSON.stringify(request.threads)}`);
  const llama = await mod.getLlama({ gpu: false, build: 'never', logLevel: mod.LlamaLogLevel.error ?? 'error', progressLogs: false, maxThreads: Math.max(...threads) });
  const results: LlamaCppJobResult[] = [];
  for (const job of request.jobs) {
    try {
      const t0 = performance.now();
      const model = await llama.loadModel({ modelPath: job.modelPath, gpuLayers: 0, useMmap: true });
      const loadMs = performance.now() - t0;
      const predictor = job.predictor;
      if (predictor?.type === 'draft' && !mod.DraftSequenceTokenPredictor) throw new Error('this node-llama-cpp has no DraftSequenceTokenPredictor');
      if (predictor?.type === 'lookup' && !mod.InputLookupTokenPredictor) throw new Error('this node-llama-cpp has no InputLookupTokenPredictor');
      const draftModel = predictor?.type === 'draft' ? await llama.loadModel({ modelPath: predictor.draftModelPath, gpuLayers: 0, useMmap: true }) : undefined;
      let predictions: LlamaCppPredictions | undefined;
      const contextSize = job.prompt.length + job.maxTokens + 8;
      const variants: LlamaCppVariant[] = [];
      let tokens: number[] = [];
      let best = Infinity;
      // One greedy run from an empty history: the tokens and the time to first token and per token.
      const generateOnce = async (seq: NlcSequence, n: number): Promise<{ run: LlamaCppRun; out: number[] }> => {
        await seq.clearHistory();
        const out: number[] = [];
        const start = performance.now();
        let first = 0;
        for await (const token of seq.evaluate([...job.prompt], { temperature: 0 })) {
          if (!first) first = performance.now();
          out.push(token);
          if (out.length >= n) break;
        }
        const end = performance.now();
        return { run: { ttftMs: first - start, msPerToken: out.length > 1 ? (end - first) / (out.length - 1) : NaN }, out };
      };
      for (const n of threads) {
        const context = await model.createContext({ contextSize, batchSize: Math.max(job.prompt.length, 32), sequences: 1, threads: n });
        // The draft runs in its own context (same size and threads), as node-llama-cpp's guide does.
        const draftContext = draftModel ? await draftModel.createContext({ contextSize, batchSize: Math.max(job.prompt.length, 32), sequences: 1, threads: n }) : undefined;
        const tokenPredictor =
          predictor?.type === 'draft'
            ? new mod.DraftSequenceTokenPredictor!(draftContext!.getSequence(), {
                ...(predictor.minTokens !== undefined ? { minTokens: predictor.minTokens } : {}),
                ...(predictor.maxTokens !== undefined ? { maxTokens: predictor.maxTokens } : {}),
                ...(predictor.minConfidence !== undefined ? { minConfidence: predictor.minConfidence } : {}),
              })
            : predictor?.type === 'lookup'
              ? new mod.InputLookupTokenPredictor!()
              : undefined;
        const seq = context.getSequence(tokenPredictor ? { tokenPredictor } : undefined);
        const runs: LlamaCppRun[] = [];
        let abandoned: string | undefined;
        // Warm-up runs are short (16 tokens): enough to page the weights in and to see a
        // thread count that spin-waits badly, which is then not timed.
        let warm = NaN;
        for (let r = 0; r < job.warmup; r++) warm = (await generateOnce(seq, Math.min(job.maxTokens, 16))).run.msPerToken;
        if (warm > 2 * best && warm > best + 0.5) abandoned = `warm-up ${warm.toFixed(2)} ms/token, over twice the best thread count's ${best.toFixed(2)}`;
        else {
          for (let r = 0; r < job.repeats; r++) {
            const before = seq.tokenPredictions ? { ...seq.tokenPredictions } : undefined;
            const { run, out } = await generateOnce(seq, job.maxTokens);
            runs.push(run);
            tokens = out;
            const after = seq.tokenPredictions;
            if (tokenPredictor && before && after) {
              predictions = { used: after.used - before.used, unused: after.unused - before.unused, validated: after.validated - before.validated, refuted: after.refuted - before.refuted };
            }
          }
          const sorted = runs.map((x) => x.msPerToken).sort((a, b) => a - b);
          if (sorted.length) best = Math.min(best, sorted[Math.floor(sorted.length / 2)]!);
        }
        await context.dispose();
        await draftContext?.dispose();
        variants.push({ threads: n, runs, ...(abandoned ? { abandoned } : {}) });
      }
      const text = model.detokenize(tokens, false, job.prompt);
      await model.dispose();
      await draftModel?.dispose();
      results.push({ id: job.id, loadMs, variants, tokens, text, ...(predictions ? { predictions } : {}) });
    } catch (e) {
      results.push({ id: job.id, error: e instanceof Error ? e.message : String(e) });
    }
  }
  const release = llama.llamaCppRelease?.release ?? 'unknown';
  const buildType = llama.buildType ?? 'unknown';
  await llama.dispose();
  return { version, llamaCpp: release, buildType, results, maxRssMiB: (process.resourceUsage().maxRSS * 1024) / 2 ** 20 };
}

/** The marker before the worker's JSON line on stdout (node-llama-cpp may print too). */
export const WORKER_RESULT_MARKER = 'CANOPY_PEER_RESULT ';

/** Reads the worker's stdout: the JSON after the last marker line. */
export function parseWorkerOutput(stdout: string): LlamaCppOutput | { error: string } {
  const line = stdout.split('\n').reverse().find((l) => l.startsWith(WORKER_RESULT_MARKER));
  if (!line) return { error: 'the worker printed no result' };
  try {
    const v = JSON.parse(line.slice(WORKER_RESULT_MARKER.length)) as LlamaCppOutput | { error: string };
    if (typeof v !== 'object' || v === null) return { error: 'the worker printed a result that is not an object' };
    if ('error' in v && typeof v.error === 'string') return { error: v.error };
    if (!Array.isArray((v as LlamaCppOutput).results)) return { error: 'the worker result has no results array' };
    return v as LlamaCppOutput;
  } catch (e) {
    return { error: `the worker printed malformed JSON (${(e as Error).message})` };
  }
}

/** The compiled worker next to this module, or undefined when running from TypeScript sources. */
export function workerPath(): string | undefined {
  const here = fileURLToPath(import.meta.url);
  if (!here.endsWith('.js')) return undefined;
  const p = join(dirname(here), 'llama-cpp-worker.js');
  return existsSync(p) ? p : undefined;
}

/** Runs the jobs in a child process; `reason` says why there is no output. */
export async function runLlamaCppWorker(request: LlamaCppRequest, timeoutMs: number, dir: string = peersDir()): Promise<{ output?: LlamaCppOutput; reason?: string }> {
  const found = findNodeLlamaCpp(dir);
  if (!found.entry) return { reason: found.reason ?? 'node-llama-cpp not found' };
  const worker = workerPath();
  if (!worker) return { reason: 'the llama.cpp peer runs from the compiled package (dist/); run `npm run build:ts` first' };
  const r = await runProcess(process.execPath, [worker], { input: JSON.stringify({ entry: found.entry, ...request }), timeoutMs });
  if (r.error) return { reason: `could not start the llama.cpp worker: ${r.error.message}` };
  if (r.timedOut) return { reason: `llama.cpp did not finish within ${Math.round(timeoutMs / 1000)} s` };
  const parsed = parseWorkerOutput(r.stdout);
  if ('error' in parsed) {
    const exit = r.code !== 0 ? ` (exit ${r.code ?? r.signal})` : '';
    return { reason: `llama.cpp worker failed${exit}: ${parsed.error}${r.stderr.trim() ? `: ${tail(r.stderr, 4)}` : ''}` };
  }
  return { output: parsed };
}

// ------------------------------------------------------------ greedy agreement

export interface GreedyMatch {
  tokensIdentical: boolean;
  textIdentical: boolean;
  /** Index of the first generated token that differs (when they differ). */
  firstDifference?: number;
  /** For tables: "identical", or where it differs. */
  summary: string;
}

/** Compares canopy's greedy tokens and text with a peer's. */
export function compareGreedy(canopy: { tokens: number[]; text: string }, peer: { tokens: number[]; text: string }): GreedyMatch {
  const n = Math.max(canopy.tokens.length, peer.tokens.length);
  let first: number | undefined;
  for (let i = 0; i < n; i++) {
    if (canopy.tokens[i] !== peer.tokens[i]) {
      first = i;
      break;
    }
  }
  const tokensIdentical = first === undefined;
  const textIdentical = canopy.text === peer.text;
  const summary = tokensIdentical && textIdentical
    ? 'identical'
    : tokensIdentical
      ? 'same tokens, text differs'
      : `differs from token ${first} of ${n}${textIdentical ? ' (same text)' : ''}`;
  return { tokensIdentical, textIdentical, ...(first !== undefined ? { firstDifference: first } : {}), summary };
}

/** The llama.cpp peer's status for this run (`cpuBackend`: the bench runs on the CPU). */
export function llamaCppStatus(cpuBackend: boolean, dir: string = peersDir()): PeerStatus {
  if (!cpuBackend) return { name: 'llama.cpp', available: false, detail: 'CPU peer: it runs when the benchmark backend is the CPU (--backend cpu)' };
  const found = findNodeLlamaCpp(dir);
  if (!found.entry) return { name: 'llama.cpp', available: false, detail: found.reason ?? 'not found' };
  if (!workerPath()) return { name: 'llama.cpp', available: false, detail: 'the llama.cpp peer runs from the compiled package (dist/); run `npm run build:ts` first' };
  return { name: 'llama.cpp', available: true, detail: `node-llama-cpp ${found.version} from ${dir} (prebuilt binary, CPU, run in a child process)` };
}
