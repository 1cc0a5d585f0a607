/**
 * The tokenizer interface every implementation (llama2.c tokenizer.bin, GGUF-embedded
 * vocabularies, Hugging Face tokenizer.json) provides, and the argument checks they share.
 *
 * Conventions common to all implementations:
 *  - `encode` treats special-token spellings such as "<s>" or "<|im_start|>" in the text as
 *    plain text unless `options.special` is true (then they become their tokens; chat
 *    templates need this). Tokens a vocabulary marks user-defined (GGUF) or non-special added
 *    tokens (Hugging Face) are always matched, as llama.cpp and the tokenizers library do.
 *    BOS/EOS are added only through the options.
 *  - `decode` renders text only: control tokens (BOS, EOS, unknown, other special tokens)
 *    contribute nothing; `tokenText` shows them.
 *  - Byte-fallback tokens (`<0xNN>`) are raw bytes; the bytes of a whole sequence are decoded
 *    as UTF-8 together, so a character split over several tokens decodes correctly, and bytes
 *    that never form valid UTF-8 become U+FFFD.
 *  - Leading space: SentencePiece encoders put a space before the text, and decoders take
 *    one back off. llama2.c (run.c) drops a leading space from the token right after BOS
 *    only, so decode([BOS, ...ids]) is "Once upon" but decode(ids) is " Once upon". GGUF
 *    'llama' (llama.cpp, SentencePiece) and Hugging Face Llama tokenizers (the Metaspace /
 *    Strip decoders) drop it from the first text token of the decoded sequence, with or
 *    without BOS. Byte-level BPE adds no space and strips none.
 */

import { ArgumentError } from '../../errors.js';

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend the BOS token (default: the tokenizer's own convention, {@link Tokenizer.addBosByDefault}). */
  bos?: boolean;
  /** Append the (first) EOS token (default false). */
  eos?: boolean;
  /** Match special (control) tokens written in the text, e.g. "<|im_start|>" (default false: plain text). */
  special?: boolean;
  /**
   * The text continues earlier text (default false): SentencePiece tokenizers (llama2.c,
   * GGUF 'llama') then add no space prefix. Byte-level BPE adds none anyway. Hugging Face
   * tokenizers ignore it (see {@link Tokenizer.continuationSafe}).
   */
  continuation?: boolean;
}

/**
 * Incremental decoding for streaming output. Every `push` returns only complete text:
 * a character whose UTF-8 bytes are spread over several tokens is held back until its last
 * byte arrives. The concatenation of every `push` result and `flush()` equals
 * `decode(allIdsPushed)`.
 */
export interface StreamDecoder {
  /** Adds one token id; returns the text that became complete (often '', never a broken character). */
  push(id: number): string;
  /** Ends the stream: returns what is still held back (an incomplete byte sequence becomes U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  /** Number of token ids: valid ids are 0 .. vocabSize - 1. */
  readonly vocabSize: number;
  /** Beginning-of-sequence token, when the vocabulary has one. */
  readonly bosId?: number;
  /**
   * Ids that end generation (may be empty): EOS first (the one `options.eos` appends), then
   * the other end-of-turn / end-of-message tokens the vocabulary declares.
   */
  readonly eosIds: number[];
  /** Whether `encode` prepends BOS when `options.bos` is not given. */
  readonly addBosByDefault: boolean;
  /**
   * Whether `encode(text, { continuation: true })` encodes text that continues earlier text
   * as it would be encoded in place (no start-of-text artefacts such as a SentencePiece space
   * prefix). Chat sessions append to the ids a reply was generated as only when this is true.
   */
  readonly continuationSafe: boolean;
  /**
   * The chat template (Jinja) the model ships, when it has one: GGUF tokenizer.chat_template,
   * or chat_template in tokenizer_config.json. See lib/chat.
   */
  readonly chatTemplate?: string;
  /** Text to token ids. */
  encode(text: string, options?: EncodeOptions): number[];
  /** A whole sequence of ids to text (see the module comment for special tokens and leading spaces). */
  decode(ids: ArrayLike<number>): string;
  /** The vocabulary entry of one id, unprocessed (e.g. "▁Once", "<0x0A>", "<s>"): for debugging. */
  tokenText(id: number): string;
  /** The same as {@link tokenText}: the vocabulary entry of an id. */
  idToToken(id: number): string;
  /** The id of a vocabulary entry's exact text (e.g. "<|im_start|>", "<s>"), or undefined when there is none. */
  tokenToId(token: string): number | undefined;
  /**
   * A fresh incremental decoder. `context` (e.g. the prompt's ids) primes it: those ids are
   * decoded for state (leading-space rules, bytes of an unfinished character) but their text
   * is not returned, so the pushes that follow return the pushed ids' text as
   * `decode(context ++ pushed)` renders it (without `context`, a continuation can lose its
   * leading space to the first-token rules of SentencePiece decoding).
   */
  streamDecoder(context?: ArrayLike<number>): StreamDecoder;
}

