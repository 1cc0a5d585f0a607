/**
 * GGUF block-quantized weights through the whole forward pass (CPU):
 *   - a random model whose file mixes types per tensor (Q4_K, Q6_K embedding, Q8_0, Q4_0, F16)
 *     against the float64 reference forward on the dequantized weights, and decode steps equal
 *     to one prefill bit for bit (what speculative verification relies on);
 *   - stories260K written as Q8_0 / Q4_0 in its own shape (the 172-column ffn_down kept F16, as
 *     llama.cpp falls back for rows its blocks do not divide), and every block type in an
 *     inflated shape (dim and hidden 256, 32 heads, the extra ones zero, the norms rescaled: the
 *     same function as the original): greedy tokens and teacher-forced next-token agreement
 *     against the f32 model, reported.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { afterAll, describe, expect, it } from 'vitest';

import { generate } from '../../lib/generate.js';
import { type ModelConfig, expectedShapes } from '../../lib/model/config.js';
import { loadModel } from '../../lib/model/load.js';
import { Model } from '../../lib/model/model.js';
import { loadWeights } from '../../lib/model/weights.js';
import type { GgufWeights } from '../../lib/model/formats/gguf.js';
import { QUANT_TYPES, QUANT_TYPE_NAMES, type QuantType } from '../../lib/tensor/quant-types.js';
import { llamaReference } from '../helpers/llama-reference.js';
import { ggufName, llamaGgufMetadata, writeGguf, writeGgufModel } from '../helpers/model-writers.js';
import { quantizeActivationsRef } from '../helpers/quant-reference.js';
import { MIXED_MODEL_CONFIG, argmaxRows, dequantized, inflate, isNorm, writeMixedModel } from '../helpers/quant-models.js';
import { testModelsDir } from '../helpers/test-models.js';

const tmp = mkdtempSync(join(tmpdir(), 'canopy-quant-forward-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('a random model mixing block types per tensor', () => {
  const config = MIXED_MODEL_CONFIG;
  const typeOf = (n: string) =>
    isNorm(n) ? 0 : n === 'embed' ? 14 : n === 'output' ? 8 : /w2$/.test(n) ? 12 : /wv$/.test(n) ? 2 : /wo$/.test(n) ? 1 : /w1$/.test(n) ? 13 : 12;

  it('matches the float64 reference on the dequantized weights, and decode steps equal the prefill bit for bit', async () => {
    const path = join(tmp, 'mixed.gguf');
    writeMixedModel(path, typeOf);
    const w = loadWeights(path) as GgufWeights;
    expect(w.quant.get('embed')).toBe('Q6_K');
    expect(w.quant.get('layers.1.w1')).toBe('Q5_K');
    const model = await Model.fromWeights(w, { backend: 'cpu' });
    expect(model.weightTypes.get('layers.0.wv')).toBe('Q4_0');
    expect(model.weightTypes.get('layers.0.wo')).toBe('f16');
    const prompt = [5, 17, 299, 0, 42, 42, 7];
    const cache = model.createCache({ capacity: 32 });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
    const got = logits.toFloat32();
    const ref = llamaReference(config, dequantized(w), prompt);
    // The kernels quantize each activation block to 8 bits before every matrix: a relative rounding
    // noise of about 2.5 / (254 sqrt 3) = 0.6% (rms, for Gaussian-like blocks whose largest value is
    // about 2.5 standard deviations) per matrix product, compounding over the 15 products of the
    // logits' path: a few percent rms.
    let se = 0;
    let sr = 0;
    for (let t = 0; t < prompt.length; t++) {
      for (let v = 0; v < config.vocabSize; v++) {
        se += (got[t * config.vocabSize + v]! - ref[t]![v]!) ** 2;
        sr += ref[t]![v]! ** 2;
      }
    }
    const rel = Math.sqrt(se / sr);
    // The same reference with the kernels' activation rounding applied to each quantized matrix's
    // input (in f32, as the kernel sees it) accounts for that: what is left is f32 arithmetic.
    const rounded = llamaReference(config, dequantized(w), prompt, (name, x) => {
      const q = w.quant.get(name);
      if (q === undefined) return x;
      const xf = Float32Array.from(x);
      const { q: codes, d } = quantizeActivationsRef(xf, 1, xf.length, QUANT_TYPES[q].block);
      return Float64Array.from(codes, (c, i) => c * d[Math.floor(i / QUANT_TYPES[q].block)]!);
    });
    let se2 = 0;
    for (let t = 0; t < prompt.length; t++) for (let v = 0; v < config.vocabSize; v++) se2 += (got[t * config.vocabSize + v]! - rounded[t]![v]!) ** 2;
    const rel2 = Math.sqrt(se2 / sr);
    console.log(`random mixed-type model: rms logit error ${(rel * 100).toFixed(2)}% of the rms logit against the float64 forward, ${(rel2 * 100).toExponential(2)}% with the kernels' activation rounding`);
    expect(rel).toBeLessThan(0.05);
    expect(rel).toBeGreaterThan(0); // the activations are quantized: not the float path by mistake
    expect(rel2).toBeLessThan(1e-4);

    // Token by token (one row per matrix product) gives the same bits as the 7-row prefill.
    const cache2 = model.createCache({ capacity: 32 });
    for (let t = 0; t < prompt.length; t++) {
      const step = await model.forward(cache2, [{ sequence: 0, tokens: [prompt[t]!] }]);
      const row = step.logits.toFloat32();
      const want = got.subarray(t * config.vocabSize, (t + 1) * config.vocabSize);
      expect(Buffer.from(row.buffer).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true);
      step.logits.dispose();
    }
    logits.dispose();
    model.dispose();
    w.dispose();
  });
});

const dir = testModelsDir('stories260K quantized');

describe.runIf(dir)('stories260K with block-quantized weights against f32', () => {
  const bin = join(dir ?? '', 'stories260K', 'stories260K.bin');
  const tok = join(dir ?? '', 'stories260K', 'tok512.bin');
  const report: string[] = [];
  afterAll(() => {
    if (report.length) console.log(['stories260K, greedy from BOS (48 tokens) and teacher-forced next-token agreement vs f32:', ...report].join('\n  '));
    // The same types against llama.cpp (node-llama-cpp): test/peer/quant-agreement.test.ts.
  });

  async function compare(path: string, label: string, refTokens: number[], refNext: number[]): Promise<{ same: number; agree: number }> {
    const { model } = await loadModel(path, { backend: 'cpu', tokenizer: tok });
    const g = await generate({ model, tokens: [1], maxTokens: 48, stopAtEos: false });
    let same = 0;
    while (same < 48 && g.tokens[same] === refTokens[same]) same++;
    const cache = model.createCache({ capacity: 512 });
    const seq = [1, ...refTokens];
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: seq.slice(0, -1) }], { logits: 'all' });
    const next = argmaxRows(logits.toFloat32(), 512);
    logits.dispose();
    model.dispose();
    const agree = next.filter((v, i) => v === refNext[i]).length / next.length;
    report.push(`${label}: greedy ${same}/48 leading tokens equal; teacher-forced agreement ${(agree * 100).toFixed(1)}% of ${next.length} positions`);
    return { same, agree };
  }

  it('Q8_0 / Q4_0 in the original shape, and every block type in the inflated shape', async () => {
    const w = loadWeights(bin);
    const c = w.config;
    // The f32 model's greedy path (256 tokens) and its own next-token choices along it.
    const f32 = await Model.fromWeights(w, { backend: 'cpu' });
    const g = await generate({ model: f32, tokens: [1], maxTokens: 256, stopAtEos: false });
    const refTokens = g.tokens;
    const cache = f32.createCache({ capacity: 512 });
    const { logits } = await f32.forward(cache, [{ sequence: 0, tokens: [1, ...refTokens].slice(0, -1) }], { logits: 'all' });
    const refNext = argmaxRows(logits.toFloat32(), 512);
    logits.dispose();
    f32.dispose();
    expect(refNext).toEqual(refTokens); // teacher forcing along the greedy path gives the path back

    // Original shape: the 172-column ffn_down has no whole 32-blocks: kept F16.
    const shapes = expectedShapes(c);
    const values = new Map<string, Float32Array>();
    for (const [name] of shapes) values.set(name, Float32Array.from(w.tensors.get(name)!.toFloat32()));
    const results = new Map<string, { same: number; agree: number }>();
    for (const type of ['Q8_0', 'Q4_0'] as const) {
      const path = join(tmp, `stories-${type}.gguf`);
      writeGgufModel(path, c, values, shapes, (n) => (isNorm(n) ? 0 : /w2$/.test(n) ? 1 : QUANT_TYPES[type].id));
      results.set(`${type} (own shape)`, await compare(path, `${type} (own shape, ffn_down F16)`, refTokens, refNext));
    }

    // Inflated: first check the wide f32 model is the same function.
    const inflated = inflate(c, w.tensors);
    const widePath = join(tmp, 'stories-wide-f32.gguf');
    writeGgufModel(widePath, inflated.config, inflated.tensors, inflated.shapes, () => 0);
    const wideF32 = await compare(widePath, 'F32 (inflated)', refTokens, refNext);
    expect(wideF32.same).toBe(48);
    expect(wideF32.agree).toBeGreaterThanOrEqual(0.99);
    for (const type of QUANT_TYPE_NAMES) {
      const path = join(tmp, `stories-wide-${type}.gguf`);
      writeGgufModel(path, inflated.config, inflated.tensors, inflated.shapes, (n) => (isNorm(n) ? 0 : QUANT_TYPES[type].id));
      results.set(type, await compare(path, `${type} (inflated, every matrix)`, refTokens, refNext));
    }
    w.dispose();
    // The 8-bit types track f32 closely; the 4-bit ones stay close; 2- and 3-bit ones (reference
    // quantizers without llama.cpp's scale search) drift, and are only reported.
    const floor: Partial<Record<QuantType | string, number>> = {
      'Q8_0 (own shape)': 0.95,
      Q8_0: 0.95,
      'Q4_0 (own shape)': 0.75,
      Q4_0: 0.75,
      Q4_K: 0.75,
      Q5_K: 0.85,
      Q6_K: 0.9,
    };
    for (const [name, min] of Object.entries(floor)) expect(results.get(name)!.agree, name).toBeGreaterThanOrEqual(min!);
  }, 120_000);
});

describe('memory: a block-quantized file is mapped as stored', () => {
  // A 1B-layer-shaped model (4 layers of dim 2048, hidden 5632) in the mix of llama.cpp's Q4_K_M:
  // Q4_K matrices, Q6_K for the embedding and ffn_down, F32 norms; a sparse file (all-zero
  // blocks: valid, every value 0).
  const big: ModelConfig = {
    architecture: 'llama',
    dim: 2048,
    hiddenDim: 5632,
    nLayers: 4,
    nHeads: 16,
    nKvHeads: 4,
    headDim: 128,
    vocabSize: 32000,
    maxSeqLen: 2048,
    ropeTheta: 10000,
    ropeStyle: 'interleaved',
    normEps: 1e-5,
    tiedEmbeddings: true,
    qkvBias: false,
  };
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;

  it('loading grows RSS by under 64 MiB, and a forward step by under 1.2x the file size', async () => {
    const shapes = expectedShapes(big);
    const typeOf = (n: string) => (isNorm(n) ? 0 : n === 'embed' || /w2$/.test(n) ? 14 : 12);
    const path = join(tmp, 'big-q4km.gguf');
    writeGguf(path, {
      metadata: llamaGgufMetadata(big),
      tensors: [...shapes].map(([name, s]) => {
        const type = typeOf(name);
        const numel = s.reduce((a, b) => a * b, 1);
        const q = Object.values(QUANT_TYPES).find((t) => t.id === type);
        return { name: ggufName(name), type, ne: [...s].reverse(), data: { byteLength: q ? (numel / q.block) * q.bytes : numel * 4 } };
      }),
    });
    const fileBytes = statSync(path).size;
    gc();
    const before = process.memoryUsage.rss();
    const w = loadWeights(path) as GgufWeights;
    const loaded = process.memoryUsage.rss() - before;
    expect(w.quant.get('layers.3.w2')).toBe('Q6_K');
    expect(loaded, `RSS grew by ${(loaded / 2 ** 20).toFixed(1)} MiB loading a ${(fileBytes / 2 ** 20).toFixed(0)} MiB file`).toBeLessThan(64 * 2 ** 20);
    const model = await Model.fromWeights(w, { backend: 'cpu' });
    const cache = model.createCache({ capacity: 16 });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [1, 2, 3] }]);
    expect(Array.from(logits.toFloat32().subarray(0, 4))).toEqual([0, 0, 0, 0]); // zero blocks: zero logits
    const stepped = process.memoryUsage.rss() - before;
    console.log(`Q4_K_M-shaped file of ${(fileBytes / 2 ** 20).toFixed(0)} MiB: RSS +${(loaded / 2 ** 20).toFixed(1)} MiB after loading, +${(stepped / 2 ** 20).toFixed(1)} MiB after a forward step`);
    expect(stepped).toBeLessThan(1.2 * fileBytes);
    logits.dispose();
    model.dispose();
    w.dispose();
  }, 120_000);
});
