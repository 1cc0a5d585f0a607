/**
 * What `canopy generate` and `canopy chat` share: the options that load a model and set its
 * storage and sampling, declared once for commander and parsed once, each failure an
 * ArgumentError naming the flag.
 */

import { readFileSync } from 'node:fs';

import type { Command } from 'commander';

import { ArgumentError, IoError } from '../errors.js';
import type { KvCacheDtype } from '../model/kv-cache.js';
import { LOAD_QUANT_DTYPES, type LoadQuantDtype } from '../model/load.js';
import type { FloatDType } from '../tensor/dtype.js';

export interface ModelCliOptions {
  model: string;
  tokenizer?: string;
  backend?: string;
  dtype?: string;
  kvDtype?: string;
  maxTokens?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  minP?: string;
  repeatPenalty?: string;
  frequencyPenalty?: string;
  presencePenalty?: string;
  penaltyLastN?: string;
  seed?: string;
  verbose?: boolean;
}

/** Float storage, or a GGUF block type the float matrices are quantized to at load. */
const DTYPES: readonly string[] = ['f32', 'f16', 'bf16', ...LOAD_QUANT_DTYPES];
const KV_DTYPES = ['f32', 'f16', 'bf16', 'int8', 'int4', 'fp8'];

/** --model, --tokenizer, --backend, --dtype and --kv-dtype. */
export function addModelOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--model <path>', 'model file or folder')
    .option('--tokenizer <path>', 'tokenizer file (default: embedded in GGUF, or found beside the model)')
    .option('--backend <backend>', 'auto, cpu, cuda or cuda:N', 'auto')
    .option('--dtype <dtype>', `weight storage dtype: f32, f16, bf16, or a block type the float matrices are quantized to at load (${LOAD_QUANT_DTYPES.join(', ')})`)
    .option('--kv-dtype <dtype>', 'KV cache storage: f32, f16, bf16, int8, int4 or fp8');
}

/** --max-tokens, --temperature, --top-k, --top-p, --min-p, the penalties and --seed, with the command's defaults. */
export function addSamplingOptions(cmd: Command, defaults: { maxTokens: string; maxTokensHelp: string; temperature: string }): Command {
  return cmd
    .option('--max-tokens <n>', defaults.maxTokensHelp, defaults.maxTokens)
    .option('--temperature <t>', '0 is greedy', defaults.temperature)
    .option('--top-k <k>', 'keep the k most probable tokens')
    .option('--top-p <p>', 'nucleus sampling mass')
    .option('--min-p <p>', 'drop tokens below this fraction of the most probable one')
    .option('--repeat-penalty <r>', 'divide positive / multiply negative logits of recent tokens (llama.cpp; 1: off)')
    .option('--frequency-penalty <f>', 'subtract f per occurrence of a recent token (0: off)')
    .option('--presence-penalty <p>', 'subtract p once from each recent token (0: off)')
    .option('--penalty-last-n <n>', 'recent tokens the penalties look at (-1: all, 0: none; default 64)')
    .option('--seed <s>', 'random seed');
}

/** A numeric flag's value (undefined when absent); not a number (or not an integer): ArgumentError. */
export function num(value: string | undefined, name: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new ArgumentError(`--${name}`, integer ? 'an integer' : 'a number', value);
  return n;
}

/** --dtype and --kv-dtype, checked. */
export function storageOptions(o: ModelCliOptions): { dtype?: FloatDType | LoadQuantDtype; kvDtype?: KvCacheDtype } {
  if (o.dtype !== undefined && !DTYPES.includes(o.dtype)) throw new ArgumentError('--dtype', DTYPES.join(', '), o.dtype);
  if (o.kvDtype !== undefined && !KV_DTYPES.includes(o.kvDtype)) throw new ArgumentError('--kv-dtype', KV_DTYPES.join(', '), o.kvDtype);
  return { ...(o.dtype !== undefined ? { dtype: o.dtype as FloatDType | LoadQuantDtype } : {}), ...(o.kvDtype !== undefined ? { kvDtype: o.kvDtype as KvCacheDtype } : {}) };
}

/** The sampling flags as generate()/ChatSession options. */
export function samplingOptions(o: ModelCliOptions, defaults: { maxTokens: number; temperature: number }) {
  return {
    maxTokens: num(o.maxTokens, 'max-tokens', true) ?? defaults.maxTokens,
    temperature: num(o.temperature, 'temperature', false) ?? defaults.temperature,
    ...(o.topK !== undefined ? { topK: num(o.topK, 'top-k', true)! } : {}),
    ...(o.topP !== undefined ? { topP: num(o.topP, 'top-p', false)! } : {}),
    ...(o.minP !== undefined ? { minP: num(o.minP, 'min-p', false)! } : {}),
    ...(o.repeatPenalty !== undefined ? { repeatPenalty: num(o.repeatPenalty, 'repeat-penalty', false)! } : {}),
    ...(o.frequencyPenalty !== undefined ? { frequencyPenalty: num(o.frequencyPenalty, 'frequency-penalty', false)! } : {}),
    ...(o.presencePenalty !== undefined ? { presencePenalty: num(o.presencePenalty, 'presence-penalty', false)! } : {}),
    ...(o.penaltyLastN !== undefined ? { penaltyLastN: num(o.penaltyLastN, 'penalty-last-n', true)! } : {}),
    ...(o.seed !== undefined ? { seed: num(o.seed, 'seed', true)! } : {}),
  };
}

/** The text of a --template file; unreadable: IoError naming it. */
export function readTemplate(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    throw new IoError(`cannot read the chat template ${path}: ${(cause as Error).message}`, { cause });
  }
}
