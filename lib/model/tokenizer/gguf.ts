/**
 * Tokenizers from the vocabulary a GGUF file embeds (the `tokenizer.ggml.*` metadata keys),
 * built from the values the GGUF reader has already parsed.
 *
 * Two vocabulary types, as llama.cpp names them in `tokenizer.ggml.model`:
 *
 *  'llama'  SentencePiece BPE with scores (llama.cpp's llm_tokenizer_spm). Spaces are written
 *           '▁' (U+2581) in token texts; bytes without a token of their own are byte-fallback
 *           tokens `<0xNN>`. Encoding: spaces -> '▁', a '▁' prefix (add_space_prefix, default
 *           true) for non-empty text, then the score-driven merges of bpe.ts. Decoding: '▁' ->
 *           ' ', `<0xNN>` -> that byte, control tokens -> nothing, and the first text-bearing
 *           token loses one leading space (the prefix), whether or not BOS precedes it.
 *
 *  'gpt2'   Byte-level BPE (llama.cpp's llm_tokenizer_bpe, GPT-2's encoder.py). The text is
 *           split by the pre-tokenizer regex into words; each word's UTF-8 bytes are written
 *           with GPT-2's bytes-to-unicode alphabet (one printable character per byte, e.g.
 *           ' ' -> 'Ġ'), then adjacent symbols merge by their rank in the merges list (lower
 *           first). Decoding maps each character of a token's text back to its byte.
 *
 * Token types (tokenizer.ggml.token_type), as llama.cpp numbers them: 1 normal, 2 unknown,
 * 3 control, 4 user-defined, 5 unused, 6 byte. Unknown, control and unused tokens render as
 * nothing and are never produced by merges; without types, byte tokens are recognised by their
 * text `<0xNN>` and BOS/EOS are the control tokens.
 *
 * Special tokens in text, as llama.cpp's tokenizer_st_partition: before any BPE, the text is cut
 * at every occurrence of a user-defined token (always) and of a control or unknown token (only
 * with `encode(text, { special: true })`), longest token text first; those pieces become their
 * tokens and the text between them is encoded as usual (a SentencePiece piece that follows a
 * special token gets its own space prefix, as llama.cpp does).
 *
 * End of generation (`eosIds`): EOS, then EOT and EOM (tokenizer.ggml.eot_token_id /
 * eom_token_id), then the tokens llama.cpp recognises by their text (<|eot_id|>, <|im_end|>,
 * <|end|>, <end_of_turn>, <|endoftext|>, <|eom_id|>, <EOT>).
 */

import { ArgumentError } from '../../errors.js';
import { type ScoredVocab, encodeScored, mergeSymbols } from './bpe.js';
import { BytePieceTokenizer, type PieceState } from './pieces.js';
import { type PreTokenizer, preTokenizerFor, splitWords, wellFormed } from './pretokenize.js';
import { type EncodeOptions, checkEncodeArgs, checkId } from './types.js';
import { parseByteToken, splitUtf8Chars, toBinary, utf8Bytes } from './utf8.js';

/** The tokenizer metadata of a GGUF file, as plain values (field <- GGUF key). */
export interface GgufVocabulary {
  /** tokenizer.ggml.model: 'llama' (SentencePiece BPE) or 'gpt2' (byte-level BPE). */
  model: 'llama' | 'gpt2';
  /** tokenizer.ggml.tokens: the text of each id. */
  tokens: readonly string[];
  /** tokenizer.ggml.scores: required for 'llama' (higher merges first). */
  scores?: ArrayLike<number>;
  /** tokenizer.ggml.token_type (see the module comment). */
  tokenTypes?: ArrayLike<number>;
  /** tokenizer.ggml.merges: required for 'gpt2'; "left right" pairs, highest priority first. */
  merges?: readonly string[];
  /** tokenizer.ggml.bos_token_id ('llama' default: 1, as llama.cpp). */
  bosId?: number;
  /** tokenizer.ggml.eos_token_id ('llama' default: 2, as llama.cpp). */
  eosId?: number;
  /** tokenizer.ggml.unknown_token_id ('llama' default: a token of type unknown, else `<unk>` if present). */
  unknownId?: number;
  /** tokenizer.ggml.add_bos_token (default: true for 'llama', false for 'gpt2'). */
  addBos?: boolean;
  /** tokenizer.ggml.add_space_prefix ('llama' only; default true). */
  addSpacePrefix?: boolean;
  /** tokenizer.ggml.pre ('gpt2' only): the pre-tokenizer, see {@link PRE_TOKENIZERS}. Default 'default' (as llama.cpp). */
  pre?: string;
  /** tokenizer.chat_template: the model's Jinja chat template. */
  chatTemplate?: string;
  /** tokenizer.ggml.eot_token_id: end of turn (ends generation). */
  eotId?: number;
  /** tokenizer.ggml.eom_token_id: end of message (ends generation). */
  eomId?: number;
}

