import type { Device } from '../../native/backend.js';
import type { BenchRow, MachineLimits } from '../harness.js';

export interface SuiteContext {
  backend: 'cpu' | 'cuda';
  device: Device;
  limits: MachineLimits;
  quick: boolean;
  /** Time budget per measurement, ms. */
  budgetMs: number;
  /** Model files for suites that run real models (`canopy bench decode --model M --draft D`). */
  model?: string;
  draft?: string;
}

/** A benchmark suite: a list of steps, each producing one row. */
export interface Suite {
  name: string;
  description: string;
  plan(ctx: SuiteContext): Array<{ label: string; run: () => Promise<BenchRow> }>;
}
