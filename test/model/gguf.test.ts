import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { ModelConfig } from '../../lib/model/config.js';
import { dequantizeQ8_0, loadGguf, readGguf } from '../../lib/model/formats/gguf.js';
import { loadLlama2c } from '../../lib/model/formats/llama2c.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { type GgufEntry, ggmlFloatBytes, syntheticTensors, writeGguf, writeGgufModel } from '../helpers/model-writers.js';
import { testModelsDir } from '../helpers/test-models.js';

const models = testModelsDir('GGUF loader (real model)');
const dir = mkdtempSync(join(tmpdir(), 'canopy-gguf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The first index where two arrays differ bitwise (Object.is), or -1. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

describe.skipIf(!models)('stories260K.gguf', () => {
  const gguf = models ? join(models, 'stories260K', 'stories260K.gguf') : '';
  const bin = models ? join(models, 'stories260K', 'stories260K.bin') : '';

  it('readGguf: header, tokenizer metadata and tensor infos (ne fastest-varying first)', () => {
    const f = readGguf(gguf);
    expect(f.version).toBe(3);
    expect(f.tensors).toHaveLength(48);
    expect(f.alignment).toBe(32);
    expect(f.dataOffset).toBe(14176); // end of the infos (14152) rounded up to 32
    const tokens = f.metadata.get('tokenizer.ggml.tokens') as string[];
    expect(tokens).toHaveLength(512);
    expect(tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(f.metadataTypes.get('tokenizer.ggml.tokens')).toBe('array<string>');
    const scores = f.metadata.get('tokenizer.ggml.scores');
    expect(scores).toBeInstanceOf(Float32Array);
    expect((scores as Float32Array).length).toBe(512);
    const types = f.metadata.get('tokenizer.ggml.token_type');
    expect(types).toBeInstanceOf(Int32Array);
    expect(Array.from((types as Int32Array).slice(0, 4))).toEqual([2, 3, 3, 6]);
    expect(f.metadata.get('tokenizer.ggml.model')).toBe('llama');
    expect(f.metadata.get('tokenizer.ggml.bos_token_id')).toBe(1);
    expect(f.metadata.get('tokenizer.ggml.eos_token_id')).toBe(2);
    expect(f.metadata.get('general.architecture')).toBe('llama');
    const q = f.tensors.find((t) => t.name === 'blk.0.attn_k.weight')!;
    expect(q.ne).toEqual([64, 32]);
    expect(q.shape).toEqual([32, 64]); // [nKvHeads * headDim, dim]
    expect(q.typeName).toBe('F32');
    expect(q.fileOffset).toBe(14176 + 278784);
    expect(q.byteLength).toBe(32 * 64 * 4);
  });

  it('loads to the same canonical tensors as stories260K.bin, value for value, and the same config', () => {
    const g = loadGguf(gguf);
    const b = loadLlama2c(bin);
    try {
      // The two files differ in what they declare, not in the weights: the GGUF
      // says context 2048 (the .bin 512) and stores the classifier as its own
      // tensor (output.weight, equal to token_embd.weight).
      expect(g.config.maxSeqLen).toBe(2048);
      expect(g.config.tiedEmbeddings).toBe(false);
      const same = (c: ModelConfig) => ({ ...c, maxSeqLen: 0, tiedEmbeddings: false });
      expect(same(g.config)).toEqual(same(b.config));
      expect(g.config.normEps).toBe(1e-5); // stored as the f32 nearest 1e-5
      expect(g.config.ropeStyle).toBe('interleaved');
      expect([...g.tensors.keys()].sort()).toEqual([...b.tensors.keys(), 'output'].sort());
      for (const [name, t] of b.tensors) {
        const u = g.tensors.get(name)!;
        expect(u.shape, name).toEqual(t.shape);
        expect(u.dtype, name).toBe('f32');
        expect(firstDiff(u.toArray(), t.toArray()), name).toBe(-1);
      }
      expect(firstDiff(g.tensors.get('output')!.toArray(), b.tensors.get('embed')!.toArray())).toBe(-1);
      expect(g.metadata.get('tokenizer.ggml.model')).toBe('llama');
    } finally {
      g.dispose();
      b.dispose();
    }
  });
});

// A small Llama-shaped config for synthetic files.
const tiny: ModelConfig = {
  architecture: 'llama',
  dim: 64,
  hiddenDim: 96,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 16,
  vocabSize: 40,
  maxSeqLen: 128,
  ropeTheta: 500000,
  ropeStyle: 'interleaved',
  normEps: 1e-6,
  tiedEmbeddings: false,
  qkvBias: false,
  bosTokenId: 1,
  eosTokenIds: [2],
};

function expectLoaded(tensors: Map<string, Tensor>, expected: ReturnType<typeof writeGgufModel>): void {
  expect([...tensors.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [name, e] of expected) {
    const t = tensors.get(name)!;
    if (e.blocks) {
      expect(t.dtype, name).toBe('uint8');
      expect(firstDiff(t.toArray(), e.blocks), name).toBe(-1);
    } else if (e.bits) {
      expect(t.dtype, name).toBe(e.type === 1 ? 'f16' : 'bf16');
      expect(firstDiff(t.toArray(), e.bits), name).toBe(-1);
    } else {
      expect(t.dtype, name).toBe('f32');
      expect(firstDiff(t.toArray(), e.f32!), name).toBe(-1);
    }
  }
}

describe('GGUF files written by the test helper', () => {
  it('metadata of every value type round-trips, with its stored type', () => {
    const entries: GgufEntry[] = [
      ['u8', 'uint8', 255],
      ['i8', 'int8', -128],
      ['u16', 'uint16', 65535],
      ['i16', 'int16', -32768],
      ['u32', 'uint32', 4294967295],
      ['i32', 'int32', -2147483648],
      ['f32', 'float32', 0.1],
      ['bool.t', 'bool', true],
      ['bool.f', 'bool', false],
      ['str', 'string', 'héllo ✓ 🌲'],
      ['str.empty', 'string', ''],
      ['u64', 'uint64', 18446744073709551615n],
      ['i64', 'int64', -9223372036854775808n],
      ['f64', 'float64', 0.1],
      ['a.u8', 'array<uint8>', [0, 1, 255]],
      ['a.i8', 'array<int8>', [-1, 2]],
      ['a.u16', 'array<uint16>', [7, 65535]],
      ['a.i16', 'array<int16>', [-7]],
      ['a.u32', 'array<uint32>', [1, 2, 4294967295]],
      ['a.i32', 'array<int32>', [-5, 6]],
      ['a.f32', 'array<float32>', [1.5, -0.25]],
      ['a.bool', 'array<bool>', [true, false, true]],
      ['a.str', 'array<string>', ['a', '', 'ü']],
      ['a.u64', 'array<uint64>', [1n, 2n ** 63n]],
      ['a.i64', 'array<int64>', [-1n]],
      ['a.f64', 'array<float64>', [Math.PI]],
      ['a.empty', 'array<int32>', []],
      ['a.nested', 'array<array<uint8>>', [[1, 2], [], [3]]],
      ['a.nested.str', 'array<array<string>>', [['x'], ['y', 'z']]],
    ];
    const path = join(dir, 'types.gguf');
    writeGguf(path, { metadata: entries, tensors: [] });
    const f = readGguf(path);
    expect([...f.metadata.keys()]).toEqual(entries.map((e) => e[0]));
    const m = f.metadata;
    expect(m.get('u8')).toBe(255);
    expect(m.get('i8')).toBe(-128);
    expect(m.get('u16')).toBe(65535);
    expect(m.get('i16')).toBe(-32768);
    expect(m.get('u32')).toBe(4294967295);
    expect(m.get('i32')).toBe(-2147483648);
    expect(m.get('f32')).toBe(Math.fround(0.1));
    expect(m.get('bool.t')).toBe(true);
    expect(m.get('bool.f')).toBe(false);
    expect(m.get('str')).toBe('héllo ✓ 🌲');
    expect(m.get('str.empty')).toBe('');
    expect(m.get('u64')).toBe(18446744073709551615n);
    expect(m.get('i64')).toBe(-9223372036854775808n);
    expect(m.get('f64')).toBe(0.1);
    expect(m.get('a.u8')).toEqual(new Uint8Array([0, 1, 255]));
    expect(m.get('a.i8')).toEqual(new Int8Array([-1, 2]));
    expect(m.get('a.u16')).toEqual(new Uint16Array([7, 65535]));
    expect(m.get('a.i16')).toEqual(new Int16Array([-7]));
    expect(m.get('a.u32')).toEqual(new Uint32Array([1, 2, 4294967295]));
    expect(m.get('a.i32')).toEqual(new Int32Array([-5, 6]));
    expect(m.get('a.f32')).toEqual(new Float32Array([1.5, -0.25]));
    expect(m.get('a.bool')).toEqual([true, false, true]);
    expect(m.get('a.str')).toEqual(['a', '', 'ü']);
    expect(m.get('a.u64')).toEqual(new BigUint64Array([1n, 2n ** 63n]));
    expect(m.get('a.i64')).toEqual(new BigInt64Array([-1n]));
    expect(m.get('a.f64')).toEqual(new Float64Array([Math.PI]));
    expect(m.get('a.empty')).toEqual(new Int32Array([]));
    expect(m.get('a.nested')).toEqual([new Uint8Array([1, 2]), new Uint8Array([]), new Uint8Array([3])]);
    expect(m.get('a.nested.str')).toEqual([['x'], ['y', 'z']]);
    expect(f.metadataTypes.get('u64')).toBe('uint64');
    expect(f.metadataTypes.get('a.nested')).toBe('array<array>');
    expect(f.metadataTypes.get('a.f64')).toBe('array<float64>');
    expect(f.dataOffset % 32).toBe(0);
  });

  it('reads GGUF version 2 as well as 3', () => {
    const path = join(dir, 'v2.gguf');
    writeGguf(path, { version: 2, metadata: [['k', 'string', 'v']], tensors: [] });
    expect(readGguf(path).version).toBe(2);
  });

  it.each([
    ['F32', 0],
    ['F16', 1],
    ['BF16', 30],
  ] as const)('a Llama model stored as %s loads with canonical names, [out, in] shapes and the stored bits', (_name, type) => {
    const { tensors, shapes } = syntheticTensors(tiny, 1);
    const path = join(dir, `tiny-${type}.gguf`);
    // Norms stay f32, as llama.cpp writes them.
    const expected = writeGgufModel(path, tiny, tensors, shapes, (n) => (/Norm$|^norm$/.test(n) ? 0 : type));
    const w = loadGguf(path);
    try {
      expect(w.config).toEqual(tiny);
      expect(w.tensors.get('layers.1.wk')!.shape).toEqual([32, 64]);
      expect(w.tensors.get('layers.1.w2')!.shape).toEqual([64, 96]);
      expectLoaded(w.tensors, expected);
      // The stored values are the originals (exactly for F32; rounded for 16-bit types).
      if (type === 0) expect(firstDiff(w.tensors.get('layers.0.wq')!.toArray(), tensors.get('layers.0.wq')!)).toBe(-1);
    } finally {
      w.dispose();
    }
  });

  it('Q8_0 tensors are kept as stored blocks (memory-mapped), and the blocks decode to within d / 2 of the originals', () => {
    const { tensors, shapes } = syntheticTensors(tiny, 2);
    const path = join(dir, 'tiny-q8.gguf');
    const expected = writeGgufModel(path, tiny, tensors, shapes, (n) => (/Norm$|^norm$/.test(n) ? 0 : 8));
    expect(readGguf(path).tensors.find((t) => t.name === 'blk.0.ffn_up.weight')!.byteLength).toBe((96 * 64 * 34) / 32);
    const w = loadGguf(path);
    try {
      expectLoaded(w.tensors, expected);
      expect(w.quant.get('layers.1.w3')).toBe('Q8_0');
      expect(w.quant.has('norm')).toBe(false);
      expect(w.tensors.get('layers.1.w3')!.shape).toEqual([96, (64 / 32) * 34]);
      // |x - d q| <= d / 2 (+ the f16 rounding of d, at most 2^-11 relative, times 127).
      const x = tensors.get('layers.1.w3')!;
      const y = dequantizeQ8_0(w.tensors.get('layers.1.w3')!.toArray() as Uint8Array, x.length);
      for (let b = 0; b < x.length / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
        const d = amax / 127;
        for (let j = 0; j < 32; j++) expect(Math.abs(x[b * 32 + j]! - y[b * 32 + j]!)).toBeLessThanOrEqual(d / 2 + amax * 2 ** -11 + 1e-12);
      }
    } finally {
      w.dispose();
    }
  });

  it('a file mixing types per tensor (Q4_K, Q6_K, Q8_0, Q4_0, F16, F32) loads each as stored', () => {
    const wide: ModelConfig = { ...tiny, dim: 256, hiddenDim: 512, nHeads: 4, nKvHeads: 2, headDim: 64 };
    const { tensors, shapes } = syntheticTensors(wide, 3);
    const path = join(dir, 'mixed.gguf');
    const typeOf = (n: string) => (/Norm$|^norm$/.test(n) ? 0 : n === 'embed' ? 14 : /w2$/.test(n) ? 8 : /wv$/.test(n) ? 2 : /wo$/.test(n) ? 1 : 12);
    const expected = writeGgufModel(path, wide, tensors, shapes, typeOf);
    const w = loadGguf(path);
    try {
      expectLoaded(w.tensors, expected);
      expect(w.quant.get('embed')).toBe('Q6_K');
      expect(w.quant.get('layers.0.w2')).toBe('Q8_0');
      expect(w.quant.get('layers.0.wv')).toBe('Q4_0');
      expect(w.quant.get('layers.0.wq')).toBe('Q4_K');
      expect(w.quant.has('layers.0.wo')).toBe(false);
      expect(w.tensors.get('layers.0.wo')!.dtype).toBe('f16');
    } finally {
      w.dispose();
    }
  });

  it('dequantizeQ8_0 on hand-made blocks: negative and subnormal scales, int8 extremes', () => {
    const blocks = Buffer.alloc(3 * 34);
    blocks.writeUInt16LE(0xb800, 0); // d = -0.5
    blocks.writeUInt16LE(0x0001, 34); // d = 2^-24, the smallest subnormal
    blocks.writeUInt16LE(0x7bff, 68); // d = 65504, the largest finite f16
    for (let j = 0; j < 32; j++) {
      blocks.writeInt8(j % 2 ? -128 : 127 - j, 2 + j);
      blocks.writeInt8(127, 36 + j);
      blocks.writeInt8(j - 16, 70 + j);
    }
    const out = dequantizeQ8_0(new Uint8Array(blocks.buffer, blocks.byteOffset, blocks.length), 96);
    for (let j = 0; j < 32; j++) {
      expect(out[j]).toBe(-0.5 * (j % 2 ? -128 : 127 - j));
      expect(out[32 + j]).toBe(127 * 2 ** -24);
      expect(out[64 + j]).toBe(65504 * (j - 16));
    }
  });

  it.each([1, 8, 64, 256])('honours general.alignment %i (data offset and tensor offsets)', (alignment) => {
    const { tensors, shapes } = syntheticTensors(tiny, 3);
    const path = join(dir, `align-${alignment}.gguf`);
    const expected = writeGgufModel(path, tiny, tensors, shapes, (n) => (n.endsWith('wv') ? 1 : 0), { alignment });
    const f = readGguf(path);
    expect(f.alignment).toBe(alignment);
    expect(f.dataOffset % alignment).toBe(0);
    for (const t of f.tensors) expect(t.offset % alignment).toBe(0);
    const w = loadGguf(path);
    expectLoaded(w.tensors, expected); // alignment 1 leaves f32 data unaligned: read instead of mapped, same values
    w.dispose();
  });

  it('qwen2: q/k/v biases, half-split RoPE, tied embeddings when output.weight is absent', () => {
    const qwen: ModelConfig = { ...tiny, architecture: 'qwen2', qkvBias: true, tiedEmbeddings: true, ropeStyle: 'half', eosTokenIds: [2, 7] };
    const { tensors, shapes } = syntheticTensors(qwen, 4);
    expect(shapes.has('output')).toBe(false);
    expect(shapes.has('layers.0.bq')).toBe(true);
    const path = join(dir, 'qwen2.gguf');
    const expected = writeGgufModel(path, qwen, tensors, shapes, () => 0, { arch: 'qwen2', extraMetadata: [['tokenizer.ggml.eot_token_id', 'uint32', 7]] });
    const w = loadGguf(path);
    try {
      expect(w.config).toEqual(qwen);
      expect(w.tensors.get('layers.1.bk')!.shape).toEqual([32]);
      expectLoaded(w.tensors, expected);
    } finally {
      w.dispose();
    }
  });

  it('mistral architecture reads like llama (interleaved q/k)', () => {
    const mistral: ModelConfig = { ...tiny, architecture: 'mistral' };
    const { tensors, shapes } = syntheticTensors(mistral, 5);
    const path = join(dir, 'mistral.gguf');
    writeGgufModel(path, mistral, tensors, shapes, () => 0, { arch: 'mistral' });
    const w = loadGguf(path);
    expect(w.config).toEqual(mistral);
    w.dispose();
  });

  it('ggmlFloatBytes writes F16 as IEEE half bits (sanity of the writer itself)', () => {
    const b = ggmlFloatBytes(new Float32Array([1, -2]), 1);
    expect(Array.from(new Uint16Array(b.buffer, b.byteOffset, 2))).toEqual([0x3c00, 0xc000]);
  });
});
