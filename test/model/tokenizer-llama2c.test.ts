/**
 * llama2.c tokenizer.bin: the real tok512 vocabulary against the reference output of
 * ../shared/models/README.md and a transcription of run.c's encode; a small handmade
 * vocabulary (always available) for merge order, byte fallback and decoding rules; stream
 * decoding against whole-sequence decoding.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  Llama2cTokenizer,
  type Llama2cVocabulary,
  parseLlama2cTokenizer,
  readLlama2cTokenizer,
  serializeLlama2cTokenizer,
} from '../../lib/model/tokenizer/llama2c.js';
import { STORIES_REFERENCE_IDS, STORIES_REFERENCE_TEXT, testModel } from '../helpers/test-models.js';
import { ROUND_TRIP_TEXTS, randomText, streamPieces } from '../helpers/tokenizer-cases.js';
import { runCEncode } from '../helpers/tokenizer-reference.js';
import { rng } from '../helpers/verify-reference.js';

const dir = mkdtempSync(join(tmpdir(), 'canopy-tok-llama2c-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('llama2.c tokenizer: stories260K tok512.bin', () => {
  const path = testModel('stories260K/tok512.bin', 'llama2.c tokenizer on tok512.bin');
  if (!path) {
    it.skip('needs ../shared/models/stories260K/tok512.bin');
    return;
  }
  const tok = readLlama2cTokenizer(path);
  const bytes = (id: number) => [...new TextEncoder().encode(tok.tokenText(id))].map((b) => String.fromCharCode(b)).join('');
  const rawVocab = Array.from({ length: tok.vocabSize }, (_, id) => bytes(id));
  const vocabulary = parseLlama2cTokenizer(new Uint8Array(readFileSync(path)), path);
  const scores = vocabulary.entries.map((e) => e.score);

  it('reads 512 tokens with run.c special ids', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.maxTokenLength).toBe(7);
    expect(tok.bosId).toBe(1);
    expect(tok.eosIds).toEqual([2, 1]); // EOS, then BOS (run.c stops on it);
    expect(tok.tokenText(0)).toBe('<unk>');
    expect(tok.tokenText(1)).toBe('\n<s>\n');
    expect(tok.tokenText(3 + 0x41)).toBe('<0x41>');
    expect(tok.tokenText(403)).toBe(' Once');
  });

  it('decodes the reference ids: the text keeps its leading space without BOS, run.c drops it after BOS', () => {
    // The README's text is the 48 tokens after BOS decoded on their own: " Once upon ...".
    expect(tok.decode(STORIES_REFERENCE_IDS.slice(1))).toBe(STORIES_REFERENCE_TEXT);
    // With BOS first, run.c's decode strips the leading space of the token after BOS.
    expect(tok.decode(STORIES_REFERENCE_IDS)).toBe(STORIES_REFERENCE_TEXT.slice(1));
  });

  it('encodes "Once upon a time" as BOS " Once" " upon" " a" " time"', () => {
    expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('Once upon a time', { bos: false })).toEqual([403, 407, 261, 378]);
    expect(tok.encode('Once upon a time', { eos: true })).toEqual([1, 403, 407, 261, 378, 2]);
    expect(tok.encode('Once upon a time', { bos: false, eos: true })).toEqual([403, 407, 261, 378, 2]);
  });

  it('encodes the reference text back to the reference ids, as run.c does', () => {
    // The reference text without its leading space is what run.c's encode gets as a prompt
    // (it adds the dummy-prefix space itself); the model's greedy output is the canonical BPE.
    const text = STORIES_REFERENCE_TEXT.slice(1);
    const ids = tok.encode(text);
    expect(ids).toEqual(STORIES_REFERENCE_IDS);
    expect(ids).toEqual(runCEncode(rawVocab, scores, text, true, false));
    expect(tok.decode(ids)).toBe(text);
  });

  it('encodes empty text as BOS alone (no dummy prefix)', () => {
    expect(tok.encode('')).toEqual([1]);
    expect(tok.encode('', { bos: false })).toEqual([]);
    expect(tok.decode([])).toBe('');
  });

  it.each(ROUND_TRIP_TEXTS)('round trip %j', (text) => {
    const ids = tok.encode(text);
    expect(ids).toEqual(runCEncode(rawVocab, scores, text, true, false));
    expect(tok.decode(ids)).toBe(text);
    // Without BOS the dummy prefix space stays.
    expect(tok.decode(tok.encode(text, { bos: false }))).toBe(text.length > 0 ? ' ' + text : '');
  });

  it('maps characters outside the vocabulary to byte-fallback tokens', () => {
    // 'é' is a token of its own; '日' is three bytes, '😀' four.
    expect(tok.encode('é', { bos: false }).map((id) => tok.tokenText(id))).toEqual([' ', 'é']);
    expect(tok.encode('日', { bos: false }).map((id) => tok.tokenText(id))).toEqual([' ', '<0xE6>', '<0x97>', '<0xA5>']);
    expect(tok.encode('😀', { bos: false })).toEqual([tok.encode(' ', { bos: false })[0], 3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
  });

  it('agrees with the run.c transcription on 300 random texts', () => {
    const r = rng(20260101);
    for (let i = 0; i < 300; i++) {
      const text = randomText(r, 1 + Math.floor(r() * 60));
      const ids = tok.encode(text);
      expect(ids, JSON.stringify(text)).toEqual(runCEncode(rawVocab, scores, text, true, false));
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('decodes BOS, EOS and <unk> as nothing', () => {
    expect(tok.decode([1, 2, 0])).toBe('');
    expect(tok.decode([403, 2, 1, 403])).toBe(' OnceOnce'); // after a BOS mid-sequence the space goes too
  });

  it('stream decoding equals decode and never splits a character', () => {
    for (const ids of [STORIES_REFERENCE_IDS, tok.encode('emoji 😀 and 日本 ok'), STORIES_REFERENCE_IDS.slice(1)]) {
      const { pieces, flushed } = streamPieces(tok, ids);
      expect(pieces.join('') + flushed).toBe(tok.decode(ids));
      expect(flushed).toBe('');
    }
  });

  it('holds back an emoji made of 4 byte tokens until its last byte', () => {
    const ids = tok.encode('a😀b', { bos: false }); // ' a' <F0> <9F> <98> <80> 'b'
    expect(ids.slice(1, 5)).toEqual([3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
    const { pieces } = streamPieces(tok, ids);
    expect(pieces).toEqual([' a', '', '', '', '😀', 'b']);
  });

  it('stream decoding primed with a prompt returns the continuation as the whole decode renders it', () => {
    const prompt = STORIES_REFERENCE_IDS.slice(0, 1); // BOS: the next token loses its space
    const { pieces } = streamPieces(tok, STORIES_REFERENCE_IDS.slice(1), prompt);
    expect(pieces.join('')).toBe(STORIES_REFERENCE_TEXT.slice(1));
    const { pieces: later } = streamPieces(tok, STORIES_REFERENCE_IDS.slice(5), STORIES_REFERENCE_IDS.slice(0, 5));
    expect(tok.decode(STORIES_REFERENCE_IDS.slice(0, 5)) + later.join('')).toBe(tok.decode(STORIES_REFERENCE_IDS));
  });

  it('random id sequences: stream pieces concatenate to decode; flush returns U+FFFD for a cut-off character', () => {
    const r = rng(7);
    for (let i = 0; i < 200; i++) {
      const ids = Array.from({ length: 1 + Math.floor(r() * 20) }, () => (r() < 0.5 ? 3 + 0x80 + Math.floor(r() * 0x80) : Math.floor(r() * 512)));
      const { pieces, flushed } = streamPieces(tok, ids);
      expect(pieces.join('') + flushed).toBe(tok.decode(ids));
    }
    const { pieces, flushed } = streamPieces(tok, [3 + 0xf0, 3 + 0x9f]);
    expect(pieces).toEqual(['', '']);
    expect(flushed).toBe('\uFFFD');
    expect(tok.decode([3 + 0xf0, 3 + 0x9f])).toBe('\uFFFD');
  });
});

// A handmade vocabulary in the llama2.c layout: specials, 256 byte tokens, then pieces.
function handmade(pieces: [string, number][]): Llama2cVocabulary {
  const enc = new TextEncoder();
  const entries = [
    { score: 0, bytes: enc.encode('<unk>') },
    { score: 0, bytes: enc.encode('\n<s>\n') },
    { score: 0, bytes: enc.encode('\n</s>\n') },
    ...Array.from({ length: 256 }, (_, b) => ({ score: 0, bytes: enc.encode(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) })),
    ...pieces.map(([text, score]) => ({ score, bytes: enc.encode(text) })),
  ];
  return { maxTokenLength: Math.max(...entries.map((e) => e.bytes.length)), entries };
}

describe('llama2.c tokenizer: handmade vocabulary', () => {
  const BASE = 3 + 256;
  const pieces: [string, number][] = [
    [' ', -1], ['a', -2], ['b', -3], ['c', -4], ['é', -5],
    ['ab', -10], ['bc', -10], [' a', -20], [' ab', -30], ['abc', -5],
  ];
  const idOf = (text: string) => BASE + pieces.findIndex(([t]) => t === text);
  const vocabulary = handmade(pieces);
  const path = join(dir, 'tokenizer.bin');
  writeFileSync(path, serializeLlama2cTokenizer(vocabulary));
  const tok = readLlama2cTokenizer(path);
  const raw = vocabulary.entries.map((e) => String.fromCharCode(...e.bytes));
  const scores = vocabulary.entries.map((e) => e.score);

  it('reads what was written', () => {
    expect(tok.vocabSize).toBe(BASE + pieces.length);
    expect(tok.tokenText(idOf('é'))).toBe('é');
    expect(readLlama2cTokenizer(path, BASE + pieces.length).vocabSize).toBe(BASE + pieces.length);
  });

  const rescored = (changes: Record<string, number>) =>
    new Llama2cTokenizer(handmade(pieces.map(([t, s]): [string, number] => [t, changes[t] ?? s])));

  it('merges the highest-scoring pair first', () => {
    // ' ab': ' a' (-20) and 'ab' (-10) compete; 'ab' wins, then ' ' + 'ab' = ' ab' (-30).
    expect(tok.encode('ab', { bos: false })).toEqual([idOf(' ab')]);
    // ' abc': 'ab' = 'bc' (-10) -> ' ' 'ab' 'c'; then 'abc' (-5) beats ' ab' (-30).
    expect(tok.encode('abc', { bos: false })).toEqual([idOf(' '), idOf('abc')]);
    // 'abc' demoted below ' ab': ' ' 'ab' 'c' -> ' ab' 'c'.
    expect(rescored({ abc: -100 }).encode('abc', { bos: false })).toEqual([idOf(' ab'), idOf('c')]);
    // 'bc' promoted too: ' ' 'a' 'bc' -> ' a' (-20) beats 'abc' (-100) -> ' a' 'bc'.
    expect(rescored({ abc: -100, bc: -9 }).encode('abc', { bos: false })).toEqual([idOf(' a'), idOf('bc')]);
  });

  it('breaks score ties by the leftmost pair', () => {
    // ' abc' with 'abc' demoted: 'ab' and 'bc' tie; the leftmost ('ab') merges first.
    expect(rescored({ abc: -100 }).encode('abc', { bos: false })).toEqual([idOf(' ab'), idOf('c')]);
    // Make ' a' tie with them too: it is leftmost of all: ' a' 'b' 'c' -> ' a' 'bc'.
    expect(rescored({ abc: -100, ' a': -10 }).encode('abc', { bos: false })).toEqual([idOf(' a'), idOf('bc')]);
  });

  it('agrees with the run.c transcription on random texts', () => {
    const r = rng(99);
    const alphabet = [...'abc é日😀x'];
    for (let i = 0; i < 500; i++) {
      const text = Array.from({ length: 1 + Math.floor(r() * 25) }, () => alphabet[Math.floor(r() * alphabet.length)]).join('');
      const ids = tok.encode(text);
      expect(ids, JSON.stringify(text)).toEqual(runCEncode(raw, scores, text, true, false));
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('never merges ordinary text into a special token (run.c would)', () => {
    const v = handmade([[' ', -1], ['<', -2], ['s', -3], ['>', -4], ['<s', -5]]);
    v.entries[1] = { score: 0, bytes: new TextEncoder().encode('<s>') }; // BOS spelled as plain text could reach
    const t = new Llama2cTokenizer(v);
    const raw = v.entries.map((e) => String.fromCharCode(...e.bytes));
    expect(runCEncode(raw, v.entries.map((e) => e.score), '<s>', false, false)).toEqual([BASE, 1]);
    expect(t.encode('<s>', { bos: false })).toEqual([BASE, BASE + 4, BASE + 3]); // ' ' '<s' '>'
    expect(t.decode(t.encode('<s>'))).toBe('<s>');
  });

  it('keeps a raw space byte after BOS (run.c only strips a piece that starts with a space)', () => {
    expect(tok.decode([1, 3 + 0x20, idOf('a')])).toBe(' a');
    expect(tok.decode([1, idOf(' a')])).toBe('a');
    expect(tok.decode([idOf(' a')])).toBe(' a');
  });
});
