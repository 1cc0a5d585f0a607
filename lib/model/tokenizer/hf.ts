/**
 * Hugging Face tokenizer.json, through @huggingface/tokenizers (a pure JavaScript port of the
 * `tokenizers` crate: normalizers, pre-tokenizers, BPE/Unigram/WordPiece models, decoders).
 *
 * Special tokens: BOS and EOS come from tokenizer_config.json (`bos_token`, `eos_token`, as a
 * string or an AddedToken object) and generation_config.json (`eos_token_id`, a number or a
 * list) when those files sit next to tokenizer.json; without a config, BOS is the special token
 * the post-processor puts first and EOS the one it puts last. Whether `encode` adds BOS by
 * default is `add_bos_token` from tokenizer_config.json, else whether the post-processor adds
 * it. `encode` runs the library without its post-processor and adds BOS/EOS itself.
 *
 * Decoding skips special tokens and applies `clean_up_tokenization_spaces` only when
 * tokenizer_config.json asks for it (the library would by default; it breaks round trips:
 * "a ." -> "a."). The library matches every added token (e.g. "<|im_start|>") in the text;
 * `encode(text, { special: false })` (the default) uses a second instance of the library
 * built without the added tokens marked special, so their text is encoded as plain text
 * (as the Rust crate's split_special_tokens does), and non-special added tokens still match.
 *
 * Streaming (as text-generation-inference does it): decode a window of recent ids twice, with
 * and without the new ones; the difference is the new text. While the decoded window ends in
 * U+FFFD the last character may be an incomplete UTF-8 sequence (byte-fallback tokens), so
 * nothing is returned until a later token completes it or flush() gives up.
 */

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';

import { ArgumentError, IoError, describe } from '../../errors.js';
import {
  type EncodeOptions,
  type StreamDecoder,
  type Tokenizer,
  checkContext,
  checkEncodeArgs,
  checkId,
  checkIds,
} from './types.js';

/** The parsed JSON files of a Hugging Face tokenizer. */
export interface HfTokenizerFiles {
  /** tokenizer.json. */
  tokenizer: object;
  /** tokenizer_config.json, when present. */
  config?: object;
  /** generation_config.json, when present (for `eos_token_id`). */
  generationConfig?: object;
  /** chat_template.jinja, when present (it takes precedence over tokenizer_config.json's chat_template). */
  chatTemplate?: string;
}

/** What the library's encode returns (ids are undefined for pieces missing from the vocabulary when there is no unknown token). */
interface LibEncoding {
  ids: number[];
  tokens: string[];
}

/** tokenizer.json model types the library implements. */
const SUPPORTED_MODELS = ['BPE', 'WordPiece', 'Unigram'];

