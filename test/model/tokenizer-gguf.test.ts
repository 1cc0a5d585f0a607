/**
 * GGUF-embedded vocabularies. SentencePiece ('llama'): the tok512 vocabulary rewritten as GGUF
 * arrays ('▁' for spaces) must tokenize exactly like the llama2.c tokenizer, and so must the
 * vocabulary stories260K.gguf really embeds. Byte-level BPE ('gpt2'): a handmade vocabulary
 * and merges, with hand-derived expected merges, multi-byte UTF-8, emoji and round trips.
 */
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { BYTE_TO_UNICODE, type GgufVocabulary, GgufTokenizer, PRE_TOKENIZERS, TokenType } from '../../lib/model/tokenizer/gguf.js';
import { splitWords, wellFormed } from '../../lib/model/tokenizer/pretokenize.js';
import { parseLlama2cTokenizer, readLlama2cTokenizer } from '../../lib/model/tokenizer/llama2c.js';
import { STORIES_REFERENCE_IDS, STORIES_REFERENCE_TEXT, testModel } from '../helpers/test-models.js';
import { readGgufMetadata } from '../helpers/tokenizer-reference.js';
import { rng } from '../helpers/verify-reference.js';
import { ROUND_TRIP_TEXTS, randomText, streamPieces } from '../helpers/tokenizer-cases.js';

