/**
 * loadTokenizer / findTokenizerFor: which implementation each input selects, where a
 * tokenizer is looked for next to a model, and the errors (missing, truncated, corrupt,
 * unsupported) with a table of bad inputs across all three implementations.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { IoError } from '../../lib/errors.js';
import { BYTE_TO_UNICODE, GgufTokenizer, type GgufVocabulary } from '../../lib/model/tokenizer/gguf.js';
import { HfTokenizer } from '../../lib/model/tokenizer/hf.js';
import { findTokenizerFor, loadTokenizer } from '../../lib/model/tokenizer/index.js';
import { Llama2cTokenizer, type Llama2cVocabulary, serializeLlama2cTokenizer } from '../../lib/model/tokenizer/llama2c.js';
import { type BadInputCase, describeBadInputs } from '../helpers/bad-inputs.js';
import { STORIES_REFERENCE_IDS, STORIES_REFERENCE_TEXT, testModel } from '../helpers/test-models.js';
import { readGgufMetadata } from '../helpers/tokenizer-reference.js';

const root = mkdtempSync(join(tmpdir(), 'canopy-tok-load-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const enc = new TextEncoder();
/** A small llama2.c vocabulary: <unk> <s> </s>, 256 byte tokens, ' ', 'a', ' a'. */
const VOCAB: Llama2cVocabulary = {
  maxTokenLength: 6,
  entries: [
    ...['<unk>', '\n<s>\n', '\n</s>\n'].map((t) => ({ score: 0, bytes: enc.encode(t) })),
    ...Array.from({ length: 256 }, (_, b) => ({ score: 0, bytes: enc.encode(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) })),
    { score: -1, bytes: enc.encode(' ') },
    { score: -2, bytes: enc.encode('a') },
    { score: -3, bytes: enc.encode(' a') },
  ],
};
const BIN = serializeLlama2cTokenizer(VOCAB);
const N = VOCAB.entries.length; // 262

const HF_JSON = {
  version: '1.0',
  added_tokens: [{ id: 256, content: '<|endoftext|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false }],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: null,
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: 'BPE', unk_token: null, byte_fallback: false, ignore_merges: false, merges: [],
    vocab: { ...Object.fromEntries(BYTE_TO_UNICODE.map((c, b) => [c, b])), '<|endoftext|>': 256 },
  },
};

/** Creates `files` (name -> contents) in a fresh folder; returns the folder. */
function folder(name: string, files: Record<string, string | Uint8Array>): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, data] of Object.entries(files)) writeFileSync(join(dir, file), data);
  return dir;
}

const GPT2_VOCAB: GgufVocabulary = { model: 'gpt2', tokens: [...BYTE_TO_UNICODE, '<|endoftext|>'], merges: [], eosId: 256 };

