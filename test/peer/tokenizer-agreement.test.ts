/**
 * Byte-level BPE tokenization against llama.cpp (node-llama-cpp's tokenize / detokenize) for
 * every pre-tokenizer name canopy accepts (tokenizer.ggml.pre), most of which have no conformance
 * file in ../shared/vocab (llama-bpe / llama3, qwen2, smollm, tekken, deepseek-v3, gpt-4o,
 * command-r, ...). For each, a synthetic vocabulary-only GGUF labelled with that name, written by
 * the project's GGUF writer:
 *   - the 256 byte-level symbols (GPT-2's bytes-to-unicode), then the tokens of the merges (about
 *     240) learned here by plain byte-pair counting on the corpus below and some English (so
 *     words, digit groups, CJK and emoji byte sequences really merge);
 *   - whole words with no merge path to them (" wonderful", "Hello", "123", "\n\n"): only a
 *     pre-tokenizer with llama.cpp's ignore_merges (llama3, tekken) emits them;
 *   - control tokens <|endoftext|>, <|im_start|>, <|im_end|> (matched in text only with
 *     special: true) and a user-defined token <tool> (matched always, as llama.cpp does).
 * A corpus of awkward text (emoji with joiners and modifiers, CJK, digits, code, whitespace runs,
 * non-ASCII whitespace, combining marks, lone surrogates, special-token text) is encoded by both,
 * with and without special tokens: the ids must be equal; canopy's decode must give the text back
 * (lone surrogates as U+FFFD) and equal llama.cpp's detokenization, up to the space clean-up
 * llama.cpp's detokenizer applies for many pre-tokenizer names (tokenizer_clean_spaces, see
 * llamaCleanSpaces), which does not round-trip and which canopy's decode does not do.
 * Skipped, with the reason printed, where node-llama-cpp is not installed (CI installs it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { llamaGgufMetadata, writeGguf } from '../../lib/model/formats/gguf-writer.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import { ggufVocabulary } from '../../lib/model/load.js';
import { BYTE_TO_UNICODE, GgufTokenizer, PRE_TOKENIZERS, TokenType } from '../../lib/model/tokenizer/gguf.js';
import { wellFormed } from '../../lib/model/tokenizer/pretokenize.js';
import { randomConfig } from '../helpers/random-model.js';
import { LlamaPeer, llamaPeerAvailable } from '../helpers/llama-peer.js';

const peerOk = llamaPeerAvailable('tokenizers vs llama.cpp');

/** Awkward text: every case is encoded with and without special tokens. */
export const AWKWARD_CORPUS: readonly string[] = [
  '',
  'Hello world',
  ' Hello  world   ',
  "I'm sure they'll say \"you'RE right\" and WE'VE DONE it, isn't it? O'Neil's",
  'HelloWorld ABCdef camelCaseVariable XMLHttpRequest iPhone MacDonald',
  '1 12 123 1234 12345 1234567890 3.14159 1,000,000 -42 +7e10 ²³ ٣٤٥ ①② 0x1F',
  'abc123def 4567ghi 1a2b3c 2024-06-01T12:34:56Z',
  'def f(x):\n    return x**2  # square\n\tif (a && b) { c->d[0] = "s"; }\n',
  'for (int i = 0; i < n; ++i) {\n\t\tsum += a[i] * b[i];\n}\n\n\n// done',
  'a\n\nb\r\n c\t\t d   \n   e \u00A0 f\u3000g\u2009h\u200Bi\u2028j',
  'I \u2764\uFE0F \u{1F355}! \u{1F468}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466} family, \u{1F44D}\u{1F3FD} thumbs, \u{1F1EB}\u{1F1F7} flag \u{1F600}\u{1F600}\u{1F600}',
  '我喜欢吃苹果。日本語のテキスト、カタカナ。한국어 텍스트입니다. 中文，標點！',
  'naïve café résumé e\u0301 n\u0303 Ελληνικά русский текст עברית العربية हिन्दी ไทย',
  'lone \uD800 high, \uDC00 low, pair \uD83D\uDE00 ok, reversed \uDE00\uD83D end\uD800',
  '\uFEFFstart \u0001\u0007 bell \u007F del',
  '<|im_start|>user\nHi there<|im_end|>\n<|endoftext|> and <tool>call</tool> <|im_start|',
  'https://example.com/a/b?c=d&e=f /usr/local/bin C:\\Windows\\System32 user@mail.org',
  '!!! ??? ... --- *** ((( ))) 。。。、、 ¡¿ «»',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  '                    ',
  '\n\n\n \n \n',
  ' wonderful wonderful! Hello Hello123 123 1234',
  'The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX.',
  "   leading spaces and trailing tabs\t\t\n",
  'ÀÉÎÕÜ àéîõü ß ẞ ﬁ ﬀ Å Å',
];

