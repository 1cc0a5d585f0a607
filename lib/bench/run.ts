/**
 * Runs benchmark suites and collects their rows (used by `canopy bench`): the machine and
 * its limits, the peers present (or why not), one row per step with the peak memory it
 * used, steps skipped (a model not found) and steps that failed (the run goes on).
 */

import { ArgumentError } from '../errors.js';
import { type Backend, deviceIndex, selectBackend } from '../native/backend.js';
import { native } from '../native/loader.js';
import { type BenchRow, type MachineLimits, type PeerResult, Progress, bestLimits, machineLimits } from './harness.js';
import { type MachineInfo, cpuSnapshot, machineInfo, otherCpuShare } from './machine.js';
import { MemorySampler } from './memory.js';
import { llamaCppStatus, peersDir } from './peers/llama-cpp.js';
import { type TorchJob, type TorchOutput, runTorchPeers } from './peers/torch.js';
import type { PeerStatus } from './peers/types.js';
import { SUITES } from './suites/index.js';
import type { BenchStep, SuiteContext } from './suites/types.js';

export interface BenchOptions {
  /** Suite names; empty runs every suite (quick unless `full`). */
  suites: string[];
  backend: Backend;
  quick: boolean;
  /** Only steps whose label or suite contains this text. */
  filter?: string;
  /** Real model files to add greedy rows for (besides stories260K, found by itself). */
  models?: string[];
  /** Where the llama.cpp peer is installed (default peersDir()). */
  peersDir?: string;
  /** Python for the PyTorch peers (default CANOPY_PYTHON or python3). */
  python?: string;
  /** A draft model for the decode suite's speculative and tree rows. */
  draft?: string;
}

export interface BenchReport {
  version: 2;
  date: string;
  quick: boolean;
  backend: 'cpu' | 'cuda';
  fallbackReason?: string;
  machine: MachineInfo;
  limits: MachineLimits;
  /** Each peer: measured in this run, or why not. */
  peers: PeerStatus[];
  rows: BenchRow[];
  /** Steps that could not run here (e.g. a model not found), and why. */
  skipped: Array<{ label: string; reason: string }>;
  /** Steps that failed; the others still ran. */
  errors: Array<{ label: string; error: string }>;
  /** Wall time of the whole run, ms. */
  durationMs: number;
  /**
   * Share of the machine's CPU that other processes used during the run (0..1; Linux only):
   * figures taken while other work runs are noisy, and this says how much there was.
   */
  otherCpuShare?: number;
}

