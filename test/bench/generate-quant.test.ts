/**
 * The plumbing of `canopy bench generate`'s quantized rows, on a tiny shape (nothing is timed:
 * speed lives in the bench): the F16 random file and its Q8_0, Q4_0 and Q4_K_M files made by
 * quantize() are cached (made once, reused, no partial file left), carry their block types, load
 * and generate in canopy; the bytes-per-token of a file follow its block types; the CPU plan
 * lists the four 1B rows.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { QUANT_BENCH_STORAGES, benchFileConfig, cachedBenchGguf, generateSuite, ggufBytesPerToken, ggufTypeCounts } from '../../lib/bench/suites/generate.js';
import type { SuiteContext } from '../../lib/bench/suites/types.js';
import { generate } from '../../lib/generate.js';
import type { ModelConfig } from '../../lib/model/config.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import { loadModel } from '../../lib/model/load.js';
import { MODEL_PRESETS, weightBytesPerToken } from '../../lib/model/presets.js';

const tmp = mkdtempSync(join(tmpdir(), 'canopy-bench-quant-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Tiny, but with dims that are multiples of 256 so the K-quant blocks apply (no fallback to every tensor). */
const tiny: ModelConfig = benchFileConfig({
  ...MODEL_PRESETS['llama-1b']!,
  dim: 256,
  hiddenDim: 512,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 64,
  vocabSize: 512,
  maxSeqLen: 64,
});
/** F32 norm bytes: two per layer and the final one. */
const normBytes = (c: ModelConfig) => (2 * c.nLayers + 1) * c.dim * 4;

/** The matrix types of a file (2-D tensors). */
function matrixTypes(path: string): Set<string> {
  return new Set(readGguf(path).tensors.filter((t) => t.shape.length === 2).map((t) => t.typeName));
}

describe('bench generate: quantized rows', () => {
  const expected: Record<string, string> = { F16: 'F16', Q8_0: 'Q8_0', Q4_0: 'Q4_0', Q4_K_M: 'Q4_K' };

  it('makes each file once, with its block types, and reuses it', async () => {
    for (const storage of QUANT_BENCH_STORAGES) {
      const first = await cachedBenchGguf(tmp, 'tiny', tiny, storage);
      expect(first.makeMs, storage).toBeGreaterThan(0);
      expect(matrixTypes(first.path).has(expected[storage]!), `${storage}: ${ggufTypeCounts(first.path)}`).toBe(true);
      const again = await cachedBenchGguf(tmp, 'tiny', tiny, storage);
      expect(again).toEqual({ path: first.path });
    }
    expect(matrixTypes((await cachedBenchGguf(tmp, 'tiny', tiny, 'Q8_0')).path)).toEqual(new Set(['Q8_0']));
    const files = readdirSync(tmp);
    expect(files.filter((f) => f.includes('partial'))).toEqual([]);
    expect(files).toHaveLength(4);
    // Another shape is another file.
    const other = await cachedBenchGguf(tmp, 'tiny', { ...tiny, nLayers: 1 }, 'F16');
    expect(other.makeMs).toBeGreaterThan(0);
    expect(readdirSync(tmp)).toHaveLength(5);
  });

  it("counts a file's bytes per token from its block types", async () => {
    const f16 = ggufBytesPerToken((await cachedBenchGguf(tmp, 'tiny', tiny, 'F16')).path);
    expect(f16).toBe(weightBytesPerToken(tiny, 2) + normBytes(tiny));
    const q8 = ggufBytesPerToken((await cachedBenchGguf(tmp, 'tiny', tiny, 'Q8_0')).path);
    expect(q8).toBe(weightBytesPerToken(tiny, 34 / 32) + normBytes(tiny));
    const q4 = ggufBytesPerToken((await cachedBenchGguf(tmp, 'tiny', tiny, 'Q4_0')).path);
    const q4k = ggufBytesPerToken((await cachedBenchGguf(tmp, 'tiny', tiny, 'Q4_K_M')).path);
    expect(q4).toBeLessThan(q8);
    expect(q4k).toBeLessThan(q8);
    // Untied: the output head is read, the embedding table (one row per token) is not.
    const untied = { ...tiny, tiedEmbeddings: false };
    const u = ggufBytesPerToken((await cachedBenchGguf(tmp, 'untied', untied, 'F16')).path);
    expect(u).toBe(weightBytesPerToken(untied, 2) + normBytes(untied));
  });

  it('loads and generates greedily from every file', async () => {
    for (const storage of QUANT_BENCH_STORAGES) {
      const { model, tokenizer } = await loadModel((await cachedBenchGguf(tmp, 'tiny', tiny, storage)).path);
      try {
        const g = await generate({ model, tokenizer, tokens: [1, 2, 3, 4], maxTokens: 4, temperature: 0, stopAtEos: false });
        expect(g.tokens, storage).toHaveLength(4);
        for (const t of g.tokens) expect(t).toBeLessThan(tiny.vocabSize);
      } finally {
        model.dispose();
      }
    }
  });

  it('lists the 1B rows on the CPU, quick or not, and not on CUDA', () => {
    const ctx = (backend: 'cpu' | 'cuda', quick: boolean) =>
      ({ backend, quick, models: [], budgetMs: 1, threads: 1, peers: { llamaCpp: { name: 'llama.cpp', available: false, detail: '' }, torch: { name: 'torch', available: false, detail: '' } } }) as unknown as SuiteContext;
    const rows = QUANT_BENCH_STORAGES.map((s) => `greedy llama-1b ${s}`);
    for (const quick of [true, false]) {
      const labels = generateSuite.plan(ctx('cpu', quick)).map((s) => s.label);
      expect(labels).toEqual(expect.arrayContaining(rows));
      expect(labels.filter((l) => l === 'greedy llama-1b')).toEqual([]); // the temporary-file 1B row is the CUDA one
    }
    expect(generateSuite.plan(ctx('cuda', false)).map((s) => s.label).filter((l) => rows.includes(l))).toEqual([]);
  });
});
