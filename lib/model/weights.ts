/**
 * loadWeights: a model's config and canonical tensors (lib/model/config.ts)
 * from a path, whatever the format:
 *
 *   a directory                          Hugging Face (config.json + safetensors)   lib/model/formats/hf.ts
 *                                        (a .safetensors or config.json path is refused: pass the directory)
 *   *.gguf, or a file starting "GGUF"    GGUF v2/v3 (llama.cpp)                     lib/model/formats/gguf.ts
 *   a PyTorch checkpoint (ZIP or pickle), a pre-GGUF ggml file, a bare safetensors file:
 *                                        an ArgumentError saying what the file is (unknown format)
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

import { ArgumentError, IoError, NumericError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
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
  /**
   * Scan every weight for NaN and Infinity after loading (reads every page once); the first
   * one found fails the load with a NumericError naming the tensor and the element index.
   */
  validate?: boolean;
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
  const head = readBytes(path, 0, 16);
  if (head.length >= 4 && head.readUInt32LE(0) === GGUF_MAGIC) return 'gguf';
  const other = recognizeOtherFormat(head, path);
  if (other) throw new ArgumentError(`${path}: unknown model format: the file is ${other}. canopy reads GGUF files, Hugging Face folders (config.json + safetensors) and llama2.c checkpoints`);
  return 'llama2c';
}

/**
 * What a file that is neither GGUF nor llama2.c is, by its first bytes, or undefined (then it is
 * read as a llama2.c checkpoint, whose version 0 has no magic). Names the formats people pass
 * by mistake, so the error says what the file is instead of reporting a corrupt llama2.c header.
 */
function recognizeOtherFormat(head: Buffer, path: string): string | undefined {
  if (head.length >= 4 && head.toString('latin1', 0, 4) === 'PK\x03\x04') {
    return 'a ZIP archive: a PyTorch checkpoint (torch.save, e.g. pytorch_model.bin or .pt / .pth) is not read; convert it to safetensors or GGUF';
  }
  // A pickle stream starts with the PROTO opcode 0x80, a protocol number and an opcode (torch.save's
  // legacy format: 80 02 8a 0a, the magic number as a LONG1). A llama2.c v0 header starting with
  // dim 640 (80 02 00 00) has a third byte below 0x10 (dim < 2^20): no opcode is that small here.
  if (head.length >= 3 && head[0] === 0x80 && head[1]! >= 2 && head[1]! <= 5 && head[2]! >= 0x10) {
    return `a Python pickle (protocol ${head[1]}): a legacy PyTorch checkpoint is not read; convert it to safetensors or GGUF`;
  }
  const magic = head.length >= 4 ? head.readUInt32LE(0) : 0;
  const ggml: Record<number, string> = { 0x67676d6c: 'ggml', 0x67676d66: 'ggmf', 0x67676a74: 'ggjt', 0x67676c61: 'ggla' };
  if (ggml[magic]) return `a pre-GGUF llama.cpp file ('${ggml[magic]}' magic); convert it to GGUF with llama.cpp`;
  // safetensors: a little-endian u64 header length, then the JSON header's '{'.
  if (head.length >= 9 && head[8] === 0x7b) {
    const len = head.readBigUInt64LE(0);
    if (len > 1n && len < BigInt(1 << 30)) {
      return `a safetensors file: a Hugging Face model is loaded from its directory (config.json + safetensors); pass the directory that holds ${JSON.stringify(path.split(/[\\/]/).pop())}`;
    }
  }
  return undefined;
}

/** Loads a model's config and canonical tensors from `path` (see the module comment). */
export function loadWeights(path: string, options: LoadWeightsOptions = {}): LoadedWeights {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a file or directory path', path);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
  if (options.format !== undefined && !FORMATS.includes(options.format)) {
    throw new ArgumentError('options.format', `one of ${FORMATS.join(', ')}`, options.format);
  }
  if (options.validate !== undefined && typeof options.validate !== 'boolean') {
    throw new ArgumentError('options.validate', 'a boolean', options.validate);
  }
  const format = options.format ?? detectFormat(path);
  const weights = format === 'hf' ? loadHf(path) : format === 'gguf' ? loadGguf(path) : loadLlama2c(path);
  if (options.validate) {
    try {
      checkFinite(weights.tensors, path);
    } catch (e) {
      weights.dispose();
      throw e;
    }
  }
  return weights;
}

/**
 * The index of the first element of `t` that is NaN or +-Infinity, or -1. f16 and bf16 are
 * tested on their bits (exponent all ones), f32 with x - x (NaN exactly for NaN and Inf).
 */
export function firstNonFinite(t: Tensor): number {
  const a = t.toArray();
  if (t.dtype === 'f32') {
    const f = a as Float32Array;
    for (let i = 0; i < f.length; i++) if (f[i]! - f[i]! !== 0) return i;
    return -1;
  }
  if (t.dtype === 'f16' || t.dtype === 'bf16') {
    const mask = t.dtype === 'f16' ? 0x7c00 : 0x7f80;
    const u = a as Uint16Array;
    for (let i = 0; i < u.length; i++) if ((u[i]! & mask) === mask) return i;
  }
  return -1;
}

/** Throws a NumericError naming the first tensor (in load order) holding NaN or Infinity, and where. */
function checkFinite(tensors: Map<string, Tensor>, path: string): void {
  for (const [name, t] of tensors) {
    const i = firstNonFinite(t);
    if (i < 0) continue;
    const v = t.dtype === 'f32' ? (t.toArray() as Float32Array)[i] : t.toFloat32()[i];
    const where = t.shape.length > 1 ? ` (row ${Math.floor(i / t.shape[t.shape.length - 1]!)}, column ${i % t.shape[t.shape.length - 1]!})` : '';
    throw new NumericError(`${path}: tensor '${name}' (${t.dtype} [${t.shape.join(', ')}]) holds ${v} at element ${i}${where} (validate: true)`);
  }
}
