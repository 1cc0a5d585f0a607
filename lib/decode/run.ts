/**
 * The decode loop's shared types (lib/decode/loop.ts): its options and result, the state one
 * generation's step functions share (Run), and what a step hands back (StepOutcome).
 */
import type { CanopyError } from '../errors.js';
import type { SamplerChain, SamplerChainOptions } from '../kernels/sampling.js';
import type { VerifyResult, verifySamplingBatch } from '../kernels/verify.js';
import type { KvCache, KvCacheDtype } from '../model/kv-cache.js';
import type { Model } from '../model/model.js';
import type { GoodputController, GoodputOptions } from './controller.js';
import type { Emitter, FinishReason, Seq, StreamingTokenizer } from './emit.js';
import type { SpeculationMetrics } from './metrics.js';
import type { Proposer, SpeculationStats } from './types.js';

/** Sampling: the sampler chain's settings (temperature, topK, topP required; the rest optional). */
export interface LoopOptions extends SamplerChainOptions {
  model: Model;
  prompts: number[][];
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  eos: Set<number>;
  stops: string[];
  tokenizer?: StreamingTokenizer;
  signal?: AbortSignal;
  onText?: (piece: string, token: number, sequence: number) => void;
  proposer?: Proposer;
  /**
   * Draft sizes chosen each step by the goodput controller (lib/decode/controller.ts), per
   * sequence, 0 included. Absent: every step offers the proposer its whole budget (a fixed k).
   */
  goodput?: GoodputOptions;
  /** KV cache storage: f32 (default), f16, bf16, or quantized int8 / int4 / fp8. */
  cacheDtype?: KvCacheDtype;
  /**
   * The most tokens a sequence may hold (prompt + generated): the model's context length
   * (default model.config.maxSeqLen). A sequence that reaches it finishes with 'context'.
   */
  contextLength?: number;
  /**
   * Continue in a KV cache the caller owns (chat sessions; one sequence): its first `reuse`
   * rows already hold the first `reuse` tokens of prompts[0] (reuse < the prompt's length), so
   * only the rest is prefilled. Rows past `reuse` are dropped first; the cache is grown as
   * needed (float caches) and not disposed.
   */
  session?: { cache: KvCache; reuse: number };
  /**
   * Replaces the sampling verifier (tests only: negative controls such as "always accept"
   * must make the distribution tests fail). Arguments as verifySamplingBatch's.
   */
  samplingVerifier?: typeof verifySamplingBatch;
}

export interface LoopSequenceResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  /** Why the sequence ended with finishReason 'error'. */
  error?: CanopyError;
}

export interface LoopResult {
  sequences: LoopSequenceResult[];
  targetPasses: number;
  timeToFirstTokenMs: number;
  decodeMs: number;
  totalMs: number;
  speculation?: SpeculationStats;
}

/** Everything one generation's steps share. */
export interface Run {
  o: LoopOptions;
  model: Model;
  proposer: Proposer | undefined;
  cache: KvCache;
  /** The most rows a sequence's cache may grow to (prompt, new tokens and one draft tree, within the context). */
  capacity: number;
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
  /** Target logits rows (host; sampling steps only). */
  logits?: Float32Array;
  /** The proposer's wantsTopK largest logits' ids of every row. */
  topK?: Int32Array;
  /** Milliseconds in the target forward, and in verification + commit (0 when one native call did all). */
  forwardMs: number;
  verifyMs: number;
}