/** Checks a token id against the vocabulary size; `argument` names it in the message. */
export function checkId(id: unknown, vocabSize: number, argument: string): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new ArgumentError(argument, `an integer token id in [0, ${vocabSize - 1}]`, id);
  }
  return id;
}

/** Checks an array-like of token ids; returns a plain array. */
export function checkIds(ids: unknown, vocabSize: number, argument = 'ids'): number[] {
  if (
    ids === null ||
    typeof ids !== 'object' ||
    typeof (ids as { length?: unknown }).length !== 'number' ||
    !(Array.isArray(ids) || ArrayBuffer.isView(ids))
  ) {
    throw new ArgumentError(argument, 'an array or typed array of token ids', ids);
  }
  const list = ids as ArrayLike<unknown>;
  const out = new Array<number>(list.length);
  for (let i = 0; i < list.length; i++) out[i] = checkId(list[i], vocabSize, `${argument}[${i}]`);
  return out;
}

/** Checks `encode`'s arguments; returns the resolved BOS/EOS flags. */
export function checkEncodeArgs(
  text: unknown,
  options: unknown,
  tokenizer: Pick<Tokenizer, 'bosId' | 'eosIds' | 'addBosByDefault'>,
): { bos: boolean; eos: boolean; special: boolean; continuation: boolean } {
  if (typeof text !== 'string') throw new ArgumentError('text', 'a string', text);
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { bos?, eos?, special? }', options);
  const { bos, eos, special, continuation } = options as { bos?: unknown; eos?: unknown; special?: unknown; continuation?: unknown };
  if (special !== undefined && typeof special !== 'boolean') throw new ArgumentError('options.special', 'a boolean', special);
  if (continuation !== undefined && typeof continuation !== 'boolean') throw new ArgumentError('options.continuation', 'a boolean', continuation);
  if (bos !== undefined && typeof bos !== 'boolean') throw new ArgumentError('options.bos', 'a boolean', bos);
  if (eos !== undefined && typeof eos !== 'boolean') throw new ArgumentError('options.eos', 'a boolean', eos);
  const wantBos = bos ?? tokenizer.addBosByDefault;
  const wantEos = eos ?? false;
  if (wantBos && tokenizer.bosId === undefined) {
    throw new ArgumentError('options.bos', 'false or absent: this tokenizer has no BOS token', bos);
  }
  if (wantEos && tokenizer.eosIds.length === 0) {
    throw new ArgumentError('options.eos', 'false or absent: this tokenizer has no EOS token', eos);
  }
  return { bos: wantBos, eos: wantEos, special: special ?? false, continuation: continuation ?? false };
}

/** Checks the `context` argument of streamDecoder (absent means empty). */
export function checkContext(context: unknown, vocabSize: number): number[] {
  return context === undefined ? [] : checkIds(context, vocabSize, 'context');
}

/** Checks an optional vocabulary size (a positive integer). */
export function checkVocabSize(value: unknown, argument: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) throw new ArgumentError(argument, 'a positive integer', value);
  return value;
}
