/**
 * llama2.c's tokenizer.bin (Karpathy's run.c): a SentencePiece BPE vocabulary with scores.
 *
 * File format (little-endian): int32 max_token_length, then for each token: float32 score,
 * int32 length, `length` bytes of text (UTF-8, spaces as ' '; byte-fallback tokens are
 * written `<0xNN>`). The file does not store the number of tokens: run.c takes it from the
 * model's vocab_size. Here it is read to the end of the file, or exactly `vocabSize` entries
 * when the model's vocabulary size is passed.
 *
 * Special tokens follow run.c: id 1 is BOS, id 2 is EOS (in llama2.c's exports their texts
 * are "\n<s>\n" and "\n</s>\n"), id 0 is `<unk>`.
 *
 * Encoding (run.c `encode`): a dummy prefix ' ' before non-empty text, each UTF-8 character
 * mapped to its token or else to its bytes' `<0xNN>` tokens, then score-driven merges
 * (bpe.ts). One deliberate difference: merges only produce ordinary tokens, never BOS, EOS,
 * `<unk>` or a `<0xNN>` token (run.c would merge "<", "0x41" and ">" into the byte token if
 * the vocabulary had those pieces; SentencePiece would not). On llama2.c's vocabularies the
 * output is the same (the tests compare with a transcription of run.c). Decoding (run.c `decode`): a token directly after BOS loses one leading space
 * (the dummy prefix); `<0xNN>` tokens are raw bytes; BOS, EOS and `<unk>` render as nothing.
 * So decode([1, ...encode("Hi")]) is "Hi" while decode of the ids after BOS alone is " Hi".
 */

import { closeSync, openSync, readSync, statSync } from 'node:fs';

import { IoError } from '../../errors.js';
import { type ScoredVocab, encodeScored } from './bpe.js';
import { BytePieceTokenizer, type PieceState } from './pieces.js';
import { type EncodeOptions, checkEncodeArgs, checkId } from './types.js';
import { bytesToBinary, decodeUtf8, parseByteToken, splitUtf8Chars, toBinary } from './utf8.js';

/** One vocabulary entry as stored in the file (text as raw bytes). */
export interface Llama2cEntry {
  score: number;
  bytes: Uint8Array;
}

/** A parsed tokenizer.bin. */
export interface Llama2cVocabulary {
  maxTokenLength: number;
  entries: Llama2cEntry[];
}

const EMPTY = new Uint8Array(0);

/**
 * Parses the bytes of a tokenizer.bin. `name` labels errors (the file path). With `vocabSize`
 * exactly that many entries are read (trailing bytes are an error); without it, entries are
 * read until the end. A file that ends inside an entry, a negative or over-long length, or a
 * NaN score is an IoError naming the file, the token and the byte offset.
 */
export function parseLlama2cTokenizer(data: Uint8Array, name: string, vocabSize?: number): Llama2cVocabulary {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const corrupt = (offset: number, what: string): IoError =>
    new IoError(`${name}: corrupt llama2.c tokenizer at byte offset ${offset}: ${what}`);
  if (data.length < 4) throw corrupt(0, `the file is ${data.length} bytes, too short for the int32 max_token_length`);
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0) throw corrupt(0, `max_token_length must be positive; read ${maxTokenLength}`);
  const entries: Llama2cEntry[] = [];
  let offset = 4;
  while (vocabSize === undefined ? offset < data.length : entries.length < vocabSize) {
    const i = entries.length;
    if (offset + 8 > data.length) {
      throw corrupt(offset, `truncated: token ${i} needs an 8-byte header (score, length) but ${data.length - offset} bytes remain` +
        (vocabSize !== undefined ? ` (expected ${vocabSize} tokens)` : ''));
    }
    const score = view.getFloat32(offset, true);
    const length = view.getInt32(offset + 4, true);
    if (Number.isNaN(score)) throw corrupt(offset, `token ${i} has a NaN score`);
    if (length < 0 || length > maxTokenLength) {
      throw corrupt(offset + 4, `token ${i} has length ${length}, outside [0, max_token_length ${maxTokenLength}]`);
    }
    if (offset + 8 + length > data.length) {
      throw corrupt(offset + 8, `truncated: token ${i} has ${length} bytes of text but ${data.length - offset - 8} bytes remain`);
    }
    entries.push({ score, bytes: data.slice(offset + 8, offset + 8 + length) });
    offset += 8 + length;
  }
  if (entries.length === 0) throw corrupt(4, 'the file holds no tokens');
  if (offset < data.length) throw corrupt(offset, `${data.length - offset} bytes follow the last of the ${vocabSize} expected tokens`);
  return { maxTokenLength, entries };
}

/** Reads and parses a tokenizer.bin file (see {@link parseLlama2cTokenizer}). */
export function readLlama2cTokenizer(path: string, vocabSize?: number): Llama2cTokenizer {
  let data: Uint8Array;
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = statSync(path).size;
    data = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, data, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    data = data.subarray(0, done);
  } catch (cause) {
    throw new IoError(`cannot read tokenizer ${path}: ${(cause as Error).message}`, { cause });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return new Llama2cTokenizer(parseLlama2cTokenizer(data, path, vocabSize));
}

