/**
 * One validation pass over generate() / stream() options, before anything is allocated or
 * run: every number finite and in range, counts bounded, callbacks functions, the signal an
 * AbortSignal, the tokenizer a tokenizer. Each failure is an ArgumentError naming the option,
 * what was expected and what was received. (Memory: the KV cache checks its own size and
 * throws OutOfMemoryError before allocating, lib/model/kv-cache.ts.)
 */

import { ArgumentError } from './errors.js';
import { MAX_LOGPROBS } from './decode/logprobs.js';
import type { SamplingOptions } from './decode/sampling.js';
import type { Proposer } from './decode/types.js';
import type { PredictionHeads } from './model/heads.js';
import type { KvCacheDtype } from './model/kv-cache.js';
import type { Model } from './model/model.js';

/** Built-in decoding strategies (a Proposer object plugs in its own). */
export const STRATEGIES = ['autoregressive', 'speculative', 'tree', 'lookup', 'ngram-tree', 'token-recycling', 'jacobi', 'heads'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

/** What generate needs of a tokenizer (lib/model/tokenizer implements it). */
export interface TextTokenizer {
  readonly bosId?: number;
  readonly eosIds: number[];
  encode(text: string, options?: { bos?: boolean; eos?: boolean }): number[];
  decode(ids: ArrayLike<number>): string;
  /** context: the ids before the generated ones (the prompt), so the first piece decodes as it would in place. */
  streamDecoder(context?: ArrayLike<number>): { push(id: number): string; flush(): string };
}

export interface GenerateOptions extends SamplingOptions {
  model: Model;
  tokenizer?: TextTokenizer;
  /** A prompt, or several (one batch). Needs a tokenizer. */
  prompt?: string | string[];
  /** Prompt token ids instead of text (one sequence or a batch). */
  tokens?: number[] | number[][];
  /** Prepend BOS to text prompts (default true when the tokenizer has one). */
  addBos?: boolean;
  /** KV cache storage (default f32): f16, bf16, or quantized int8, int4 (KIVI), fp8 (CUDA). */
  kvDtype?: KvCacheDtype;
  /** Samples per prompt (default 1): n > 1 draws n sequences from one prompt as a batch (seeds seed, seed + 1, ...). */
  n?: number;
  /**
   * Shared prompt prefixes (default true: at least SHARED_PREFIX_MIN_TOKENS = 32 tokens): when
   * every prompt of a batch (n samples of one prompt, or prompts with a common system prompt)
   * starts with the same tokens, at least this many, the KV cache holds them once and every
   * sequence attends to them through prefix attention inside the forward pass instead of a
   * forked copy (KvCache.attachPrefix). A number sets the minimum; false always forks.
   * Greedy output is the same either way; logits agree to rounding (the summation order of
   * attention changes). Not with a session or contextShift (they rewrite the prompt's rows).
   */
  sharedPrefix?: boolean | number;
  /** New tokens at most (default 128); generation also ends at the model's context length (finishReason 'context'). */
  maxTokens?: number;
  /**
   * A prompt longer than the context (model.config.maxSeqLen, less one token to generate) is
   * an error unless this is true: then its oldest tokens are dropped (a leading BOS is kept).
   */
  truncatePrompt?: boolean;
  /**
   * Context shift (default false): when a sequence reaches the model's context length, keep its
   * first `keep` tokens (default: the leading BOS, if any), drop the oldest half of the rest and
   * continue, as llama.cpp's n_keep / n_discard. The kept tokens are prefilled afresh at their
   * new positions (lib/decode/context-shift.ts), so what follows a shift equals a fresh
   * generate() on them. Not with the draft-model or heads strategies ('speculative', 'tree', 'heads').
   */
  contextShift?: boolean | { keep: number };
  /**
   * Per emitted token, its logprob and the `logprobs` most likely alternatives (0 to 20; 0: the
   * token's own logprob only), from softmax(logits / temperature) (greedy: the raw softmax):
   * GenerateResult.logprobs, and each streamed piece's `logprobs`. Default: none.
   */
  logprobs?: number;
  /** Stop when the text ends with one of these strings (the stop string is kept out of the text). */
  stop?: string[];
  /**
   * Stop at end of generation (default true): the tokenizer's eosIds (EOS, EOT, ...) and BOS
   * (a model that emits BOS has begun a new document; llama2.c's story models end that way).
   */
  stopAtEos?: boolean;
  /** CPU threads for the CPU kernels from now on (process-wide, as setThreads); default: as it is. */
  threads?: number;
  signal?: AbortSignal;
  /** Called with each new piece of text (and token id) as it is decoded. */
  onText?: (piece: string, token: number, sequence: number) => void;
  /**
   * Decoding strategy (default 'speculative' when a draft is given, else 'autoregressive'):
   *   speculative      a draft model proposes k tokens (chain), adaptive k
   *   tree             a draft model proposes a dynamic top-k tree (EAGLE-2 style)
   *   lookup           prompt lookup: the continuation of the longest earlier n-gram match
   *   ngram-tree       several lookup continuations merged into a tree
   *   token-recycling  a tree from the target's own recorded top-k successors
   *   jacobi           blockwise: a guessed block iterated to the model's fixed point, plus an n-gram pool
   *   heads            blockwise: prediction heads on the target's hidden state propose a tree
   * Every strategy is lossless: greedy output equals autoregressive greedy output, and
   * sampling draws from the target's distribution.
   */
  strategy?: StrategyName | Proposer;
  /** The draft model for 'speculative' and 'tree' (same tokenizer as the target). */
  draft?: Model;
  /** Prediction heads for strategy 'heads' (loadHeads / trainHeads). */
  heads?: PredictionHeads;
  speculation?: {
    /** Draft length ('speculative', 'lookup', 'jacobi'): the first step's size, or every step's with `fixed`. */
    k?: number;
    /** Longest draft the goodput controller may choose ('speculative': default 8). */
    kMax?: number;
    /** Keep k (or the node budget) fixed instead of the goodput controller's choice. */
    fixed?: boolean;
    /** Node budget of tree strategies (the controller's largest). */
    nodes?: number;
    /**
     * Draft sizes chosen each step (0 included) for the most tokens per second, from costs and
     * acceptance measured as it runs (default true; lib/decode/controller.ts). false: as `fixed`.
     */
    autoDisable?: boolean;
  };
}


/** Largest batch: prompts x n samples (the KV cache holds one region per sequence). */
export const MAX_SEQUENCES = 4096;
/** The shortest common prompt prefix a batch shares by default (GenerateOptions.sharedPrefix). */
export const SHARED_PREFIX_MIN_TOKENS = 32;
/** Largest draft length ('speculative' k / kMax, 'lookup' and 'jacobi' k). */
export const MAX_SPECULATION_K = 256;
/** Largest node budget of the tree strategies. */
export const MAX_SPECULATION_NODES = 4096;

function integerIn(name: string, value: unknown, lo: number, hi: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) {
    throw new ArgumentError(name, `an integer in [${lo}, ${hi}]`, value);
  }
}

