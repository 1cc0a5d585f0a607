/** The goodput controller's options and observations (lib/decode/controller.ts). */
import type { CostCurve } from './controller-costs.js';

export interface GoodputOptions {
  /** Largest draft size (chain length or tree nodes) to consider. */
  maxDraft: number;
  /**
   * 'chain': drafts are chains, expected tokens from per-depth acceptance (every length 0..max
   * is a candidate); 'tree': expected tokens measured per node budget (0, 1, 2, 4, ... max).
   */
  mode: 'chain' | 'tree';
  /** Size of a sequence's first speculative step (default min(4, maxDraft)). */
  initial?: number;
  /** A sequence at size 0 probes the smallest size after this many steps (default 16; 0: never); doubled after each vain probe, up to 16x. */
  probeEvery?: number;
  /** Acceptance before any measurement (default 0.6: optimistic, so drafting is tried). */
  priorAcceptance?: number;
  /** Forgetting rate of the acceptance means per step (default 0.02). */
  alpha?: number;
  /**
   * Cost curves measured by earlier generations on the same target and proposer
   * (controller-memory.ts): this controller starts from them and keeps measuring into them.
   * Absent: fresh curves.
   */
  costs?: SharedCosts;
}

/**
 * What a controller learned, shared between generations (controller-memory.ts): a target
 * pass's cost by rows and the proposer's by draft size (ms), and the batch-wide acceptance
 * (per depth: decayed mean and weight; trees: emitted tokens per node budget).
 */
export interface SharedCosts {
  verify: CostCurve;
  draft: CostCurve;
  /** Per batch size: the plain step's cost when passes over more rows were measured (GoodputController.plainAt). */
  plainAt?: Map<number, CostCurve>;
  acceptance?: SharedAcceptance;
}

export interface SharedAcceptance {
  accept: number[];
  weight: number[];
  treeTokens: Map<number, TreeBucket>;
  /**
   * The probe gap a new sequence starts with: the smallest gap the last generation's sequences
   * had reached (vain probes double it), at most 4x probeEvery, so a proposer that never paid
   * here is not probed at the shortest gap again by every new generation. Absent: probeEvery.
   */
  probeGap?: number;
}

/** Trees of one node budget: emitted tokens and draft depth (decayed means), and their weight. */
export interface TreeBucket {
  tokens: number;
  depth: number;
  weight: number;
}

/** What one step did, for the controller. */
export interface StepObservation {
  /** Rows the target pass computed (pending tokens + draft nodes of every live sequence). */
  rows: number;
  /** The target pass: forward, verification and KV commit (ms). */
  verifyMs: number;
  /** The proposer's time (ms) and the largest budget it was given (0: not called). */
  draftMs: number;
  draftBudget: number;
  /** Per live sequence: its id, the budget it was given, the draft's size and depth, and how many nodes were accepted. */
  sequences: Array<{ sequence: number; budget: number; drafted: number; depth: number; accepted: number }>;
}

/** A sequence's state in the acceptance model (controller-acceptance.ts) and the probes. */
export interface SeqState {
  /** Per depth (0: the first draft token): conditional acceptance EMA and its weight. */
  accept: number[];
  weight: number[];
  /** Steps in a row at size 0. */
  idle: number;
  /** Steps at size 0 before the next probe, and whether the last size was a probe. */
  probeGap: number;
  probed: boolean;
  steps: number;
}
