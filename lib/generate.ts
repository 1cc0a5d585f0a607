/**
 * generate(): text from a model, autoregressively (the strategies of lib/decode plug in
 * here as they land). One forward call per step for the whole batch; logits are sampled
 * per sequence; text is decoded incrementally (partial UTF-8 held back) and streamed.
 */

import { ArgumentError, type CanopyError } from './errors.js';
import { type FinishReason, decodeLoop } from './decode/loop.js';
import { type GenerateOptions, SHARED_PREFIX_MIN_TOKENS, STRATEGIES, type TextTokenizer, validateGenerateOptions } from './generate-options.js';
import { DraftChainProposer, DraftTreeProposer } from './decode/proposers/draft-model.js';
import { LookupProposer, NgramTreeProposer } from './decode/proposers/lookup.js';
import type { PredictionHeads } from './model/heads.js';
import { HeadsProposer } from './decode/proposers/heads.js';
import { JacobiProposer } from './decode/proposers/jacobi.js';
import { TokenRecyclingProposer } from './decode/proposers/token-recycling.js';
import { type CheckedSampling, checkSamplingOptions } from './decode/sampling.js';
import type { Proposer, SpeculationStats } from './decode/types.js';
import type { TokenLogprob } from './decode/logprobs.js';
import type { GoodputOptions, SharedCosts } from './decode/controller.js';
import { objectId, sharedCosts } from './decode/controller-memory.js';
import { chainProcessesLogits } from './kernels/sampling.js';
import type { KvCache, KvCacheDtype } from './model/kv-cache.js';
import type { Model } from './model/model.js';
import { checkThreadsOption, setThreads } from './native/threads.js';

export { STRATEGIES, type GenerateOptions, type StrategyName, type TextTokenizer } from './generate-options.js';
export type { FinishReason };
export type { TokenLogprob } from './decode/logprobs.js';



export interface GenerateStats {
  /** The sampling seed used: options.seed, or a random one when none was given. */
  seed: number;
  promptTokens: number;
  generatedTokens: number;
  /** From the call to the first generated token, ms. */
  timeToFirstTokenMs: number;
  /** Generated tokens per second after the first one. */
  tokensPerSecond: number;
  totalMs: number;
  /** Forward passes of the target model. */
  targetPasses: number;
  /** With contextShift: how many times the sequence's context was shifted. */
  contextShifts?: number;
  /** Speculative strategies: drafted/accepted, mean accepted length, per-position acceptance, time split. */
  speculation?: SpeculationStats;
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  /** 'error': the sequence ended because the model's numbers broke; `error` says how. */
  finishReason: FinishReason;
  /** Present with finishReason 'error' (a NumericError: logits all NaN). */
  error?: CanopyError;
  /** With options.logprobs: one entry per token of `tokens` (its logprob and the top alternatives). */
  logprobs?: TokenLogprob[];
  stats: GenerateStats;
}

/**
 * The prompts as sequences, and whether the call is a batch (its result an array): a batch when
 * `prompt` is an array, `tokens` an array of arrays, or `n` is given (even n: 1), as the
 * overloads of generate() and stream() say.
 */
function promptsOf(o: GenerateOptions): { batch: boolean; ids: number[][] } {
  const n = o.n ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new ArgumentError('n', 'an integer >= 1', n);
  const base = promptIds(o);
  const batch = base.batch || o.n !== undefined;
  if (n === 1) return { batch, ids: base.ids };
  return { batch, ids: base.ids.flatMap((p) => Array.from({ length: n }, () => p)) };
}

/** Whether options make a batch (see promptsOf), from their shape alone. */
function isBatch(o: GenerateOptions): boolean {
  return Array.isArray(o.prompt) || (Array.isArray(o.tokens) && Array.isArray(o.tokens[0])) || o.n !== undefined;
}