function optionalBoolean(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') throw new ArgumentError(name, 'a boolean', value);
}

/** Checks the options generate() and stream() share (the sampling ones are checked by checkSamplingOptions). */
export function validateGenerateOptions(o: GenerateOptions): void {
  if (o === null || typeof o !== 'object') throw new ArgumentError('options', 'an object', o);
  if (o.n !== undefined) integerIn('n', o.n, 1, MAX_SEQUENCES);
  if (o.maxTokens !== undefined) integerIn('maxTokens', o.maxTokens, 0, 2 ** 31 - 1);
  if (o.onText !== undefined && typeof o.onText !== 'function') throw new ArgumentError('onText', 'a function (piece, token, sequence)', o.onText);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new ArgumentError('signal', 'an AbortSignal', o.signal);
  optionalBoolean('addBos', o.addBos);
  optionalBoolean('stopAtEos', o.stopAtEos);
  if (o.tokenizer !== undefined) {
    const t = o.tokenizer as unknown as Record<string, unknown> | null;
    const missing =
      t === null || typeof t !== 'object'
        ? ['encode', 'decode', 'streamDecoder', 'eosIds']
        : [
            ...['encode', 'decode', 'streamDecoder'].filter((m) => typeof t[m] !== 'function'),
            ...(Array.isArray(t.eosIds) ? [] : ['eosIds']),
          ];
    if (missing.length) {
      throw new ArgumentError('tokenizer', `a tokenizer (encode, decode, streamDecoder, eosIds); missing ${missing.join(', ')}`, o.tokenizer);
    }
  }
  if (o.prompt !== undefined) {
    if (Array.isArray(o.prompt)) {
      if (o.prompt.length === 0 || o.prompt.length > MAX_SEQUENCES) {
        throw new ArgumentError('prompt', `a string or an array of 1 to ${MAX_SEQUENCES} strings`, o.prompt);
      }
    } else if (typeof o.prompt !== 'string') {
      throw new ArgumentError('prompt', 'a string or an array of strings', o.prompt);
    }
  }
  if (o.tokens !== undefined) {
    if (!Array.isArray(o.tokens) || o.tokens.length === 0) {
      throw new ArgumentError('tokens', 'a non-empty array of token ids, or an array of such arrays', o.tokens);
    }
    if (Array.isArray(o.tokens[0]) && o.tokens.length > MAX_SEQUENCES) {
      throw new ArgumentError('tokens', `at most ${MAX_SEQUENCES} sequences`, o.tokens.length);
    }
  }
  const batch = Array.isArray(o.prompt) ? o.prompt.length : Array.isArray(o.tokens) && Array.isArray(o.tokens[0]) ? o.tokens.length : 1;
  if (batch * (o.n ?? 1) > MAX_SEQUENCES) {
    throw new ArgumentError('n', `at most ${Math.floor(MAX_SEQUENCES / batch)} samples for ${batch} prompts (${MAX_SEQUENCES} sequences in all)`, o.n);
  }
  if (o.stop !== undefined && (!Array.isArray(o.stop) || o.stop.some((s) => typeof s !== 'string' || s.length === 0))) {
    throw new ArgumentError('stop', 'an array of non-empty strings', o.stop);
  }
  if (o.logprobs !== undefined) integerIn('logprobs', o.logprobs, 0, MAX_LOGPROBS);
  if (o.sharedPrefix !== undefined && typeof o.sharedPrefix !== 'boolean') integerIn('sharedPrefix', o.sharedPrefix, 1, 2 ** 31 - 1);
  const cs = o.contextShift as unknown;
  if (cs !== undefined && typeof cs !== 'boolean') {
    if (cs === null || typeof cs !== 'object') throw new ArgumentError('contextShift', 'a boolean or { keep: number }', cs);
    integerIn('contextShift.keep', (cs as { keep?: unknown }).keep, 0, 2 ** 31 - 1);
  }
  if (cs) {
    const strategy = o.strategy ?? (o.draft ? 'speculative' : 'autoregressive');
    if (strategy === 'speculative' || strategy === 'tree' || strategy === 'heads') {
      throw new ArgumentError('strategy', "'autoregressive', 'lookup', 'ngram-tree', 'token-recycling', 'jacobi' or a Proposer with contextShift (draft models and heads keep state a shift would break)", strategy);
    }
  }
  const s = o.speculation as Record<string, unknown> | undefined | null;
  if (s !== undefined) {
    if (s === null || typeof s !== 'object') throw new ArgumentError('speculation', 'an object {k?, kMax?, fixed?, nodes?, autoDisable?}', s);
    if (s.k !== undefined) integerIn('speculation.k', s.k, 1, MAX_SPECULATION_K);
    if (s.kMax !== undefined) integerIn('speculation.kMax', s.kMax, 1, MAX_SPECULATION_K);
    if (typeof s.k === 'number' && typeof s.kMax === 'number' && s.k > s.kMax) {
      throw new ArgumentError('speculation.k', `at most speculation.kMax (${s.kMax})`, s.k);
    }
    if (s.nodes !== undefined) integerIn('speculation.nodes', s.nodes, 1, MAX_SPECULATION_NODES);
    optionalBoolean('speculation.fixed', s.fixed);
    optionalBoolean('speculation.autoDisable', s.autoDisable);
  }
}