describe('GGUF SentencePiece vocabulary (llama): tok512 as GGUF arrays', () => {
  const binPath = testModel('stories260K/tok512.bin', 'GGUF llama vocabulary built from tok512.bin');
  const ggufPath = testModel('stories260K/stories260K.gguf', 'GGUF llama vocabulary of stories260K.gguf');
  if (!binPath || !ggufPath) {
    it.skip('needs ../shared/models/stories260K');
    return;
  }
  const llama2c = readLlama2cTokenizer(binPath);
  const n = llama2c.vocabSize;
  const tokens = Array.from({ length: n }, (_, id) => llama2c.tokenText(id).replaceAll(' ', '\u2581'));
  const scores = parseLlama2cTokenizer(new Uint8Array(readFileSync(binPath)), binPath).entries.map((e) => e.score);
  const tokenTypes = tokens.map((t, id) => (id === 0 ? TokenType.UNKNOWN : id < 3 ? TokenType.CONTROL : /^<0x[0-9A-F]{2}>$/.test(t) ? TokenType.BYTE : TokenType.NORMAL));
  const built: GgufVocabulary = { model: 'llama', tokens, scores, tokenTypes, bosId: 1, eosId: 2 };

  const meta = readGgufMetadata(ggufPath);
  const real: GgufVocabulary = {
    model: meta.get('tokenizer.ggml.model') as 'llama',
    tokens: meta.get('tokenizer.ggml.tokens') as string[],
    scores: meta.get('tokenizer.ggml.scores') as number[],
    tokenTypes: meta.get('tokenizer.ggml.token_type') as number[],
    bosId: meta.get('tokenizer.ggml.bos_token_id') as number,
    eosId: meta.get('tokenizer.ggml.eos_token_id') as number,
    unknownId: meta.get('tokenizer.ggml.unknown_token_id') as number,
  };

  it('the construction matches what stories260K.gguf embeds (but for the spelling of <s> and </s>)', () => {
    expect(real.model).toBe('llama');
    expect(real.tokens.length).toBe(n);
    const differing = tokens.flatMap((t, i) => (t === real.tokens[i] ? [] : [[i, t, real.tokens[i]]]));
    expect(differing).toEqual([
      [1, '\n<s>\n', '<s>'],
      [2, '\n</s>\n', '</s>'],
    ]);
    expect(Array.from(real.scores!)).toEqual(scores);
    expect(Array.from(real.tokenTypes!)).toEqual(tokenTypes);
  });

  const variants: [string, GgufVocabulary][] = [
    ['built from tok512', built],
    ['read from stories260K.gguf', real],
    ['built, without token types', { model: 'llama', tokens, scores }],
  ];

  describe.each(variants)('%s', (_name, vocabulary) => {
    const tok = new GgufTokenizer(vocabulary);

    it('has the llama.cpp special ids and adds BOS by default', () => {
      expect(tok.vocabSize).toBe(512);
      expect(tok.bosId).toBe(1);
      expect(tok.eosIds).toEqual([2]);
      expect(tok.addBosByDefault).toBe(true);
      expect(tok.tokenText(403)).toBe('\u2581Once');
    });

    it('encodes the reference text to the reference ids, like the llama2.c tokenizer', () => {
      const text = STORIES_REFERENCE_TEXT.slice(1);
      expect(tok.encode(text)).toEqual(STORIES_REFERENCE_IDS);
      expect(tok.encode('Once upon a time', { eos: true })).toEqual([1, 403, 407, 261, 378, 2]);
      expect(tok.encode('', { bos: false })).toEqual([]);
    });

    it('decodes: the space prefix goes with or without BOS (SentencePiece), control tokens render nothing', () => {
      expect(tok.decode(STORIES_REFERENCE_IDS)).toBe(STORIES_REFERENCE_TEXT.slice(1));
      expect(tok.decode(STORIES_REFERENCE_IDS.slice(1))).toBe(STORIES_REFERENCE_TEXT.slice(1));
      // Only the first text-bearing token loses its space.
      expect(tok.decode([1, 403, 2, 1, 403])).toBe('Once Once');
    });

    it('agrees with the llama2.c tokenizer on varied and random texts, and round-trips', () => {
      const r = rng(4242);
      const texts = [...ROUND_TRIP_TEXTS, ...Array.from({ length: 200 }, () => randomText(r, 1 + Math.floor(r() * 50)))];
      for (const text of texts) {
        const ids = tok.encode(text);
        expect(ids, JSON.stringify(text)).toEqual(llama2c.encode(text));
        expect(tok.decode(ids)).toBe(text);
        const { pieces, flushed } = streamPieces(tok, ids);
        expect(pieces.join('') + flushed).toBe(text);
      }
    });
  });

  it('add_space_prefix false: no leading ▁ and no space stripped', () => {
    const tok = new GgufTokenizer({ ...built, addSpacePrefix: false });
    const ids = tok.encode('Once upon', { bos: false });
    expect(tok.tokenText(ids[0]!).startsWith('\u2581')).toBe(false);
    expect(tok.decode(ids)).toBe('Once upon');
    expect(tok.decode([403])).toBe(' Once');
  });

  it('addBos false: no BOS unless asked', () => {
    const tok = new GgufTokenizer({ ...built, addBos: false });
    expect(tok.encode('Once')).toEqual([403]);
    expect(tok.encode('Once', { bos: true })).toEqual([1, 403]);
  });

  it('stream decoding holds an emoji back until its 4th byte token, and primes on a prompt', () => {
    const tok = new GgufTokenizer(built);
    const ids = tok.encode('a😀', { bos: false });
    expect(ids.slice(-4).map((id) => tok.tokenText(id))).toEqual(['<0xF0>', '<0x9F>', '<0x98>', '<0x80>']);
    expect(streamPieces(tok, ids).pieces).toEqual(['a', '', '', '', '😀']);
    // Primed with the prompt, the continuation keeps its space (the prefix was in the prompt).
    const prompt = tok.encode('Once upon');
    expect(streamPieces(tok, [261, 378], prompt).pieces.join('')).toBe(' a time'); // '▁a' '▁time'
    expect(streamPieces(tok, [261, 378]).pieces.join('')).toBe('a time'); // unprimed: first-token rule
  });
});

// ---- Byte-level BPE (gpt2) -------------------------------------------------------------

/** The byte-level text of a string: its UTF-8 bytes in GPT-2's alphabet. */
const bl = (s: string) => Array.from(new TextEncoder().encode(s), (b) => BYTE_TO_UNICODE[b]).join('');

function byteLevelVocabulary(merges: [string, string][], extra: GgufVocabulary['pre'] = undefined): GgufVocabulary {
  const tokens = [...BYTE_TO_UNICODE];
  for (const [a, b] of merges) if (!tokens.includes(a + b)) tokens.push(a + b);
  tokens.push('<|endoftext|>', 'xyz');
  const tokenTypes = tokens.map((t) => (t === '<|endoftext|>' ? TokenType.CONTROL : TokenType.NORMAL));
  const eot = tokens.indexOf('<|endoftext|>');
  const v: GgufVocabulary = { model: 'gpt2', tokens, tokenTypes, merges: merges.map(([a, b]) => `${a} ${b}`), bosId: eot, eosId: eot };
  if (extra !== undefined) v.pre = extra;
  return v;
}