describe('loadTokenizer chooses the implementation', () => {
  const llamaDir = folder('llama2c', { 'model.bin': 'x', 'tokenizer.bin': BIN });
  const hfDir = folder('hf', { 'model.safetensors': 'x', 'tokenizer.json': JSON.stringify(HF_JSON), 'config.json': '{}' });

  it('a llama2.c model: tokenizer.bin next to it', () => {
    expect(findTokenizerFor(join(llamaDir, 'model.bin'))).toBe(join(llamaDir, 'tokenizer.bin'));
    const tok = loadTokenizer({ modelPath: join(llamaDir, 'model.bin') });
    expect(tok).toBeInstanceOf(Llama2cTokenizer);
    expect(tok.vocabSize).toBe(N);
    expect(tok.encode('a')).toEqual([1, N - 1]);
  });

  it('tokenizer.bin wins over tok*.bin; a single tok*.bin is found; several are ambiguous', () => {
    const both = folder('both', { 'model.bin': 'x', 'tokenizer.bin': BIN, 'tok512.bin': BIN });
    expect(findTokenizerFor(join(both, 'model.bin'))).toBe(join(both, 'tokenizer.bin'));
    const one = folder('one', { 'model.bin': 'x', 'tok512.bin': BIN });
    expect(findTokenizerFor(join(one, 'model.bin'))).toBe(join(one, 'tok512.bin'));
    const two = folder('two', { 'model.bin': 'x', 'tok512.bin': BIN, 'tok4096.bin': BIN });
    expect(() => findTokenizerFor(join(two, 'model.bin'))).toThrow(/several candidate tokenizers .* \(tok4096\.bin, tok512\.bin\); pass the tokenizer file with --tokenizer PATH/);
  });

  it('a Hugging Face checkpoint (folder or weights file): tokenizer.json', () => {
    expect(findTokenizerFor(hfDir)).toBe(join(hfDir, 'tokenizer.json'));
    expect(findTokenizerFor(join(hfDir, 'model.safetensors'))).toBe(join(hfDir, 'tokenizer.json'));
    const tok = loadTokenizer({ modelPath: hfDir });
    expect(tok).toBeInstanceOf(HfTokenizer);
    expect(tok.decode(tok.encode('héllo 😀'))).toBe('héllo 😀');
  });

  it('GGUF metadata', () => {
    const tok = loadTokenizer({ ggufMetadata: GPT2_VOCAB });
    expect(tok).toBeInstanceOf(GgufTokenizer);
    expect(tok.eosIds).toEqual([256]);
  });

  it('an explicit path (file or folder) overrides the model path and GGUF metadata', () => {
    expect(loadTokenizer({ path: join(hfDir, 'tokenizer.json'), modelPath: join(llamaDir, 'model.bin') })).toBeInstanceOf(HfTokenizer);
    expect(loadTokenizer({ path: join(llamaDir, 'tokenizer.bin'), ggufMetadata: GPT2_VOCAB })).toBeInstanceOf(Llama2cTokenizer);
    expect(loadTokenizer({ path: llamaDir })).toBeInstanceOf(Llama2cTokenizer);
    // A JSON tokenizer under another name is recognised by its first byte.
    const renamed = folder('renamed', { 'my-tokenizer': JSON.stringify(HF_JSON) });
    expect(loadTokenizer({ path: join(renamed, 'my-tokenizer') })).toBeInstanceOf(HfTokenizer);
  });

  it('vocabSize: tokenizer.bin is read for exactly that many tokens; others must not exceed it', () => {
    expect(loadTokenizer({ path: join(llamaDir, 'tokenizer.bin'), vocabSize: N }).vocabSize).toBe(N);
    expect(loadTokenizer({ modelPath: hfDir, vocabSize: 300 }).vocabSize).toBe(257); // padded embeddings are fine
  });

  describe('stories260K', () => {
    const model = testModel('stories260K/stories260K.bin', 'loadTokenizer next to stories260K.bin');
    const gguf = testModel('stories260K/stories260K.gguf', 'loadTokenizer from stories260K.gguf metadata');
    it.skipIf(!model)('finds tok512.bin next to stories260K.bin and decodes the reference output', () => {
      expect(findTokenizerFor(model!)).toMatch(/stories260K[\\/]tok512\.bin$/);
      const tok = loadTokenizer({ modelPath: model!, vocabSize: 512 });
      expect(tok.decode(STORIES_REFERENCE_IDS.slice(1))).toBe(STORIES_REFERENCE_TEXT);
    });
    it.skipIf(!gguf)('refuses the .gguf path itself but loads its metadata', () => {
      expect(() => loadTokenizer({ modelPath: gguf! })).toThrow(/is a GGUF model: its tokenizer is in its metadata; pass the parsed metadata \(ggufMetadata\)/);
      const m = readGgufMetadata(gguf!);
      const tok = loadTokenizer({
        modelPath: gguf!,
        ggufMetadata: {
          model: 'llama',
          tokens: m.get('tokenizer.ggml.tokens') as string[],
          scores: m.get('tokenizer.ggml.scores') as number[],
          tokenTypes: m.get('tokenizer.ggml.token_type') as number[],
        },
        vocabSize: 512,
      });
      expect(tok.encode(STORIES_REFERENCE_TEXT.slice(1))).toEqual(STORIES_REFERENCE_IDS);
    });
  });
});


// ---- bad inputs -------------------------------------------------------------------------

