/**
 * Loading a tokenizer: picks the implementation from what is given.
 *
 *   options.path           an explicit tokenizer file (tokenizer.json, a llama2.c tokenizer.bin
 *                          such as tok512.bin) or a folder holding one; overrides the others
 *   options.ggufMetadata   the vocabulary embedded in a GGUF model (already parsed)
 *   options.modelPath      the model file or folder: the tokenizer is searched next to it
 *
 * Errors: a missing tokenizer is an IoError saying where it looked and how to pass
 * --tokenizer PATH; a truncated or corrupt file an IoError naming the file (and, for
 * tokenizer.bin, the byte offset); an unsupported type (a SentencePiece .model, a GGUF file
 * without its parsed metadata, a GGUF vocabulary type other than 'llama'/'gpt2') says so.
 */

import { closeSync, existsSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';

import { ArgumentError, IoError } from '../../errors.js';
import { type GgufVocabulary, GgufTokenizer } from './gguf.js';
import { readHfTokenizer } from './hf.js';
import { readLlama2cTokenizer } from './llama2c.js';
import { type Tokenizer, checkVocabSize } from './types.js';

export type { EncodeOptions, StreamDecoder, Tokenizer } from './types.js';
export {
  Llama2cTokenizer,
  readLlama2cTokenizer,
  parseLlama2cTokenizer,
  serializeLlama2cTokenizer,
  type Llama2cVocabulary,
} from './llama2c.js';
export { GgufTokenizer, ggufTokenizer, type GgufVocabulary, TokenType, PRE_TOKENIZERS, BYTE_TO_UNICODE } from './gguf.js';
export { HfTokenizer, readHfTokenizer, type HfTokenizerFiles } from './hf.js';

export interface LoadTokenizerOptions {
  /** A tokenizer file (tokenizer.json or a llama2.c tokenizer .bin) or a folder holding one. Overrides the others. */
  path?: string;
  /** The model file or folder; the tokenizer is looked for next to it (see {@link findTokenizerFor}). */
  modelPath?: string;
  /** A GGUF model's tokenizer metadata, parsed by the GGUF reader. */
  ggufMetadata?: GgufVocabulary;
  /**
   * The model's vocabulary size. A llama2.c tokenizer.bin (which does not store its size) is
   * read for exactly this many tokens; other tokenizers must not have more tokens than this.
   */
  vocabSize?: number;
}

const HOW_TO_PASS = 'pass the tokenizer file with --tokenizer PATH (options.path)';

/**
 * Loads the tokenizer `options` point to (the module comment gives the precedence).
 * Synchronous: tokenizer files are small and read once.
 */
export function loadTokenizer(options: LoadTokenizerOptions): Tokenizer {
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { path?, modelPath?, ggufMetadata?, vocabSize? }', options);
  const { path, modelPath, ggufMetadata } = options;
  const vocabSize = checkVocabSize(options.vocabSize, 'options.vocabSize');
  if (path !== undefined && typeof path !== 'string') throw new ArgumentError('options.path', 'a string', path);
  if (modelPath !== undefined && typeof modelPath !== 'string') throw new ArgumentError('options.modelPath', 'a string', modelPath);
  let tokenizer: Tokenizer;
  if (path !== undefined) {
    tokenizer = loadFile(resolveTokenizerPath(path), vocabSize);
  } else if (ggufMetadata !== undefined) {
    tokenizer = new GgufTokenizer(ggufMetadata);
  } else if (modelPath !== undefined) {
    tokenizer = loadFile(findTokenizerFor(modelPath), vocabSize);
  } else {
    throw new ArgumentError('options', 'an object with path, modelPath or ggufMetadata', options);
  }
  if (vocabSize !== undefined && tokenizer.vocabSize > vocabSize) {
    throw new ArgumentError('options.vocabSize', `at least the tokenizer's ${tokenizer.vocabSize} tokens (the model's vocabulary is smaller than its tokenizer's)`, vocabSize);
  }
  return tokenizer;
}

/** An explicit path: a file, or a folder searched like a model folder. */
function resolveTokenizerPath(path: string): string {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new IoError(`tokenizer ${path} does not exist; ${HOW_TO_PASS}`);
  }
  return isDir ? searchFolder(path, path, true) : path;
}

