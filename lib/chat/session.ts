/**
 * chat() and ChatSession: a conversation rendered with the model's chat template, tokenized
 * with its special tokens, and generated from.
 *
 * Prompt ids: the rendered text is encoded with special tokens matched (`<|im_start|>` is one
 * token, not text). BOS: when the template writes the BOS token itself (Llama 3, Gemma,
 * Mistral) the text already starts with it; otherwise it is prepended when the tokenizer adds
 * BOS by default. Never twice.
 *
 * ChatSession keeps its KV cache between turns. Turn N's prompt is built from the ids the
 * model already saw (the previous prompt and the reply exactly as generated, since
 * re-tokenizing a reply's text can give other ids) followed by the encoding of the text the
 * template adds after them; when the template rewrites earlier turns (so the old text is not a
 * prefix of the new one), the whole conversation is encoded afresh. Either way the cache keeps
 * the longest common prefix of the ids it holds and the new prompt, and only the rest is
 * computed: turn N costs its new tokens. (Hugging Face tokenizers, whose library encodes every
 * text as a start, always take the second way.)
 */

import { ArgumentError, DisposedError } from '../errors.js';
import { readSessionFile, writeSessionFile } from './session-file.js';
import { type GenerateOptions, type GenerateResult, generate, generateInCache, shiftedCacheTokens, stream as streamGenerate } from '../generate.js';
import type { KvCache } from '../model/kv-cache.js';
import type { Model } from '../model/model.js';
import type { Tokenizer } from '../model/tokenizer/types.js';
import { type ChatMessage, ChatTemplate, type RenderOptions, checkMessages } from './template.js';

/** What chat() and ChatSession take besides the conversation: generate()'s options, less the prompt. */
export interface ChatGenerateOptions extends Omit<GenerateOptions, 'model' | 'tokenizer' | 'prompt' | 'tokens' | 'addBos' | 'n' | 'onText'> {
  /** Called with each new piece of the reply as it is decoded. */
  onText?: (piece: string, token: number) => void;
}

export interface ChatSetup {
  model: Model;
  tokenizer: Tokenizer;
  /** A Jinja chat template overriding the one the model ships (tokenizer.chatTemplate). */
  template?: string;
  /** Tool definitions given to the template as `tools`. */
  tools?: unknown[];
  /** More template variables (e.g. { enable_thinking: false }). */
  templateVariables?: Record<string, unknown>;
}

export interface ChatOptions extends ChatSetup, ChatGenerateOptions {
  /** The conversation so far; the reply continues it. */
  messages: ChatMessage[];
}

export interface ChatResult extends GenerateResult {
  /** The reply as a message ({ role: 'assistant', content: text }). */
  message: ChatMessage;
  /** The prompt ids the model was given. */
  promptTokens: number[];
}

/** The template for a tokenizer: the override, else the model's own; an ArgumentError when there is none. */
export function chatTemplateFor(tokenizer: Tokenizer, override?: string): ChatTemplate {
  if (!tokenizer || typeof tokenizer.encode !== 'function') throw new ArgumentError('tokenizer', 'a Tokenizer', tokenizer);
  const source = override ?? tokenizer.chatTemplate;
  if (override !== undefined && typeof override !== 'string') throw new ArgumentError('template', 'a Jinja chat template string', override);
  if (source === undefined) {
    throw new ArgumentError('template', "a chat template: this model ships none (no tokenizer.chat_template / chat_template); pass options.template", undefined);
  }
  const text = (id: number | undefined): string => (id === undefined ? '' : tokenizer.idToToken(id));
  return new ChatTemplate(source, { bosToken: text(tokenizer.bosId), eosToken: text(tokenizer.eosIds[0]) });
}

/** Prompt ids of rendered chat text: special tokens matched; BOS prepended unless the text starts with it or the tokenizer adds none. */
export function chatPromptIds(tokenizer: Tokenizer, text: string): number[] {
  const ids = tokenizer.encode(text, { bos: false, special: true });
  const bos = tokenizer.bosId;
  if (tokenizer.addBosByDefault && bos !== undefined && ids[0] !== bos) ids.unshift(bos);
  return ids;
}

function renderOptions(setup: ChatSetup, addGenerationPrompt: boolean): RenderOptions {
  return {
    addGenerationPrompt,
    ...(setup.tools !== undefined ? { tools: setup.tools } : {}),
    ...(setup.templateVariables !== undefined ? { variables: setup.templateVariables } : {}),
  };
}

