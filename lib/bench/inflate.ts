/**
 * The inflated benchmark target: a small trained model embedded in the shape of a large
 * one, so that it predicts what the small model predicts (real acceptance rates for a real
 * draft) at the cost of the large model's forward pass.
 *
 * Construction, for a source of dim d, head_dim h, and a target of dim D, head_dim H
 * (stories260K: d 64, h 8, 8 q / 4 kv heads, 5 layers; TinyLlama-1.1B's shape: D 2048,
 * H 64, 32 q / 4 kv heads, 22 layers, hidden 5632):
 *
 *   - every source matrix goes in the top-left corner of the target matrix, every other
 *     entry is 0; target layers beyond the source's count are all zeros, so each is an
 *     identity block (attention and MLP add 0 to the residual stream);
 *   - the residual stream lives in its first d entries (the rest stay exactly 0), so
 *     RMSNorm's mean over D entries is (d / D) times the mean over d: the norm weights are
 *     scaled by sqrt(d / D) and eps by d / D, which gives exactly the source's normalised
 *     values (sqrt(sum/D + eps d/D) = sqrt(d/D) sqrt(sum/d + eps));
 *   - a source head's h dims go to the first h dims of a target head of H dims; q rows are
 *     scaled by sqrt(H / h) so the attention scale 1/sqrt(H) acts as 1/sqrt(h);
 *   - RoPE theta becomes theta^(H / h): the target's pair i (i < h/2) then turns at
 *     (theta^(H/h))^(-2i/H) = theta^(-2i/h), the source's frequency. With the 'half'
 *     layout (pairs i, i + H/2) the source's second half goes to dims H/2 .. H/2 + h/2;
 *   - source kv head g goes to target kv head g * (Kt / Ks), and source q head q (of group
 *     g = q / (Qs/Ks), index r = q % (Qs/Ks) in it) to target q head (g * Kt/Ks) * Qt/Kt + r,
 *     so it still reads its own kv head: stories260K into TinyLlama's shape, q head q goes
 *     to (q / 2) * 8 + q % 2. Unused target q heads have zero q (their output meets zero
 *     columns of wo);
 *   - the vocabulary (and the tied embedding) stay the source's: a real 32000-token head
 *     would be ~6% of a 1B model's weights, so the target is that much cheaper than
 *     TinyLlama-1.1B itself.
 */