const badDir = folder('bad', {
  'trunc-header.bin': BIN.subarray(0, 4 + 8 + 3), // token 0: 5 text bytes, 3 present
  'trunc-entry.bin': BIN.subarray(0, 4 + 6), // token 0: 6 of its 8 header bytes
  'tiny.bin': BIN.subarray(0, 2),
  'zero-max.bin': new Uint8Array(8),
  'negative-length.bin': (() => {
    const b = BIN.slice();
    new DataView(b.buffer).setInt32(4 + 4, -7, true);
    return b;
  })(),
  'nan-score.bin': (() => {
    const b = BIN.slice();
    new DataView(b.buffer).setFloat32(4 + 8 + 5, NaN, true); // token 1's score
    return b;
  })(),
  'tokenizer.model': new Uint8Array([0x0a, 0x0b, 0x0a]),
  'model.gguf': 'GGUF....',
  'broken.json': '{ "model": ',
  'unsupported.json': JSON.stringify({ ...HF_JSON, model: { type: 'Foo', vocab: {} } }),
});
folder('bad/bad-config', { 'tokenizer.json': JSON.stringify(HF_JSON), 'tokenizer_config.json': JSON.stringify({ bos_token: '<nope>' }) });
const emptyDir = folder('empty', { 'model.bin': 'x' });

const llama2c = new Llama2cTokenizer(VOCAB);
const gpt2 = new GgufTokenizer(GPT2_VOCAB);
const hf = new HfTokenizer({ tokenizer: HF_JSON });
const noByteGpt2 = new GgufTokenizer({ model: 'gpt2', tokens: BYTE_TO_UNICODE.filter((c) => c !== 'A'), merges: [] });
const bad = (name: string) => join(badDir, name);