/** llama.cpp's token types. */
export const TokenType = { UNDEFINED: 0, NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * GPT-2's bytes-to-unicode table: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand
 * for themselves; the other 68 bytes map, in order, to U+0100, U+0101, ...
 */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const table = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return table;
})();
const UNICODE_TO_BYTE = new Map<string, number>(BYTE_TO_UNICODE.map((c, b) => [c, b]));

const EMPTY = new Uint8Array(0);

/** Token texts llama.cpp treats as end of generation whatever the metadata says. */
const EOG_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>', '<EOT>'];

function utf8Length(text: string): number {
  return utf8Bytes(text).length;
}
const SPACE_MARK = '\u2581';

/** Builds the tokenizer a GGUF file describes; every field is checked (ArgumentError naming `ggufMetadata.<field>`). */
export function ggufTokenizer(vocabulary: GgufVocabulary): GgufTokenizer {
  return new GgufTokenizer(vocabulary);
}

export class GgufTokenizer extends BytePieceTokenizer {
  readonly model: 'llama' | 'gpt2';
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosIds: number[];
  readonly addBosByDefault: boolean;
  readonly addSpacePrefix: boolean;
  readonly chatTemplate?: string;
  readonly continuationSafe = true;
  private readonly tokens: readonly string[];
  private readonly rendered: Uint8Array[];
  /** Ids that render nothing and take no part in leading-space rules. */
  private readonly control: Uint8Array;
  // 'llama'
  private readonly scored?: ScoredVocab;
  // 'gpt2'
  private readonly ids?: Map<string, number>;
  private readonly ranks?: Map<string, number>;
  private readonly pre?: PreTokenizer;
  private readonly unkId?: number;
  /** Text -> id for every token (the last id wins for duplicate texts, as llama.cpp). */
  private readonly textToId = new Map<string, number>();
  /** Tokens matched in text before BPE: [always (user-defined), only with special: true (control, unknown)], longest first. */
  private readonly matchAlways: Array<[string, number]> = [];
  private readonly matchSpecial: Array<[string, number]> = [];

