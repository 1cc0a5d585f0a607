/**
 * lib/bench/inflate.ts: stories260K embedded in a larger shape by the benchmark's rules
 * (corner placement, zero identity layers, norm weights x sqrt(d/D) and eps x d/D, q rows
 * x sqrt(H/h), theta^(H/h), q heads placed to read their own kv head) reproduces
 * stories260K's float64 greedy reference ids exactly in f32. The full TinyLlama shape is
 * 4 GB in f32, so the rules run here on smaller inflations with the same structure: one
 * whose factors are powers of two, one whose factors are not (sqrt(3), theta^3, sqrt(1/6)),
 * both with extra zero layers, wider groups of q heads and (the second) more kv heads.
 * A negative control (one rule left out) must miss the reference; the GGUF writer's F32 and
 * F16 files must read back as the inflated values.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { type InflateShape, TINYLLAMA_SHAPE, ggufTokenizerEntries, inflateConfig, inflateF32, inflatePlacements, writeInflatedGguf } from '../../lib/bench/inflate.js';
import { decodeSuite } from '../../lib/bench/suites/decode.js';
import { cachedQuantizedGguf } from '../../lib/bench/suites/generate.js';
import type { SuiteContext } from '../../lib/bench/suites/types.js';
import { generate } from '../../lib/generate.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import type { ModelConfig } from '../../lib/model/config.js';
import { loadModel } from '../../lib/model/load.js';
import { Model } from '../../lib/model/model.js';
import { loadWeights } from '../../lib/model/weights.js';
import { encodeFloats, decodeFloats } from '../../lib/tensor/dtype.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { STORIES_REFERENCE_IDS, testModelsDir } from '../helpers/test-models.js';

const dir = testModelsDir('inflated stories260K');
const tmp = mkdtempSync(join(tmpdir(), 'canopy-inflate-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const POW2: InflateShape = { dim: 256, hiddenDim: 256, nLayers: 7, nHeads: 16, nKvHeads: 4, headDim: 32 };
const ODD: InflateShape = { dim: 384, hiddenDim: 200, nLayers: 6, nHeads: 24, nKvHeads: 8, headDim: 24 };

function source(): { config: ModelConfig; tensors: Map<string, Float32Array> } {
  const w = loadWeights(join(dir!, 'stories260K', 'stories260K.gguf'));
  const tensors = new Map<string, Float32Array>();
  for (const [n, t] of w.tensors) tensors.set(n, Float32Array.from(t.toFloat32()));
  const config = w.config;
  w.dispose();
  return { config, tensors };
}

async function greedyIds(config: ModelConfig, tensors: Map<string, Float32Array>): Promise<number[]> {
  const ts = new Map<string, Tensor>();
  const shapes = (await import('../../lib/model/config.js')).expectedShapes(config);
  for (const [n, v] of tensors) ts.set(n, Tensor.from(v, { shape: shapes.get(n)! }));
  const model = await Model.fromWeights({ config, tensors: ts }, { backend: 'cpu' });
  try {
    const r = await generate({ model, tokens: [1], maxTokens: 48, stopAtEos: false });
    return [1, ...r.tokens];
  } finally {
    model.dispose();
    ts.forEach((t) => t.dispose());
  }
}

describe('inflateConfig / inflatePlacements (TinyLlama shape from stories260K\'s config)', () => {
  const stories: ModelConfig = {
    architecture: 'llama', dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headDim: 8, vocabSize: 512,
    maxSeqLen: 512, ropeTheta: 10000, ropeStyle: 'interleaved', normEps: 1e-5, tiedEmbeddings: true, qkvBias: false,
  };
  it('derives the factors from the source: theta^8, eps x 1/32, norm x sqrt(1/32), q x sqrt(8)', () => {
    const c = inflateConfig(stories, TINYLLAMA_SHAPE);
    expect(c.ropeTheta / 1e32).toBeCloseTo(1, 12);
    expect(c.normEps).toBeCloseTo(1e-5 / 32, 18);
    const p = inflatePlacements(stories, TINYLLAMA_SHAPE);
    expect(p.get('layers.0.attnNorm')!.scale).toBeCloseTo(Math.sqrt(1 / 32), 15);
    expect(p.get('layers.0.wq')!.scale).toBeCloseTo(Math.sqrt(8), 15);
    expect(p.get('layers.4.w1')).not.toBeNull();
    expect(p.get('layers.5.w1')).toBeNull();
    expect(p.get('layers.21.wq')).toBeNull();
  });
  it('q head h goes to target head (h / 2) * 8 + h % 2, kv head g to g, first 8 dims of the head', () => {
    const q = inflatePlacements(stories, TINYLLAMA_SHAPE).get('layers.0.wq')!;
    for (let h = 0; h < 8; h++) for (let d = 0; d < 8; d++) expect(q.rows[h * 8 + d]).toBe((Math.floor(h / 2) * 8 + (h % 2)) * 64 + d);
    const k = inflatePlacements(stories, TINYLLAMA_SHAPE).get('layers.0.wk')!;
    for (let g = 0; g < 4; g++) for (let d = 0; d < 8; d++) expect(k.rows[g * 8 + d]).toBe(g * 64 + d);
    // Each placed q head reads the kv head its source head read: target group size 32/4 = 8.
    for (let h = 0; h < 8; h++) expect(Math.floor((Math.floor(h / 2) * 8 + (h % 2)) / 8)).toBe(Math.floor(h / 2));
  });
  it('rejects a target smaller than the source, naming the field', () => {
    expect(() => inflateConfig(stories, { ...TINYLLAMA_SHAPE, dim: 32 })).toThrow(/shape\.dim/);
    expect(() => inflateConfig(stories, { ...TINYLLAMA_SHAPE, nKvHeads: 6, nHeads: 36 })).toThrow(/nKvHeads/);
  });
});

describe.runIf(dir)('inflated stories260K (f32, CPU)', () => {
  it.each([
    ['powers of two', POW2],
    ['odd factors, more kv heads', ODD],
  ])('%s: greedy from BOS gives the 48 reference ids exactly', async (_label, shape) => {
    const src = source();
    const { config, tensors } = inflateF32(src.config, src.tensors, shape);
    expect(await greedyIds(config, tensors)).toEqual(STORIES_REFERENCE_IDS);
  });

  it('negative controls: without the RoPE theta or the q scale rule it misses the reference', async () => {
    const src = source();
    const { config, tensors } = inflateF32(src.config, src.tensors, POW2);
    expect(await greedyIds({ ...config, ropeTheta: src.config.ropeTheta }, tensors)).not.toEqual(STORIES_REFERENCE_IDS);
    const unscaled = new Map(tensors);
    for (let l = 0; l < src.config.nLayers; l++) unscaled.set(`layers.${l}.wq`, tensors.get(`layers.${l}.wq`)!.map((v) => v / 2));
    expect(await greedyIds(config, unscaled)).not.toEqual(STORIES_REFERENCE_IDS);
  });

  it('the GGUF files (F32, F16) read back as the inflated values, with the tokenizer; F32 reproduces the reference', async () => {
    const src = source();
    const { config, tensors } = inflateF32(src.config, src.tensors, ODD);
    const tok = ggufTokenizerEntries(join(dir!, 'stories260K', 'stories260K.gguf'));
    for (const type of [0, 1] as const) {
      const path = join(tmp, `odd-${type}.gguf`);
      writeInflatedGguf(path, src.config, src.tensors, ODD, type, tok);
      const w = loadWeights(path);
      const got = w.config;
      for (const k of ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'headDim', 'vocabSize', 'ropeStyle', 'tiedEmbeddings'] as const) expect(got[k]).toEqual(config[k]);
      expect(got.ropeTheta / config.ropeTheta).toBeCloseTo(1, 6); // stored as float32
      expect(got.normEps / config.normEps).toBeCloseTo(1, 6);
      for (const [n, v] of tensors) {
        const back = w.tensors.get(n)!.toFloat32();
        const want = type === 1 && n.split('.').pop() !== 'attnNorm' && n.split('.').pop() !== 'ffnNorm' && n !== 'norm' ? decodeFloats(encodeFloats(v, 'f16'), 'f16') : v;
        let bad = -1;
        for (let i = 0; i < want.length && bad < 0; i++) if (!Object.is(back[i], want[i])) bad = i;
        expect(back.length, n).toBe(want.length);
        expect(bad, `${n}: first differing index`).toBe(-1);
      }
      w.dispose();
      if (type === 0) {
        const { model, tokenizer } = await loadModel(path, { backend: 'cpu' });
        const r = await generate({ model, tokenizer, tokens: [1], maxTokens: 48, stopAtEos: false });
        expect([1, ...r.tokens]).toEqual(STORIES_REFERENCE_IDS);
        expect(r.text.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
        model.dispose();
      }
    }
  });
});

/** Per block type: bytes per block, values per block, byte offsets of its f16 scales (d, and dmin for the K types that have one). */
const BLOCK_SCALES: Record<string, [number, number, number[]]> = { Q8_0: [34, 32, [0]], Q4_K: [144, 256, [0, 2]], Q6_K: [210, 256, [208]] };