function checkSetup(o: ChatSetup): void {
  if (o === null || typeof o !== 'object') throw new ArgumentError('options', 'an object { model, tokenizer, messages, ... }', o);
  if (!o.model || typeof (o.model as Model).forward !== 'function') throw new ArgumentError('model', 'a Model', o.model);
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function') throw new ArgumentError('tokenizer', 'a Tokenizer (chat needs one for the template)', o.tokenizer);
}

function generateOptionsOf(o: ChatGenerateOptions): ChatGenerateOptions {
  const { onText, ...rest } = o as ChatGenerateOptions & Partial<ChatOptions>;
  for (const k of ['messages', 'template', 'tools', 'templateVariables'] as const) delete (rest as Record<string, unknown>)[k];
  return { ...rest, ...(onText ? { onText } : {}) };
}

/** The reply to a conversation: renders it with the chat template, then generate(). */
export async function chat(options: ChatOptions): Promise<ChatResult> {
  checkSetup(options);
  checkMessages(options.messages);
  const template = chatTemplateFor(options.tokenizer, options.template);
  const promptTokens = chatPromptIds(options.tokenizer, template.render(options.messages, renderOptions(options, true)));
  const { onText, ...rest } = generateOptionsOf(options);
  const result = await generate({
    ...rest,
    model: options.model,
    tokenizer: options.tokenizer,
    tokens: promptTokens,
    ...(onText ? { onText: (piece: string, token: number) => onText(piece, token) } : {}),
  });
  return { ...result, message: { role: 'assistant', content: result.text }, promptTokens };
}

/** Streams the reply to a conversation (see stream()); returns the ChatResult. */
export async function* streamChat(options: ChatOptions): AsyncGenerator<string, ChatResult, undefined> {
  checkSetup(options);
  checkMessages(options.messages);
  const template = chatTemplateFor(options.tokenizer, options.template);
  const promptTokens = chatPromptIds(options.tokenizer, template.render(options.messages, renderOptions(options, true)));
  const { onText, ...rest } = generateOptionsOf(options);
  const result = yield* streamGenerate({
    ...rest,
    model: options.model,
    tokenizer: options.tokenizer,
    tokens: promptTokens,
    ...(onText ? { onText: (piece: string, token: number) => onText(piece, token) } : {}),
  });
  return { ...result, message: { role: 'assistant', content: result.text }, promptTokens };
}

export interface ChatSessionOptions extends ChatSetup, ChatGenerateOptions {
  /** A system message to start the conversation with. */
  system?: string;
  /** Earlier messages to start from (after the system message). */
  messages?: ChatMessage[];
}

/** Counts of a session's last turn. */
export interface TurnStats {
  /** Prompt ids of the turn. */
  promptTokens: number;
  /** Of those, the ones whose keys and values were already in the cache. */
  reusedTokens: number;
}

/**
 * A conversation that keeps its KV cache between turns (see the module comment). One turn at
 * a time; dispose() frees the cache.
 */
export class ChatSession {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  readonly template: ChatTemplate;
  /** The conversation so far (system, user and assistant messages). */
  readonly messages: ChatMessage[] = [];
  /** Counts of the last turn. */
  lastTurn: TurnStats = { promptTokens: 0, reusedTokens: 0 };
  private readonly setup: ChatSetup;
  private readonly defaults: ChatGenerateOptions;
  private cache: KvCache | undefined;
  /** The ids whose keys and values the cache holds, in order (rows 0 .. length - 1). */
  private cached: number[] = [];
  /** The ids the model has seen or produced so far (the last prompt and the reply as generated), and the text they stand for. */
  private seen: number[] = [];
  private seenText = '';
  private busy = false;
  private disposed = false;

  constructor(options: ChatSessionOptions) {
    checkSetup(options);
    this.model = options.model;
    this.tokenizer = options.tokenizer;
    this.template = chatTemplateFor(options.tokenizer, options.template);
    this.setup = { model: options.model, tokenizer: options.tokenizer, ...(options.tools ? { tools: options.tools } : {}), ...(options.templateVariables ? { templateVariables: options.templateVariables } : {}) };
    const { system, messages, ...rest } = options;
    this.defaults = generateOptionsOf(rest);
    if (system !== undefined) {
      if (typeof system !== 'string') throw new ArgumentError('system', 'a string', system);
      this.messages.push({ role: 'system', content: system });
    }
    if (messages !== undefined) {
      checkMessages(messages);
      this.messages.push(...messages.map((m) => ({ ...m })));
    }
  }

  /** Sends a user message; resolves to the reply (also appended to `messages`). */
  async send(content: string, options: ChatGenerateOptions = {}): Promise<ChatResult> {
    const turn = this.begin(content, options);
    try {
      const result = await generateInCache(turn.options, { cache: turn.cache, reuse: turn.reuse });
      return this.finish(turn, result);
    } catch (e) {
      this.abandon(turn);
      throw e;
    }
  }