  constructor(vocabulary: GgufVocabulary) {
    super();
    const v = checkVocabulary(vocabulary);
    const n = v.tokens.length;
    this.model = v.model;
    this.vocabSize = n;
    this.tokens = v.tokens.slice();
    const types = v.tokenTypes;
    const typeOf = (id: number): number => (types ? types[id]! : TokenType.UNDEFINED);
    const isLlama = v.model === 'llama';

    const inRange = (id: number): number | undefined => (id < n ? id : undefined);
    this.bosId = v.bosId ?? (isLlama ? inRange(1) : undefined);
    const eosId = v.eosId ?? (isLlama ? inRange(2) : undefined);
    for (let id = 0; id < n; id++) this.textToId.set(this.tokens[id]!, id);
    const eog = new Set<number>();
    for (const id of [eosId, v.eotId, v.eomId]) if (id !== undefined) eog.add(id);
    // As llama.cpp: these are control tokens whatever their stored type says.
    const eogByText = new Set<number>();
    for (const text of EOG_TEXTS) {
      const id = this.textToId.get(text);
      if (id !== undefined) eogByText.add(id);
    }
    for (const id of eogByText) eog.add(id);
    this.eosIds = [...eog];
    if (v.chatTemplate !== undefined) this.chatTemplate = v.chatTemplate;
    this.pre = isLlama ? undefined : preTokenizerFor(v.pre ?? 'default', 'ggufMetadata.pre');
    this.addBosByDefault = (v.addBos ?? (isLlama || this.pre!.addBos)) && this.bosId !== undefined;
    this.addSpacePrefix = isLlama && (v.addSpacePrefix ?? true);
    let unkId = v.unknownId;
    if (unkId === undefined && types) for (let id = 0; id < n && unkId === undefined; id++) if (types[id] === TokenType.UNKNOWN) unkId = id;
    if (unkId === undefined && isLlama) {
      const i = this.tokens.indexOf('<unk>');
      if (i >= 0) unkId = i;
    }
    this.unkId = unkId;

    // Control-like tokens: render nothing, never merge.
    this.control = new Uint8Array(n);
    for (let id = 0; id < n; id++) {
      const t = typeOf(id);
      if (t === TokenType.CONTROL || t === TokenType.UNKNOWN || t === TokenType.UNUSED) this.control[id] = 1;
    }
    if (!types) {
      if (this.bosId !== undefined) this.control[this.bosId] = 1;
      for (const id of this.eosIds) this.control[id] = 1;
      if (unkId !== undefined) this.control[unkId] = 1;
    }
    for (const id of eogByText) this.control[id] = 1;
    for (let id = 0; id < n; id++) {
      const text = this.tokens[id]!;
      if (text.length === 0) continue;
      const t = typeOf(id);
      if (eogByText.has(id) || t === TokenType.CONTROL || t === TokenType.UNKNOWN || (!types && this.control[id])) this.matchSpecial.push([text, id]);
      else if (t === TokenType.USER_DEFINED) this.matchAlways.push([text, id]);
    }
    const longestFirst = (a: [string, number], b: [string, number]): number => utf8Length(b[0]) - utf8Length(a[0]) || a[1] - b[1];
    this.matchAlways.sort(longestFirst);
    this.matchSpecial.sort(longestFirst);

    this.rendered = new Array<Uint8Array>(n);
    if (isLlama) {
      const byteIds = new Int32Array(256).fill(-1);
      const normal = new Map<string, number>();
      for (let id = 0; id < n; id++) {
        const text = this.tokens[id]!;
        const byte = typeOf(id) === TokenType.BYTE || !types ? parseByteToken(text) : undefined;
        if (typeOf(id) === TokenType.BYTE && byte === undefined) {
          throw new ArgumentError(`ggufMetadata.tokens[${id}]`, 'a byte token text <0xNN> (its token type is 6, byte)', text);
        }
        if (this.control[id]) {
          this.rendered[id] = EMPTY;
        } else if (byte !== undefined) {
          this.rendered[id] = Uint8Array.of(byte);
          if (byteIds[byte] === -1) byteIds[byte] = id;
        } else {
          this.rendered[id] = utf8Bytes(text.replaceAll(SPACE_MARK, ' '));
          const key = toBinary(text);
          if (key.length > 0 && !normal.has(key)) normal.set(key, id);
        }
      }
      this.scored = { normal, scores: v.scores!, byteIds, unkId };
    } else {
      this.ids = new Map();
      for (let id = 0; id < n; id++) {
        const text = this.tokens[id]!;
        if (this.control[id]) {
          this.rendered[id] = EMPTY;
          continue;
        }
        this.rendered[id] = typeOf(id) === TokenType.USER_DEFINED ? utf8Bytes(text) : unmapBytes(text);
        if (text.length > 0) this.ids.set(text, id);
      }
      this.ranks = new Map();
      v.merges!.forEach((merge, rank) => {
        const [left, right] = splitMerge(merge, rank);
        const key = mergeKey(left, right);
        if (!this.ranks!.has(key)) this.ranks!.set(key, rank);
      });
    }
  }

  /**
   * Text to ids: BOS per options.bos (default addBos), the text (special tokens matched per
   * options.special, see the module comment), EOS per options.eos.
   */
  encode(text: string, options?: EncodeOptions): number[] {
    const { bos, eos, special, continuation } = checkEncodeArgs(text, options, this);
    const ids: number[] = [];
    if (bos) ids.push(this.bosId!);
    let prevSpecial = !continuation;
    for (const piece of this.partition(wellFormed(text), special)) {
      if (typeof piece === 'number') {
        ids.push(piece);
        prevSpecial = true;
      } else {
        ids.push(...(this.model === 'llama' ? this.encodeSpm(piece, prevSpecial) : this.encodeByteLevel(piece)));
        prevSpecial = false;
      }
    }
    if (eos) ids.push(this.eosIds[0]!);
    return ids;
  }

  /** The token of a vocabulary entry's exact text (e.g. "<|im_start|>", "▁Once", "Ġthe"), or undefined. */
  tokenToId(text: string): number | undefined {
    return this.textToId.get(text);
  }