function promptIds(o: GenerateOptions): { batch: boolean; ids: number[][] } {
  if (o.tokens !== undefined) {
    const batch = Array.isArray(o.tokens[0]);
    const ids = (batch ? o.tokens : [o.tokens]) as number[][];
    ids.forEach((p, s) => {
      if (!Array.isArray(p) || p.length === 0) throw new ArgumentError(`tokens[${s}]`, 'a non-empty array of token ids', p);
    });
    return { batch, ids };
  }
  if (o.prompt === undefined) throw new ArgumentError('prompt', 'a string or an array of strings (or pass tokens)', undefined);
  if (!o.tokenizer) throw new ArgumentError('tokenizer', 'a tokenizer to encode the prompt (or pass tokens)', undefined);
  const batch = Array.isArray(o.prompt);
  const texts = batch ? (o.prompt as string[]) : [o.prompt as string];
  const addBos = o.addBos ?? o.tokenizer.bosId !== undefined;
  const ids = texts.map((t, s) => {
    if (typeof t !== 'string') throw new ArgumentError(`prompt[${s}]`, 'a string', t);
    const enc = o.tokenizer!.encode(t, { bos: addBos });
    if (enc.length === 0) throw new ArgumentError(`prompt[${s}]`, 'text that encodes to at least one token (or addBos)', t);
    return enc;
  });
  return { batch, ids };
}

/** Options of one sequence: a string prompt or one token list, and no `n` (the result is one GenerateResult). */
export type SingleOptions = GenerateOptions & { prompt?: string; tokens?: number[]; n?: undefined };
/** Options of a batch: prompts, token lists, or `n` samples (the result is an array, one per sequence). */
export type BatchOptions = GenerateOptions & ({ n: number } | { prompt: string[] } | { tokens: number[][] });

/**
 * Generates from one prompt (a GenerateResult) or a batch (an array in sequence order: prompt
 * by prompt, each prompt's n samples together). A batch is an array `prompt`, an array of
 * token arrays, or any `n` (n: 1 included).
 */
export async function generate(options: BatchOptions): Promise<GenerateResult[]>;
export async function generate(options: SingleOptions): Promise<GenerateResult>;
export async function generate(options: GenerateOptions): Promise<GenerateResult | GenerateResult[]>;
export async function generate(options: GenerateOptions): Promise<GenerateResult | GenerateResult[]> {
  const results = await run(options);
  return promptsOf(options).batch ? results : results[0]!;
}

/** A piece of a batch's stream: the text and token (-1 for a flushed tail) of sequence `sequence`. */
export interface StreamPiece {
  sequence: number;
  text: string;
  token: number;
  /** With options.logprobs: the entries of the tokens this piece completes (a token's text may be held back to a later piece). */
  logprobs?: TokenLogprob[];
}

/**
 * Streams the text as it is generated. One sequence (SingleOptions) yields its pieces as
 * strings and returns its GenerateResult; a batch (BatchOptions) yields every sequence's
 * pieces as { sequence, text, token } in the order they are decoded and returns the array of
 * results. Leaving the loop early (`break`, `return()`, a throw in the loop body) stops the
 * generation at once: the step in flight finishes and no other starts; the generator returns
 * after the work has stopped.
 */
