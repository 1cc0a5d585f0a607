/**
 * Hugging Face tokenizer.json through @huggingface/tokenizers, with files the test writes:
 * a Llama-2-style BPE with byte fallback (handmade, and tok512 converted the way the
 * `transformers` converter does it, which must encode like the llama2.c tokenizer) and a
 * GPT-2-style byte-level BPE; BOS/EOS from tokenizer_config.json, generation_config.json or
 * the post-processor; round trips; stream decoding.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { BYTE_TO_UNICODE } from '../../lib/model/tokenizer/gguf.js';
import { HfTokenizer, readHfTokenizer } from '../../lib/model/tokenizer/hf.js';
import { readLlama2cTokenizer } from '../../lib/model/tokenizer/llama2c.js';
import { STORIES_REFERENCE_IDS, STORIES_REFERENCE_TEXT, testModel } from '../helpers/test-models.js';
import { ROUND_TRIP_TEXTS, randomText, streamPieces } from '../helpers/tokenizer-cases.js';
import { rng } from '../helpers/verify-reference.js';

const root = mkdtempSync(join(tmpdir(), 'canopy-tok-hf-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Writes the files into a fresh folder; returns the tokenizer.json path. */
function writeTokenizer(name: string, files: { tokenizer: object; config?: object; generation?: object }): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  if (files.config) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(files.config));
  if (files.generation) writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(files.generation));
  return join(dir, 'tokenizer.json');
}

const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

/**
 * Merges for a SentencePiece BPE vocabulary, as transformers' SentencePieceExtractor derives
 * them: every split of a piece into two pieces of the vocabulary, ordered by the merged
 * piece's score (highest first), then by the ids of the two halves.
 */
function mergesFromScores(pieces: Map<string, { id: number; score: number }>): [string, string][] {
  const merges: { pair: [string, string]; score: number; l: number; r: number }[] = [];
  for (const [piece, { score }] of pieces) {
    const chars = Array.from(piece);
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      const l = pieces.get(left);
      const r = pieces.get(right);
      if (l && r) merges.push({ pair: [left, right], score, l: l.id, r: r.id });
    }
  }
  merges.sort((a, b) => b.score - a.score || a.l - b.l || a.r - b.r);
  return merges.map((m) => m.pair);
}

/**
 * A Llama 2 tokenizer.json: ids 0..2 <unk> <s> </s>, 256 byte tokens, then `pieces` ('▁' for
 * spaces) with their scores; BPE with byte fallback; normalizer prepend '▁' + spaces -> '▁';
 * decoder '▁' -> ' ', byte fallback, fuse, strip one leading space; post-processor adds <s>.
 */
function llamaStyle(pieces: [string, number][]): object {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  const scored = new Map<string, { id: number; score: number }>();
  for (const [piece, score] of pieces) {
    if (piece in vocab) continue;
    vocab[piece] = Object.keys(vocab).length;
    scored.set(piece, { id: vocab[piece]!, score });
  }
  return {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_suffix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: mergesFromScores(scored),
    },
  };
}

