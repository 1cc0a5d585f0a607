import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { expectedShapes } from '../../lib/model/config.js';
import { loadLlama2c, readLlama2cHeader } from '../../lib/model/formats/llama2c.js';
import { writeLlama2cV1V2 } from '../helpers/model-writers.js';
import { readLlama2cReference, testModelsDir } from '../helpers/test-models.js';

const models = testModelsDir('llama2.c loader');
const dir = mkdtempSync(join(tmpdir(), 'canopy-llama2c-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Asserts the loaded tensors equal the reference, value for value (bitwise: Object.is on every element). */
function expectSameTensors(got: Map<string, { toArray(): ArrayLike<number>; dtype: string }>, want: Map<string, Float32Array>): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, values] of want) {
    const t = got.get(name)!;
    expect(t.dtype, name).toBe('f32');
    const a = t.toArray() as Float32Array;
    expect(a.length, name).toBe(values.length);
    const firstDiff = a.findIndex((v, i) => !Object.is(v, values[i]));
    expect(firstDiff, `${name}: first differing element`).toBe(-1);
  }
}

describe.skipIf(!models)('llama2.c v0 checkpoints (real models)', () => {
  it('stories260K.bin: config from the header, llama2.c conventions', () => {
    const w = loadLlama2c(join(models!, 'stories260K', 'stories260K.bin'));
    try {
      expect(w.format).toBe('llama2c');
      expect(w.config).toEqual({
        architecture: 'llama',
        dim: 64,
        hiddenDim: 172,
        nLayers: 5,
        nHeads: 8,
        nKvHeads: 4,
        headDim: 8,
        vocabSize: 512,
        maxSeqLen: 512,
        ropeTheta: 10000,
        ropeStyle: 'interleaved',
        normEps: 1e-5,
        tiedEmbeddings: true,
        qkvBias: false,
        bosTokenId: 1,
        eosTokenIds: [2],
      });
      expect(w.metadata.header.version).toBe(0);
      expect(w.metadata.header.sharedClassifier).toBe(true);
    } finally {
      w.dispose();
    }
  });

  it.each([
    ['stories260K', 'stories260K.bin'],
    ['llama2xs-281K', 'model.bin'],
  ])('%s: every tensor equals an obvious whole-file reader, with the canonical shapes', (folder, file) => {
    const path = join(models!, folder, file);
    const ref = readLlama2cReference(path);
    const w = loadLlama2c(path);
    try {
      expect(w.config.hiddenDim).toBe(ref.header.hiddenDim);
      expect(w.config.maxSeqLen).toBe(ref.header.seqLen);
      const shapes = expectedShapes(w.config);
      for (const [name, t] of w.tensors) expect(t.shape, name).toEqual(shapes.get(name));
      expectSameTensors(w.tensors, ref.tensors);
    } finally {
      w.dispose();
    }
  });

  it('llama2xs-281K: dim 64, hidden 192, 5 layers, 8/4 heads, context 256', () => {
    const w = loadLlama2c(join(models!, 'llama2xs-281K', 'model.bin'));
    const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, maxSeqLen, tiedEmbeddings } = w.config;
    expect({ dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, maxSeqLen, tiedEmbeddings }).toEqual({
      dim: 64,
      hiddenDim: 192,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
      maxSeqLen: 256,
      tiedEmbeddings: true,
    });
    w.dispose();
    expect([...w.tensors.values()].every((t) => t.disposed)).toBe(true);
  });
});

describe.skipIf(!models)('llama2.c version 1 and 2 ("ak42") checkpoints', () => {
  const src = models ? join(models, 'stories260K', 'stories260K.bin') : '';

  it('version 1 (fp32, export order) loads to the same tensors as the v0 file', () => {
    const v0 = loadLlama2c(src);
    const ref = readLlama2cReference(src);
    const path = join(dir, 'v1.bin');
    writeLlama2cV1V2(path, 1, v0.config, ref.tensors);
    const v1 = loadLlama2c(path);
    expect(v1.metadata.header.version).toBe(1);
    expect(v1.config).toEqual(v0.config);
    expectSameTensors(v1.tensors, ref.tensors);
    v0.dispose();
    v1.dispose();
  });

  it.each([64, 32, 8])('version 2 (int8, group size %i) dequantizes to int8 * scale', (groupSize) => {
    const ref = readLlama2cReference(src);
    const v0 = loadLlama2c(src);
    const path = join(dir, `v2-${groupSize}.bin`);
    const expected = writeLlama2cV1V2(path, 2, v0.config, ref.tensors, groupSize);
    expect(readLlama2cHeader(path).groupSize).toBe(groupSize);
    const v2 = loadLlama2c(path);
    expect(v2.config).toEqual(v0.config);
    expectSameTensors(v2.tensors, expected);
    // And the dequantized weights are close to the originals: |w - q*s| <= s/2 per group.
    const w = ref.tensors.get('layers.2.w2')!;
    const d = v2.tensors.get('layers.2.w2')!.toArray() as Float32Array;
    let maxErr = 0;
    for (let i = 0; i < w.length; i++) maxErr = Math.max(maxErr, Math.abs(w[i]! - d[i]!));
    let maxAbs = 0;
    for (const x of w) maxAbs = Math.max(maxAbs, Math.abs(x));
    expect(maxErr).toBeGreaterThan(0);
    expect(maxErr).toBeLessThanOrEqual((maxAbs / 127) * 0.5 * (1 + 1e-6));
    v0.dispose();
    v2.dispose();
  });
});
