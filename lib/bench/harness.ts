/**
 * Benchmark harness for `canopy bench`: timing (warm-up excluded, repeats sized
 * by a time budget, median and spread), machine limits, rows and tables.
 * Benchmarks report speed; correctness lives in the tests.
 */

import { native } from '../native/loader.js';
import { cudaInfo, deviceIndex, type Device } from '../native/backend.js';
import type { RowMemory } from './memory.js';

export interface Timing {
  /** Median wall time of one call, ms. */
  medianMs: number;
  /** 10th and 90th percentile, ms. */
  p10Ms: number;
  p90Ms: number;
  repeats: number;
}

export interface TimeOptions {
  /** Time budget for the measured repeats, ms (after warm-up). */
  budgetMs: number;
  warmup?: number;
  minRepeats?: number;
  maxRepeats?: number;
}

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))));
  return sorted[i]!;
}

/** Times an async operation: `warmup` untimed calls, then repeats until the budget is spent. */
export async function time(fn: () => Promise<unknown>, options: TimeOptions): Promise<Timing> {
  const warmup = options.warmup ?? 1;
  const minRepeats = options.minRepeats ?? 3;
  const maxRepeats = options.maxRepeats ?? 200;
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < maxRepeats && (samples.length < minRepeats || performance.now() - start < options.budgetMs)) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return { medianMs: percentile(samples, 0.5), p10Ms: percentile(samples, 0.1), p90Ms: percentile(samples, 0.9), repeats: samples.length };
}

export type Metric = 'GB/s' | 'GFLOP/s' | 'TFLOP/s' | 'tokens/s';

/** A peer measured on the same configuration in the same run (or why it was not). */
export interface PeerResult {
  name: string;
  /** The peer's median, in the row's unit (ms per call, or per generated token for generation rows). */
  medianMs?: number;
  /** peer median / canopy median: > 1 means canopy is faster. */
  speedup?: number;
  /** Extra figures shown in the table: tokens/s, TTFT, whether its greedy output matches canopy's, threads used. */
  notes?: Record<string, string | number>;
  /** Further figures kept out of the table (JSON and CSV only). */
  details?: Record<string, string | number>;
  /** Why the peer has no figure for this row (not installed, a backend refusing the shape, ...). */
  absent?: string;
}

export interface BenchRow {
  suite: string;
  name: string;
  backend: 'cpu' | 'cuda';
  config: Record<string, string | number>;
  timing: Timing;
  metric: Metric;
  /** Achieved value of `metric`, from `formula`. */
  value: number;
  /** The formula the value comes from, as text. */
  formula: string;
  /** The machine limit it is compared to (same unit), and what that limit is. */
  limit?: { value: number; what: string };
  peers: PeerResult[];
  /** Extra figures (e.g. ratio to a decode step). */
  notes?: Record<string, string | number>;
  /** Peak memory while the row ran (set by the runner). */
  memory?: RowMemory;
}

export interface MachineLimits {
  backend: 'cpu' | 'cuda';
  device: Device;
  /** Memory copy bandwidth, GB/s (read + write bytes per second). */
  copyGBps: number;
  /** CPU: measured read bandwidth, GB/s. */
  readGBps?: number;
  /** Peak FLOP/s in GFLOP/s (CPU: measured FMA peak; CUDA: computed tensor-core peak for 16-bit inputs). */
  peakGFlops?: number;
  description: string;
  /** How the measured figures were taken (e.g. "best of 2 measurements: before and after the rows"). */
  measured?: string;
}

/**
 * The better of two measurements of the same machine's limits (each measured figure's
 * maximum: other work on the machine only ever lowers a measurement), with the rows'
 * limits updated to match. `canopy bench` measures before and after its rows, so that a
 * burst of other work during one measurement does not leave rows above 100% of a limit.
 */
export function bestLimits(a: MachineLimits, b: MachineLimits, rows: BenchRow[] = []): MachineLimits {
  const copy = Math.max(a.copyGBps, b.copyGBps);
  const read = a.readGBps !== undefined || b.readGBps !== undefined ? Math.max(a.readGBps ?? 0, b.readGBps ?? 0) : undefined;
  const peak = a.peakGFlops !== undefined || b.peakGFlops !== undefined ? Math.max(a.peakGFlops ?? 0, b.peakGFlops ?? 0) : undefined;
  const pick = (x: MachineLimits) => (x.copyGBps === copy ? x : undefined);
  const base = pick(a) ?? pick(b) ?? a;
  const description = base.description
    .replace(/copy [\d.]+ GB\/s/, `copy ${copy.toFixed(a.backend === 'cpu' ? 1 : 0)} GB/s`)
    .replace(/read [\d.]+ GB\/s/, read !== undefined ? `read ${read.toFixed(1)} GB/s` : '$&')
    .replace(/FMA peak \d+ GFLOP\/s/, peak !== undefined ? `FMA peak ${peak.toFixed(0)} GFLOP/s` : '$&');
  const limits: MachineLimits = {
    ...base,
    copyGBps: copy,
    ...(read !== undefined ? { readGBps: read } : {}),
    ...(peak !== undefined ? { peakGFlops: peak } : {}),
    description,
    measured: 'best of two measurements: before and after the rows',
  };
  for (const r of rows) {
    if (!r.limit) continue;
    if (r.limit.what === 'copy bandwidth') r.limit.value = copy;
    else if (r.limit.what === 'FMA peak' && peak !== undefined) r.limit.value = peak;
    else if (r.limit.what === 'tensor peak' && peak !== undefined) r.limit.value = peak / 1000;
  }
  return limits;
}