export function stream(options: BatchOptions): AsyncGenerator<StreamPiece, GenerateResult[], undefined>;
export function stream(options: SingleOptions & { logprobs: number }): AsyncGenerator<StreamPiece, GenerateResult, undefined>;
export function stream(options: SingleOptions): AsyncGenerator<string, GenerateResult, undefined>;
export function stream(options: GenerateOptions): AsyncGenerator<string | StreamPiece, GenerateResult | GenerateResult[], undefined>;
export async function* stream(options: GenerateOptions): AsyncGenerator<string | StreamPiece, GenerateResult | GenerateResult[], undefined> {
  validateGenerateOptions(options); // before onText is wrapped below
  const batch = isBatch(options);
  const tagged = batch || options.logprobs !== undefined; // pieces as StreamPiece objects
  const queue: StreamPiece[] = [];
  const pendingLogprobs = new Map<number, TokenLogprob[]>();
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  let result: GenerateResult[] | undefined;
  const userOnText = options.onText;
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const work = run({
    ...options,
    signal,
    onText: (text, token, sequence) => {
      userOnText?.(text, token, sequence);
      const lp = pendingLogprobs.get(sequence);
      pendingLogprobs.delete(sequence);
      queue.push({ sequence, text, token, ...(lp ? { logprobs: lp } : {}) });
      wake?.();
    },
  }, undefined, options.logprobs !== undefined ? (sequence, entry) => {
    const list = pendingLogprobs.get(sequence) ?? [];
    list.push(entry);
    pendingLogprobs.set(sequence, list);
  } : undefined).then(
    (r) => {
      result = r;
      finished = true;
      wake?.();
    },
    (e: unknown) => {
      failure = e;
      finished = true;
      wake?.();
    },
  );
  try {
    for (;;) {
      while (queue.length) {
        const p = queue.shift()!;
        yield tagged ? p : p.text;
      }
      if (finished) break;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
    while (queue.length) {
      const p = queue.shift()!;
      yield tagged ? p : p.text;
    }
    if (failure) throw failure;
    return batch ? result! : result![0]!;
  } finally {
    if (!finished) {
      // The consumer left early: stop the loop and wait for it (its cache is freed then).
      stop.abort();
      await work.catch(() => undefined);
    }
  }
}

/** The goodput controller's settings for the strategy, or undefined for a fixed size. */
function goodputFor(o: GenerateOptions): GoodputOptions | undefined {
  const s = o.speculation ?? {};
  if (s.fixed || s.autoDisable === false) return undefined;
  const strategy = o.strategy ?? (o.draft ? 'speculative' : 'autoregressive');
  const initial = s.k !== undefined ? { initial: s.k } : {};
  switch (strategy) {
    case 'speculative':
      return { mode: 'chain', maxDraft: s.kMax ?? 8, ...initial };
    case 'lookup':
      return { mode: 'chain', maxDraft: s.k ?? 8 };
    case 'jacobi':
      return { mode: 'tree', maxDraft: (s.k ?? 5) + 6 }; // the block and two pool chains of 3
    case 'tree':
    case 'ngram-tree':
    case 'token-recycling':
    case 'heads':
      return { mode: 'tree', maxDraft: s.nodes ?? 24 };
    default:
      return typeof strategy === 'object' ? { mode: 'tree', maxDraft: s.nodes ?? 24 } : undefined;
  }
}

/**
 * The controller's cost curves shared by generations with the same target, proposer, draft
 * model and step kind (sampled or greedy, cache dtype): controller-memory.ts.
 */
function costsFor(o: GenerateOptions, proposer: Proposer, sampling: CheckedSampling): SharedCosts {
  const draft = o.draft ? `draft#${objectId(o.draft)}` : '';
  return sharedCosts(o.model, [proposer.name, draft, sampling.temperature > 0 ? 'sampled' : chainProcessesLogits(sampling) ? 'chain' : 'greedy', o.logprobs !== undefined ? 'logprobs' : '', o.kvDtype ?? ''].join('|'));
}

/** The proposer for a strategy name (or the proposer itself). */
function proposerFor(o: GenerateOptions, sampling: CheckedSampling): Proposer | undefined {
  const strategy = o.strategy ?? (o.draft ? 'speculative' : 'autoregressive');
  if (typeof strategy === 'object') return strategy;
  const s = o.speculation ?? {};
  const needDraft = () => {
    if (!o.draft || typeof (o.draft as Model).forward !== 'function') {
      throw new ArgumentError('draft', `a draft Model for strategy '${strategy}'`, o.draft);
    }
    if (o.draft.config.vocabSize !== o.model.config.vocabSize) {
      throw new ArgumentError('draft', `a model with the target's vocabulary (${o.model.config.vocabSize} tokens)`, o.draft.config.vocabSize);
    }
    return o.draft;
  };
  switch (strategy) {
    case 'autoregressive':
      if (o.draft) throw new ArgumentError('strategy', "'speculative' or 'tree' when a draft model is given", strategy);
      return undefined;
    case 'speculative':
      // Under the goodput controller the chain drafts exactly the size it is given.
      return new DraftChainProposer(needDraft(), {
        ...(goodputFor(o) ? { k: s.kMax ?? 8, fixed: true } : { ...(s.k !== undefined ? { k: s.k } : {}), fixed: true }),
        sampler: sampling,
        seed: sampling.seed,
      });
    case 'tree':
      return new DraftTreeProposer(needDraft(), { ...(s.nodes !== undefined ? { nodes: s.nodes } : {}) });
    case 'lookup':
      return new LookupProposer({ ...(s.k !== undefined ? { k: s.k } : {}) });
    case 'ngram-tree':
      return new NgramTreeProposer({ ...(s.nodes !== undefined ? { nodes: s.nodes } : {}) });
    case 'token-recycling':
      return new TokenRecyclingProposer(o.model.config.vocabSize, { ...(s.nodes !== undefined ? { nodes: s.nodes } : {}) });
    case 'heads':
      if (!o.heads || !Array.isArray(o.heads.weights)) throw new ArgumentError('heads', "prediction heads (loadHeads / trainHeads) for strategy 'heads'", o.heads);
      if (o.heads.dim !== o.model.config.dim || o.heads.vocab !== o.model.config.vocabSize) {
        throw new ArgumentError('heads', `heads for this model (dim ${o.model.config.dim}, vocab ${o.model.config.vocabSize})`, `dim ${o.heads.dim}, vocab ${o.heads.vocab}`);
      }
      return new HeadsProposer(o.heads, { ...(s.nodes !== undefined ? { nodes: s.nodes } : {}) });
    case 'jacobi':
      return new JacobiProposer(o.model.config.vocabSize, { ...(s.k !== undefined ? { k: s.k } : {}) });
    default:
      throw new ArgumentError('strategy', `one of ${STRATEGIES.join(', ')} or a Proposer`, strategy);
  }
}

/**
 * For chat sessions (lib/chat): generate() for one token prompt, continuing in a KV cache the
 * caller owns whose first `reuse` rows already hold the prompt's first `reuse` tokens.
 */
export async function generateInCache(options: GenerateOptions & { tokens: number[] }, session: { cache: KvCache; reuse: number }): Promise<GenerateResult> {
  return (await run(options, session))[0]!;
}

/** With contextShift: the tokens a result's cache rows hold (in row order) after its last shift; for chat sessions. */
const cachedTokensOf = new WeakMap<GenerateResult, number[]>();
export function shiftedCacheTokens(result: GenerateResult): number[] | undefined {
  return cachedTokensOf.get(result);
}

/** Tokens a context shift keeps at the start of a prompt: contextShift.keep, else its leading BOS (if any). */
function shiftKeep(o: GenerateOptions, prompt: number[], contextLength: number): number {
  const keep = typeof o.contextShift === 'object' ? o.contextShift.keep : o.tokenizer?.bosId !== undefined && prompt[0] === o.tokenizer.bosId ? 1 : 0;
  if (keep > contextLength - 2) throw new ArgumentError('contextShift.keep', `at most ${contextLength - 2} (the model's context is ${contextLength} tokens; a shift must drop some)`, keep);
  return keep;
}

async function run(o: GenerateOptions, session?: { cache: KvCache; reuse: number }, onLogprob?: (sequence: number, entry: TokenLogprob) => void): Promise<GenerateResult[]> {
  validateGenerateOptions(o);
  const { model } = o;
  if (!model || typeof (model as Model).forward !== 'function') throw new ArgumentError('model', 'a Model', model);
  const threads = checkThreadsOption(o.threads);
  if (threads !== undefined) setThreads(threads);
  const maxTokens = o.maxTokens ?? 128;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new ArgumentError('maxTokens', 'an integer >= 0', maxTokens);
  const stops = o.stop ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new ArgumentError('stop', 'an array of non-empty strings', stops);
  }
  if (stops.length && !o.tokenizer) throw new ArgumentError('tokenizer', 'a tokenizer when stop strings are given', undefined);
  const sampling = checkSamplingOptions(o, model.config.vocabSize);
  const { ids } = promptsOf(o);
  const vocab = model.config.vocabSize;
  ids.forEach((p, s) =>
    p.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new ArgumentError(`tokens[${s}][${i}]`, `a token id in [0, ${vocab - 1}]`, t);
    }),
  );
  const contextLength = model.config.maxSeqLen;
  ids.forEach((p, s) => {
    if (p.length < contextLength) return;
    if (o.truncatePrompt !== true || session) {
      throw new ArgumentError(
        o.tokens !== undefined ? `tokens${ids.length > 1 ? `[${s}]` : ''}` : `prompt${ids.length > 1 ? `[${s}]` : ''}`,
        `at most ${contextLength - 1} tokens (the model's context is ${contextLength} tokens, one kept for the reply; pass truncatePrompt: true to drop the oldest)`,
        `${p.length} tokens`,
      );
    }
    const keepBos = o.tokenizer?.bosId !== undefined && p[0] === o.tokenizer.bosId ? 1 : 0;
    ids[s] = [...p.slice(0, keepBos), ...p.slice(p.length - (contextLength - 1 - keepBos))];
  });
  const bos = o.tokenizer?.bosId;
  const eos = new Set(o.stopAtEos === false ? [] : [...(o.tokenizer?.eosIds ?? model.config.eosTokenIds ?? []), ...(bos !== undefined ? [bos] : [])]);
  const proposer = proposerFor(o, sampling);
  const r = await decodeLoop({
    model,
    prompts: ids,
    maxTokens,
    ...sampling,
    eos,
    stops,
    ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onText ? { onText: o.onText } : {}),
    ...(proposer ? { proposer } : {}),
    ...(proposer && goodputFor(o) ? { goodput: { ...goodputFor(o)!, costs: costsFor(o, proposer, sampling) } } : {}),
    ...(o.kvDtype ? { cacheDtype: o.kvDtype } : {}),
    ...(o.sharedPrefix !== false ? { sharedPrefix: typeof o.sharedPrefix === 'number' ? o.sharedPrefix : SHARED_PREFIX_MIN_TOKENS } : {}),
    contextLength,
    ...(session ? { session } : {}),
    ...(o.logprobs !== undefined ? { logprobs: { n: o.logprobs, ...(onLogprob ? { onEntry: onLogprob } : {}) } } : {}),
    ...(o.contextShift ? { contextShift: { keep: ids.map((p) => shiftKeep(o, p, contextLength)) } } : {}),
  });
  return r.sequences.map((sq) => {
    const gen = sq.tokens.length;
    const result: GenerateResult = {
      text: sq.text,
      tokens: sq.tokens,
      finishReason: sq.finishReason,
      ...(sq.error ? { error: sq.error } : {}),
      ...(sq.logprobs ? { logprobs: sq.logprobs } : {}),
      stats: {
        seed: sampling.seed,
        promptTokens: sq.promptTokens,
        generatedTokens: gen,
        timeToFirstTokenMs: r.timeToFirstTokenMs,
        tokensPerSecond: gen > 1 && r.decodeMs > 0 ? ((gen - 1) * 1000) / r.decodeMs : 0,
        totalMs: r.totalMs,
        targetPasses: r.targetPasses,
        ...(sq.contextShifts !== undefined ? { contextShifts: sq.contextShifts } : {}),
        ...(r.speculation ? { speculation: r.speculation } : {}),
      },
    };
    if (sq.cachedTokens && sq.contextShifts) cachedTokensOf.set(result, sq.cachedTokens);
    return result;
  });
}
