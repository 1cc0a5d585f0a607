/**
 * generate(): text from a model, autoregressively (the strategies of lib/decode plug in
 * here as they land). One forward call per step for the whole batch; logits are sampled
 * per sequence; text is decoded incrementally (partial UTF-8 held back) and streamed.
 */

import { ArgumentError } from './errors.js';
import { Sampler, type SamplingOptions } from './decode/sampling.js';
import type { KvCache } from './model/kv-cache.js';
import type { Model } from './model/model.js';

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
  /** New tokens at most (default 128). */
  maxTokens?: number;
  /** Stop when the text ends with one of these strings (the stop string is kept out of the text). */
  stop?: string[];
  /** Stop at EOS (default true). */
  stopAtEos?: boolean;
  signal?: AbortSignal;
  /** Called with each new piece of text (and token id) as it is decoded. */
  onText?: (piece: string, token: number, sequence: number) => void;
}

export type FinishReason = 'length' | 'eos' | 'stop' | 'abort' | 'context';

export interface GenerateStats {
  promptTokens: number;
  generatedTokens: number;
  /** From the call to the first generated token, ms. */
  timeToFirstTokenMs: number;
  /** Generated tokens per second after the first one. */
  tokensPerSecond: number;
  totalMs: number;
  /** Forward passes of the target model. */
  targetPasses: number;
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  stats: GenerateStats;
}

interface SeqState {
  prompt: number[];
  out: number[];
  text: string;
  decoder: { push(id: number): string; flush(): string } | undefined;
  done: FinishReason | undefined;
  pending: string; // text held back while it could still become a stop string
}

function promptsOf(o: GenerateOptions): { batch: boolean; ids: number[][] } {
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

/** Longest suffix of `text` that is a prefix of some stop string (held back while streaming). */
function heldBack(text: string, stops: string[]): number {
  let keep = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > keep; k--) {
      if (text.endsWith(s.slice(0, k))) {
        keep = k;
        break;
      }
    }
  }
  return keep;
}

export async function generate(options: GenerateOptions & { prompt: string[] }): Promise<GenerateResult[]>;
export async function generate(options: GenerateOptions & { tokens: number[][] }): Promise<GenerateResult[]>;
export async function generate(options: GenerateOptions): Promise<GenerateResult>;
export async function generate(options: GenerateOptions): Promise<GenerateResult | GenerateResult[]> {
  const results = await run(options);
  return promptsOf(options).batch ? results : results[0]!;
}

/** Streams the text of one sequence as it is generated. */
export async function* stream(options: GenerateOptions): AsyncGenerator<string, GenerateResult, undefined> {
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  let result: GenerateResult[] | undefined;
  const userOnText = options.onText;
  run({
    ...options,
    onText: (piece, token, seq) => {
      userOnText?.(piece, token, seq);
      if (seq === 0) queue.push(piece);
      wake?.();
    },
  }).then(
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
  for (;;) {
    while (queue.length) yield queue.shift()!;
    if (finished) break;
    await new Promise<void>((r) => (wake = r));
    wake = undefined;
  }
  while (queue.length) yield queue.shift()!;
  if (failure) throw failure;
  return result![0]!;
}

async function run(o: GenerateOptions): Promise<GenerateResult[]> {
  if (o === null || typeof o !== 'object') throw new ArgumentError('options', 'an object', o);
  const { model } = o;
  if (!model || typeof (model as Model).forward !== 'function') throw new ArgumentError('model', 'a Model', model);
  const maxTokens = o.maxTokens ?? 128;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new ArgumentError('maxTokens', 'an integer >= 0', maxTokens);
  const stops = o.stop ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new ArgumentError('stop', 'an array of non-empty strings', stops);
  }
  if (stops.length && !o.tokenizer) throw new ArgumentError('tokenizer', 'a tokenizer when stop strings are given', undefined);
  const { ids } = promptsOf(o);
  const vocab = model.config.vocabSize;
  ids.forEach((p, s) =>
    p.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new ArgumentError(`tokens[${s}][${i}]`, `a token id in [0, ${vocab - 1}]`, t);
    }),
  );
  const samplers = ids.map((_, s) => new Sampler({ ...o, seed: (o.seed ?? 0) + s }));
  const eos = new Set(o.stopAtEos === false ? [] : (o.tokenizer?.eosIds ?? model.config.eosTokenIds ?? []));
  const longest = Math.max(...ids.map((p) => p.length));
  const capacity = Math.max(1, longest + maxTokens);
  const start = performance.now();
  let firstTokenAt = 0;
  let passes = 0;
  const states: SeqState[] = ids.map((p) => ({ prompt: p, out: [], text: '', decoder: o.tokenizer?.streamDecoder(p), done: undefined, pending: '' }));
  if (maxTokens === 0) states.forEach((st) => (st.done = 'length'));
  const cache: KvCache = model.createCache({ capacity, sequences: ids.length });
  const emit = (st: SeqState, s: number, piece: string, token: number) => {
    if (!piece) return;
    st.text += piece;
    o.onText?.(piece, token, s);
  };
  try {
    // Prefill: every prompt in one forward; each sequence's last logits give its first token.
    let step = states.map((st, s) => ({ sequence: s, tokens: st.prompt }));
    while (states.some((st) => !st.done)) {
      if (o.signal?.aborted) {
        states.forEach((st) => (st.done ??= 'abort'));
        break;
      }
      const active = step.filter((x) => !states[x.sequence]!.done);
      if (active.length === 0) break;
      const { logits } = await model.forward(cache, active);
      passes++;
      const all = logits.toFloat32();
      logits.dispose();
      const next: typeof step = [];
      active.forEach((x, r) => {
        const s = x.sequence;
        const st = states[s]!;
        const token = samplers[s]!.sample(all.subarray(r * vocab, (r + 1) * vocab));
        if (!firstTokenAt) firstTokenAt = performance.now();
        if (eos.has(token)) {
          st.done = 'eos';
          return;
        }
        st.out.push(token);
        if (st.decoder) {
          st.pending += st.decoder.push(token);
          // Stop strings: cut at the first match; otherwise emit all but a possible stop prefix.
          const full = st.text + st.pending;
          const hit = stops.map((stop) => full.indexOf(stop, Math.max(0, st.text.length - stop.length))).filter((i) => i >= 0);
          if (hit.length) {
            emit(st, s, full.slice(st.text.length, Math.min(...hit)), token);
            st.pending = '';
            st.done = 'stop';
            return;
          }
          const keep = heldBack(st.pending, stops);
          emit(st, s, st.pending.slice(0, st.pending.length - keep), token);
          st.pending = st.pending.slice(st.pending.length - keep);
        }
        if (st.out.length >= maxTokens) st.done = 'length';
        else if (cache.free(s) < 1) st.done = 'context';
        else next.push({ sequence: s, tokens: [token] });
      });
      step = next;
    }
  } finally {
    cache.dispose();
  }
  const end = performance.now();
  return states.map((st, s) => {
    if (st.decoder && st.done !== 'stop') emit(st, s, st.pending + st.decoder.flush(), -1);
    const gen = st.out.length;
    const ttft = firstTokenAt ? firstTokenAt - start : 0;
    return {
      text: st.text,
      tokens: st.out,
      finishReason: st.done ?? 'length',
      stats: {
        promptTokens: st.prompt.length,
        generatedTokens: gen,
        timeToFirstTokenMs: ttft,
        tokensPerSecond: gen > 1 ? ((gen - 1) * 1000) / (end - firstTokenAt) : 0,
        totalMs: end - start,
        targetPasses: passes,
      },
    };
  });
}