const cases: BadInputCase[] = [
  // ids
  ['llama2c: id out of range', () => llama2c.decode([0, N]), new RegExp(`ids\\[1\\] must be an integer token id in \\[0, ${N - 1}\\]; received ${N}`)],
  ['llama2c: negative id', () => llama2c.decode([-1]), /ids\[0\] must be an integer token id in \[0, 261\]; received -1/],
  ['llama2c: fractional id', () => llama2c.decode(new Float32Array([1.5])), /ids\[0\] must be an integer token id .*; received 1\.5/],
  ['llama2c: NaN id', () => llama2c.decode([NaN]), /ids\[0\] must be an integer token id .*; received NaN/],
  ['llama2c: string id', () => llama2c.decode(['3'] as never), /ids\[0\] must be an integer token id .*; received "3"/],
  ['llama2c: ids not an array', () => llama2c.decode(3 as never), /ids must be an array or typed array of token ids; received 3/],
  ['llama2c: ids a string', () => llama2c.decode('12' as never), /ids must be an array or typed array of token ids; received "12"/],
  ['llama2c: push out of range', () => llama2c.streamDecoder().push(N + 1), /id must be an integer token id in \[0, 261\]; received 263/],
  ['llama2c: push non-integer', () => llama2c.streamDecoder().push(2.5), /id must be an integer token id .*; received 2\.5/],
  ['llama2c: context out of range', () => llama2c.streamDecoder([1, 9999]), /context\[1\] must be an integer token id .*; received 9999/],
  ['llama2c: tokenText out of range', () => llama2c.tokenText(N), /id must be an integer token id .*; received 262/],
  ['gguf: id out of range', () => gpt2.decode([257]), /ids\[0\] must be an integer token id in \[0, 256\]; received 257/],
  ['gguf: push non-integer', () => gpt2.streamDecoder().push(0.5), /id must be an integer token id .*; received 0\.5/],
  ['hf: id out of range', () => hf.decode([5, 257]), /ids\[1\] must be an integer token id in \[0, 256\]; received 257/],
  ['hf: push out of range', () => hf.streamDecoder().push(-3), /id must be an integer token id .*; received -3/],
  ['hf: tokenText non-integer', () => hf.tokenText(1.25), /id must be an integer token id .*; received 1\.25/],
  // encode arguments
  ['encode: text not a string', () => llama2c.encode(42 as never), /text must be a string; received 42/],
  ['encode: options.bos not boolean', () => llama2c.encode('a', { bos: 1 as never }), /options\.bos must be a boolean; received 1/],
  ['encode: options not an object', () => hf.encode('a', 'eos' as never), /options must be an object \{ bos\?, eos\?, special\? \}; received "eos"/],
  ['encode: BOS asked of a tokenizer without one', () => gpt2.encode('a', { bos: true }), /options\.bos must be false or absent: this tokenizer has no BOS token; received true/],
  ['encode: a byte the vocabulary lacks', () => noByteGpt2.encode('zAz'), /text contains byte 0x41, which this vocabulary cannot encode/],
  // truncated / corrupt tokenizer.bin
  ['tokenizer.bin cut inside a token text', () => loadTokenizer({ path: bad('trunc-header.bin') }),
    /trunc-header\.bin: corrupt llama2\.c tokenizer at byte offset 12: truncated: token 0 has 5 bytes of text but 3 bytes remain/],
  ['tokenizer.bin cut inside a token header', () => loadTokenizer({ path: bad('trunc-entry.bin') }),
    /trunc-entry\.bin: corrupt llama2\.c tokenizer at byte offset 4: truncated: token 0 needs an 8-byte header \(score, length\) but 6 bytes remain/],
  ['tokenizer.bin shorter than the model vocabulary', () => loadTokenizer({ path: join(badDir, '..', 'llama2c', 'tokenizer.bin'), vocabSize: N + 2 }),
    new RegExp(`tokenizer\\.bin: corrupt llama2\\.c tokenizer at byte offset ${BIN.length}: truncated: token ${N} needs .* but 0 bytes remain \\(expected ${N + 2} tokens\\)`)],
  ['tokenizer.bin longer than the model vocabulary', () => loadTokenizer({ path: join(badDir, '..', 'llama2c', 'tokenizer.bin'), vocabSize: N - 1 }),
    /tokenizer\.bin: corrupt llama2\.c tokenizer at byte offset \d+: 10 bytes follow the last of the 261 expected tokens/],
  ['tokenizer.bin of 2 bytes', () => loadTokenizer({ path: bad('tiny.bin') }), /tiny\.bin: corrupt llama2\.c tokenizer at byte offset 0: the file is 2 bytes, too short/],
  ['tokenizer.bin with max_token_length 0', () => loadTokenizer({ path: bad('zero-max.bin') }), /zero-max\.bin: .* at byte offset 0: max_token_length must be positive; read 0/],
  ['tokenizer.bin with a negative length', () => loadTokenizer({ path: bad('negative-length.bin') }), /negative-length\.bin: .* at byte offset 8: token 0 has length -7, outside \[0, max_token_length 6\]/],
  ['tokenizer.bin with a NaN score', () => loadTokenizer({ path: bad('nan-score.bin') }), /nan-score\.bin: .* at byte offset 17: token 1 has a NaN score/],
  // missing files
  ['explicit path missing', () => loadTokenizer({ path: bad('nope.bin') }), /tokenizer .*nope\.bin does not exist; pass the tokenizer file with --tokenizer PATH/],
  ['model path missing', () => loadTokenizer({ modelPath: bad('nope/model.bin') }), /model .*model\.bin does not exist, so no tokenizer can be found next to it; pass .* --tokenizer PATH/],
  ['no tokenizer next to the model', () => loadTokenizer({ modelPath: join(emptyDir, 'model.bin') }),
    /no tokenizer found for .*model\.bin: looked in .*empty for tokenizer\.json, tokenizer\.bin and tok\*\.bin; pass the tokenizer file with --tokenizer PATH/],
  // unsupported or corrupt files
  ['SentencePiece .model', () => loadTokenizer({ path: bad('tokenizer.model') }), /tokenizer\.model: unsupported tokenizer type: SentencePiece \.model files are not read/],
  ['GGUF path', () => loadTokenizer({ path: bad('model.gguf') }), /model\.gguf is a GGUF model: its tokenizer is in its metadata/],
  ['tokenizer.json not JSON', () => loadTokenizer({ path: bad('broken.json') }), /broken\.json is not valid JSON/],
  ['tokenizer.json of an unknown model type', () => loadTokenizer({ path: bad('unsupported.json') }), /unsupported\.json: unsupported or inconsistent tokenizer: files\.tokenizer\.model\.type must be a supported tokenizer type \(BPE, WordPiece, Unigram\); received "Foo"/],
  ['tokenizer_config.json naming a missing token', () => loadTokenizer({ path: bad('bad-config/tokenizer.json') }),
    /tokenizer\.json: unsupported or inconsistent tokenizer: tokenizer_config\.json bos_token "<nope>" is not a token of tokenizer\.json/],
  // GGUF metadata
  ['GGUF: unsupported type', () => loadTokenizer({ ggufMetadata: { ...GPT2_VOCAB, model: 'bert' as never } }),
    /ggufMetadata\.model must be a supported tokenizer type: 'llama' \(SentencePiece BPE\) or 'gpt2' \(byte-level BPE\); received "bert"/],
  ['GGUF: tokens not an array', () => new GgufTokenizer({ model: 'gpt2', tokens: 'abc' as never, merges: [] }), /ggufMetadata\.tokens must be a non-empty array of strings; received "abc"/],
  ['GGUF: llama without scores', () => new GgufTokenizer({ model: 'llama', tokens: ['a'] }), /ggufMetadata\.scores must be an array of 1 numbers \(required for 'llama'\)/],
  ['GGUF: scores of the wrong length', () => new GgufTokenizer({ model: 'llama', tokens: ['a', 'b'], scores: [0] }), /ggufMetadata\.scores must be an array of 2 numbers \(one per token\); received \[0\]/],
  ['GGUF: a NaN score', () => new GgufTokenizer({ model: 'llama', tokens: ['a'], scores: [NaN] }), /ggufMetadata\.scores\[0\] must be a number \(not NaN\); received NaN/],
  ['GGUF: a bad token type', () => new GgufTokenizer({ model: 'llama', tokens: ['a'], scores: [0], tokenTypes: [9] }), /ggufMetadata\.tokenTypes\[0\] must be a token type \(an integer 0\.\.6\); received 9/],
  ['GGUF: byte type with a non-byte text', () => new GgufTokenizer({ model: 'llama', tokens: ['a'], scores: [0], tokenTypes: [6] }), /ggufMetadata\.tokens\[0\] must be a byte token text <0xNN>/],
  ['GGUF: gpt2 without merges', () => new GgufTokenizer({ model: 'gpt2', tokens: ['a'] }), /ggufMetadata\.merges must be an array of strings \(required for 'gpt2'\); received undefined/],
  ['GGUF: a merge without a space', () => new GgufTokenizer({ ...GPT2_VOCAB, merges: ['ab'] }), /ggufMetadata\.merges\[0\] must be a pair "left right"; received "ab"/],
  ['GGUF: an unknown pre-tokenizer', () => new GgufTokenizer({ ...GPT2_VOCAB, pre: 'no-such-pre' }), /ggufMetadata\.pre must be a pre-tokenizer llama\.cpp knows \(default, llama3, .*\); received "no-such-pre"/],
  ['GGUF: bosId out of range', () => new GgufTokenizer({ ...GPT2_VOCAB, bosId: 999 }), /ggufMetadata\.bosId must be an integer token id in \[0, 256\]; received 999/],
  // loadTokenizer arguments
  ['options missing', () => loadTokenizer(undefined as never), /options must be an object \{ path\?, modelPath\?, ggufMetadata\?, vocabSize\? \}; received undefined/],
  ['options empty', () => loadTokenizer({}), /options must be an object with path, modelPath or ggufMetadata/],
  ['vocabSize not positive', () => loadTokenizer({ path: bad('tiny.bin'), vocabSize: 0 }), /options\.vocabSize must be a positive integer; received 0/],
  ['vocabSize below the tokenizer', () => loadTokenizer({ ggufMetadata: GPT2_VOCAB, vocabSize: 100 }), /options\.vocabSize must be at least the tokenizer's 257 tokens/],
  ['path not a string', () => loadTokenizer({ path: 5 as never }), /options\.path must be a string; received 5/],
];

describeBadInputs('tokenizer bad inputs', cases);

describe('error classes', () => {
  it('file problems are IoErrors, argument problems ArgumentErrors', () => {
    expect(() => loadTokenizer({ path: bad('trunc-entry.bin') })).toThrow(IoError);
    expect(() => loadTokenizer({ modelPath: join(emptyDir, 'model.bin') })).toThrow(IoError);
    expect(() => llama2c.decode([N])).toThrow(expect.objectContaining({ code: 'ERR_CANOPY_INVALID_ARGUMENT', argument: 'ids[0]' }));
  });
});
