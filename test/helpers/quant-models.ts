/**
 * Block-quantized test models shared by the CPU and CUDA forward tests (test/model/quant-forward.test.ts,
 * test/gpu/quant-forward.gpu.test.ts): the float64 dequantization of a loaded GGUF's block-quantized
 * tensors, a small random model written with a block type per tensor, stories260K inflated to a
 * shape whose rows are multiples of 256, and a row-wise argmax.
 */
import { type ModelConfig, expectedShapes } from '../../lib/model/config.js';
import type { GgufWeights } from '../../lib/model/formats/gguf.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { syntheticTensors, writeGgufModel } from './model-writers.js';
import { dequantizeRef } from './quant-reference.js';

export const isNorm = (n: string) => /Norm$|^norm$/.test(n);

/** The random model of the mixed-type forward tests: rows of 256 and 512, so every block type fits. */
export const MIXED_MODEL_CONFIG: ModelConfig = {
  architecture: 'llama',
  dim: 256,
  hiddenDim: 512,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 64,
  vocabSize: 300,
  maxSeqLen: 64,
  ropeTheta: 10000,
  ropeStyle: 'interleaved',
  normEps: 1e-5,
  tiedEmbeddings: false,
  qkvBias: false,
};

/**
 * Writes MIXED_MODEL_CONFIG's random model to `path`, matrix `n` stored as GGUF type typeOf(n).
 * Its matrices are scaled by 0.25 to be well conditioned (a random model at full scale has
 * near one-hot attention, which turns the 8-bit activation rounding into large logit changes).
 */
export function writeMixedModel(path: string, typeOf: (n: string) => number): void {
  const { tensors, shapes } = syntheticTensors(MIXED_MODEL_CONFIG, 4);
  for (const [name, v] of tensors) if (!isNorm(name)) v.forEach((x, i) => (v[i] = x * 0.25));
  writeGgufModel(path, MIXED_MODEL_CONFIG, tensors, shapes, typeOf);
}

export function argmaxRows(logits: Float32Array, vocab: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / vocab; r++) {
    let best = 0;
    for (let v = 1; v < vocab; v++) if (logits[r * vocab + v]! > logits[r * vocab + best]!) best = v;
    out.push(best);
  }
  return out;
}

/** The loaded tensors with every block-quantized one replaced by its float64 reference dequantization (as f32). */
export function dequantized(w: GgufWeights): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const shapes = expectedShapes(w.config);
  for (const [name, t] of w.tensors) {
    const q = w.quant.get(name);
    if (q === undefined) {
      out.set(name, t);
      continue;
    }
    const shape = shapes.get(name)!;
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(name, Tensor.from(Float32Array.from(dequantizeRef(q, t.toArray() as Uint8Array, n)), { shape }));
  }
  return out;
}

/**
 * stories260K in a wider shape with the same function: dim and hidden 256, 32 heads of 8 (16 kv
 * heads, the same grouping), the new rows and columns zero, the RMSNorm weights halved and eps
 * quartered (the mean square over 256 dims of a vector with 64 non-zero entries is a quarter of
 * the original's).
 */
export function inflate(c: ModelConfig, t: Map<string, Tensor>): { config: ModelConfig; tensors: Map<string, Float32Array>; shapes: Map<string, number[]> } {
  const wide: ModelConfig = { ...c, dim: 256, hiddenDim: 256, nHeads: 32, nKvHeads: 16, normEps: c.normEps / 4 };
  const shapes = expectedShapes(wide);
  const tensors = new Map<string, Float32Array>();
  const origShapes = expectedShapes(c);
  for (const [name, shape] of shapes) {
    const src = t.get(name)!.toFloat32();
    const os = origShapes.get(name)!;
    const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (shape.length === 1) {
      for (let i = 0; i < os[0]!; i++) out[i] = src[i]! * (isNorm(name) ? 0.5 : 1);
    } else {
      for (let r = 0; r < os[0]!; r++) for (let col = 0; col < os[1]!; col++) out[r * shape[1]! + col] = src[r * os[1]! + col]!;
    }
    tensors.set(name, out);
  }
  return { config: wide, tensors, shapes };
}

