/**
 * llama.cpp's quantization presets (`llama-quantize ... Q4_K_M`) and its per-tensor rules
 * (src/llama-quant.cpp, llama_tensor_get_type, without an importance matrix), for the
 * architectures canopy writes ('llama', 'qwen2'). Facts, stated once:
 *
 *   - only matrices are quantized; norms and other 1-D tensors stay F32;
 *   - every matrix gets the preset's base type, except:
 *       output.weight (or token_embd.weight when the model has no output.weight: a tied head):
 *         Q8_0 when its rows are not a multiple of the base type's block, else Q6_K unless the
 *         base type is Q8_0;
 *       attn_v.weight (i = its index among the attn_v tensors in layer order, n their count;
 *         more(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2, with integer division):
 *         Q2_K: Q4_K if n_head / n_head_kv >= 4 else Q3_K; Q3_K_M: Q5_K for i < 2 else Q4_K;
 *         IQ4_NL / IQ4_XS: Q5_K if n_head / n_head_kv >= 4; Q4_K_M / Q5_K_M: Q6_K if more(i, n);
 *         Q4_K_S: Q5_K for i < 4; and in a 70B llama (80 layers, grouped kv heads) Q3_K / Q4_K
 *         become Q5_K;
 *       ffn_down (i, n as for attn_v): Q2_K: Q3_K; Q3_K_M: Q5_K for i < n/16 else Q4_K;
 *         Q4_K_M / Q5_K_M: Q6_K if more(i, n); IQ4_NL / IQ4_XS: Q5_K for i < n/8;
 *         Q4_K_S: Q5_K for i < n/8;
 *       attn_output.weight: Q2_K: Q3_K; Q3_K_M: Q4_K;
 *       attn_qkv.weight (fused): Q3_K_M: Q4_K; Q4_K_M: Q5_K; Q5_K_M: Q6_K;
 *   - then a row length (ne[0], the matrix's columns) that is not a multiple of the chosen
 *     type's block falls back: Q2_K, Q3_K, IQ4_XS -> IQ4_NL; Q4_K -> Q5_0; Q5_K -> Q5_1;
 *     Q6_K -> Q8_0; and if that still does not divide (or for the 32-blocks themselves), F16.
 *     (llama.cpp refuses a 32-block type whose rows are not a multiple of 32; canopy writes
 *     F16 there, as llama.cpp does for a fallback that does not fit.)
 *
 * Tensors are visited as llama.cpp visits them: by layer number (non-layer tensors first), then
 * by name.
 */

import { ArgumentError } from '../errors.js';
import { QUANT_TYPES, type QuantType } from '../tensor/quant-types.js';

/** The presets `canopy quantize --type` takes: ggml file type (general.file_type) and base type. */
export const QUANT_PRESETS = {
  Q4_0: { fileType: 2, base: 'Q4_0' },
  Q4_1: { fileType: 3, base: 'Q4_1' },
  Q8_0: { fileType: 7, base: 'Q8_0' },
  Q5_0: { fileType: 8, base: 'Q5_0' },
  Q5_1: { fileType: 9, base: 'Q5_1' },
  Q2_K: { fileType: 10, base: 'Q2_K' },
  Q3_K_M: { fileType: 12, base: 'Q3_K' },
  Q4_K_S: { fileType: 14, base: 'Q4_K' },
  Q4_K_M: { fileType: 15, base: 'Q4_K' },
  Q5_K_S: { fileType: 16, base: 'Q5_K' },
  Q5_K_M: { fileType: 17, base: 'Q5_K' },
  Q6_K: { fileType: 18, base: 'Q6_K' },
  IQ4_NL: { fileType: 25, base: 'IQ4_NL' },
  IQ4_XS: { fileType: 30, base: 'IQ4_XS' },
} as const satisfies Record<string, { fileType: number; base: QuantType }>;

export type QuantPreset = keyof typeof QUANT_PRESETS;
export const QUANT_PRESET_NAMES = Object.keys(QUANT_PRESETS) as QuantPreset[];

export function isQuantPreset(v: unknown): v is QuantPreset {
  return typeof v === 'string' && Object.hasOwn(QUANT_PRESETS, v);
}

/** What a tensor is stored as in the output: a block type, or a float type. */
export type TensorStorage = QuantType | 'F32' | 'F16';

/** A tensor as the rules see it: its GGUF name and ne (ne[0] = columns, the row length). */
export interface PresetTensor {
  name: string;
  ne: readonly number[];
}

export interface PresetModel {
  nHeads: number;
  nKvHeads: number;
  nLayers: number;
}