/** English to learn merges from (with the corpus). */
const TRAINING =
  'Once upon a time there was a little girl named Lily. She loved to play outside in the park with her friends. ' +
  'The quick brown fox jumps over the lazy dog. It is a wonderful day, and the sun is shining. ' +
  'function hello() { return "hello world"; } const x = 12345; let y = x * 2;';

/** Plain byte-pair merges learned from `texts` (words split at spaces), most frequent first, ties by text. */
function learnMerges(texts: string[], count: number): Array<[string, string]> {
  const words = new Map<string, number>();
  for (const t of texts) {
    for (const w of wellFormed(t).split(/(?= )/)) {
      if (!w) continue;
      const sym = Array.from(Buffer.from(w, 'utf8'), (b) => BYTE_TO_UNICODE[b]!).join('\u0000');
      words.set(sym, (words.get(sym) ?? 0) + 1);
    }
  }
  let seqs = [...words].map(([w, n]) => ({ syms: w.split('\u0000'), n }));
  const merges: Array<[string, string]> = [];
  while (merges.length < count) {
    const pairs = new Map<string, number>();
    for (const { syms, n } of seqs) for (let i = 0; i + 1 < syms.length; i++) pairs.set(`${syms[i]}\u0000${syms[i + 1]}`, (pairs.get(`${syms[i]}\u0000${syms[i + 1]}`) ?? 0) + n);
    let best: string | undefined;
    let bestN = 1; // a pair seen once is not worth a merge
    for (const [p, n] of pairs) if (n > bestN || (n === bestN && best !== undefined && p < best)) [best, bestN] = [p, n];
    if (!best) break;
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    seqs = seqs.map(({ syms, n }) => {
      const out: string[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(syms[i]!);
      }
      return { syms: out, n };
    });
  }
  return merges;
}

/**
 * llama.cpp's detokenizer clean-up (clean_spaces, on for GPT-2-like vocabularies, off for
 * llama3, qwen2, deepseek, tekken and others), restated: drop a space before ? ! . , ; turn
 * " ' " into "'"; drop a space before 's 'm 're 've.
 */
