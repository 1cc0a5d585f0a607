/**
 * llama.cpp's own tokenizer conformance cases (its tests/test-tokenizer-0): vocabulary-only
 * GGUF files with input strings and the ids llama.cpp produces for them (no BOS/EOS, special
 * tokens not parsed). Read from ../shared/vocab (or CANOPY_TEST_VOCAB); skipped, saying why,
 * when absent. Every case of every file must match, and decoding must give the input back
 * (byte-level BPE is lossless; SentencePiece drops nothing but the prefix space).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { readGguf } from '../../lib/model/formats/gguf.js';
import { ggufVocabulary } from '../../lib/model/load.js';
import { GgufTokenizer } from '../../lib/model/tokenizer/gguf.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const VOCAB_DIR = process.env.CANOPY_TEST_VOCAB ?? resolve(repoRoot, '../shared/vocab');

const NAMES = ['llama-spm', 'phi-3', 'gpt-2', 'deepseek-coder', 'deepseek-llm', 'falcon', 'mpt', 'starcoder', 'refact'];

/** The cases of one vocabulary: inputs split on the separator line, expected ids per line. */
function readCases(path: string): Array<{ text: string; ids: number[] }> {
  const inp = readFileSync(`${path}.inp`, 'utf8');
  const out = readFileSync(`${path}.out`, 'utf8');
  // Every input is followed by the line __ggml_vocab_test__ (the newline before it is not part of the input).
  const inputs = inp.split('\n__ggml_vocab_test__\n');
  if (inputs[inputs.length - 1] === '') inputs.pop();
  const lines = out.split('\n');
  return inputs.map((text, i) => ({ text, ids: lines[i]!.trim() === '' ? [] : lines[i]!.trim().split(/\s+/).map(Number) }));
}

describe.each(NAMES)('llama.cpp conformance: ggml-vocab-%s', (name) => {
  const path = join(VOCAB_DIR, `ggml-vocab-${name}.gguf`);
  const present = existsSync(path) && existsSync(`${path}.inp`) && existsSync(`${path}.out`);
  if (!present) console.warn(`[skip] tokenizer conformance ${name}: ${path}(.inp/.out) not found (set CANOPY_TEST_VOCAB)`);

  it.skipIf(!present)('every case tokenizes to llama.cpp ids and decodes back', () => {
    const file = readGguf(path);
    const tok = new GgufTokenizer(ggufVocabulary(file.metadata, path)!);
    const cases = readCases(path);
    expect(cases.length).toBeGreaterThan(20);
    const failures: string[] = [];
    for (const { text, ids } of cases) {
      const got = tok.encode(text, { bos: false });
      if (got.join(' ') !== ids.join(' ')) failures.push(`${JSON.stringify(text)}\n  want ${ids.join(' ')}\n  got  ${got.join(' ')}`);
      else if (tok.model === 'gpt2') expect(tok.decode(got)).toBe(text);
    }
    expect(failures, failures.join('\n')).toEqual([]);
  });
});

describe('special tokens in text (real vocabularies)', () => {
  const load = (name: string): GgufTokenizer | undefined => {
    const path = join(VOCAB_DIR, `ggml-vocab-${name}.gguf`);
    return existsSync(path) ? new GgufTokenizer(ggufVocabulary(readGguf(path).metadata, path)!) : undefined;
  };
  const gpt2 = load('gpt-2');
  const spm = load('llama-spm');

  it.skipIf(!gpt2)('gpt-2: <|endoftext|> is its token only with special: true; tokenToId / idToToken', () => {
    const tok = gpt2!;
    const eot = tok.tokenToId('<|endoftext|>')!;
    expect(eot).toBe(50256);
    expect(tok.idToToken(eot)).toBe('<|endoftext|>');
    expect(tok.tokenToId('no such token')).toBeUndefined();
    expect(tok.eosIds).toEqual([50256]);
    const plain = tok.encode('Hi<|endoftext|> there');
    expect(plain).not.toContain(eot);
    expect(tok.decode(plain)).toBe('Hi<|endoftext|> there');
    const withSpecial = tok.encode('Hi<|endoftext|> there', { special: true });
    expect(withSpecial).toEqual([...tok.encode('Hi'), eot, ...tok.encode(' there')]);
  });

  it.skipIf(!spm)('llama-spm: <s> and </s> with special: true; the text after a special token gets its own space prefix', () => {
    const tok = spm!;
    expect(tok.encode('<s>Hello</s>', { bos: false, special: true })).toEqual([1, ...tok.encode('Hello', { bos: false }), 2]);
    expect(tok.encode('<s>', { bos: false })).not.toContain(1);
  });
});