describe('GGUF byte-level BPE vocabulary (gpt2): handmade', () => {
  const MERGES: [string, string][] = [
    ['Ġ', 't'], // 0
    ['h', 'e'], // 1
    ['Ġt', 'he'], // 2
    [bl('é')[0]!, bl('é')[1]!], // 3: 'Ã' '©' -> é
    ['c', 'a'], // 4
    ['ca', 'f'], // 5
    ['caf', bl('é')], // 6: café
    [bl('😀')[0]!, bl('😀')[1]!], // 7: the emoji's first two bytes
    ['a', 'b'], // 8
    ['b', 'c'], // 9
    ['Ġ', 'Ġ'], // 10
  ];
  const v = byteLevelVocabulary(MERGES);
  const tok = new GgufTokenizer(v);
  const id = (text: string) => {
    const i = v.tokens.indexOf(text);
    if (i < 0) throw new Error(`no token ${text}`);
    return i;
  };

  it('maps bytes to GPT-2 unicode (printable bytes stand for themselves, space is Ġ, newline Ċ)', () => {
    expect(BYTE_TO_UNICODE[0x41]).toBe('A');
    expect(BYTE_TO_UNICODE[0x20]).toBe('Ġ');
    expect(BYTE_TO_UNICODE[0x0a]).toBe('Ċ');
    expect(BYTE_TO_UNICODE[0xad]).toBe('Ń'); // the 68th unprintable byte -> U+0100 + 67
    expect(BYTE_TO_UNICODE[0x00]).toBe('Ā');
    expect(new Set(BYTE_TO_UNICODE).size).toBe(256);
  });

  it('has no BOS by default for gpt2 unless addBos', () => {
    expect(tok.addBosByDefault).toBe(false);
    expect(tok.encode('the')).toEqual([id('t'), id('he')]);
    expect(new GgufTokenizer({ ...v, addBos: true }).encode('the')[0]).toBe(id('<|endoftext|>'));
    expect(tok.encode('the', { bos: true, eos: true })).toEqual([id('<|endoftext|>'), id('t'), id('he'), id('<|endoftext|>')]);
  });

  it('merges by rank within pre-tokenizer words', () => {
    // "the café": words "the", " café". "the": only 'h e' applies. " café": 'Ã ©' (rank 3)
    // first, then 'c a', 'ca f', 'caf é'; 'Ġ' has no merge with 'c'.
    expect(tok.encode('the café')).toEqual([id('t'), id('he'), id('Ġ'), id('caf' + bl('é'))]);
    // " the": 'Ġ t' (0), 'h e' (1), 'Ġt he' (2).
    expect(tok.encode(' the')).toEqual([id('Ġthe')]);
    // Merges never cross words: "the" + " the".
    expect(tok.encode('the the')).toEqual([id('t'), id('he'), id('Ġthe')]);
  });

  it('the lower rank wins on overlapping pairs', () => {
    expect(tok.encode('abc')).toEqual([id('ab'), id('c')]);
    const sv = byteLevelVocabulary(MERGES.map((m, i) => (i === 8 ? MERGES[9]! : i === 9 ? MERGES[8]! : m)));
    expect(new GgufTokenizer(sv).encode('abc')).toEqual([sv.tokens.indexOf('a'), sv.tokens.indexOf('bc')]);
  });

  it('encodes multi-byte characters and emoji as bytes, merged where merges exist', () => {
    expect(tok.encode('é')).toEqual([id(bl('é'))]);
    const emoji = tok.encode('😀');
    expect(emoji).toEqual([id(bl('😀').slice(0, 2)), id(bl('😀')[2]!), id(bl('😀')[3]!)]);
    expect(tok.decode(emoji)).toBe('😀');
    expect(streamPieces(tok, emoji).pieces).toEqual(['', '', '😀']);
    // '日' has no merges: three byte tokens.
    expect(tok.encode('日')).toEqual(Array.from(new TextEncoder().encode('日'), (b) => b));
  });

  it.each(ROUND_TRIP_TEXTS)('round trip %j', (text) => {
    const ids = tok.encode(text);
    expect(tok.decode(ids)).toBe(text);
    const { pieces, flushed } = streamPieces(tok, ids);
    expect(pieces.join('') + flushed).toBe(text);
  });

  it('round-trips random texts; control tokens decode to nothing; tokenText shows the raw entry', () => {
    const r = rng(5);
    for (let i = 0; i < 200; i++) {
      const text = randomText(r, 1 + Math.floor(r() * 40));
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
    expect(tok.decode([id('<|endoftext|>')])).toBe('');
    expect(tok.tokenText(id('Ġthe'))).toBe('Ġthe');
    // Special-token spellings in text are plain text.
    expect(tok.encode('<|endoftext|>')).not.toContain(id('<|endoftext|>'));
  });

  it('llama-bpe pre-tokenizer: a word that is a token is taken whole (ignore_merges)', () => {
    expect(tok.encode('xyz')).toEqual([id('x'), id('y'), id('z')]);
    const llama3 = new GgufTokenizer(byteLevelVocabulary(MERGES, 'llama-bpe'));
    expect(llama3.encode('xyz', { bos: false })).toEqual([id('xyz')]);
  });
});

describe('pre-tokenizer regexes', () => {
  const split = (pre: string, text: string) => splitWords(text, PRE_TOKENIZERS[pre]!);

  it('GPT-2: contractions, letters, digits and punctuation runs with one leading space; whitespace before a word joins it', () => {
    expect(split('gpt-2', "Hello world's 12345 ok?!  \n x")).toEqual(['Hello', ' world', "'s", ' 12345', ' ok', '?!', '  \n', ' x']);
    expect(split('gpt-2', 'naïve 日本 😀😀')).toEqual(['naïve', ' 日本', ' 😀😀']);
    expect(split('gpt-2', "I'M")).toEqual(['I', "'", 'M']); // case-sensitive contractions
  });

  it('Llama 3: digits in groups of up to three, case-insensitive contractions, newlines apart', () => {
    expect(split('llama-bpe', '1234567 x')).toEqual(['123', '456', '7', ' x']);
    expect(split('llama-bpe', "I'M here\n\nnow")).toEqual(['I', "'M", ' here', '\n\n', 'now']);
  });

  it('Qwen2: single digits', () => {
    expect(split('qwen2', 'a 123')).toEqual(['a', ' ', '1', '2', '3']);
  });

  it('every pre-tokenizer splits text into non-empty words that concatenate back to it', () => {
    const r = rng(11);
    for (const pre of Object.keys(PRE_TOKENIZERS)) {
      for (let i = 0; i < 50; i++) {
        const text = randomText(r, Math.floor(r() * 40)) + '\u0085\u00a0\u2028\r\n\u000b\u3000 x 1234567';
        const words = split(pre, text);
        expect(words.join(''), `${pre} ${JSON.stringify(text)}`).toBe(text);
        expect(words.every((w) => w.length > 0)).toBe(true);
      }
    }
  });
});

describe('pre-tokenizers by tokenizer.ggml.pre name (hand-derived splits, as llama.cpp splits)', () => {
  const TEXT = "HelloWorld I'M 1234567 日本語\u3000x  \n\ty!?/\n";
  const cases: Array<[string, string[]]> = [
    // Llama 3: case-insensitive contractions, digits by three, a leading non-letter joins a word (U+3000 too), newlines with the whitespace before them.
    ['llama3', ['HelloWorld', ' I', "'M", ' ', '123', '456', '7', ' 日本語', '\u3000x', '  \n', '\ty', '!?/\n']],
    ['qwen2', ['HelloWorld', ' I', "'M", ' ', '1', '2', '3', '4', '5', '6', '7', ' 日本語', '\u3000x', '  \n', '\ty', '!?/\n']],
    // Tekken (Mistral Nemo): words split at a lower-to-upper case change; single digits.
    ['tekken', ['Hello', 'World', ' I', "'M", ' ', '1', '2', '3', '4', '5', '6', '7', ' 日本語', '\u3000x', '  \n', '\ty', '!?/\n']],
    // o200k (gpt-4o, llama4): case-aware words that keep their contraction; digits by three.
    ['gpt-4o', ['Hello', 'World', " I'M", ' ', '123', '456', '7', ' 日本語', '\u3000x', '  \n', '\ty', '!?/\n']],
    // DeepSeek V3: digits by three first, then CJK runs apart from the space before them.
    ['deepseek-v3', ['HelloWorld', ' I', "'M", ' ', '123', '456', '7', ' ', '日本語', '\u3000x', '  \n', '\ty', '!?/\n']],
    // SmolLM / StarCoder: every digit alone, then GPT-2's regex (case-sensitive contractions).
    ['smollm', ['HelloWorld', ' I', "'", 'M', ' ', '1', '2', '3', '4', '5', '6', '7', ' 日本語', '\u3000', 'x', '  \n', '\t', 'y', '!?/', '\n']],
    // SuperBPE: digit runs, cut into groups of three from the right; nothing else is split.
    ['superbpe', ["HelloWorld I'M ", '1', '234', '567', ' 日本語\u3000x  \n\ty!?/\n']],
  ];
  it.each(cases)('%s', (pre, words) => {
    expect(splitWords(TEXT, PRE_TOKENIZERS[pre]!)).toEqual(words);
  });

  it('kimi-k2: Han runs apart, a word keeps its contraction; afmoe: digit runs cut n mod 3 first, text before a run joins its first group', () => {
    expect(splitWords("HelloWorld I'M 1234567 日本語x 中文", PRE_TOKENIZERS['kimi-k2']!)).toEqual(['HelloWorld', " I'M", ' ', '123', '456', '7', ' ', '日本語', 'x', ' ', '中文']);
    expect(splitWords('ab1234 x12345 ab123 ภาษาไทย 9', PRE_TOKENIZERS.afmoe!)).toEqual(['ab', '1', '234', ' x', '12', '345', ' ab', '123', ' ', 'ภาษาไทย', ' ', '9']);
  });

  it('every name encodes and decodes an awkward corpus losslessly (lone surrogates become U+FFFD)', () => {
    const corpus = [
      '😀👩‍👩‍👧🇫🇷 emoji', '日本語のテキスト、中文。한국어', 'digits 0 12 345 6789 1234567890 ٣٤٥', 'def f(x):\n\treturn x**2  # code\n',
      '   spaces\t\ttabs\n\n\nnewlines\r\n', '\u00a0\u2003\u3000\u2028\u0085odd spaces\ufeff', 'lone \ud800 surrogate \udc00 end', "it's I'M we'Ve",
    ];
    expect(wellFormed('a\ud800b\ud83d\ude00c\udc00')).toBe('a\ufffdb\u{1F600}c\ufffd');
    for (const pre of Object.keys(PRE_TOKENIZERS)) {
      const tok = new GgufTokenizer(byteLevelVocabulary([['Ġ', 't'], ['h', 'e']], pre));
      for (const text of corpus) {
        const ids = tok.encode(text, { bos: false });
        expect(tok.decode(ids), `${pre}: ${JSON.stringify(text)}`).toBe(wellFormed(text));
      }
    }
  });
});

describe('GGUF end-of-generation tokens', () => {
  it('EOS, EOT, EOM and the texts llama.cpp treats as end of generation (made control whatever their stored type)', () => {
    const v = byteLevelVocabulary([['Ġ', 't']], 'qwen2');
    const tokens = [...v.tokens, '<|im_end|>', '<|eom_id|>', '<|eot_x|>'];
    const imEnd = tokens.length - 3;
    const eom = tokens.length - 2;
    const eot = tokens.length - 1;
    const types = [...Array.from(v.tokenTypes!), TokenType.NORMAL, TokenType.USER_DEFINED, TokenType.CONTROL];
    const tok = new GgufTokenizer({ ...v, tokens, tokenTypes: types, eotId: eot });
    expect(tok.eosIds[0]).toBe(v.eosId);
    expect(new Set(tok.eosIds)).toEqual(new Set([v.eosId, eot, imEnd, eom]));
    // <|im_end|> is stored as a normal token: still control (matched only with special: true, decodes to nothing).
    expect(tok.encode('a<|im_end|>', { bos: false })).not.toContain(imEnd);
    expect(tok.encode('a<|im_end|>', { bos: false, special: true })).toEqual([tok.tokenToId('a'), imEnd]);
    expect(tok.decode([tok.tokenToId('a')!, imEnd])).toBe('a');
  });
});
