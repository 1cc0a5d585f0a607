/**
 * Shared cases for the tokenizer suites: varied texts for round trips, random texts, and a
 * stream-decoding driver that checks no returned piece holds a broken character.
 */
import { expect } from 'vitest';

import type { Tokenizer } from '../../lib/model/tokenizer/types.js';
import { hasLoneSurrogate } from './tokenizer-reference.js';

/** Varied text: punctuation, digits, newlines, tabs, repeated spaces, non-ASCII, emoji, U+FEFF. */
export const ROUND_TRIP_TEXTS = [
  'Once upon a time',
  'Hello, world! 1234567890 -- (a) [b] {c} "quoted" \'single\'',
  'line one\nline two\n\n\ttabbed   spaced  ',
  '  leading and trailing spaces  ',
  'café naïve résumé',
  '日本語のテキスト',
  'emoji 😀 and 👩‍👩‍👧 and 🇫🇷',
  '\uFEFFbyte order mark first',
  'a',
  ' ',
  '\n',
];

/** Pushes ids one at a time; checks no piece is broken; returns the pieces and the flush. */
export function streamPieces(tok: Tokenizer, ids: readonly number[], context?: readonly number[]): { pieces: string[]; flushed: string } {
  const stream = tok.streamDecoder(context);
  const pieces = ids.map((id) => stream.push(id));
  const flushed = stream.flush();
  for (const p of [...pieces, flushed]) expect(hasLoneSurrogate(p), JSON.stringify(p)).toBe(false);
  return { pieces, flushed };
}

/** Random text over an alphabet with spaces, punctuation, digits, accents, CJK and emoji. */
export function randomText(r: () => number, length: number): string {
  const alphabet = [...'abcdefghijklmnopqrstuvwxyz  ABCXYZ.,!?\'"-0123456789\n\té日本😀ñ'];
  let s = '';
  for (let i = 0; i < length; i++) s += alphabet[Math.floor(r() * alphabet.length)];
  return s;
}