  /** Cuts `text` at the special tokens to match: text pieces (strings) and token ids (numbers), in order. */
  private partition(text: string, special: boolean): Array<string | number> {
    let pieces: Array<string | number> = text.length > 0 ? [text] : [];
    const lists = special ? [this.matchAlways, this.matchSpecial] : [this.matchAlways];
    // Longest first across both lists, as llama.cpp's single sorted list.
    const all = lists.length === 1 ? lists[0]! : [...lists[0]!, ...lists[1]!].sort((a, b) => utf8Length(b[0]) - utf8Length(a[0]) || a[1] - b[1]);
    for (const [tokenText, id] of all) {
      if (!pieces.some((p) => typeof p === 'string' && p.includes(tokenText))) continue;
      const next: Array<string | number> = [];
      for (const p of pieces) {
        if (typeof p !== 'string') {
          next.push(p);
          continue;
        }
        const parts = p.split(tokenText);
        parts.forEach((part, i) => {
          if (i > 0) next.push(id);
          if (part.length > 0) next.push(part);
        });
      }
      pieces = next;
    }
    return pieces;
  }

  private encodeSpm(text: string, spacePrefix: boolean): number[] {
    let escaped = text.replaceAll(' ', SPACE_MARK);
    if (this.addSpacePrefix && spacePrefix) escaped = SPACE_MARK + escaped;
    return encodeScored(this.scored!, splitUtf8Chars(toBinary(escaped)));
  }

  private encodeByteLevel(text: string): number[] {
    const ids = this.ids!;
    const ranks = this.ranks!;
    const out: number[] = [];
    for (const word of splitWords(text, this.pre!)) {
      const symbols = Array.from(utf8Bytes(word), (b) => BYTE_TO_UNICODE[b]!);
      const whole = symbols.join('');
      if (this.pre!.ignoreMerges && ids.has(whole)) {
        out.push(ids.get(whole)!);
        continue;
      }
      const { texts } = mergeSymbols(symbols, (a, b) => ranks.get(mergeKey(a, b)));
      for (const t of texts) {
        const id = ids.get(t);
        if (id !== undefined) {
          out.push(id);
          continue;
        }
        // A merge produced a symbol that is not a token: emit its bytes one by one.
        for (const ch of t) out.push(this.byteSymbolId(ch));
      }
    }
    return out;
  }

  private byteSymbolId(ch: string): number {
    const id = this.ids!.get(ch);
    if (id !== undefined) return id;
    if (this.unkId !== undefined) return this.unkId;
    const hex = UNICODE_TO_BYTE.get(ch)!.toString(16).toUpperCase().padStart(2, '0');
    throw new ArgumentError(`text contains byte 0x${hex}, which this vocabulary cannot encode (no token ${JSON.stringify(ch)} and no unknown token)`);
  }

  tokenText(id: number): string {
    return this.tokens[checkId(id, this.vocabSize, 'id')]!;
  }

  /** SentencePiece ('llama'): the first text-bearing token loses one leading space (the add_space_prefix). */
  protected pieceBytes(id: number, state: PieceState): Uint8Array {
    let bytes = this.rendered[id]!;
    state.prev = id;
    if (this.control[id]) return bytes;
    if (!state.started && this.addSpacePrefix && bytes.length > 0 && bytes[0] === 0x20 && this.tokens[id]![0] !== '<') {
      bytes = bytes.subarray(1);
    }
    state.started = true;
    return bytes;
  }
}

/** A merge "left right": split at the first space after the first character (as llama.cpp). */
function splitMerge(merge: string, rank: number): [string, string] {
  const at = merge.indexOf(' ', 1);
  if (at < 0 || at === merge.length - 1) throw new ArgumentError(`ggufMetadata.merges[${rank}]`, 'a pair "left right"', merge);
  return [merge.slice(0, at), merge.slice(at + 1)];
}

/** An unambiguous key for a pair of symbols. */
function mergeKey(left: string, right: string): string {
  return `${left.length}:${left}${right}`;
}

/** A byte-level token's text back to bytes (characters outside the alphabet: their own UTF-8). */
function unmapBytes(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = UNICODE_TO_BYTE.get(ch);
    if (b !== undefined) out.push(b);
    else out.push(...utf8Bytes(ch));
  }
  return Uint8Array.from(out);
}

function checkOptionalId(value: unknown, n: number, field: string): number | undefined {
  if (value === undefined) return undefined;
  return checkId(value, n, `ggufMetadata.${field}`);
}

function checkOptionalBool(value: unknown, field: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw new ArgumentError(`ggufMetadata.${field}`, 'a boolean', value);
  return value as boolean | undefined;
}