function llamaCleanSpaces(text: string): string {
  return text.replace(/ (?=[?!.,])/g, '').replace(/ ' /g, "'").replace(/ '(?=s|m|re|ve)/g, "'");
}

const byteLevel = (text: string) => Array.from(Buffer.from(text, 'utf8'), (b) => BYTE_TO_UNICODE[b]!).join('');

/** The synthetic vocabulary (see the module comment). */
function syntheticVocabulary(): { tokens: string[]; types: number[]; merges: string[] } {
  const tokens: string[] = [...BYTE_TO_UNICODE];
  const types: number[] = tokens.map(() => TokenType.NORMAL);
  const seen = new Set(tokens);
  const add = (t: string, type: number) => {
    if (seen.has(t)) return;
    seen.add(t);
    tokens.push(t);
    types.push(type);
  };
  const merges = learnMerges([...AWKWARD_CORPUS, TRAINING, TRAINING.toUpperCase()], 400); // about 240: pairs seen twice or more
  for (const [a, b] of merges) add(a + b, TokenType.NORMAL);
  for (const w of [' wonderful', 'Hello', '123', '\n\n']) add(byteLevel(w), TokenType.NORMAL);
  for (const s of ['<|endoftext|>', '<|im_start|>', '<|im_end|>']) add(s, TokenType.CONTROL);
  add('<tool>', TokenType.USER_DEFINED);
  return { tokens, types, merges: merges.map(([a, b]) => `${a} ${b}`) };
}

describe.runIf(peerOk)('byte-level BPE pre-tokenizers: canopy tokenizes as llama.cpp', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'canopy-tokenizer-agreement-'));
  const vocab = syntheticVocabulary();
  let peer: LlamaPeer;
  beforeAll(async () => {
    peer = await LlamaPeer.start(1);
  }, 60_000);
  afterAll(async () => {
    await peer?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('the synthetic vocabulary merges (a test that cannot pass by bytes alone)', () => {
    expect(vocab.merges.length).toBeGreaterThanOrEqual(200);
    expect(vocab.tokens.length).toBeGreaterThan(256 + 200);
  });

  // Every name canopy accepts; names sharing a pre-tokenizer still differ in llama.cpp's other
  // per-name settings, so each is checked.
  it.each(Object.keys(PRE_TOKENIZERS).map((n) => [n]))('tokenizer.ggml.pre = %s', async (pre: string) => {
    const path = join(tmp, `vocab-${pre.replace(/[^\w.-]/g, '_')}.gguf`);
    const eos = vocab.tokens.indexOf('<|endoftext|>');
    writeGguf(path, {
      metadata: [
        ...llamaGgufMetadata(randomConfig({ vocabSize: vocab.tokens.length })).filter(([k]) => !k.startsWith('tokenizer.')),
        ['tokenizer.ggml.model', 'string', 'gpt2'],
        ['tokenizer.ggml.pre', 'string', pre],
        ['tokenizer.ggml.tokens', 'array<string>', vocab.tokens],
        ['tokenizer.ggml.token_type', 'array<int32>', Int32Array.from(vocab.types)],
        ['tokenizer.ggml.merges', 'array<string>', vocab.merges],
        ['tokenizer.ggml.bos_token_id', 'uint32', eos],
        ['tokenizer.ggml.eos_token_id', 'uint32', eos],
      ],
      tensors: [],
    });
    const tok = new GgufTokenizer(ggufVocabulary(readGguf(path).metadata, path)!);
    const texts = [...AWKWARD_CORPUS];
    const [plain, special] = await Promise.all([peer.tokenize(path, texts, false), peer.tokenize(path, texts, true)]);
    const detok = await peer.detokenize(path, plain, false);
    await peer.unload(path);
    const failures: string[] = [];
    texts.forEach((text, i) => {
      const a = tok.encode(text, { bos: false });
      const b = tok.encode(text, { bos: false, special: true });
      if (a.join(' ') !== plain[i]!.join(' ')) failures.push(`${JSON.stringify(text)}\n  llama.cpp ${plain[i]!.join(' ')}\n  canopy    ${a.join(' ')}`);
      if (b.join(' ') !== special[i]!.join(' ')) failures.push(`${JSON.stringify(text)} (special)\n  llama.cpp ${special[i]!.join(' ')}\n  canopy    ${b.join(' ')}`);
      const back = tok.decode(a);
      if (back !== wellFormed(text)) failures.push(`${JSON.stringify(text)}: canopy decodes its ids to ${JSON.stringify(back)}`);
      if (detok[i] !== back && detok[i] !== llamaCleanSpaces(back)) failures.push(`${JSON.stringify(text)}: llama.cpp detokenizes to ${JSON.stringify(detok[i])}, canopy to ${JSON.stringify(back)}`);
    });
    // The vocabulary really merges under this pre-tokenizer (not byte by byte).
    const bytes = Buffer.byteLength(wellFormed(texts.join('')), 'utf8');
    expect(plain.flat().length).toBeLessThan(0.8 * bytes);
    expect(failures, `${pre}: ${failures.length} mismatches\n${failures.slice(0, 8).join('\n')}`).toEqual([]);
  }, 30_000);
});