/** The PyTorch figures for a row's jobs, as peers (speedup against the row's median). */
export function torchPeersFor(jobs: TorchJob[], out: TorchOutput, canopyMedianMs: number): PeerResult[] {
  if (!out.ok) return [{ name: 'PyTorch', absent: out.reason }];
  const ids = new Set(jobs.map((j) => j.id));
  const peers: PeerResult[] = [];
  for (const r of out.results) {
    if (!ids.has(r.id)) continue;
    if (r.medianMs === undefined) peers.push({ name: r.peer, absent: r.error ?? 'no figure' });
    else peers.push({ name: r.peer, medianMs: r.medianMs, speedup: r.medianMs / canopyMedianMs, ...(r.notes ? { notes: r.notes } : {}) });
  }
  if (peers.length === 0) peers.push({ name: 'PyTorch', absent: 'torch_peers.py returned nothing for this row' });
  return peers;
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const start = performance.now();
  const cpuStart = cpuSnapshot();
  for (const s of options.suites) {
    if (!SUITES.some((x) => x.name === s)) {
      throw new ArgumentError('suite', `one of ${SUITES.map((x) => x.name).join(', ')}`, s);
    }
  }
  const placement = selectBackend(options.backend);
  const machine = machineInfo();
  const limits = await machineLimits(placement.device, options.quick);
  const cpu = placement.backend === 'cpu';
  const dir = options.peersDir ?? peersDir();
  const peers = {
    llamaCpp: llamaCppStatus(cpu, dir),
    torch: { name: 'PyTorch', available: false, detail: 'GPU peer: it runs with the CUDA backend (this run uses the CPU)' } as PeerStatus,
  };
  const ctx: SuiteContext = {
    backend: placement.backend,
    device: placement.device,
    limits,
    quick: options.quick,
    budgetMs: options.quick ? 400 : 2000,
    threads: native().cpuInfo().threads,
    peers,
    models: options.models ?? [],
    ...(options.draft ? { draft: options.draft } : {}),
    ...(options.filter ? { filter: options.filter } : {}),
  };
  const chosen = options.suites.length ? SUITES.filter((s) => options.suites.includes(s.name)) : SUITES;
  const all: BenchStep[] = chosen
    .flatMap((s) => s.plan(ctx).map((step) => ({ ...step, label: `${s.name}: ${step.label}` })))
    .filter((step) => !options.filter || step.label.includes(options.filter));
  const skipped = all.filter((s) => s.skip !== undefined).map((s) => ({ label: s.label, reason: s.skip! }));
  const steps = all.filter((s) => s.skip === undefined);
  const torchJobs = steps.flatMap((s) => s.torch ?? []);
  const withTorch = !cpu && torchJobs.length > 0;
  const progress = new Progress(steps.length + (withTorch ? 1 : 0));

  let torch: TorchOutput | undefined;
  if (!cpu) {
    if (withTorch) {
      progress.step('peers: PyTorch (torch_peers.py)');
      torch = await runTorchPeers(torchJobs, {
        device: deviceIndex(placement.device),
        budgetMs: ctx.budgetMs,
        timeoutMs: options.quick ? 300_000 : 1_200_000,
        ...(options.python ? { python: options.python } : {}),
      });
      peers.torch = torch.ok
        ? { name: 'PyTorch', available: true, detail: `torch ${torch.torch}${torch.transformers ? `, transformers ${torch.transformers}` : ''}${torch.cuda ? `, CUDA ${torch.cuda}` : ''} on ${torch.device ?? 'cuda'}` }
        : { name: 'PyTorch', available: false, detail: torch.reason };
    } else {
      peers.torch = { name: 'PyTorch', available: false, detail: 'no row of this run has a PyTorch counterpart' };
    }
  }

  const rows: BenchRow[] = [];
  const errors: BenchReport['errors'] = [];
  const sampler = new MemorySampler(cpu ? undefined : deviceIndex(placement.device));
  for (const s of steps) {
    progress.step(s.label);
    sampler.start();
    try {
      const { extraRows, ...row } = (await s.run()) as BenchRow & { extraRows?: BenchRow[] };
      row.memory = sampler.stop();
      if (s.torch?.length && torch) row.peers.push(...torchPeersFor(s.torch, torch, row.timing.medianMs));
      // A step may return several rows (the decode suite: one per strategy).
      rows.push(row, ...(extraRows ?? []).map((r) => ({ ...r, memory: row.memory })));
    } catch (e) {
      sampler.stop();
      errors.push({ label: s.label, error: e instanceof Error ? e.message : String(e) });
    }
  }
  // Measured again after the rows: the better figure is kept (and the rows' limits with it).
  const limitsAfter = rows.length ? bestLimits(limits, await machineLimits(placement.device, options.quick), rows) : limits;
  progress.finish();
  return {
    version: 2,
    date: new Date().toISOString(),
    quick: options.quick,
    backend: placement.backend,
    ...(placement.fallbackReason ? { fallbackReason: placement.fallbackReason } : {}),
    machine,
    limits: limitsAfter,
    peers: [peers.llamaCpp, peers.torch],
    rows,
    skipped,
    errors,
    durationMs: performance.now() - start,
    ...(() => {
      const cpuEnd = cpuSnapshot();
      return cpuStart && cpuEnd ? { otherCpuShare: otherCpuShare(cpuStart, cpuEnd) } : {};
    })(),
  };
}