import { mkdirSync, existsSync, renameSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

import { ArgumentError } from '../errors.js';
import { type ModelConfig, expectedShapes } from '../model/config.js';
import { readGguf } from '../model/formats/gguf.js';
import { type GgufEntry, type GgufTensorSpec, ggufName, llamaGgufMetadata, writeGguf } from '../model/formats/gguf-writer.js';
import { loadWeights } from '../model/weights.js';
import { toF16Bits } from '../tensor/dtype.js';

/** The dimensions of the target shape. */
export interface InflateShape {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/** TinyLlama-1.1B's shape (its vocabulary aside). */
export const TINYLLAMA_SHAPE: InflateShape = { dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, headDim: 64 };

/** The target's config: the source's with `shape`, theta^(H/h), eps * d/D; checks that the source fits. */
export function inflateConfig(src: ModelConfig, shape: InflateShape): ModelConfig {
  const need = (ok: boolean, what: string, expected: string, got: unknown) => {
    if (!ok) throw new ArgumentError(`shape.${what}`, expected, got);
  };
  need(shape.dim >= src.dim, 'dim', `>= the source's dim ${src.dim}`, shape.dim);
  need(shape.hiddenDim >= src.hiddenDim, 'hiddenDim', `>= the source's ${src.hiddenDim}`, shape.hiddenDim);
  need(shape.nLayers >= src.nLayers, 'nLayers', `>= the source's ${src.nLayers}`, shape.nLayers);
  need(shape.headDim >= src.headDim && shape.headDim % 2 === 0, 'headDim', `an even number >= the source's ${src.headDim}`, shape.headDim);
  need(shape.nKvHeads % src.nKvHeads === 0, 'nKvHeads', `a multiple of the source's ${src.nKvHeads}`, shape.nKvHeads);
  need(shape.nHeads % shape.nKvHeads === 0 && shape.nHeads / shape.nKvHeads >= src.nHeads / src.nKvHeads, 'nHeads', `a multiple of nKvHeads with groups of at least ${src.nHeads / src.nKvHeads}`, shape.nHeads);
  if (src.ropeScaling || src.ropeFreqFactors || src.qkvBias || src.qkNorm) {
    const what = src.ropeScaling || src.ropeFreqFactors ? 'RoPE scaling' : src.qkvBias ? 'q/k/v biases' : 'q/k norms';
    throw new ArgumentError('source', 'a model without RoPE scaling, q/k/v biases or q/k norms', what);
  }
  const c: ModelConfig = {
    ...src,
    ...shape,
    ropeTheta: Math.pow(src.ropeTheta, shape.headDim / src.headDim),
    normEps: (src.normEps * src.dim) / shape.dim,
  };
  delete c.ropeScaling;
  return c;
}

/**
 * Where one source tensor goes: target row of each source row, target column of each
 * source column, and the factor its values are multiplied by (in f32). Null: all zeros.
 */
export interface Placement {
  rows: Int32Array;
  cols: Int32Array;
  scale: number;
  /** Target shape [rows, cols] (1-D tensors: [1, n]). */
  target: [number, number];
}

/** The placements of every canonical tensor of the target (null: all zeros). */
export function inflatePlacements(src: ModelConfig, shape: InflateShape): Map<string, Placement | null> {
  const t = inflateConfig(src, shape);
  const range = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
  const hs = src.headDim;
  const ht = t.headDim;
  // Dim j of a source head -> dim of the target head (the RoPE pairs keep their index).
  const headDimMap = (j: number) => (src.ropeStyle === 'half' && j >= hs / 2 ? ht / 2 + (j - hs / 2) : j);
  const kvSpread = t.nKvHeads / src.nKvHeads;
  const groupS = src.nHeads / src.nKvHeads;
  const groupT = t.nHeads / t.nKvHeads;
  const kvHead = (g: number) => g * kvSpread;
  const qHead = (q: number) => kvHead(Math.floor(q / groupS)) * groupT + (q % groupS);
  const headRows = (n: number, headOf: (i: number) => number) => Int32Array.from({ length: n * hs }, (_, i) => headOf(Math.floor(i / hs)) * ht + headDimMap(i % hs));
  const qRows = headRows(src.nHeads, qHead);
  const kvRows = headRows(src.nKvHeads, kvHead);
  const normScale = Math.sqrt(src.dim / t.dim);
  const qScale = Math.sqrt(ht / hs);
  const shapes = expectedShapes(t);
  const out = new Map<string, Placement | null>();
  for (const [name, sh] of shapes) {
    const target: [number, number] = sh.length === 1 ? [1, sh[0]!] : [sh[0]!, sh[1]!];
    const m = /^layers\.(\d+)\.(\w+)$/.exec(name);
    if (m && Number(m[1]) >= src.nLayers) {
      out.set(name, null);
      continue;
    }
    const kind = m ? m[2]! : name;
    const p = (rows: Int32Array, cols: Int32Array, scale = 1): Placement => ({ rows, cols, scale, target });
    switch (kind) {
      case 'attnNorm':
      case 'ffnNorm':
      case 'norm':
        out.set(name, p(range(1), range(src.dim), normScale));
        break;
      case 'embed':
      case 'output':
        out.set(name, p(range(src.vocabSize), range(src.dim)));
        break;
      case 'wq':
        out.set(name, p(qRows, range(src.dim), qScale));
        break;
      case 'wk':
      case 'wv':
        out.set(name, p(kvRows, range(src.dim)));
        break;
      case 'wo':
        out.set(name, p(range(src.dim), qRows));
        break;
      case 'w1':
      case 'w3':
        out.set(name, p(range(src.hiddenDim), range(src.dim)));
        break;
      case 'w2':
        out.set(name, p(range(src.dim), range(src.hiddenDim)));
        break;
      default:
        throw new ArgumentError('source', 'a Llama model (no tensor kinds beyond config.ts)', name);
    }
  }
  return out;
}

/** Writes a placed tensor into `out` (target-sized, zero-filled) through `encode` (f32 value -> stored value). */
function place(p: Placement, values: Float32Array, out: { [i: number]: number }, encode: (v: number) => number): void {
  const nc = p.cols.length;
  if (values.length !== p.rows.length * nc) throw new ArgumentError('source tensor', `${p.rows.length * nc} values`, values.length);
  const scale = Math.fround(p.scale);
  for (let r = 0; r < p.rows.length; r++) {
    const base = p.rows[r]! * p.target[1];
    for (let c = 0; c < nc; c++) out[base + p.cols[c]!] = encode(scale === 1 ? values[r * nc + c]! : Math.fround(values[r * nc + c]! * scale));
  }
}

/** The inflated model in f32 (small shapes: tests): config and canonical tensors. */
export function inflateF32(src: ModelConfig, tensors: Map<string, Float32Array>, shape: InflateShape): { config: ModelConfig; tensors: Map<string, Float32Array> } {
  const config = inflateConfig(src, shape);
  const out = new Map<string, Float32Array>();
  const shapes = expectedShapes(config);
  for (const [name, p] of inflatePlacements(src, shape)) {
    const a = new Float32Array(shapes.get(name)!.reduce((x, y) => x * y, 1));
    if (p) place(p, tensors.get(name)!, a, (v) => v);
    out.set(name, a);
  }
  return { config, tensors: out };
}

/**
 * Writes the inflated model as a GGUF file (matrices F16 or F32, norms F32; all-zero
 * tensors are holes), with `extraMetadata` (the source's tokenizer) after the model keys.
 */
export function writeInflatedGguf(path: string, src: ModelConfig, tensors: Map<string, Float32Array>, shape: InflateShape, type: 0 | 1, extraMetadata: GgufEntry[] = []): void {
  const config = inflateConfig(src, shape);
  const specs: GgufTensorSpec[] = [];
  for (const [name, p] of inflatePlacements(src, shape)) {
    const sh = expectedShapes(config).get(name)!;
    const numel = sh.reduce((a, b) => a * b, 1);
    const tt = sh.length === 1 ? 0 : type;
    const byteLength = numel * (tt === 0 ? 4 : 2);
    const data = p
      ? () => {
          const values = tensors.get(name)!;
          if (tt === 0) {
            const a = new Float32Array(numel);
            place(p, values, a, (v) => v);
            return new Uint8Array(a.buffer);
          }
          const a = new Uint16Array(numel); // f16 0 is bits 0
          place(p, values, a, toF16Bits);
          return new Uint8Array(a.buffer);
        }
      : { byteLength };
    specs.push({ name: ggufName(name), type: tt, ne: [...sh].reverse(), data, byteLength });
  }
  // llamaGgufMetadata declares a head size other than dim / heads (possible in small test shapes).
  writeGguf(path, { metadata: [...llamaGgufMetadata(config, config.architecture), ...extraMetadata], tensors: specs });
}

/** The tokenizer metadata (tokenizer.ggml.*) of a GGUF file, as writer entries. */
export function ggufTokenizerEntries(path: string): GgufEntry[] {
  const f = readGguf(path);
  const skip = new Set(['tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id']); // written by llamaGgufMetadata
  return [...f.metadata]
    .filter(([k]) => k.startsWith('tokenizer.') && !skip.has(k))
    .map(([k, v]) => [k, f.metadataTypes.get(k)!, v] as GgufEntry);
}

/** Where generated benchmark models are cached: CANOPY_CACHE, else ~/.cache/canopy, else the temporary folder. */
export function benchCacheDir(): string {
  const candidates = [process.env.CANOPY_CACHE, join(homedir(), '.cache', 'canopy'), join(tmpdir(), 'canopy-cache')];
  for (const d of candidates) {
    if (!d) continue;
    try {
      mkdirSync(d, { recursive: true });
      return d;
    } catch {
      // next candidate
    }
  }
  throw new ArgumentError('CANOPY_CACHE', 'a writable folder for generated benchmark models', candidates.join(', '));
}

/**
 * The inflated target of `sourceGguf` in `shape` (type 1: F16, 0: F32), generated once into
 * the cache folder (written under a temporary name, then renamed, so a killed run leaves no
 * half file under the final name). Returns its path.
 */
export function inflatedGguf(sourceGguf: string, shape: InflateShape = TINYLLAMA_SHAPE, type: 0 | 1 = 1): string {
  const tag = `${shape.dim}x${shape.nLayers}-h${shape.hiddenDim}-q${shape.nHeads}kv${shape.nKvHeads}x${shape.headDim}`;
  const base = sourceGguf.split(/[\\/]/).pop()!.replace(/\.gguf$/i, '');
  const path = join(benchCacheDir(), `${base}-inflated-${tag}-${type === 1 ? 'f16' : 'f32'}.gguf`);
  if (existsSync(path)) return path;
  const w = loadWeights(sourceGguf);
  try {
    const tensors = new Map<string, Float32Array>();
    for (const [name, t] of w.tensors) tensors.set(name, Float32Array.from(t.toFloat32()));
    const tmp = `${path}.${process.pid}.tmp`;
    writeInflatedGguf(tmp, w.config, tensors, shape, type, ggufTokenizerEntries(sourceGguf));
    renameSync(tmp, path);
  } finally {
    w.dispose();
  }
  return path;
}

/**
 * Any model canopy loads (a llama2.c checkpoint, say: the draft of the benchmark pair) written as
 * a GGUF file in its own shape (matrices F16 or F32), with `tokenizerGguf`'s tokenizer metadata,
 * generated once into the cache folder: llama.cpp reads GGUF only. Returns its path.
 */
export function ggufCopy(source: string, tokenizerGguf: string, type: 0 | 1 = 0): string {
  const base = source.split(/[\\/]/).slice(-2).join('-').replace(/\.(bin|gguf)$/i, '');
  const path = join(benchCacheDir(), `${base}-${type === 1 ? 'f16' : 'f32'}.gguf`);
  if (existsSync(path)) return path;
  const w = loadWeights(source);
  try {
    const c = w.config;
    const tensors = new Map<string, Float32Array>();
    for (const [name, t] of w.tensors) tensors.set(name, Float32Array.from(t.toFloat32()));
    const tmp = `${path}.${process.pid}.tmp`;
    const own: InflateShape = { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim };
    writeInflatedGguf(tmp, c, tensors, own, type, ggufTokenizerEntries(tokenizerGguf));
    renameSync(tmp, path);
  } finally {
    w.dispose();
  }
  return path;
}
