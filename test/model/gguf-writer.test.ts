/**
 * lib/model/formats/gguf-writer.ts: the GGUF files `canopy bench` writes for the llama.cpp
 * peer read back through canopy's own GGUF reader and loader (values, config, the made-up
 * vocabulary), lazily produced tensors and holes, and errors that name the argument.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { expectedShapes } from '../../lib/model/config.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import { ggufName, syntheticVocabMetadata, writeGguf, writeLlamaGguf } from '../../lib/model/formats/gguf-writer.js';
import { ropeParameters } from '../../lib/model/rope.js';
import { llama3FreqFactors } from '../helpers/rope-reference.js';
import { loadModel } from '../../lib/model/load.js';
import { loadWeights } from '../../lib/model/weights.js';
import { decodeFloats, encodeFloats } from '../../lib/tensor/dtype.js';
import { randomConfig } from '../helpers/random-model.js';
import { syntheticTensors } from '../helpers/model-writers.js';

const dir = mkdtempSync(join(tmpdir(), 'canopy-gguf-writer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeLlamaGguf', () => {
  const config = randomConfig({ vocabSize: 300, ropeStyle: 'interleaved' });
  const { tensors } = syntheticTensors(config, 3);

  it.each([
    [0, 'f32'],
    [1, 'f16'],
    [30, 'bf16'],
  ] as const)('type %i: canopy loads the values back (matrices %s, norms f32) and the same config', (type, dtype) => {
    const path = join(dir, `model-${type}.gguf`);
    writeLlamaGguf(path, config, tensors, { type, extraMetadata: syntheticVocabMetadata(config.vocabSize) });
    const w = loadWeights(path);
    try {
      expect(w.format).toBe('gguf');
      const { bosTokenId, eosTokenIds, ...rest } = w.config;
      expect(rest).toEqual(config);
      expect(bosTokenId).toBe(1);
      expect(eosTokenIds).toEqual([2]);
      for (const [name, values] of tensors) {
        const t = w.tensors.get(name)!;
        const isVector = expectedShapes(config).get(name)!.length === 1;
        expect(t.dtype).toBe(isVector ? 'f32' : dtype);
        const want = isVector || dtype === 'f32' ? values : decodeFloats(encodeFloats(values, dtype), dtype);
        expect(Array.from(t.toFloat32())).toEqual(Array.from(want));
      }
    } finally {
      w.dispose();
    }
  });

  it('takes tensors produced on demand, each made once', () => {
    const calls = new Map<string, number>();
    const lazy = [...tensors].map(([name, v]): [string, () => Float32Array] => [name, () => (calls.set(name, (calls.get(name) ?? 0) + 1), v)]);
    const path = join(dir, 'lazy.gguf');
    writeLlamaGguf(path, config, lazy);
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    expect(calls.size).toBe(tensors.size);
    const eager = join(dir, 'eager.gguf');
    writeLlamaGguf(eager, config, tensors);
    expect(readFileSync(path).equals(readFileSync(eager))).toBe(true);
  });

  it("llama3 scaling is written as llama.cpp's converter writes it: a rope_freqs.weight tensor, read back as the same frequencies", () => {
    const l3 = randomConfig({ vocabSize: 300, headDim: 32, nHeads: 2, nKvHeads: 2, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 256 } });
    const path = join(dir, 'llama3.gguf');
    writeLlamaGguf(path, l3, syntheticTensors(l3, 4).tensors);
    const f = readGguf(path);
    expect(f.tensors.find((t) => t.name === 'rope_freqs.weight')).toMatchObject({ typeName: 'F32', ne: [16] });
    expect([...f.metadata.keys()].some((k) => k.includes('rope.scaling'))).toBe(false);
    const w = loadWeights(path);
    try {
      expect(w.config.ropeScaling).toBeUndefined();
      expect(w.config.ropeFreqFactors).toEqual(llama3FreqFactors(32, 500000, 8, 1, 4, 256).map(Math.fround));
      const a = ropeParameters(l3).invFreq;
      const b = ropeParameters(w.config).invFreq;
      for (let j = 0; j < 16; j++) expect(Math.abs(a[j]! - b[j]!)).toBeLessThanOrEqual(a[j]! * 2 ** -21);
    } finally {
      w.dispose();
    }
  });

  it('the made-up vocabulary loads as canopy\'s GGUF tokenizer: specials, byte tokens, pieces', async () => {
    const path = join(dir, 'vocab.gguf');
    writeLlamaGguf(path, config, tensors, { extraMetadata: syntheticVocabMetadata(config.vocabSize) });
    const f = readGguf(path);
    const tokens = f.metadata.get('tokenizer.ggml.tokens') as string[];
    expect(tokens).toHaveLength(300);
    expect(tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(tokens[258]).toBe('<0xFF>');
    expect(tokens[259]).toBe('\u2581t259');
    expect(new Set(tokens).size).toBe(300);
    const { model, tokenizer } = await loadModel(path, { backend: 'cpu' });
    try {
      expect(tokenizer.bosId).toBe(1);
      expect(tokenizer.decode([1, 259, 260])).toBe('t259 t260');
    } finally {
      model.dispose();
    }
  });

  it('refuses tensors that are not the config\'s, naming them', () => {
    expect(() => writeLlamaGguf(join(dir, 'bad.gguf'), config, [['layers.9.wq', new Float32Array(4)]])).toThrow(/tensors must be canonical tensor names of the config .*received "layers\.9\.wq"/);
    expect(() => writeLlamaGguf(join(dir, 'bad.gguf'), config, [['norm', new Float32Array(3)]])).toThrow(/tensors 'norm' must be 64 values \(\[64\]\); received 3/);
    expect(() => writeLlamaGguf(join(dir, 'bad.gguf'), config, tensors, { type: 8 as never })).toThrow(/options\.type must be 0 \(F32\), 1 \(F16\) or 30 \(BF16\); received 8/);
    expect(() => syntheticVocabMetadata(100)).toThrow(/vocabSize must be an integer >= 259/);
  });
});

describe('writeGguf', () => {
  it('leaves tensors given as { byteLength } as holes and pads to the alignment', () => {
    const path = join(dir, 'holes.gguf');
    const offsets = writeGguf(path, {
      alignment: 64,
      metadata: [['general.alignment', 'uint32', 64]],
      tensors: [
        { name: 'a', type: 0, ne: [3], data: new Uint8Array(new Float32Array([1, 2, 3]).buffer) },
        { name: 'b', type: 0, ne: [1 << 20], data: { byteLength: 4 << 20 } },
        { name: 'c', type: 0, ne: [2], data: () => new Uint8Array(new Float32Array([5, 6]).buffer), byteLength: 8 },
      ],
    });
    expect(offsets.every((o) => o % 64 === 0)).toBe(true);
    expect(statSync(path).size).toBe(offsets[2]! + 8);
    const f = readGguf(path);
    expect(f.tensors.map((t) => t.fileOffset)).toEqual(offsets);
    const bytes = readFileSync(path);
    expect(Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset + offsets[0]!, bytes.byteOffset + offsets[0]! + 12)))).toEqual([1, 2, 3]);
    expect(Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset + offsets[2]!, bytes.byteOffset + offsets[2]! + 8)))).toEqual([5, 6]);
    expect(bytes.subarray(offsets[1]!, offsets[1]! + (4 << 20)).every((b) => b === 0)).toBe(true);
  });

  it('errors name the argument', () => {
    const path = join(dir, 'err.gguf');
    expect(() => writeGguf(path, { metadata: [['k', 'float16', 1]], tensors: [] })).toThrow(/metadata 'k' type must be one of uint8, .* or array<T>; received "float16"/);
    expect(() => writeGguf(path, { metadata: [], tensors: [{ name: 'x', type: 0, ne: [2], data: () => new Uint8Array(8) }] })).toThrow(/tensors\[0\]\.byteLength must be a byte count/);
    expect(() => writeGguf(path, { metadata: [], tensors: [{ name: 'x', type: 0, ne: [2], data: () => new Uint8Array(4), byteLength: 8 }] })).toThrow(/tensors\[0\] \(x\) data must be 8 bytes; received "4 bytes"/);
    expect(() => ggufName('layers.0.nope')).toThrow(/canonical must be a canonical tensor name/);
  });
});
