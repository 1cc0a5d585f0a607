/**
 * The decode loop's options and result (lib/decode/loop.ts).
 */
import type { CanopyError } from '../errors.js';
import type { SamplerChainOptions } from '../kernels/sampling.js';
import type { verifySamplingBatch } from '../kernels/verify.js';
import type { KvCache, KvCacheDtype } from '../model/kv-cache.js';
import type { Model } from '../model/model.js';
import type { GoodputOptions } from './controller.js';
import type { FinishReason, StreamingTokenizer } from './emit.js';
import type { TokenLogprob } from './logprobs.js';
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
   * Share the prompts' longest common prefix when it has at least this many tokens (and there
   * are two sequences or more, no session, no context shift): it is prefilled once into a
   * prefix slot of the cache and every sequence attends to it there (lib/decode/shared-prefix.ts).
   * Absent: forked copies.
   */
  sharedPrefix?: number;
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
   * must make the distribution tests fail). Arguments as verifySamplingBatch's. Sampled tree
   * steps then run as separate calls (lib/decode/sampled-verify.ts) instead of the native step.
   */
  samplingVerifier?: typeof verifySamplingBatch;
  /**
   * Context shift (lib/decode/context-shift.ts): a sequence whose cache reaches the context
   * keeps its first keep[s] tokens, drops the oldest half of the rest and continues.
   */
  contextShift?: { keep: number[] };
  /** Record each emitted token's logprob and top-n alternatives (lib/decode/logprobs.ts). */
  logprobs?: { n: number; onEntry?: (sequence: number, entry: TokenLogprob) => void };
}

export interface LoopSequenceResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  /** Why the sequence ended with finishReason 'error'. */
  error?: CanopyError;
  /** With contextShift: the shifts made, and the tokens the cache rows hold at the end. */
  contextShifts?: number;
  cachedTokens?: number[];
  /** With logprobs: one entry per token of `tokens`. */
  logprobs?: TokenLogprob[];
}

export interface LoopResult {
  sequences: LoopSequenceResult[];
  targetPasses: number;
  timeToFirstTokenMs: number;
  decodeMs: number;
  totalMs: number;
  speculation?: SpeculationStats;
}