const FALLBACK: Partial<Record<QuantType, QuantType>> = { Q2_K: 'IQ4_NL', Q3_K: 'IQ4_NL', IQ4_XS: 'IQ4_NL', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };

/** The layer number of a GGUF tensor name (blk.N.*), or -1. */
function layerOf(name: string): number {
  const m = /^blk\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : -1;
}

/** llama.cpp's visiting order: by layer (non-layer tensors, -1, first), then by name. */
export function llamaTensorOrder<T extends { name: string }>(tensors: readonly T[]): T[] {
  return [...tensors].sort((a, b) => layerOf(a.name) - layerOf(b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A type that fits rows of `cols` values: `type` itself, its fallback, or F16. */
export function fitRows(type: QuantType, cols: number): TensorStorage {
  if (cols % QUANT_TYPES[type].block === 0) return type;
  const f = FALLBACK[type];
  return f !== undefined && cols % QUANT_TYPES[f].block === 0 ? f : 'F16';
}

/** The storage of every tensor under `preset` (llama.cpp's rules above), by GGUF name. */
export function presetTensorTypes(preset: QuantPreset, tensors: readonly PresetTensor[], model: PresetModel): Map<string, TensorStorage> {
  if (!isQuantPreset(preset)) throw new ArgumentError('type', `one of ${QUANT_PRESET_NAMES.join(', ')}`, preset);
  const base: QuantType = QUANT_PRESETS[preset].base;
  const gqa = model.nHeads / model.nKvHeads;
  const is70B = model.nLayers === 80 && model.nHeads !== model.nKvHeads;
  const hasOutput = tensors.some((t) => t.name === 'output.weight');
  const nAttnV = tensors.filter((t) => t.name.includes('attn_v.weight')).length;
  const nFfnDown = tensors.filter((t) => t.name.includes('ffn_down')).length;
  const more = (i: number, n: number) => i < Math.trunc(n / 8) || i >= Math.trunc((7 * n) / 8) || (i - Math.trunc(n / 8)) % 3 === 2;
  let iAttnV = 0;
  let iFfnDown = 0;
  const out = new Map<string, TensorStorage>();
  for (const t of llamaTensorOrder(tensors)) {
    const { name } = t;
    if (t.ne.length < 2 || name.includes('_norm.weight')) {
      out.set(name, 'F32');
      continue;
    }
    const cols = t.ne[0]!;
    let type: QuantType = base;
    if (name === 'output.weight' || (!hasOutput && name === 'token_embd.weight')) {
      if (cols % QUANT_TYPES[base].block !== 0) type = 'Q8_0';
      else if (base !== 'Q8_0') type = 'Q6_K';
    } else if (name.includes('attn_v.weight')) {
      if (preset === 'Q2_K') type = gqa >= 4 ? 'Q4_K' : 'Q3_K';
      else if (preset === 'Q3_K_M') type = iAttnV < 2 ? 'Q5_K' : 'Q4_K';
      else if ((preset === 'IQ4_NL' || preset === 'IQ4_XS') && gqa >= 4) type = 'Q5_K';
      else if ((preset === 'Q4_K_M' || preset === 'Q5_K_M') && more(iAttnV, nAttnV)) type = 'Q6_K';
      else if (preset === 'Q4_K_S' && iAttnV < 4) type = 'Q5_K';
      if (is70B && (type === 'Q3_K' || type === 'Q4_K')) type = 'Q5_K';
      iAttnV++;
    } else if (name.includes('ffn_down')) {
      const i = iFfnDown;
      const n = nFfnDown;
      if (preset === 'Q2_K') type = 'Q3_K';
      else if (preset === 'Q3_K_M') type = i < Math.trunc(n / 16) ? 'Q5_K' : 'Q4_K';
      else if (preset === 'Q4_K_M') {
        if (more(i, n)) type = 'Q6_K';
      } else if (i < Math.trunc(n / 8) && (preset === 'IQ4_NL' || preset === 'IQ4_XS')) type = 'Q5_K';
      else if (preset === 'Q5_K_M' && more(i, n)) type = 'Q6_K';
      else if (preset === 'Q4_K_S' && i < Math.trunc(n / 8)) type = 'Q5_K';
      iFfnDown++;
    } else if (name.includes('attn_output.weight')) {
      if (preset === 'Q2_K') type = 'Q3_K';
      else if (preset === 'Q3_K_M') type = 'Q4_K';
    } else if (name.includes('attn_qkv.weight')) {
      if (preset === 'Q3_K_M') type = 'Q4_K';
      else if (preset === 'Q4_K_M') type = 'Q5_K';
      else if (preset === 'Q5_K_M') type = 'Q6_K';
    }
    out.set(name, fitRows(type, cols));
  }
  return out;
}
