/**
 * Writers of small model files for the loader tests: safetensors files and
 * Hugging Face directories, GGUF files (every metadata type, any alignment,
 * F32/F16/BF16/Q8_0 tensors), llama2.c version 1 and 2 checkpoints; and the
 * Hugging Face q/k row permutation. Test code only: canopy itself writes none
 * of these formats.
 */

import { quantTypeOfGgmlId } from '../../lib/tensor/quant-types.js';
import { quantizeRef } from './quant-reference.js';
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { randomValues } from '../../lib/bench/suites/util.js';
import { type ModelConfig, expectedShapes, layerTensorNames } from '../../lib/model/config.js';
import { safetensorsBytes } from '../../lib/model/formats/safetensors.js';
import { encodeFloats, toF16Bits } from '../../lib/tensor/dtype.js';
import { F16, decodeReference } from './float-reference.js';

const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

// ---------------------------------------------------------------- safetensors

/** A tensor's bytes, or just their length: a file whose tensors are all `{ byteLength }` is written sparse (zeros, no disk). */
export type TensorBytes = ArrayBufferView | { byteLength: number };

export interface StTensor {
  name: string;
  dtype: string; // 'F32', 'F16', 'BF16', ...
  shape: number[];
  data: TensorBytes;
}

function isSparse(data: readonly TensorBytes[]): boolean {
  return data.length > 0 && data.every((d) => !ArrayBuffer.isView(d));
}

/**
 * Writes a safetensors file: 8-byte header length, JSON header (padded with
 * spaces so the data starts 8-byte aligned unless `align` is false), data in
 * the given order.
 */
export function writeSafetensors(path: string, tensors: StTensor[], metadata?: Record<string, string>, options: { align?: boolean } = {}): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  if (isSparse(tensors.map((t) => t.data))) {
    // Sparse (huge, all-zero) tensors: the header, then a hole up to the data's end.
    let json = JSON.stringify(header);
    if (options.align !== false) json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeFileSync(path, Buffer.concat([len, Buffer.from(json)]));
    truncateSync(path, 8 + Buffer.byteLength(json) + off);
    return;
  }
  writeFileSync(path, safetensorsBytes(tensors.map((t) => ({ ...t, data: t.data as ArrayBufferView })), metadata, options));
}

