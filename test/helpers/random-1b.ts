/**
 * A random model with a 1B model's layer shape (TinyLlama-1.1B / Llama-2-style: dim 2048, hidden
 * 5632, 32 q / 4 kv heads of 64) but few layers and a small vocabulary, so that CI can write it
 * in seconds: the agreement test against llama.cpp (test/peer/quant-1b-agreement.test.ts) runs
 * every block type's kernels on the full 1B row widths (2048, 5632) and head layout.
 *
 *   random1bConfig(layers, vocab)          the ModelConfig
 *   random1bTensors(config, init, seed)    deterministic tensors: matrices as f16 bits, norms f32
 *   writeF16Gguf(path, config, tensors)    an F16 GGUF (norms F32) llama.cpp loads
 *   writeTypeGguf(f16Path, outPath, type)  that file with every matrix (embedding and output
 *                                          included) quantized to one block type by canopy's
 *                                          native quantizer (lib/kernels/quantize.ts, the one
 *                                          quantize() and `canopy quantize` use); norms F32
 */
import { type ModelConfig, expectedShapes } from '../../lib/model/config.js';
import { type GgufEntry, type GgufTensorSpec, ggufName, llamaGgufMetadata, syntheticVocabMetadata, writeGguf } from '../../lib/model/formats/gguf-writer.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import { quantizeMatrix } from '../../lib/kernels/quantize.js';
import { loadWeights } from '../../lib/model/weights.js';
import { randomValues } from '../../lib/bench/suites/util.js';
import { QUANT_TYPES, type QuantType } from '../../lib/tensor/quant-types.js';
import { encodeFloats } from '../../lib/tensor/dtype.js';
import { isNorm } from './quant-models.js';

export function random1bConfig(nLayers: number, vocabSize: number): ModelConfig {
  return {
    architecture: 'llama',
    dim: 2048,
    hiddenDim: 5632,
    nLayers,
    nHeads: 32,
    nKvHeads: 4,
    headDim: 64,
    vocabSize,
    maxSeqLen: 2048,
    ropeTheta: 10000,
    ropeStyle: 'interleaved',
    normEps: 1e-5,
    tiedEmbeddings: false,
    qkvBias: false,
  };
}

/**
 * The initialization: every matrix uniform with standard deviation gain / sqrt(columns), the
 * gain per matrix kind; the embedding of standard deviation `embed`; norm weights 1 + normJitter * u.
 */
export interface Random1bInit {
  attn: number; // wq, wk (the attention scores' scale: larger gives sharper softmax)
  value: number; // wv, wo
  ffn: number; // w1, w2, w3
  output: number;
  embed: number;
  normJitter: number;
}

/**
 * Deterministic tensors for `c`: matrices as f16 bits, norms as f32. Each value is drawn from a
 * table of 65536 evenly spaced quantiles of the uniform distribution (scaled to the tensor's
 * standard deviation, rounded to f16) by a 16-bit xorshift draw: about 50x faster than encoding
 * f32 values to f16 one by one in JavaScript (the 1B-shaped file is 90 M values).
 */
export function random1bTensors(c: ModelConfig, init: Random1bInit, seed: number): Map<string, Uint16Array | Float32Array> {
  const shapes = expectedShapes(c);
  const out = new Map<string, Uint16Array | Float32Array>();
  let k = 0;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const s = seed * 1000 + k++;
    if (isNorm(name)) {
      out.set(
        name,
        randomValues(n, s).map((u) => 1 + init.normJitter * u),
      );
      continue;
    }
    const kind = name.split('.').pop()!;
    const std =
      name === 'embed'
        ? init.embed
        : (1 / Math.sqrt(shape[1]!)) * (name === 'output' ? init.output : kind === 'wq' || kind === 'wk' ? init.attn : kind === 'wv' || kind === 'wo' ? init.value : init.ffn);
    // Uniform on [-a, a) has standard deviation a / sqrt(3).
    const a = std * Math.sqrt(3);
    const table = encodeFloats(
      Float32Array.from({ length: 65536 }, (_, i) => a * ((2 * i + 1) / 65536 - 1)),
      'f16',
    ) as Uint16Array;
    const bits = new Uint16Array(n);
    let x = (s * 2654435761) >>> 0 || 1;
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bits[i] = table[x >>> 16]!;
    }
    out.set(name, bits);
  }
  return out;
}

/** Writes the model as F16 (norms F32), with a synthetic SentencePiece vocabulary llama.cpp accepts. */
export function writeF16Gguf(path: string, c: ModelConfig, tensors: Map<string, Uint16Array | Float32Array>): void {
  const shapes = expectedShapes(c);
  writeGguf(path, {
    metadata: [...llamaGgufMetadata(c), ...syntheticVocabMetadata(c.vocabSize)],
    tensors: [...tensors].map(([name, v]) => ({
      name: ggufName(name),
      type: v instanceof Float32Array ? 0 : 1,
      ne: [...shapes.get(name)!].reverse(),
      data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
    })),
  });
}

/**
 * Writes `f16Path` with every matrix quantized to `type` by the native quantizer (norms F32) to
 * `outPath`; metadata copied (general.file_type dropped).
 */
export async function writeTypeGguf(f16Path: string, outPath: string, type: QuantType): Promise<void> {
  const file = readGguf(f16Path);
  const metadata: GgufEntry[] = [];
  for (const [key, value] of file.metadata) if (key !== 'general.file_type' && key !== 'general.alignment') metadata.push([key, file.metadataTypes.get(key)!, value]);
  const w = loadWeights(f16Path);
  try {
    const specs: GgufTensorSpec[] = [];
    for (const [name, t] of w.tensors) {
      const ne = [...t.shape].reverse();
      if (t.shape.length < 2 || isNorm(name)) {
        const f = t.toFloat32();
        specs.push({ name: ggufName(name), type: 0, ne, data: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) });
        continue;
      }
      const q = await quantizeMatrix(t, type);
      const bytes = Uint8Array.from(q.toArray() as Uint8Array);
      q.dispose();
      specs.push({ name: ggufName(name), type: QUANT_TYPES[type].id, ne, data: bytes });
    }
    writeGguf(outPath, { metadata, tensors: specs });
  } finally {
    w.dispose();
  }
}