const REPLACEMENT = '\uFFFD';
/** How many already-emitted ids a stream decoder keeps as context for the next window. */
const STREAM_CONTEXT = 5;

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosIds: number[];
  readonly addBosByDefault: boolean;
  readonly chatTemplate?: string;
  /** False: the library encodes every text as a start (a Metaspace prefix, for one); options.continuation is ignored. */
  readonly continuationSafe = false;
  private readonly lib: HfLibTokenizer;
  private readonly json: object;
  private readonly config: object;
  private plain?: HfLibTokenizer;
  private readonly cleanUp: boolean;

  /** Builds from parsed files; a file the library rejects is an ArgumentError carrying its message. */
  constructor(files: HfTokenizerFiles) {
    if (files === null || typeof files !== 'object') throw new ArgumentError('files', 'an object { tokenizer, config?, generationConfig? }', files);
    const { tokenizer, config = {}, generationConfig } = files;
    if (tokenizer === null || typeof tokenizer !== 'object') throw new ArgumentError('files.tokenizer', 'the parsed tokenizer.json object', tokenizer);
    if (config === null || typeof config !== 'object') throw new ArgumentError('files.config', 'the parsed tokenizer_config.json object', config);
    const json = tokenizer as { added_tokens?: unknown; model?: { type?: unknown } };
    const modelType = json.model?.type;
    // The library would fall back to a guess for an unknown type; refuse it instead.
    if (modelType !== undefined && !SUPPORTED_MODELS.includes(modelType as string)) {
      throw new ArgumentError('files.tokenizer.model.type', `a supported tokenizer type (${SUPPORTED_MODELS.join(', ')})`, modelType);
    }
    // The library requires the added_tokens list, which tokenizer.json may omit when empty.
    const withAdded = Array.isArray(json.added_tokens) ? tokenizer : { ...tokenizer, added_tokens: [] };
    this.json = withAdded;
    this.config = config;
    try {
      this.lib = new HfLibTokenizer(withAdded, config);
    } catch (cause) {
      throw new ArgumentError(`files.tokenizer is not a tokenizer.json this library supports: ${(cause as Error).message}`, { cause });
    }
    keepByteOrderMarks(this.lib.decoder);
    const cfg = config as Record<string, unknown>;
    const vocab: unknown = this.lib.model?.vocab;
    this.vocabSize = Array.isArray(vocab) ? vocab.length : 0;
    if (this.vocabSize === 0) throw new ArgumentError('files.tokenizer', 'a tokenizer.json with a non-empty vocabulary', tokenizer);
    this.cleanUp = cfg.clean_up_tokenization_spaces === true;

    // What the post-processor adds around a text: its leading and trailing special ids.
    const plain = this.libEncode('a', false).ids;
    const full = this.libEncode('a', true).ids;
    const start = full.findIndex((_, i) => full.slice(i, i + plain.length).every((id, k) => id === plain[k]));
    const leading = start > 0 ? full.slice(0, start) : [];
    const trailing = start >= 0 ? full.slice(start + plain.length) : [];

    const bos = this.specialId(cfg.bos_token, 'bos_token') ?? (leading.length > 0 ? leading[0] : undefined);
    this.bosId = bos;
    const eos = new Set<number>();
    const configEos = this.specialId(cfg.eos_token, 'eos_token');
    if (configEos !== undefined) eos.add(configEos);
    const genEos = (generationConfig as { eos_token_id?: unknown } | undefined)?.eos_token_id;
    for (const id of Array.isArray(genEos) ? genEos : genEos === undefined || genEos === null ? [] : [genEos]) {
      eos.add(checkId(id, this.vocabSize, 'generation_config.json eos_token_id'));
    }
    if (eos.size === 0 && trailing.length > 0) eos.add(trailing[trailing.length - 1]!);
    this.eosIds = [...eos];
    const template = files.chatTemplate ?? chatTemplateOf(cfg.chat_template);
    if (template !== undefined) this.chatTemplate = template;
    const addBos = cfg.add_bos_token;
    this.addBosByDefault = bos !== undefined && (typeof addBos === 'boolean' ? addBos : leading.includes(bos));
  }

  /** The library without its special added tokens (built on first use; see the module comment). */
  private plainLib(): HfLibTokenizer {
    if (!this.plain) {
      const json = this.json as { added_tokens?: Array<{ special?: boolean }> };
      const added = (json.added_tokens ?? []).filter((t) => t.special !== true);
      this.plain = new HfLibTokenizer({ ...json, added_tokens: added }, this.config);
      keepByteOrderMarks(this.plain.decoder);
    }
    return this.plain;
  }

  tokenToId(token: string): number | undefined {
    if (typeof token !== 'string') throw new ArgumentError('token', 'a string', token);
    return this.lib.token_to_id(token);
  }

  idToToken(id: number): string {
    return this.tokenText(id);
  }

  /** The library's encode, typed (its declaration files do not resolve the Encoding type). */
  private libEncode(text: string, addSpecialTokens: boolean): LibEncoding {
    return this.lib.encode(text, { add_special_tokens: addSpecialTokens }) as LibEncoding;
  }

  /** The id of a special token given by tokenizer_config.json (a string or { content }). */
  private specialId(value: unknown, field: string): number | undefined {
    if (value === undefined || value === null) return undefined;
    const content = typeof value === 'string' ? value : (value as { content?: unknown }).content;
    if (typeof content !== 'string') throw new ArgumentError(`tokenizer_config.json ${field}`, 'a string or { content: string }', value);
    const id = this.lib.token_to_id(content);
    if (id === undefined) throw new ArgumentError(`tokenizer_config.json ${field} ${describe(content)} is not a token of tokenizer.json`);
    return id;
  }

  /** The library's encoding of the text (no post-processor), then BOS/EOS per the options. */
  encode(text: string, options?: EncodeOptions): number[] {
    const { bos, eos, special } = checkEncodeArgs(text, options, this);
    const encoding = special ? this.libEncode(text, false) : (this.plainLib().encode(text, { add_special_tokens: false }) as LibEncoding);
    const ids = encoding.ids;
    ids.forEach((id: number | undefined, i) => {
      if (id === undefined) {
        throw new ArgumentError(`text cannot be encoded: piece ${describe(encoding.tokens[i])} is not in the vocabulary and there is no unknown token`);
      }
    });
    if (bos) ids.unshift(this.bosId!);
    if (eos) ids.push(this.eosIds[0]!);
    return ids;
  }

  decode(ids: ArrayLike<number>): string {
    return this.decodeChecked(checkIds(ids, this.vocabSize));
  }

  private decodeChecked(ids: number[]): string {
    if (ids.length === 0) return ''; // the library rejects empty input
    return this.lib.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: this.cleanUp });
  }

  tokenText(id: number): string {
    return this.lib.id_to_token(checkId(id, this.vocabSize, 'id')) ?? '';
  }

  streamDecoder(context?: ArrayLike<number>): StreamDecoder {
    const ids = checkContext(context, this.vocabSize);
    // ids[prefix, read) were decoded (and returned, or were context); ids[read, ...) not yet.
    let prefix = Math.max(0, ids.length - STREAM_CONTEXT);
    let read = ids.length;
    // A context that ends inside a character: treat its unfinished tail as not yet read.
    while (read > prefix && this.decodeChecked(ids.slice(prefix, read)).endsWith(REPLACEMENT)) read--;

    const advance = (final: boolean): string => {
      const before = this.decodeChecked(ids.slice(prefix, read));
      const after = this.decodeChecked(ids.slice(prefix));
      if (after.length <= before.length || (!final && after.endsWith(REPLACEMENT))) return '';
      prefix = read;
      read = ids.length;
      // Windows start at an id already decoded, so `after` extends `before` (the decoders in
      // use are prefix-stable); the new text is what follows it.
      return after.startsWith(before) ? after.slice(before.length) : after.slice(commonPrefixLength(before, after));
    };
    return {
      push: (id: number): string => {
        ids.push(checkId(id, this.vocabSize, 'id'));
        return advance(false);
      },
      flush: (): string => advance(true),
    };
  }
}

