/**
 * One validation pass over generate() / stream() options, before anything is allocated or
 * run: every number finite and in range, counts bounded, callbacks functions, the signal an
 * AbortSignal, the tokenizer a tokenizer. Each failure is an ArgumentError naming the option,
 * what was expected and what was received. (Memory: the KV cache checks its own size and
 * throws OutOfMemoryError before allocating, lib/model/kv-cache.ts.)
 */

import { ArgumentError } from './errors.js';
import type { GenerateOptions } from './generate.js';

/** Largest batch: prompts x n samples (the KV cache holds one region per sequence). */
export const MAX_SEQUENCES = 4096;
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
