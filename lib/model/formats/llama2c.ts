/**
 * llama2.c checkpoints (Karpathy's llama2.c, export.py).
 *
 * Version 0 ("legacy", run.c): no magic. Seven little-endian int32
 *   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 * (a negative vocab_size means the classifier is stored separately), then
 * fp32 arrays, each layer-stacked array holding all layers back to back:
 *   token_embedding_table [vocab, dim]
 *   rms_att_weight        [n_layers, dim]
 *   wq                    [n_layers, n_heads * head_size, dim]
 *   wk, wv                [n_layers, n_kv_heads * head_size, dim]
 *   wo                    [n_layers, dim, n_heads * head_size]
 *   rms_ffn_weight        [n_layers, dim]
 *   w1 (gate), w2 (down), w3 (up)   [n_layers, hidden, dim], [n_layers, dim, hidden], [n_layers, hidden, dim]
 *   rms_final_weight      [dim]
 *   freq_cis_real, freq_cis_imag    [seq_len, head_size / 2] each (skipped: canopy computes RoPE)
 *   wcls                  [vocab, dim]   only when vocab_size < 0
 * with head_size = dim / n_heads. Matrices are PyTorch's [out, in].
 *
 * Version 1 (export.py version1_export): uint32 magic 0x616b3432 ("ak42" in
 * hex; the file's first bytes are "24ka"), int32 version = 1, the same seven int32 (vocab
 * positive), uint8 shared_classifier, zero padding to 256 bytes; then fp32, one
 * tensor after another: attention norms (per layer), ffn norms, final norm,
 * embedding, wq (per layer), wk, wv, wo, w1, w2, w3, and the classifier when
 * not shared. No RoPE tables.
 *
 * Version 2 (export.py version2_export): the version-1 header plus int32
 * group_size right after the flag (byte 37), padded to 256; fp32 norms as in
 * version 1 (attention, ffn, final); then for the embedding, wq..w3 (per
 * layer, in that order) and the classifier when not shared: the int8 values
 * (numel bytes) followed by their fp32 scales (numel / group_size), value =
 * int8 * scale of its group of group_size consecutive elements. These are
 * dequantized to f32 at load.
 *
 * Both RoPE layouts are interleaved: pairs (2i, 2i+1) of each head (Meta's).
 */