/**
 * The library's ByteFallback decoder builds its UTF-8 decoder with the default options, which
 * drop a leading U+FEFF from every group of byte tokens (the Rust crate keeps it). Swap in a
 * decoder that keeps it, wherever in the decoder tree one is found.
 */
function keepByteOrderMarks(decoder: unknown): void {
  // The library's components are callable objects (functions).
  if (decoder === null || (typeof decoder !== 'object' && typeof decoder !== 'function')) return;
  const d = decoder as { text_decoder?: unknown; decoders?: unknown };
  if (d.text_decoder instanceof TextDecoder && !d.text_decoder.ignoreBOM) {
    d.text_decoder = new TextDecoder(d.text_decoder.encoding, { fatal: d.text_decoder.fatal, ignoreBOM: true });
  }
  if (Array.isArray(d.decoders)) d.decoders.forEach(keepByteOrderMarks);
}

/**
 * tokenizer_config.json's chat_template: a string, or a list of { name, template } (the one
 * named 'default', else the first).
 */
function chatTemplateOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) return undefined;
  const named = value.filter((t): t is { name?: unknown; template: string } => t !== null && typeof t === 'object' && typeof (t as { template?: unknown }).template === 'string');
  return (named.find((t) => t.name === 'default') ?? named[0])?.template;
}

function commonPrefixLength(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** Reads and parses a JSON file; an IoError names the file. */
function readJson(path: string): object {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new IoError(`cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('the file is not a JSON object');
    return value;
  } catch (cause) {
    throw new IoError(`${path} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Loads tokenizer.json at `path`, with tokenizer_config.json and generation_config.json from
 * the same folder when present. Unreadable or unsupported files are IoErrors naming the file.
 */
export function readHfTokenizer(path: string): HfTokenizer {
  const dir = dirname(path);
  const files: HfTokenizerFiles = { tokenizer: readJson(path) };
  const configPath = join(dir, 'tokenizer_config.json');
  if (existsSync(configPath)) files.config = readJson(configPath);
  const generationPath = join(dir, 'generation_config.json');
  if (existsSync(generationPath)) files.generationConfig = readJson(generationPath);
  const templatePath = join(dir, 'chat_template.jinja');
  if (existsSync(templatePath)) {
    try {
      files.chatTemplate = readFileSync(templatePath, 'utf8');
    } catch (cause) {
      throw new IoError(`cannot read ${templatePath}: ${(cause as Error).message}`, { cause });
    }
  }
  try {
    return new HfTokenizer(files);
  } catch (cause) {
    if (cause instanceof ArgumentError) throw new IoError(`${path}: unsupported or inconsistent tokenizer: ${cause.message}`, { cause });
    throw cause;
  }
}