describe.skipIf(!dir)('the quantized inflated pairs (cachedQuantizedGguf, as `canopy bench decode` makes them)', () => {
  it('every all-zero F16 block gets zero scales (the identity layers stay exact), the file is reused, and Q8_0 keeps the greedy text', async () => {
    const src = source();
    const { config, tensors } = inflateF32(src.config, src.tensors, POW2);
    const f16 = join(tmp, 'pow2-f16.gguf');
    writeInflatedGguf(f16, src.config, src.tensors, POW2, 1, ggufTokenizerEntries(join(dir!, 'stories260K', 'stories260K.gguf')));
    const f16File = readGguf(f16);
    const f16Data = readFileSync(f16);
    const greedy = async (path: string) => {
      const { model } = await loadModel(path, { backend: 'cpu' });
      try {
        return [1, ...(await generate({ model, tokens: [1], maxTokens: 48, stopAtEos: false })).tokens];
      } finally {
        model.dispose();
      }
    };
    const f16Ids = await greedy(f16);
    expect(f16Ids).toEqual(await greedyIds(config, tensors)); // F16 rounding of the corner keeps the f32 ids here
    for (const preset of ['Q8_0', 'Q4_K_M'] as const) {
      const made = await cachedQuantizedGguf(f16, preset);
      expect(made.path).toBe(join(tmp, `pow2-${preset}.gguf`));
      expect(made.makeMs).toBeGreaterThan(0);
      expect((await cachedQuantizedGguf(f16, preset)).makeMs).toBeUndefined(); // reused
      const q = readGguf(made.path);
      const qData = readFileSync(made.path);
      const counts = { blocks: 0, zeroF16: 0, zeroScales: 0 };
      for (const t of q.tensors) {
        const layout = BLOCK_SCALES[t.typeName];
        if (!layout) continue;
        const [bytes, values, scales] = layout;
        const s = f16File.tensors.find((x) => x.name === t.name)!;
        const halves = new Uint16Array(f16Data.buffer.slice(f16Data.byteOffset + s.fileOffset, f16Data.byteOffset + s.fileOffset + s.byteLength));
        for (let b = 0; b < halves.length / values; b++) {
          let zero = true;
          for (let i = b * values; i < (b + 1) * values && zero; i++) zero = (halves[i]! & 0x7fff) === 0;
          if (zero) counts.zeroF16++;
        }
        for (let b = 0; b < t.byteLength / bytes; b++) {
          const at = t.fileOffset + b * bytes;
          if (scales.every((o) => (qData.readUInt16LE(at + o) & 0x7fff) === 0)) counts.zeroScales++;
          counts.blocks++;
        }
      }
      // Quantization may reorder rows, never blocks across rows: the counts must match exactly.
      expect(counts.zeroF16, preset).toBeGreaterThan(counts.blocks / 2);
      expect(counts.zeroScales, preset).toBe(counts.zeroF16);
      const ids = await greedy(made.path);
      expect(ids.length).toBe(49);
      if (preset === 'Q8_0') expect(ids).toEqual(f16Ids);
      else expect(ids.slice(0, 8)).toEqual(f16Ids.slice(0, 8)); // Q4_K_M drifts later ("Once upon a time, there was a little girl named Lily" holds)
    }
  });

  it('--quick plans the quantized pairs as skipped unless --filter names them', () => {
    const ctx = (filter?: string) =>
      ({ backend: 'cpu', quick: true, models: [], budgetMs: 1, threads: 1, ...(filter ? { filter } : {}), peers: { llamaCpp: { name: 'llama.cpp', available: false, detail: '' }, torch: { name: 'torch', available: false, detail: '' } } }) as unknown as SuiteContext;
    const saved = process.env.CANOPY_MODELS;
    process.env.CANOPY_MODELS = dir; // the suite finds the models folder itself
    const labels = (c: SuiteContext) => {
      try {
        return new Map(decodeSuite.plan(c).map((s) => [s.label, s.skip]));
      } finally {
        if (saved === undefined) delete process.env.CANOPY_MODELS;
        else process.env.CANOPY_MODELS = saved;
      }
    };
    const plan = (filter?: string) => labels(ctx(filter));
    const quick = plan();
    expect(quick.get('inflated F16 pair, batch 1')).toBeUndefined();
    expect(quick.get('inflated Q8_0 pair, batch 1')).toMatch(/quick run/);
    expect(quick.get('inflated Q4_K_M pair, batch 1')).toMatch(/quick run/);
    const asked = plan('Q8_0 pair');
    expect(asked.has('inflated Q8_0 pair, batch 1')).toBe(true);
    expect(asked.get('inflated Q8_0 pair, batch 1')).toBeUndefined();
    expect(asked.get('inflated Q4_K_M pair, batch 1')).toMatch(/quick run/);
    const full = labels({ ...ctx(), quick: false });
    expect([...full.keys()]).toEqual(expect.arrayContaining(['inflated F16 pair, batch 4', 'inflated Q8_0 pair, batch 1', 'inflated Q4_K_M pair, batch 1']));
    expect(full.get('inflated Q8_0 pair, batch 1')).toBeUndefined();
  });
});