import { IoError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import { type ModelConfig, checkConfigBounds, layerTensorNames } from '../config.js';
import {
  type LoadedWeightsBase,
  type TensorSource,
  type FileMaps,
  HeaderReader,
  disposeAll,
  mappedSource,
  materialize,
} from './common.js';

/** The llama2.c header fields as stored. */
export interface Llama2cHeader {
  version: 0 | 1 | 2;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Always positive here (the sign of a version-0 vocab_size is `sharedClassifier`). */
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
  /** Version 2: elements per quantization group. */
  groupSize?: number;
  /** Byte offset of the first tensor. */
  dataOffset: number;
}

export interface Llama2cWeights extends LoadedWeightsBase {
  format: 'llama2c';
  metadata: { header: Llama2cHeader };
}

/** uint32 little-endian of the bytes "24ka"; export.py writes struct.pack('I', 0x616b3432). */
export const LLAMA2C_MAGIC = 0x616b3432;

// Bounds that reject garbage headers (v0 has no magic) before any layout is built.
const MAX_DIM = 1 << 20;
const MAX_LAYERS = 4096;

/** Reads and checks the header of a llama2.c checkpoint (any version). */
export function readLlama2cHeader(path: string): Llama2cHeader {
  const r = new HeaderReader(path);
  try {
    if (r.size < 28) {
      throw new IoError(`${path}: ${r.size} bytes is too short for a llama2.c checkpoint (the header alone is 28 bytes); is the file truncated?`);
    }
    const first = r.u32('the header');
    let version: 0 | 1 | 2 = 0;
    if (first === LLAMA2C_MAGIC) {
      const v = r.i32('the version');
      if (v !== 1 && v !== 2) {
        throw new IoError(`${path}: llama2.c checkpoint version ${v} is not supported (versions 0, 1 and 2 are)`);
      }
      version = v;
    } else {
      r.pos = 0;
    }
    const fields = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'] as const;
    const h: Record<(typeof fields)[number], number> = { dim: 0, hidden_dim: 0, n_layers: 0, n_heads: 0, n_kv_heads: 0, vocab_size: 0, seq_len: 0 };
    for (const f of fields) h[f] = r.i32(`header field ${f}`);
    let shared = h.vocab_size > 0;
    let groupSize: number | undefined;
    if (version > 0) {
      const flag = r.u8('the shared_classifier flag');
      if (flag > 1) throw new IoError(`${path}: shared_classifier flag must be 0 or 1; found ${flag} (corrupt header?)`);
      shared = flag === 1;
      if (version === 2) groupSize = r.i32('the group size');
    }
    const vocab = Math.abs(h.vocab_size);
    const bad = (what: string) =>
      new IoError(
        `${path}: not a llama2.c checkpoint or a corrupt header: ${what} (header: dim ${h.dim}, hidden_dim ${h.hidden_dim}, n_layers ${h.n_layers}, n_heads ${h.n_heads}, n_kv_heads ${h.n_kv_heads}, vocab_size ${h.vocab_size}, seq_len ${h.seq_len})`,
      );
    for (const f of fields) {
      const v = f === 'vocab_size' ? vocab : h[f];
      const max = f === 'n_layers' ? MAX_LAYERS : f === 'vocab_size' || f === 'seq_len' ? 1 << 24 : MAX_DIM;
      if (!(v > 0 && v <= max)) throw bad(`${f} ${h[f]} is out of range [1, ${max}]`);
    }
    if (h.dim % h.n_heads !== 0) throw bad(`dim ${h.dim} is not a multiple of n_heads ${h.n_heads}`);
    if (h.n_heads % h.n_kv_heads !== 0) throw bad(`n_heads ${h.n_heads} is not a multiple of n_kv_heads ${h.n_kv_heads}`);
    if ((h.dim / h.n_heads) % 2 !== 0) throw bad(`head size ${h.dim / h.n_heads} is odd (RoPE rotates pairs)`);
    if (version === 2 && !(groupSize !== undefined && groupSize > 0 && groupSize <= h.dim && h.dim % groupSize === 0)) {
      throw bad(`group_size ${groupSize} must be a positive divisor of dim`);
    }
    return {
      version,
      dim: h.dim,
      hiddenDim: h.hidden_dim,
      nLayers: h.n_layers,
      nHeads: h.n_heads,
      nKvHeads: h.n_kv_heads,
      vocabSize: vocab,
      seqLen: h.seq_len,
      sharedClassifier: shared,
      ...(groupSize !== undefined ? { groupSize } : {}),
      dataOffset: version === 0 ? 28 : 256,
    };
  } finally {
    r.close();
  }
}

/** The ModelConfig of a llama2.c checkpoint: interleaved RoPE, theta 10000, eps 1e-5, BOS 1, EOS 2. */
export function llama2cConfig(h: Llama2cHeader): ModelConfig {
  return {
    architecture: 'llama',
    dim: h.dim,
    hiddenDim: h.hiddenDim,
    nLayers: h.nLayers,
    nHeads: h.nHeads,
    nKvHeads: h.nKvHeads,
    headDim: h.dim / h.nHeads,
    vocabSize: h.vocabSize,
    maxSeqLen: h.seqLen,
    ropeTheta: 10000,
    ropeStyle: 'interleaved',
    normEps: 1e-5,
    tiedEmbeddings: h.sharedClassifier,
    qkvBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
}

/** Names of a stacked llama2.c array and the canonical tensor each layer's slice becomes. */
type Stack = { file: string; canonical: (i: number) => string; rows: number; cols: number };

function stacks(c: ModelConfig): Record<string, Stack> {
  const kv = c.nKvHeads * c.headDim;
  const q = c.nHeads * c.headDim;
  const L = layerTensorNames;
  return {
    rms_att_weight: { file: 'rms_att_weight', canonical: (i) => L(i).attnNorm, rows: 1, cols: c.dim },
    wq: { file: 'wq', canonical: (i) => L(i).wq, rows: q, cols: c.dim },
    wk: { file: 'wk', canonical: (i) => L(i).wk, rows: kv, cols: c.dim },
    wv: { file: 'wv', canonical: (i) => L(i).wv, rows: kv, cols: c.dim },
    wo: { file: 'wo', canonical: (i) => L(i).wo, rows: c.dim, cols: q },
    rms_ffn_weight: { file: 'rms_ffn_weight', canonical: (i) => L(i).ffnNorm, rows: 1, cols: c.dim },
    w1: { file: 'w1', canonical: (i) => L(i).w1, rows: c.hiddenDim, cols: c.dim },
    w2: { file: 'w2', canonical: (i) => L(i).w2, rows: c.dim, cols: c.hiddenDim },
    w3: { file: 'w3', canonical: (i) => L(i).w3, rows: c.hiddenDim, cols: c.dim },
  };
}

/** The llama2.c name of a canonical tensor, for messages ("wq[layer 3]"). */
export function llama2cName(canonical: string): string {
  if (canonical === 'embed') return 'token_embedding_table';
  if (canonical === 'norm') return 'rms_final_weight';
  if (canonical === 'output') return 'wcls';
  const m = /^layers\.(\d+)\.(\w+)$/.exec(canonical);
  if (!m) return canonical;
  const field = { attnNorm: 'rms_att_weight', ffnNorm: 'rms_ffn_weight' }[m[2]!] ?? m[2]!;
  return `${field}[layer ${m[1]}]`;
}

const shapeOf = (s: Stack) => (s.rows === 1 ? [s.cols] : [s.rows, s.cols]);

/** Sources of a version-0 file: stacked arrays sliced per layer by offset. */
function sourcesV0(path: string, h: Llama2cHeader, c: ModelConfig): { sources: TensorSource[]; end: number } {
  const sources: TensorSource[] = [];
  let off = h.dataOffset;
  const add = (canonical: string, shape: number[]) => {
    const s = mappedSource(canonical, llama2cName(canonical), path, 'f32', shape, off, 'fp32', 4);
    sources.push(s);
    off += s.byteLength;
  };
  add('embed', [c.vocabSize, c.dim]);
  const st = stacks(c);
  for (const key of ['rms_att_weight', 'wq', 'wk', 'wv', 'wo', 'rms_ffn_weight', 'w1', 'w2', 'w3']) {
    const s = st[key]!;
    for (let i = 0; i < c.nLayers; i++) add(s.canonical(i), shapeOf(s));
  }
  add('norm', [c.dim]);
  off += 2 * h.seqLen * (c.headDim / 2) * 4; // freq_cis_real, freq_cis_imag
  if (!c.tiedEmbeddings) add('output', [c.vocabSize, c.dim]);
  return { sources, end: off };
}

/**
 * export.py's tensor order for versions 1 and 2: the norms (attention, FFN, final), the
 * embedding, every matrix stack layer by layer, then the classifier when not shared.
 */
function exportOrder(c: ModelConfig, addNorm: (canonical: string, shape: number[]) => void, addMatrix: (canonical: string, shape: number[]) => void): void {
  const st = stacks(c);
  for (let i = 0; i < c.nLayers; i++) addNorm(st.rms_att_weight!.canonical(i), [c.dim]);
  for (let i = 0; i < c.nLayers; i++) addNorm(st.rms_ffn_weight!.canonical(i), [c.dim]);
  addNorm('norm', [c.dim]);
  addMatrix('embed', [c.vocabSize, c.dim]);
  for (const key of ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3']) {
    const s = st[key]!;
    for (let i = 0; i < c.nLayers; i++) addMatrix(s.canonical(i), shapeOf(s));
  }
  if (!c.tiedEmbeddings) addMatrix('output', [c.vocabSize, c.dim]);
}

/** Version 1: the same tensors, one after another in export.py's order. */
function sourcesV1(path: string, h: Llama2cHeader, c: ModelConfig): { sources: TensorSource[]; end: number } {
  const sources: TensorSource[] = [];
  let off = h.dataOffset;
  const add = (canonical: string, shape: number[]) => {
    const s = mappedSource(canonical, llama2cName(canonical), path, 'f32', shape, off, 'fp32', 4);
    sources.push(s);
    off += s.byteLength;
  };
  exportOrder(c, add, add);
  return { sources, end: off };
}

/** Version 2: fp32 norms, then int8 values + fp32 group scales per matrix, dequantized to f32 at load. */
function sourcesV2(path: string, h: Llama2cHeader, c: ModelConfig): { sources: TensorSource[]; end: number } {
  const sources: TensorSource[] = [];
  const gs = h.groupSize!;
  let off = h.dataOffset;
  const addF32 = (canonical: string, shape: number[]) => {
    const s = mappedSource(canonical, llama2cName(canonical), path, 'f32', shape, off, 'fp32', 4);
    sources.push(s);
    off += s.byteLength;
  };
  const addQ = (canonical: string, shape: number[]) => {
    const numel = shape[0]! * shape[1]!;
    const qOffset = off;
    const sOffset = off + numel;
    const byteLength = numel + (numel / gs) * 4;
    sources.push({
      canonical,
      name: llama2cName(canonical),
      file: path,
      shape,
      storedType: `int8 (group size ${gs})`,
      offset: off,
      byteLength,
      load: (maps) => dequantizeGroups(maps, path, qOffset, sOffset, numel, gs, shape),
    });
    off += byteLength;
  };
  exportOrder(c, addF32, addQ);
  return { sources, end: off };
}

/** value[i] = int8[i] * scale[floor(i / groupSize)], in f32 (a new array: quantized data cannot be mapped). */
function dequantizeGroups(maps: FileMaps, path: string, qOffset: number, sOffset: number, numel: number, gs: number, shape: number[]): Tensor {
  const qBytes = maps.bytes(path, qOffset, numel);
  const q = new Int8Array(qBytes.buffer, qBytes.byteOffset, numel);
  const s = maps.tensor(path, 'f32', [numel / gs], sOffset).toArray() as Float32Array;
  const out = new Float32Array(numel);
  for (let g = 0, i = 0; g < s.length; g++) {
    const scale = s[g]!;
    for (let j = 0; j < gs; j++, i++) out[i] = q[i]! * scale;
  }
  return Tensor.from(out, { shape });
}

/** Loads a llama2.c checkpoint (version 0, 1 or 2) into canonical tensors. */
export function loadLlama2c(path: string): Llama2cWeights {
  const header = readLlama2cHeader(path);
  const config = llama2cConfig(header);
  checkConfigBounds(config, path);
  const layout = header.version === 0 ? sourcesV0 : header.version === 1 ? sourcesV1 : sourcesV2;
  const { sources, end } = layout(path, header, config);
  const r = new HeaderReader(path);
  const size = r.size;
  r.close();
  // llama2.c files carry no per-tensor directory: the header alone fixes the
  // layout, so the file size must match it exactly. A shorter file names the
  // first tensor that does not fit; a longer one means a header that does not
  // describe this file.
  if (size < end) {
    const first = sources.find((s) => s.offset + s.byteLength > size);
    const what = first ? `tensor '${first.name}' (${first.canonical}) needs bytes [${first.offset}, ${first.offset + first.byteLength})` : `the RoPE tables (freq_cis_real, freq_cis_imag) end at byte ${end}`;
    throw new IoError(`${path}: ${what} but the file holds ${size} bytes; is the file truncated? (the header describes ${end} bytes)`);
  }
  if (size > end) {
    throw new IoError(
      `${path}: the llama2.c v${header.version} header describes ${end} bytes of weights but the file holds ${size}: corrupt header or not a llama2.c checkpoint`,
    );
  }
  const tensors = materialize(config, sources, path, llama2cName);
  return {
    format: 'llama2c',
    config,
    tensors,
    path,
    metadata: { header },
    dispose: () => disposeAll(tensors),
  };
}