function checkNumbers(value: unknown, n: number, field: string, check: (x: number) => boolean, one: string, many: string): ArrayLike<number> {
  if (!(Array.isArray(value) || ArrayBuffer.isView(value)) || (value as ArrayLike<unknown>).length !== n) {
    throw new ArgumentError(`ggufMetadata.${field}`, `an array of ${n} ${many} (one per token)`, value);
  }
  const list = value as ArrayLike<unknown>;
  for (let i = 0; i < n; i++) {
    const x = list[i];
    if (typeof x !== 'number' || !check(x)) throw new ArgumentError(`ggufMetadata.${field}[${i}]`, one, x);
  }
  return list as ArrayLike<number>;
}

/** Checks every field; returns the vocabulary with its types narrowed. */
function checkVocabulary(v: unknown): GgufVocabulary {
  if (v === null || typeof v !== 'object') throw new ArgumentError('ggufMetadata', 'an object { model, tokens, ... }', v);
  const g = v as Record<string, unknown>;
  if (g.model !== 'llama' && g.model !== 'gpt2') {
    throw new ArgumentError('ggufMetadata.model', `a supported tokenizer type: 'llama' (SentencePiece BPE) or 'gpt2' (byte-level BPE)`, g.model);
  }
  if (!Array.isArray(g.tokens) || g.tokens.length === 0) throw new ArgumentError('ggufMetadata.tokens', 'a non-empty array of strings', g.tokens);
  const n = g.tokens.length;
  g.tokens.forEach((t, i) => {
    if (typeof t !== 'string') throw new ArgumentError(`ggufMetadata.tokens[${i}]`, 'a string', t);
  });
  const out: GgufVocabulary = { model: g.model, tokens: g.tokens as string[] };
  if (g.model === 'llama' || g.scores !== undefined) {
    if (g.scores === undefined) throw new ArgumentError('ggufMetadata.scores', `an array of ${n} numbers (required for 'llama')`, g.scores);
    out.scores = checkNumbers(g.scores, n, 'scores', (x) => !Number.isNaN(x), 'a number (not NaN)', 'numbers');
  }
  if (g.tokenTypes !== undefined) {
    out.tokenTypes = checkNumbers(g.tokenTypes, n, 'tokenTypes', (x) => Number.isInteger(x) && x >= 0 && x <= 6, 'a token type (an integer 0..6)', 'token types');
  }
  if (g.model === 'gpt2') {
    if (!Array.isArray(g.merges)) throw new ArgumentError('ggufMetadata.merges', "an array of strings (required for 'gpt2')", g.merges);
    g.merges.forEach((m, i) => {
      if (typeof m !== 'string') throw new ArgumentError(`ggufMetadata.merges[${i}]`, 'a string "left right"', m);
    });
    out.merges = g.merges as string[];
    if (g.pre !== undefined && typeof g.pre !== 'string') throw new ArgumentError('ggufMetadata.pre', 'a string (tokenizer.ggml.pre)', g.pre);
    if (g.pre !== undefined) out.pre = g.pre as string;
  }
  const bosId = checkOptionalId(g.bosId, n, 'bosId');
  const eosId = checkOptionalId(g.eosId, n, 'eosId');
  const unknownId = checkOptionalId(g.unknownId, n, 'unknownId');
  if (g.chatTemplate !== undefined && typeof g.chatTemplate !== 'string') throw new ArgumentError('ggufMetadata.chatTemplate', 'a string', g.chatTemplate);
  if (g.chatTemplate !== undefined) out.chatTemplate = g.chatTemplate as string;
  const eotId = checkOptionalId(g.eotId, n, 'eotId');
  const eomId = checkOptionalId(g.eomId, n, 'eomId');
  if (eotId !== undefined) out.eotId = eotId;
  if (eomId !== undefined) out.eomId = eomId;
  const addBos = checkOptionalBool(g.addBos, 'addBos');
  const addSpacePrefix = checkOptionalBool(g.addSpacePrefix, 'addSpacePrefix');
  if (bosId !== undefined) out.bosId = bosId;
  if (eosId !== undefined) out.eosId = eosId;
  if (unknownId !== undefined) out.unknownId = unknownId;
  if (addBos !== undefined) out.addBos = addBos;
  if (addSpacePrefix !== undefined) out.addSpacePrefix = addSpacePrefix;
  return out;
}

export { PRE_TOKENIZERS } from './pretokenize.js';
