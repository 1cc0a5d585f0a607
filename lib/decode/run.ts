/**
 * The decode loop's shared state (lib/decode/loop.ts; its options and result: loop-options.ts):
 * what one generation's step functions share (Run), and what a step hands back (StepOutcome).
 */
import type { SamplerChain } from '../kernels/sampling.js';
import type { VerifyResult } from '../kernels/verify.js';
import type { KvCache } from '../model/kv-cache.js';
import type { Model } from '../model/model.js';
import type { ContextShifter } from './context-shift.js';
import type { GoodputController } from './controller.js';
import type { Emitter, Seq } from './emit.js';
import type { LogprobRecorder } from './logprobs.js';
import type { LoopOptions } from './loop-options.js';
import type { SpeculationMetrics } from './metrics.js';
import type { Proposer } from './types.js';

export type { LoopOptions, LoopSequenceResult, LoopResult } from './loop-options.js';

/** Everything one generation's steps share. */
export interface Run {
  o: LoopOptions;
  model: Model;
  proposer: Proposer | undefined;
  cache: KvCache;
  /** The most rows a sequence's cache may grow to (prompt, new tokens and one draft tree, within the context). */
  capacity: number;
  /** Prompt tokens every sequence shares from the cache's prefix slot 0 (0: none; lib/decode/shared-prefix.ts). */
  shared: number;
  seqs: Seq[];
  emitter: Emitter;
  metrics: SpeculationMetrics | undefined;
  controller: GoodputController | undefined;
  /** The sampler chain (lib/kernels/sampling.ts) every token choice of a chain step goes through. */
  chain: SamplerChain;
  /**
   * Steps go through the chain (lib/decode/sampled-step.ts) when sampling, or when bias or
   * penalties change the logits (greedy then takes the argmax of the processed logits);
   * otherwise greedy steps are one native call (greedy-step.ts).
   */
  chainStep: boolean;
  sampling: boolean;
  wantsHidden: boolean;
  passes: number;
  shifter: ContextShifter | undefined;
  /** With logprobs, chain steps bring every logits row to the host (StepOutcome.logits). */
  logprobs: LogprobRecorder | undefined;
}

/** The live sequences of a step: each one's state and index in the batch. */
export type Live = Array<{ st: Seq; s: number }>;

/**
 * What a step (greedy: lib/decode/greedy-step.ts; sampled: sampled-step.ts) found, per live
 * sequence; its rows are [pending, ...draft] per sequence, in order.
 */
export interface StepOutcome {
  /** Accepted draft nodes and the next token (-1: the logits were unusable) of each live sequence. */
  results: VerifyResult[];
  /** Final-normed hidden rows (host), when the proposer wants them. */
  hidden?: Float32Array;
  /** Target logits rows (host; chain steps, when a proposer learns from them or logprobs are recorded). */
  logits?: Float32Array;
  /** The proposer's wantsTopK largest logits' ids of every row. */
  topK?: Int32Array;
  /** Milliseconds in the target forward, and in verification + commit (0 when one native call did all). */
  forwardMs: number;
  verifyMs: number;
}