export class Llama2cTokenizer extends BytePieceTokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosIds: number[];
  /** run.c encodes prompts with BOS. */
  readonly addBosByDefault: boolean;
  readonly maxTokenLength: number;
  readonly continuationSafe = true;
  private readonly texts: Uint8Array[];
  /** Bytes each id renders to in decode (empty for special tokens; one byte for `<0xNN>`). */
  private readonly rendered: Uint8Array[];
  private readonly vocab: ScoredVocab;
  private readonly textToId = new Map<string, number>();
  /** Special tokens (BOS, EOS, `<unk>`) by text, longest first, for encode(text, { special: true }). */
  private readonly specialTexts: Array<[string, number]> = [];

  constructor(vocabulary: Llama2cVocabulary) {
    super();
    const { entries } = vocabulary;
    this.vocabSize = entries.length;
    this.maxTokenLength = vocabulary.maxTokenLength;
    this.texts = entries.map((e) => e.bytes);
    const binaries = this.texts.map(bytesToBinary);
    // run.c: BOS = 1, EOS = 2; `<unk>` (id 0 in llama2.c vocabularies) renders as nothing too.
    this.bosId = this.vocabSize > 1 ? 1 : undefined;
    // EOS, then BOS: run.c stops when the model emits BOS, and the TinyStories models end each
    // story that way (a generated BOS starts the next document).
    this.eosIds = this.vocabSize > 2 ? [2, 1] : [];
    this.addBosByDefault = this.bosId !== undefined;
    const special = new Set<number>([...(this.bosId !== undefined ? [this.bosId] : []), ...this.eosIds]);
    if (binaries[0] === '<unk>') special.add(0);
    this.texts.forEach((bytes, id) => {
      const text = decodeUtf8(bytes);
      if (!this.textToId.has(text)) this.textToId.set(text, id);
    });
    for (const id of special) {
      const text = decodeUtf8(this.texts[id]!);
      if (text.length > 0) this.specialTexts.push([text, id]);
    }
    this.specialTexts.sort((a, b) => b[0].length - a[0].length || a[1] - b[1]);

    const byteIds = new Int32Array(256).fill(-1);
    const byteOf = new Int16Array(this.vocabSize).fill(-1);
    const normal = new Map<string, number>();
    for (let id = 0; id < this.vocabSize; id++) {
      const text = binaries[id]!;
      const byte = parseByteToken(text);
      if (byte !== undefined) {
        byteOf[id] = byte;
        if (byteIds[byte] === -1) byteIds[byte] = id;
      } else if (!special.has(id) && text.length > 0 && !normal.has(text)) {
        normal.set(text, id); // first id wins for duplicate texts
      }
    }
    this.rendered = this.texts.map((bytes, id) =>
      special.has(id) ? EMPTY : byteOf[id]! >= 0 ? Uint8Array.of(byteOf[id]!) : bytes,
    );
    this.vocab = {
      normal,
      scores: Float32Array.from(entries, (e) => e.score),
      byteIds,
      unkId: special.has(0) ? 0 : undefined,
    };
  }

  /**
   * run.c's encode: ' ' + text (when text is non-empty), characters to tokens or byte
   * fallbacks, score-driven merges; BOS (default on) and EOS (default off) per the options.
   */
  encode(text: string, options?: EncodeOptions): number[] {
    const { bos, eos, special, continuation } = checkEncodeArgs(text, options, this);
    let pieces: Array<string | number> = text.length > 0 ? [text] : [];
    if (special) {
      for (const [tokenText, id] of this.specialTexts) {
        pieces = pieces.flatMap((p) => (typeof p !== 'string' ? [p] : p.split(tokenText).flatMap((part, i) => [...(i > 0 ? [id] : []), ...(part ? [part] : [])])));
      }
    }
    const ids: number[] = bos ? [this.bosId!] : [];
    pieces.forEach((p, i) => {
      if (typeof p === 'number') ids.push(p);
      else ids.push(...encodeScored(this.vocab, splitUtf8Chars(toBinary(continuation && i === 0 ? p : ' ' + p))));
    });
    if (eos) ids.push(this.eosIds[0]!);
    return ids;
  }

  tokenToId(token: string): number | undefined {
    return this.textToId.get(token);
  }

  tokenText(id: number): string {
    return decodeUtf8(this.texts[checkId(id, this.vocabSize, 'id')]!);
  }

  /** run.c's decode rule: one leading space is dropped from a text token that follows BOS. */
  protected pieceBytes(id: number, state: PieceState): Uint8Array {
    let bytes = this.rendered[id]!;
    // As run.c, the test is on the token's text: `<0x20>` (a raw space byte) is kept.
    if (state.prev === this.bosId && bytes.length > 0 && this.texts[id]![0] === 0x20) bytes = bytes.subarray(1);
    state.prev = id;
    state.started ||= bytes.length > 0;
    return bytes;
  }
}

/** For tests and tools: a tokenizer.bin image from entries (the inverse of parsing). */
export function serializeLlama2cTokenizer(vocabulary: Llama2cVocabulary): Uint8Array {
  let size = 4;
  for (const e of vocabulary.entries) size += 8 + e.bytes.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setInt32(0, vocabulary.maxTokenLength, true);
  let offset = 4;
  for (const e of vocabulary.entries) {
    view.setFloat32(offset, e.score, true);
    view.setInt32(offset + 4, e.bytes.length, true);
    out.set(e.bytes, offset + 8);
    offset += 8 + e.bytes.length;
  }
  return out;
}

/** Token texts as JavaScript strings (UTF-8 decoded), e.g. to build GGUF-style arrays. */
export function llama2cTokenStrings(vocabulary: Llama2cVocabulary): string[] {
  return vocabulary.entries.map((e) => decodeUtf8(e.bytes));
}