// Dense 16-bit tensor-core FLOP per clock per SM by compute capability (A100: 312 TFLOP/s,
// H100 SXM: 989 TFLOP/s at their boost clocks).
const TENSOR_FLOPS_PER_CLOCK_PER_SM: Record<string, number> = { '8.0': 2048, '9.0': 4096 };

export async function machineLimits(device: Device, quick: boolean): Promise<MachineLimits> {
  if (device === 'cpu') {
    const m = await native().measureMachine(quick ? 128 * 2 ** 20 : 512 * 2 ** 20, quick ? 2 : 4);
    return {
      backend: 'cpu',
      device,
      copyGBps: m.copyGBps,
      readGBps: m.readGBps,
      peakGFlops: m.peakGFlops,
      description: `CPU, ${m.threads} threads: measured copy ${m.copyGBps.toFixed(1)} GB/s, read ${m.readGBps.toFixed(1)} GB/s, FMA peak ${m.peakGFlops.toFixed(0)} GFLOP/s (${m.vectorBits}-bit vectors)`,
    };
  }
  const idx = deviceIndex(device);
  const copy = await native().measureCudaCopy(idx, quick ? 512 * 2 ** 20 : 2048 * 2 ** 20, quick ? 3 : 10);
  const dev = cudaInfo().devices[idx]!;
  const perClock = TENSOR_FLOPS_PER_CLOCK_PER_SM[dev.computeCapability];
  const peak = perClock && dev.clockKHz ? (perClock * dev.multiprocessors * dev.clockKHz * 1e3) / 1e9 : undefined;
  return {
    backend: 'cuda',
    device,
    copyGBps: copy,
    ...(peak ? { peakGFlops: peak } : {}),
    description: `${dev.name} (cc ${dev.computeCapability}, ${dev.multiprocessors} SMs): measured copy ${copy.toFixed(0)} GB/s${peak ? `, 16-bit tensor peak ${(peak / 1000).toFixed(0)} TFLOP/s (computed)` : ''}`,
  };
}

/** A progress line on stderr (only when stderr is a terminal or CANOPY_PROGRESS=1). */
export class Progress {
  #done = 0;
  readonly #enabled = process.stderr.isTTY === true || process.env.CANOPY_PROGRESS === '1';
  constructor(readonly total: number) {}
  step(label: string): void {
    this.#done++;
    if (!this.#enabled) return;
    const width = 24;
    const filled = Math.round((this.#done / Math.max(1, this.total)) * width);
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.#done}/${this.total} ${label}`.padEnd(100).slice(0, 100));
  }
  finish(): void {
    if (this.#enabled) process.stderr.write('\r' + ' '.repeat(100) + '\r');
  }
}

/** A number for a table: integers as they are; 3 significant digits below 1, 2 decimals below 100, fewer above. */
export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(digits);
}

/** A peer's cell text: "llama.cpp 14.3 ms (0.38x; tokens/s 70; greedy identical)" or "llama.cpp absent". */
export function formatPeer(p: PeerResult): string {
  if (p.medianMs === undefined) return `${p.name} absent`;
  const notes = Object.entries(p.notes ?? {}).map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v) : v}`);
  const speedup = p.speedup !== undefined ? `${fmt(p.speedup, 2)}x` : undefined;
  const inner = [speedup, ...notes].filter(Boolean).join(', ');
  return `${p.name} ${fmt(p.medianMs)} ms${inner ? ` (${inner})` : ''}`;
}

/** The table printed at the end of a run (rows only; see report.ts for the whole report). */
export function formatTable(rows: BenchRow[], limits: MachineLimits): string {
  const header = ['suite', 'benchmark', 'config', 'median ms', 'spread', 'achieved', '% of limit', 'peak RSS (+ in row)', 'peers (speedup = peer time / canopy time)', 'notes'];
  const body = rows.map((r) => [
    r.suite,
    r.name,
    Object.entries(r.config)
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
    fmt(r.timing.medianMs),
    `±${fmt(((r.timing.p90Ms - r.timing.p10Ms) / 2 / r.timing.medianMs) * 100, 2)}%`,
    `${fmt(r.value)} ${r.metric}`,
    r.limit ? `${fmt((r.value / r.limit.value) * 100, 2)}% of ${r.limit.what}` : '',
    r.memory ? `${fmt(r.memory.peakRssMiB)} MiB (+${fmt(Math.max(0, r.memory.peakRssMiB - r.memory.startRssMiB))})${r.memory.peakDeviceMiB !== undefined ? `, device ${fmt(r.memory.peakDeviceMiB)} MiB` : ''}` : '',
    r.peers.map(formatPeer).join('; '),
    Object.entries(r.notes ?? {})
      .map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v) : v}`)
      .join('; '),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const formulas = [...new Set(rows.map((r) => `${r.name}: ${r.metric} = ${r.formula}`))];
  return [
    `machine: ${limits.description}`,
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
    '',
    'formulas:',
    ...formulas.map((f) => `  ${f}`),
  ].join('\n');
}
