import { copyFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { afterAll, describe, expect, it } from 'vitest';

import { type ModelConfig, expectedShapes } from '../../lib/model/config.js';
import { detectFormat, loadWeights } from '../../lib/model/weights.js';
import { ggufName, hfName, llamaGgufMetadata, syntheticTensors, toHfTensors, writeGguf, writeHfDir } from '../helpers/model-writers.js';
import { testModelsDir } from '../helpers/test-models.js';

const models = testModelsDir('loadWeights (real models)');
const dir = mkdtempSync(join(tmpdir(), 'canopy-weights-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!models)('loadWeights: format detection on the real files', () => {
  it('a .bin is llama2.c, a .gguf is GGUF, a GGUF under another name is GGUF by its magic, a directory is Hugging Face', () => {
    const bin = join(models!, 'stories260K', 'stories260K.bin');
    const gguf = join(models!, 'stories260K', 'stories260K.gguf');
    expect(detectFormat(bin)).toBe('llama2c');
    expect(detectFormat(gguf)).toBe('gguf');
    const renamed = join(dir, 'model.weights');
    copyFileSync(gguf, renamed);
    expect(detectFormat(renamed)).toBe('gguf');
    const hfDir = join(dir, 'hf');
    const c = loadWeights(bin).config;
    const { tensors, shapes } = syntheticTensors(c, 1);
    writeHfDir(hfDir, { model_type: 'llama', hidden_size: 64, intermediate_size: 172, num_hidden_layers: 5, num_attention_heads: 8, num_key_value_heads: 4, vocab_size: 512, tie_word_embeddings: true }, toHfTensors(tensors, shapes, c, 'F32').st);
    expect(detectFormat(hfDir)).toBe('hf');

    const a = loadWeights(bin);
    const b = loadWeights(renamed);
    const h = loadWeights(hfDir);
    expect([a.format, b.format, h.format]).toEqual(['llama2c', 'gguf', 'hf']);
    expect(a.path).toBe(bin);
    expect(b.config.dim).toBe(64);
    expect(h.config.ropeStyle).toBe('half');
    if (b.format === 'gguf') expect((b.metadata.get('tokenizer.ggml.tokens') as string[])[1]).toBe('<s>');
    // options.format overrides detection
    expect(() => loadWeights(renamed, { format: 'llama2c' })).toThrow(/model\.weights: not a llama2\.c checkpoint or a corrupt header: dim 1179993927 is out of range/);
    for (const w of [a, b, h]) {
      w.dispose();
      expect([...w.tensors.values()].every((t) => t.disposed)).toBe(true);
      w.dispose(); // idempotent
    }
  });
});

describe('memory: a 1 GB model loads mapped, not copied', () => {
  // About 1.07 GB of f32 (or 1 GB of bf16) weights in sparse files: loading must
  // not read them. RSS grows by the touched pages only.
  const big: ModelConfig = {
    architecture: 'llama',
    dim: 2048,
    hiddenDim: 5504,
    nLayers: 4,
    nHeads: 16,
    nKvHeads: 16,
    headDim: 128,
    vocabSize: 32000,
    maxSeqLen: 2048,
    ropeTheta: 10000,
    ropeStyle: 'interleaved',
    normEps: 1e-5,
    tiedEmbeddings: true,
    qkvBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
  const shapes = expectedShapes(big);
  const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const totalF32 = [...shapes.values()].reduce((a, s) => a + numel(s) * 4, 0);

  const files: Record<string, () => string> = {
    llama2c: () => {
      const path = join(dir, 'big.bin');
      const h = Buffer.alloc(28);
      [big.dim, big.hiddenDim, big.nLayers, big.nHeads, big.nKvHeads, big.vocabSize, big.maxSeqLen].forEach((v, i) => h.writeInt32LE(v, 4 * i));
      writeFileSync(path, h);
      truncateSync(path, 28 + totalF32 + 2 * big.maxSeqLen * (big.headDim / 2) * 4);
      return path;
    },
    gguf: () => {
      const path = join(dir, 'big.gguf');
      writeGguf(path, {
        metadata: llamaGgufMetadata(big),
        tensors: [...shapes].map(([name, s]) => ({ name: ggufName(name), type: 0, ne: [...s].reverse(), data: { byteLength: numel(s) * 4 } })),
      });
      return path;
    },
    hf: () => {
      const out = join(dir, 'big-hf');
      writeHfDir(
        out,
        { model_type: 'llama', hidden_size: big.dim, intermediate_size: big.hiddenDim, num_hidden_layers: big.nLayers, num_attention_heads: big.nHeads, vocab_size: big.vocabSize, tie_word_embeddings: true },
        [...shapes].map(([name, s]) => ({ name: hfName(name), dtype: 'F32', shape: s, data: { byteLength: numel(s) * 4 } })),
        { shards: 2 },
      );
      return out;
    },
  };

  // All three stay loaded together and each is measured on top of the others:
  // nothing is freed between the measurements, so memory released late by an
  // earlier allocation cannot hide a copy.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;

  it('llama2c, gguf and hf files of 1 GB each: RSS grows by less than 64 MiB per model', () => {
    expect(totalF32).toBeGreaterThan(1e9);
    const paths = Object.entries(files).map(([format, write]) => [format, write()] as const);
    gc();
    const loaded = [];
    try {
      for (const [format, path] of paths) {
        const before = process.memoryUsage.rss();
        const w = loadWeights(path);
        loaded.push(w);
        const grown = process.memoryUsage.rss() - before;
        expect(w.format).toBe(format);
        const bytes = [...w.tensors.values()].reduce((a, t) => a + t.byteLength, 0);
        expect(bytes).toBe(totalF32);
        expect(grown, `${format}: RSS grew by ${(grown / 2 ** 20).toFixed(1)} MiB loading ${(bytes / 2 ** 30).toFixed(2)} GiB`).toBeLessThan(64 * 2 ** 20);
        const embed = w.tensors.get('embed')!.toArray();
        expect(embed[embed.length - 1]).toBe(0); // readable (one page touched)
      }
    } finally {
      for (const w of loaded) w.dispose();
    }
  });
});