/** Writes config.json and the weights, in one model.safetensors or in `shards` files with model.safetensors.index.json. */
export function writeHfDir(dir: string, config: Record<string, unknown>, tensors: StTensor[], options: { shards?: number } = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const shards = options.shards ?? 1;
  if (shards === 1) {
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    writeSafetensors(join(dir, name), part, { format: 'pt' });
    for (const t of part) {
      weightMap[t.name] = name;
      total += t.data.byteLength;
    }
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
}

/**
 * Hugging Face's convert_llama_weights_to_hf.py permutation of q/k rows:
 *   w.view(n_heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols)
 * Within each head's block of head_dim rows, new row t * head_dim/2 + j is old
 * row 2j + t (t in {0, 1}): rows [0, 2, 4, ..., 1, 3, 5, ...]. It turns Meta's
 * interleaved RoPE pairs (2j, 2j+1) into rotate_half's pairs (j, j + head_dim/2).
 */
export function permuteToHalf(w: Float32Array, nHeads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let t = 0; t < 2; t++) {
      for (let j = 0; j < half; j++) {
        const src = (h * headDim + 2 * j + t) * cols;
        const dst = (h * headDim + t * half + j) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/** The inverse of permuteToHalf: old row 2j + t = new row t * head_dim/2 + j. */
export function permuteToInterleaved(w: Float32Array, nHeads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let t = 0; t < 2; t++) {
      for (let j = 0; j < half; j++) {
        const src = (h * headDim + t * half + j) * cols;
        const dst = (h * headDim + 2 * j + t) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

const HF_LAYER: Record<string, string> = {
  attnNorm: 'input_layernorm.weight',
  wq: 'self_attn.q_proj.weight',
  wk: 'self_attn.k_proj.weight',
  wv: 'self_attn.v_proj.weight',
  wo: 'self_attn.o_proj.weight',
  bq: 'self_attn.q_proj.bias',
  bk: 'self_attn.k_proj.bias',
  bv: 'self_attn.v_proj.bias',
  qNorm: 'self_attn.q_norm.weight',
  kNorm: 'self_attn.k_norm.weight',
  ffnNorm: 'post_attention_layernorm.weight',
  w1: 'mlp.gate_proj.weight',
  w2: 'mlp.down_proj.weight',
  w3: 'mlp.up_proj.weight',
};

/** The Hugging Face name of a canonical tensor name (written independently of lib/). */
export function hfName(canonical: string): string {
  if (canonical === 'embed') return 'model.embed_tokens.weight';
  if (canonical === 'norm') return 'model.norm.weight';
  if (canonical === 'output') return 'lm_head.weight';
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canonical)!;
  return `model.layers.${m[1]}.${HF_LAYER[m[2]!]}`;
}

/**
 * Canonical interleaved-layout f32 tensors -> Hugging Face tensors: q/k rows
 * permuted to the half layout, renamed, encoded to `dtype`. Also returns the
 * permuted f32 values by canonical name (what the HF loader must give back).
 */
export function toHfTensors(
  tensors: Map<string, Float32Array>,
  shapes: Map<string, number[]>,
  c: Pick<ModelConfig, 'nHeads' | 'nKvHeads' | 'headDim' | 'dim' | 'nLayers'>,
  dtype: 'F32' | 'F16' | 'BF16',
): { st: StTensor[]; permuted: Map<string, Float32Array> } {
  const st: StTensor[] = [];
  const permuted = new Map<string, Float32Array>();
  const q = new Set(Array.from({ length: c.nLayers }, (_, i) => layerTensorNames(i).wq));
  const k = new Set(Array.from({ length: c.nLayers }, (_, i) => layerTensorNames(i).wk));
  for (const [name, values] of tensors) {
    const shape = shapes.get(name)!;
    let v = values;
    if (q.has(name)) v = permuteToHalf(values, c.nHeads, c.headDim, shape[1]!);
    if (k.has(name)) v = permuteToHalf(values, c.nKvHeads, c.headDim, shape[1]!);
    permuted.set(name, v);
    const data = dtype === 'F32' ? v : encodeFloats(v, dtype === 'F16' ? 'f16' : 'bf16');
    st.push({ name: hfName(name), dtype, shape: [...shape], data });
  }
  return { st, permuted };
}

/** config.json of a Hugging Face Llama-family directory for `c`. */
export function hfConfigJson(c: ModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: c.architecture,
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.normEps,
    tie_word_embeddings: c.tiedEmbeddings,
    bos_token_id: c.bosTokenId ?? null,
    eos_token_id: c.eosTokenIds?.length === 1 ? c.eosTokenIds[0] : (c.eosTokenIds ?? null),
    rope_scaling: null,
    torch_dtype: 'float32',
    ...extra,
  };
}

// ----------------------------------------------------------------------- GGUF

// The GGUF container writer, tensor names and llama metadata live in lib/ (canopy bench writes
// GGUF models for the llama.cpp peer); the test-only parts (Q8_0, expected values) stay here.
export {
  type GgufTypeSpec,
  type GgufEntry,
  type GgufTensorSpec,
  type GgufWriteOptions,
  writeGguf,
  ggmlFloatBytes,
  ggufName,
  llamaGgufMetadata,
} from '../../lib/model/formats/gguf-writer.js';
import { type GgufEntry, type GgufTensorSpec, ggmlFloatBytes, ggufName, llamaGgufMetadata, writeGguf } from '../../lib/model/formats/gguf-writer.js';

/**
 * llama.cpp's quantize_row_q8_0_ref: per block of 32, d = amax / 127,
 * q = round(x / d) (roundf: half away from zero), d stored as f16.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  const nb = values.length / 32;
  const out = Buffer.alloc(nb * 34);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[b * 32 + j]!));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    out.writeUInt16LE(toF16Bits(d), b * 34);
    for (let j = 0; j < 32; j++) {
      const x = Math.fround(values[b * 32 + j]! * id);
      out.writeInt8(Math.sign(x) * Math.round(Math.abs(x)), b * 34 + 2 + j);
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

// ------------------------------------------------------------------ llama2.c

/** Rounds half to even, as torch.round does. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Writes a llama2.c version 1 (fp32) or version 2 (int8, groups of
 * `groupSize`) checkpoint as llama2.c's export.py does, from canonical f32
 * tensors. Returns, for version 2, the dequantized values the loader must
 * produce (int8 * f32 scale, in f32).
 */
export function writeLlama2cV1V2(
  path: string,
  version: 1 | 2,
  c: ModelConfig,
  tensors: Map<string, Float32Array>,
  groupSize = 64,
): Map<string, Float32Array> {
  const header = Buffer.alloc(256);
  header.writeUInt32LE(0x616b3432, 0);
  header.writeInt32LE(version, 4);
  [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.maxSeqLen].forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i));
  header.writeUInt8(c.tiedEmbeddings ? 1 : 0, 36);
  if (version === 2) header.writeInt32LE(groupSize, 37);
  const parts: Buffer[] = [header];
  const f32 = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const L = (f: keyof ReturnType<typeof layerTensorNames>) => Array.from({ length: c.nLayers }, (_, i) => tensors.get(layerTensorNames(i)[f])!);
  const norms = [...L('attnNorm'), ...L('ffnNorm'), tensors.get('norm')!];
  const mats = [tensors.get('embed')!, ...L('wq'), ...L('wk'), ...L('wv'), ...L('wo'), ...L('w1'), ...L('w2'), ...L('w3')];
  if (!c.tiedEmbeddings) mats.push(tensors.get('output')!);
  const expected = new Map<string, Float32Array>();
  if (version === 1) {
    parts.push(...norms.slice(0, 2 * c.nLayers + 1).map(f32), ...mats.map(f32));
  } else {
    parts.push(...norms.map(f32));
    const dequant = new Map<Float32Array, Float32Array>();
    for (const w of mats) {
      const n = w.length / groupSize;
      const q = new Int8Array(w.length);
      const s = new Float32Array(n);
      const deq = new Float32Array(w.length);
      for (let g = 0; g < n; g++) {
        let wmax = 0;
        for (let j = 0; j < groupSize; j++) wmax = Math.max(wmax, Math.abs(w[g * groupSize + j]!));
        const scale = Math.fround(wmax / 127);
        s[g] = scale;
        for (let j = 0; j < groupSize; j++) {
          const i = g * groupSize + j;
          q[i] = roundHalfEven(Math.fround(w[i]! / scale));
          deq[i] = Math.fround(q[i]! * scale);
        }
      }
      parts.push(Buffer.from(q.buffer), f32(s));
      dequant.set(w, deq);
    }
    for (const [name, values] of tensors) expected.set(name, dequant.get(values) ?? values);
  }
  writeFileSync(path, Buffer.concat(parts));
  return expected;
}

// ------------------------------------------------------------ synthetic models

/** Random f32 tensors in [-1, 1) with the canonical shapes of `c` (deterministic per seed). */
export function syntheticTensors(c: ModelConfig, seed: number): { tensors: Map<string, Float32Array>; shapes: Map<string, number[]> } {
  const shapes = expectedShapes(c);
  const tensors = new Map<string, Float32Array>();
  let k = 0;
  for (const [name, shape] of shapes) tensors.set(name, randomValues(shape.reduce((a, b) => a * b, 1), seed * 1000 + k++));
  return { tensors, shapes };
}

/** The reference Q8_0 dequantization, straight from the block layout: value = f16(d) * int8 q. */
export function dequantizeQ8_0Reference(blocks: Uint8Array): Float32Array {
  const buf = Buffer.from(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  const out = new Float32Array((blocks.byteLength / 34) * 32);
  for (let b = 0; b < blocks.byteLength / 34; b++) {
    const d = decodeReference(buf.readUInt16LE(b * 34), F16);
    for (let j = 0; j < 32; j++) out[b * 32 + j] = d * buf.readInt8(b * 34 + 2 + j);
  }
  return out;
}

/**
 * Writes a GGUF model of `c` from canonical f32 tensors, each stored as the
 * ggml type `typeOf(name)` (0 F32, 1 F16, 30 BF16, or a block type: 8 Q8_0, 2 Q4_0, 12 Q4_K, ...
 * quantized by the references of test/helpers/quant-reference.ts), and returns what the loader
 * must produce (f32 as stored, f16/bf16 bits, the blocks as stored).
 */
export function writeGgufModel(
  path: string,
  c: ModelConfig,
  tensors: Map<string, Float32Array>,
  shapes: Map<string, number[]>,
  typeOf: (canonical: string) => number,
  options: { arch?: string; alignment?: number; extraMetadata?: GgufEntry[] } = {},
): Map<string, { type: number; f32?: Float32Array; bits?: Uint16Array; blocks?: Uint8Array }> {
  const expected = new Map<string, { type: number; f32?: Float32Array; bits?: Uint16Array; blocks?: Uint8Array }>();
  const specs: GgufTensorSpec[] = [];
  for (const [name, values] of tensors) {
    const type = typeOf(name);
    const ne = [...shapes.get(name)!].reverse();
    let data: Uint8Array;
    const block = quantTypeOfGgmlId(type);
    if (type === 8) {
      // llama.cpp's own Q8_0 rounding (quantizeQ8_0); loaded as stored blocks.
      data = quantizeQ8_0(values);
      expected.set(name, { type, blocks: data });
    } else if (block !== undefined) {
      data = quantizeRef(block, values);
      expected.set(name, { type, blocks: data });
    } else {
      if (type !== 0 && type !== 1 && type !== 30) throw new Error(`writeGgufModel: ggml type ${type} is not written here`);
      data = ggmlFloatBytes(values, type);
      if (type === 0) expected.set(name, { type, f32: values });
      else expected.set(name, { type, bits: new Uint16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) });
    }
    specs.push({ name: ggufName(name), type, ne, data });
  }
  const metadata = llamaGgufMetadata(c, options.arch);
  if (options.alignment !== undefined) metadata.push(['general.alignment', 'uint32', options.alignment]);
  metadata.push(...(options.extraMetadata ?? []));
  writeGguf(path, { metadata, tensors: specs, ...(options.alignment !== undefined ? { alignment: options.alignment } : {}) });
  return expected;
}