  /**
   * Streams the reply to a user message. Leaving the loop early stops the generation; the
   * reply generated so far is kept as the assistant message.
   */
  async *stream(content: string, options: ChatGenerateOptions = {}): AsyncGenerator<string, ChatResult, undefined> {
    const turn = this.begin(content, options);
    const stop = new AbortController();
    const signal = options.signal ?? this.defaults.signal;
    const pieces: string[] = [];
    let wake: (() => void) | undefined;
    let settled = false;
    let result: GenerateResult | undefined;
    let failure: unknown;
    const userOnText = turn.options.onText;
    const work = generateInCache(
      {
        ...turn.options,
        signal: signal ? AbortSignal.any([signal, stop.signal]) : stop.signal,
        onText: (piece, token, seq) => {
          userOnText?.(piece, token, seq);
          pieces.push(piece);
          wake?.();
        },
      },
      { cache: turn.cache, reuse: turn.reuse },
    ).then(
      (r) => {
        result = r;
        settled = true;
        wake?.();
      },
      (e: unknown) => {
        failure = e;
        settled = true;
        wake?.();
      },
    );
    let finished = false;
    try {
      for (;;) {
        while (pieces.length) yield pieces.shift()!;
        if (settled) break;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
      while (pieces.length) yield pieces.shift()!;
      if (failure) throw failure;
      finished = true;
      return this.finish(turn, result!);
    } finally {
      if (!finished) {
        stop.abort();
        await work;
        if (result) this.finish(turn, result);
        else this.abandon(turn);
      }
    }
  }

  /**
   * Saves the conversation, the token ids and the KV cache rows to `path` (format:
   * lib/chat/session-file.ts). Quantized caches are saved without rows (recomputed on the
   * next turn after load).
   */
  async save(path: string): Promise<void> {
    if (this.disposed) throw new DisposedError('ChatSession');
    if (this.busy) throw new ArgumentError('session', 'idle to save (await the reply)', 'a turn in progress');
    if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a file path', path);
    const cache = this.cache;
    const rows = cache && cache.forkable && this.cached.length > 0 ? await cache.readRows(0, this.cached.length) : undefined;
    try {
      writeSessionFile(path, this.model, { dtype: cache?.dtype ?? this.defaults.kvDtype ?? 'f32', messages: this.messages, cached: this.cached, seen: this.seen, seenText: this.seenText }, rows);
    } finally {
      rows?.k.dispose();
      rows?.v.dispose();
    }
  }

  /**
   * A session restored from a file written by save(): `options` give the model (the same
   * one: its config hash is checked), tokenizer, template and generation defaults, but no
   * system message or messages (the file holds the conversation). Its next turn equals the
   * saved session's next turn and reuses the restored cache.
   */
  static async load(path: string, options: ChatSessionOptions): Promise<ChatSession> {
    checkSetup(options);
    if (options.system !== undefined || options.messages !== undefined) {
      throw new ArgumentError('options', `no system or messages when loading a session (the conversation comes from ${String(path)})`, 'system or messages');
    }
    const { state, rows } = readSessionFile(path, options.model);
    if (options.kvDtype !== undefined && options.kvDtype !== state.dtype) {
      throw new ArgumentError('kvDtype', `the cache type the session in ${path} was saved with (${state.dtype})`, options.kvDtype);
    }
    const session = new ChatSession({ ...options, kvDtype: state.dtype });
    session.messages.push(...state.messages);
    session.seen = state.seen;
    session.seenText = state.seenText;
    if (rows) {
      try {
        const context = options.model.config.maxSeqLen;
        session.cache = options.model.createCache({ capacity: Math.min(context, rows.k.shape[1]! + 320), dtype: state.dtype });
        await session.cache.writeRows(0, rows.k, rows.v);
        session.cached = state.cached;
      } finally {
        rows.k.dispose();
        rows.v.dispose();
      }
    }
    return session;
  }

  /** Frees the KV cache; the session cannot be used afterwards. */
  dispose(): void {
    this.cache?.dispose();
    this.cache = undefined;
    this.disposed = true;
  }

  private begin(content: string, options: ChatGenerateOptions) {
    if (this.disposed) throw new DisposedError('ChatSession');
    if (this.busy) throw new ArgumentError('session', 'idle: one turn at a time (await the previous reply)', 'a turn in progress');
    if (typeof content !== 'string') throw new ArgumentError('content', 'a string', content);
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
    const messages = [...this.messages, { role: 'user', content }];
    const text = this.template.render(messages, renderOptions(this.setup, true));
    // Keep the ids the model already saw when the old text is a prefix of the new one.
    const continues = this.tokenizer.continuationSafe && this.seen.length > 0 && text.startsWith(this.seenText);
    let prompt = continues
      ? [...this.seen, ...this.tokenizer.encode(text.slice(this.seenText.length), { bos: false, special: true, continuation: true })]
      : chatPromptIds(this.tokenizer, text);
    const context = this.model.config.maxSeqLen;
    const merged = { ...this.defaults, ...generateOptionsOf(options) };
    // Context shift: keep the system prompt's tokens (or BOS), drop the oldest half of the rest
    // until the prompt fits; generation shifts the same way when the reply fills the context.
    const shiftKeep = merged.contextShift ? this.keepFor(prompt, merged.contextShift) : undefined;
    if (shiftKeep !== undefined) {
      while (prompt.length >= context && prompt.length - shiftKeep >= 2) {
        const discard = Math.floor((prompt.length - shiftKeep) / 2);
        prompt = [...prompt.slice(0, shiftKeep), ...prompt.slice(shiftKeep + discard)];
      }
    }
    if (prompt.length >= context) {
      throw new ArgumentError(
        'content',
        `a message that keeps the conversation within the model's context of ${context} tokens (one kept for the reply); start a new session or a shorter conversation`,
        `a conversation of ${prompt.length} tokens`,
      );
    }
    let common = 0;
    while (common < this.cached.length && common < prompt.length && this.cached[common] === prompt[common]) common++;
    const reuse = Math.min(common, prompt.length - 1);
    const { onText, ...rest } = merged;
    if (!this.cache) {
      const dtype = rest.kvDtype;
      const float = dtype === undefined || dtype === 'f32' || dtype === 'f16' || dtype === 'bf16';
      this.cache = this.model.createCache({ capacity: float ? Math.min(context, prompt.length + 320) : context, ...(dtype ? { dtype } : {}) });
    } else if (rest.kvDtype !== undefined && rest.kvDtype !== this.cache.dtype) {
      throw new ArgumentError('kvDtype', `the session's cache type (${this.cache.dtype})`, rest.kvDtype);
    }
    this.busy = true;
    this.lastTurn = { promptTokens: prompt.length, reusedTokens: reuse };
    return {
      content,
      text,
      prompt,
      reuse,
      cache: this.cache,
      options: {
        ...rest,
        model: this.model,
        tokenizer: this.tokenizer,
        tokens: prompt,
        ...(shiftKeep !== undefined ? { contextShift: { keep: Math.min(shiftKeep, context - 2) } } : {}),
        ...(onText ? { onText: (piece: string, token: number) => onText(piece, token) } : {}),
      } as GenerateOptions & { tokens: number[] },
    };
  }

  private finish(turn: ReturnType<ChatSession['begin']>, result: GenerateResult): ChatResult {
    this.busy = false;
    const all = [...turn.prompt, ...result.tokens];
    // After a context shift the cache holds the kept tokens, not the conversation's prefix.
    this.cached = (shiftedCacheTokens(result) ?? all).slice(0, turn.cache.length(0));
    // The text the reply's ids stand for after the prompt (stop strings are cut from result.text, not from the ids).
    const decoder = this.tokenizer.streamDecoder(turn.prompt);
    let replyText = '';
    for (const id of result.tokens) replyText += decoder.push(id);
    replyText += decoder.flush();
    this.seen = all;
    this.seenText = turn.text + replyText;
    const message: ChatMessage = { role: 'assistant', content: result.text };
    this.messages.push({ role: 'user', content: turn.content }, message);
    return { ...result, message, promptTokens: turn.prompt };
  }

  /**
   * Tokens a context shift keeps: contextShift.keep, else the system message's tokens (the
   * common prefix of the prompt and the rendered system message alone), else a leading BOS.
   */
  private keepFor(prompt: number[], shift: true | { keep: number }): number {
    if (typeof shift === 'object') return shift.keep;
    const first = this.messages[0];
    if (first?.role === 'system') {
      const sys = chatPromptIds(this.tokenizer, this.template.render([first], renderOptions(this.setup, false)));
      let n = 0;
      while (n < sys.length && n < prompt.length && sys[n] === prompt[n]) n++;
      return n;
    }
    return this.tokenizer.bosId !== undefined && prompt[0] === this.tokenizer.bosId ? 1 : 0;
  }

  private abandon(turn: ReturnType<ChatSession['begin']>): void {
    this.busy = false;
    // The cache may hold part of this turn; keep only the rows known to match `cached`.
    const keep = Math.min(turn.reuse, turn.cache.length(0));
    this.cached = turn.prompt.slice(0, keep);
    if (turn.cache.length(0) > keep) turn.cache.truncate(0, keep);
  }
}
