/** Runs benchmark suites and collects their rows (used by `canopy bench`). */

import { ArgumentError } from '../errors.js';
import { type Backend, selectBackend } from '../native/backend.js';
import { type BenchRow, type MachineLimits, Progress, machineLimits } from './harness.js';
import { SUITES } from './suites/index.js';

export interface BenchOptions {
  /** Suite names; empty runs every suite (quick unless `full`). */
  suites: string[];
  backend: Backend;
  quick: boolean;
  /** Only steps whose label or suite contains this text. */
  filter?: string;
  /** Real model files for the decode suite. */
  model?: string;
  draft?: string;
}

export interface BenchReport {
  version: 1;
  date: string;
  backend: 'cpu' | 'cuda';
  fallbackReason?: string;
  limits: MachineLimits;
  rows: BenchRow[];
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  for (const s of options.suites) {
    if (!SUITES.some((x) => x.name === s)) {
      throw new ArgumentError('suite', `one of ${SUITES.map((x) => x.name).join(', ')}`, s);
    }
  }
  const placement = selectBackend(options.backend);
  const limits = await machineLimits(placement.device, options.quick);
  const ctx = {
    backend: placement.backend, device: placement.device, limits, quick: options.quick, budgetMs: options.quick ? 400 : 2000,
    ...(options.model ? { model: options.model } : {}),
    ...(options.draft ? { draft: options.draft } : {}),
  };
  const chosen = options.suites.length ? SUITES.filter((s) => options.suites.includes(s.name)) : SUITES;
  const steps = chosen.flatMap((s) =>
    s.plan(ctx).map((step) => ({ ...step, label: `${s.name}: ${step.label}` })),
  ).filter((step) => !options.filter || step.label.includes(options.filter));
  const progress = new Progress(steps.length);
  const rows: BenchRow[] = [];
  for (const step of steps) {
    progress.step(step.label);
    const row = await step.run();
    const { extraRows, ...first } = row as BenchRow & { extraRows?: BenchRow[] };
    rows.push(first, ...(extraRows ?? []));
  }
  progress.finish();
  return {
    version: 1,
    date: new Date().toISOString(),
    backend: placement.backend,
    ...(placement.fallbackReason ? { fallbackReason: placement.fallbackReason } : {}),
    limits,
    rows,
  };
}
