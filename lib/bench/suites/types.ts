import type { Device } from '../../native/backend.js';
import type { BenchRow, MachineLimits } from '../harness.js';
import type { TorchJob } from '../peers/torch.js';
import type { PeerStatus } from '../peers/types.js';

export interface SuiteContext {
  backend: 'cpu' | 'cuda';
  device: Device;
  limits: MachineLimits;
  quick: boolean;
  /** Time budget per measurement, ms. */
  budgetMs: number;
  /** Threads canopy's CPU kernels use (the llama.cpp peer is offered the same count, and 1). */
  threads: number;
  /** Peers of this run: available or why not (rows name the absent ones). */
  peers: { llamaCpp: PeerStatus; torch: PeerStatus };
  /** Real model files given with --model (besides stories260K, found by itself). */
  models: string[];
  /** A draft model (--draft) for the decode suite. */
  draft?: string;
  /** The --filter substring, when given: a step that --quick leaves out runs when the filter asks for it. */
  filter?: string;
}

/** A model pair of the decode suite (decode.ts) and its sampled rows (decode-sampled.ts). */
export interface DecodePair {
  /** Shown in the rows' config. */
  label: string;
  modelPath: string;
  draftPath?: string;
  batch: number;
  maxTokens: number;
  /** Rounds: each runs every variant once, autoregressive first (ratios are taken per round). */
  rounds: number;
}

/** One benchmark: one row. `torch` jobs are run up front on CUDA and their results attached to the row. */
export interface BenchStep {
  label: string;
  run: () => Promise<BenchRow>;
  torch?: TorchJob[];
  /** Why this step cannot run here (a model not found): reported instead of a row. */
  skip?: string;
}

/** A benchmark suite: a list of steps, each producing one row. */
export interface Suite {
  name: string;
  description: string;
  plan(ctx: SuiteContext): BenchStep[];
}
