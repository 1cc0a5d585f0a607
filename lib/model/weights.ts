/**
 * loadWeights: a model's config and canonical tensors (lib/model/config.ts)
 * from a path, whatever the format:
 *
 *   a directory                          Hugging Face (config.json + safetensors)   lib/model/formats/hf.ts
 *                                        (a .safetensors or config.json path is refused: pass the directory)
 *   *.gguf, or a file starting "GGUF"    GGUF v2/v3 (llama.cpp)                     lib/model/formats/gguf.ts
 *   anything else                        llama2.c checkpoint (v0, or v1/v2 "ak42")  lib/model/formats/llama2c.ts
 *
 * Tensors stored as f32, f16 or bf16, and GGUF block-quantized tensors (Q8_0,
 * Q4_K, ...: uint8 tensors of their blocks, listed in GgufWeights.quant), are
 * memory-mapped (copy-on-write; pages load on first touch), so a model loads
 * with little more memory than the pages it uses; llama2.c v2 int8 is
 * dequantized to f32. Every tensor is checked against expectedShapes(config)
 * before any is mapped. Failures are CanopyErrors naming the file and the
 * tensor: IoError for unreadable, truncated or corrupt files, ArgumentError
 * for well-formed files canopy cannot use (unknown architecture, unsupported
 * type, missing tensor, wrong shape).
 */

import { statSync } from 'node:fs';

import { ArgumentError, IoError } from '../errors.js';
import type { WeightFormat } from './formats/common.js';
import { readBytes } from './formats/common.js';
import { type GgufWeights, GGUF_MAGIC, loadGguf } from './formats/gguf.js';
import { type HfWeights, loadHf } from './formats/hf.js';
import { type Llama2cWeights, loadLlama2c } from './formats/llama2c.js';

export type { WeightFormat, LoadedWeightsBase } from './formats/common.js';
export type { GgufWeights } from './formats/gguf.js';
export type { HfWeights } from './formats/hf.js';
export type { Llama2cWeights } from './formats/llama2c.js';

/** The result of loadWeights; `format` tells which metadata it carries. */
export type LoadedWeights = Llama2cWeights | GgufWeights | HfWeights;

export interface LoadWeightsOptions {
  /** Skip detection and read the path as this format. */
  format?: WeightFormat;
}

const FORMATS: readonly WeightFormat[] = ['llama2c', 'gguf', 'hf'];

/** Which format `path` holds: a directory is Hugging Face; a .gguf name or the GGUF magic is GGUF; anything else llama2.c. */
export function detectFormat(path: string): WeightFormat {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a file or directory path', path);
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (cause) {
    throw new IoError(`cannot open ${path}: ${(cause as Error).message}`, { cause });
  }
  if (isDir) return 'hf';
  const lower = path.toLowerCase();
  if (lower.endsWith('.gguf')) return 'gguf';
  if (lower.endsWith('.safetensors') || lower.endsWith('config.json') || lower.endsWith('.safetensors.index.json')) {
    throw new ArgumentError(`${path}: a Hugging Face model is loaded from its directory (config.json + safetensors); pass the directory`);
  }
  const head = readBytes(path, 0, 4);
  if (head.length === 4 && head.readUInt32LE(0) === GGUF_MAGIC) return 'gguf';
  return 'llama2c';
}

/** Loads a model's config and canonical tensors from `path` (see the module comment). */
export function loadWeights(path: string, options: LoadWeightsOptions = {}): LoadedWeights {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a file or directory path', path);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
  if (options.format !== undefined && !FORMATS.includes(options.format)) {
    throw new ArgumentError('options.format', `one of ${FORMATS.join(', ')}`, options.format);
  }
  const format = options.format ?? detectFormat(path);
  switch (format) {
    case 'hf':
      return loadHf(path);
    case 'gguf':
      return loadGguf(path);
    case 'llama2c':
      return loadLlama2c(path);
  }
}
