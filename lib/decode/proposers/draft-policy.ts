/** The draft-chain proposer's options and draft-length policies (draft-chain.ts). */
import type { SamplerChainOptions } from '../../kernels/sampling.js';

/** Chooses the draft length of each step from what happened in the previous one. */
export interface DraftLengthPolicy {
  /** Draft length of a sequence's first step. */
  initial(sequence: number): number;
  /** Draft length after a step that drafted `drafted` tokens and had `accepted` of them accepted. */
  next(sequence: number, current: number, drafted: number, accepted: number): number;
}

/** The default: grow by one after a fully accepted draft, shrink by one otherwise, within [1, kMax]. */
export function growShrinkPolicy(k: number, kMax: number): DraftLengthPolicy {
  return {
    initial: () => k,
    next: (_seq, current, drafted, accepted) => (drafted > 0 && accepted === drafted ? Math.min(kMax, current + 1) : Math.max(1, current - 1)),
  };
}

export interface DraftChainOptions {
  /** Replaces the default grow/shrink policy (k and kMax then only bound it). */
  policy?: DraftLengthPolicy;
  /** Initial draft length (default 4). */
  k?: number;
  /** Longest draft (default 8). */
  kMax?: number;
  /** Keep k fixed (default false: adaptive). */
  fixed?: boolean;
  /** Stop drafting when the draft's top probability is below this (default 0; e.g. 0.3). */
  minProbability?: number;
  /** Sampling settings for q (temperature 0: greedy drafts). */
  temperature?: number;
  topK?: number;
  topP?: number;
  sampler?: SamplerChainOptions; // the rest of the chain (minP, penalties, logitBias), as generate() takes them
  seed?: number;
}