/**
 * The tokenizer next to a model: in the model's folder (or the folder itself), in this order,
 * tokenizer.json, tokenizer.bin, then a single tok*.bin (llama2.c's tok512.bin, tok4096.bin...);
 * for a llama2.c model file (.bin) the .bin candidates come first. Throws an IoError saying
 * where it looked when there is none, or several tok*.bin and no tokenizer.bin. A GGUF model
 * carries its tokenizer inside: pass its metadata (ggufMetadata) instead.
 */
export function findTokenizerFor(modelPath: string): string {
  if (typeof modelPath !== 'string') throw new ArgumentError('modelPath', 'a string', modelPath);
  let isDir: boolean;
  try {
    isDir = statSync(modelPath).isDirectory();
  } catch {
    throw new IoError(`model ${modelPath} does not exist, so no tokenizer can be found next to it; ${HOW_TO_PASS}`);
  }
  if (!isDir && extname(modelPath).toLowerCase() === '.gguf') {
    throw new IoError(
      `${modelPath} is a GGUF model: its tokenizer is in its metadata; pass the parsed metadata (ggufMetadata) or ${HOW_TO_PASS}`,
    );
  }
  const jsonFirst = isDir || extname(modelPath).toLowerCase() !== '.bin';
  return searchFolder(isDir ? modelPath : dirname(modelPath), modelPath, jsonFirst);
}

function searchFolder(dir: string, forWhat: string, jsonFirst: boolean): string {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (cause) {
    throw new IoError(`cannot list ${dir} to find the tokenizer of ${forWhat}: ${(cause as Error).message}; ${HOW_TO_PASS}`, { cause });
  }
  const isFile = (name: string): boolean => {
    try {
      return statSync(join(dir, name)).isFile();
    } catch {
      return false;
    }
  };
  const json = names.includes('tokenizer.json') && isFile('tokenizer.json') ? ['tokenizer.json'] : [];
  const bin = names.includes('tokenizer.bin') && isFile('tokenizer.bin') ? ['tokenizer.bin'] : [];
  const tok = names.filter((n) => /^tok.*\.bin$/.test(n) && n !== 'tokenizer.bin' && isFile(n)).sort();
  if (bin.length === 0 && tok.length > 1 && (!jsonFirst || json.length === 0)) {
    throw new IoError(`several candidate tokenizers for ${forWhat} in ${dir} (${tok.join(', ')}); ${HOW_TO_PASS}`);
  }
  const llama2c = bin.length > 0 ? bin : tok;
  const found = jsonFirst ? [...json, ...llama2c] : [...llama2c, ...json];
  if (found.length === 0) {
    throw new IoError(`no tokenizer found for ${forWhat}: looked in ${dir} for tokenizer.json, tokenizer.bin and tok*.bin; ${HOW_TO_PASS}`);
  }
  return join(dir, found[0]!);
}

/** Loads a tokenizer file, choosing the format from its name and first bytes. */
function loadFile(path: string, vocabSize: number | undefined): Tokenizer {
  if (!existsSync(path)) throw new IoError(`tokenizer ${path} does not exist; ${HOW_TO_PASS}`);
  const name = basename(path).toLowerCase();
  const head = readHead(path, 4);
  if (name.endsWith('.json') || head[0] === 0x7b /* '{' */) return readHfTokenizer(path);
  if (name.endsWith('.gguf') || (head.length === 4 && String.fromCharCode(...head) === 'GGUF')) {
    throw new IoError(`${path} is a GGUF model: its tokenizer is in its metadata; pass the parsed metadata (ggufMetadata), not a path`);
  }
  if (name.endsWith('.model')) {
    throw new IoError(
      `${path}: unsupported tokenizer type: SentencePiece .model files are not read; use the llama2.c tokenizer.bin or a tokenizer.json`,
    );
  }
  return readLlama2cTokenizer(path, vocabSize);
}

function readHead(path: string, n: number): Uint8Array {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const buf = new Uint8Array(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } catch (cause) {
    throw new IoError(`cannot read tokenizer ${path}: ${(cause as Error).message}`, { cause });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