/** A GPT-2-style tokenizer.json: 256 byte symbols, `merges` (their results join the vocabulary), <|endoftext|>. */
function byteLevel(merges: [string, string][]): { json: object; id: (t: string) => number } {
  const vocab: Record<string, number> = {};
  BYTE_TO_UNICODE.forEach((c, b) => (vocab[c] = b));
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  const eot = Object.keys(vocab).length;
  vocab['<|endoftext|>'] = eot;
  const json = {
    version: '1.0',
    added_tokens: [special(eot, '<|endoftext|>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_suffix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
  return { json, id: (t) => vocab[t]! };
}

describe('tokenizer.json: Llama-style BPE with byte fallback (handmade)', () => {
  const pieces: [string, number][] = [
    ['▁', -1], ['h', -2], ['e', -3], ['l', -4], ['o', -5], ['w', -6], ['r', -7], ['d', -8], ['c', -9], ['a', -10], ['f', -11], ['é', -12],
    ['▁h', -20], ['▁he', -21], ['ll', -22], ['▁hell', -23], ['▁hello', -24], ['▁w', -25], ['or', -26], ['▁wor', -27], ['▁worl', -28],
    ['▁world', -29], ['▁c', -30], ['▁ca', -31], ['▁caf', -32], ['▁café', -33],
  ];
  const json = llamaStyle(pieces);
  const vocab = (json as { model: { vocab: Record<string, number> } }).model.vocab;
  const tok = readHfTokenizer(writeTokenizer('llama-noconfig', { tokenizer: json }));

  it('takes BOS from the post-processor and adds it by default; no EOS without a config', () => {
    expect(tok.vocabSize).toBe(Object.keys(vocab).length);
    expect(tok.bosId).toBe(1);
    expect(tok.addBosByDefault).toBe(true);
    expect(tok.eosIds).toEqual([]);
    expect(() => tok.encode('hello', { eos: true })).toThrow(/options\.eos must be false or absent: this tokenizer has no EOS token/);
  });

  it('encodes with merges and byte fallback; decodes without the prefix space and the special tokens', () => {
    expect(tok.encode('hello world')).toEqual([1, vocab['▁hello'], vocab['▁world']]);
    expect(tok.encode('hello world', { bos: false })).toEqual([vocab['▁hello'], vocab['▁world']]);
    // '😀' is four byte tokens; '日' three.
    expect(tok.encode('café 😀', { bos: false })).toEqual([vocab['▁café'], vocab['▁'], 3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
    expect(tok.decode([1, vocab['▁hello']!, vocab['▁world']!])).toBe('hello world');
    expect(tok.tokenText(vocab['▁hello']!)).toBe('▁hello');
    expect(tok.tokenText(1)).toBe('<s>');
    expect(tok.decode([])).toBe('');
  });

  it.each(ROUND_TRIP_TEXTS)('round trip %j', (text) => {
    const ids = tok.encode(text);
    expect(ids[0]).toBe(1);
    expect(tok.decode(ids)).toBe(text);
    const { pieces: out, flushed } = streamPieces(tok, ids);
    expect(out.join('') + flushed).toBe(text);
  });

  it('does not clean up tokenization spaces unless the config asks', () => {
    expect(tok.decode(tok.encode('a . b , c'))).toBe('a . b , c');
    const cleaning = readHfTokenizer(writeTokenizer('llama-cleanup', { tokenizer: json, config: { clean_up_tokenization_spaces: true } }));
    expect(cleaning.decode(cleaning.encode('a . b , c'))).toBe('a. b, c');
  });

  it('stream decoding holds an emoji back until its 4th byte token; flush gives up on a cut-off one', () => {
    const ids = tok.encode('a😀', { bos: false });
    expect(ids.slice(-4)).toEqual([3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
    expect(ids.map((i) => tok.tokenText(i)).slice(0, 2)).toEqual(['▁', 'a']); // no '▁a' piece
    expect(streamPieces(tok, ids).pieces).toEqual(['', 'a', '', '', '', '😀']);
    const cut = streamPieces(tok, [vocab['▁hello']!, 3 + 0xf0, 3 + 0x9f]);
    expect(cut.pieces).toEqual(['hello', '', '']);
    expect(cut.flushed).toBe(tok.decode([vocab['▁hello']!, 3 + 0xf0, 3 + 0x9f]).slice('hello'.length));
    expect(cut.flushed).toMatch(/^\uFFFD+$/);
  });

  it('stream decoding primed with a prompt keeps the continuation\'s leading space', () => {
    const prompt = tok.encode('hello');
    expect(streamPieces(tok, [vocab['▁world']!], prompt).pieces).toEqual([' world']);
    expect(streamPieces(tok, [vocab['▁world']!]).pieces).toEqual(['world']); // unprimed: the Strip decoder eats it
    // A prompt that ends inside a character: the character comes out with the continuation.
    expect(streamPieces(tok, [3 + 0x98, 3 + 0x80, vocab['▁hello']!], [1, vocab['▁hello']!, 3 + 0xf0, 3 + 0x9f]).pieces).toEqual(['', '😀', ' hello']);
  });

  it('random id sequences: stream pieces concatenate to decode', () => {
    const r = rng(3);
    const n = tok.vocabSize;
    for (let i = 0; i < 200; i++) {
      const ids = Array.from({ length: 1 + Math.floor(r() * 15) }, () => (r() < 0.5 ? 3 + 0x80 + Math.floor(r() * 0x80) : Math.floor(r() * n)));
      const { pieces: out, flushed } = streamPieces(tok, ids);
      expect(out.join('') + flushed, JSON.stringify(ids)).toBe(tok.decode(ids));
    }
  });

  it('BOS/EOS from tokenizer_config.json (strings or AddedToken objects) and generation_config.json', () => {
    const withConfig = readHfTokenizer(
      writeTokenizer('llama-config', {
        tokenizer: json,
        config: { bos_token: { content: '<s>', __type: 'AddedToken' }, eos_token: '</s>', add_bos_token: false },
        generation: { eos_token_id: [2, 0] },
      }),
    );
    expect(withConfig.bosId).toBe(1);
    expect(withConfig.eosIds).toEqual([2, 0]);
    expect(withConfig.addBosByDefault).toBe(false);
    expect(withConfig.encode('hello')).toEqual([vocab['▁hello']]);
    expect(withConfig.encode('hello', { bos: true, eos: true })).toEqual([1, vocab['▁hello'], 2]);
    expect(withConfig.decode([1, vocab['▁hello']!, 2])).toBe('hello');
  });
});

describe('tokenizer.json: byte-level BPE (GPT-2 style)', () => {
  const MERGES: [string, string][] = [['Ġ', 't'], ['h', 'e'], ['Ġt', 'he'], ['Ã', '©'], ['c', 'a'], ['ca', 'f'], ['caf', 'Ã©'], ['ð', 'Ł']];
  const { json, id } = byteLevel(MERGES);
  const eot = id('<|endoftext|>');

  it('without a config: no BOS, no EOS (the ByteLevel post-processor adds none)', () => {
    const tok = readHfTokenizer(writeTokenizer('bytelevel-noconfig', { tokenizer: json }));
    expect(tok.bosId).toBeUndefined();
    expect(tok.eosIds).toEqual([]);
    expect(tok.addBosByDefault).toBe(false);
    expect(() => tok.encode('x', { bos: true })).toThrow(/options\.bos must be false or absent: this tokenizer has no BOS token/);
  });

  const tok = readHfTokenizer(
    writeTokenizer('bytelevel', { tokenizer: json, config: { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', add_bos_token: false } }),
  );

  it('merges by rank within words', () => {
    expect(tok.eosIds).toEqual([eot]);
    expect(tok.encode(' the café')).toEqual([id('Ġthe'), id('Ġ'), id('cafÃ©')]);
    expect(tok.encode('the')).toEqual([id('t'), id('he')]);
    expect(tok.encode('the', { bos: true, eos: true })).toEqual([eot, id('t'), id('he'), eot]);
    expect(tok.tokenText(id('Ġthe'))).toBe('Ġthe');
  });

  it('encodes emoji and CJK as byte symbols', () => {
    const emoji = tok.encode('😀');
    expect(emoji).toEqual([id('ðŁ'), id(BYTE_TO_UNICODE[0x98]!), id(BYTE_TO_UNICODE[0x80]!)]);
    expect(streamPieces(tok, emoji).pieces).toEqual(['', '', '😀']);
    expect(tok.encode('日')).toEqual(Array.from(new TextEncoder().encode('日')));
  });

  it.each(ROUND_TRIP_TEXTS)('round trip %j', (text) => {
    const ids = tok.encode(text);
    expect(tok.decode(ids)).toBe(text);
    const { pieces, flushed } = streamPieces(tok, ids);
    expect(pieces.join('') + flushed).toBe(text);
  });

  it('special tokens in text: plain text by default, their token with special: true; tokenToId / idToToken', () => {
    expect(tok.encode('a<|endoftext|>b')).not.toContain(eot);
    expect(tok.decode(tok.encode('a<|endoftext|>b'))).toBe('a<|endoftext|>b');
    expect(tok.encode('a<|endoftext|>b', { special: true })).toEqual([...tok.encode('a'), eot, ...tok.encode('b')]);
    expect(tok.tokenToId('<|endoftext|>')).toBe(eot);
    expect(tok.idToToken(eot)).toBe('<|endoftext|>');
    expect(tok.tokenToId('not a token')).toBeUndefined();
    expect(tok.continuationSafe).toBe(false);
  });

  it('the chat template: tokenizer_config.json chat_template (a string or named list), chat_template.jinja first', () => {
    const named = readHfTokenizer(
      writeTokenizer('bytelevel-templates', { tokenizer: json, config: { chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }] } }),
    );
    expect(named.chatTemplate).toBe('D');
    const path = writeTokenizer('bytelevel-template-file', { tokenizer: json, config: { chat_template: 'C' } });
    expect(readHfTokenizer(path).chatTemplate).toBe('C');
    writeFileSync(join(dirname(path), 'chat_template.jinja'), 'J');
    expect(readHfTokenizer(path).chatTemplate).toBe('J');
  });

  it('round-trips random text; special tokens decode to nothing', () => {
    const r = rng(8);
    for (let i = 0; i < 100; i++) {
      const text = randomText(r, 1 + Math.floor(r() * 40));
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
    expect(tok.decode([id('Ġthe'), eot])).toBe(' the');
  });
});

describe('tokenizer.json converted from tok512 (as transformers converts a SentencePiece BPE model)', () => {
  const path = testModel('stories260K/tok512.bin', 'tokenizer.json converted from tok512.bin');
  if (!path) {
    it.skip('needs ../shared/models/stories260K/tok512.bin');
    return;
  }
  const llama2c = readLlama2cTokenizer(path);
  const pieces: [string, number][] = [];
  for (let id = 3 + 256; id < llama2c.vocabSize; id++) pieces.push([llama2c.tokenText(id).replaceAll(' ', '▁'), -(id - 259)]);
  const tok = new HfTokenizer({ tokenizer: llamaStyle(pieces) });

  it('has the same ids as tok512', () => {
    expect(tok.vocabSize).toBe(512);
    for (let id = 0; id < 512; id++) {
      expect(tok.tokenText(id)).toBe(id < 3 ? ['<unk>', '<s>', '</s>'][id] : llama2c.tokenText(id).replaceAll(' ', '▁'));
    }
  });

  it('encodes the reference text to the reference ids and decodes it back', () => {
    const text = STORIES_REFERENCE_TEXT.slice(1);
    expect(tok.encode(text)).toEqual(STORIES_REFERENCE_IDS);
    expect(tok.decode(STORIES_REFERENCE_IDS)).toBe(text);
  });

  it('encodes like the llama2.c tokenizer on varied and random texts', () => {
    const r = rng(77);
    for (const text of [...ROUND_TRIP_TEXTS, ...Array.from({ length: 150 }, () => randomText(r, 1 + Math.floor(r() * 50)))]) {
      const ids = tok.encode(text);
      expect(ids, JSON.stringify(text)).toEqual(llama2c.encode(text));
      expect(tok.decode(ids)).toBe(text);
    }
  });
});
