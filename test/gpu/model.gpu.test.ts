/**
 * The model on CUDA: the forward pass against the float64 reference on random models
 * (test/helpers/forward-suite.ts, shared with the CPU tests), stories260K greedy from BOS
 * reproducing the README's reference ids, and every decoding strategy's greedy output equal to
 * autoregressive decoding on CUDA (test/helpers/strategy-suite.ts: 16-bit and quantized caches).
 *
 * Runs where a usable GPU is present (skips, saying why, elsewhere; fails under
 * CANOPY_REQUIRE_GPU=1). CANOPY_GPU_SUITES_ON_CPU=1 runs the same suite on the CPU
 * backend: a check of this file's own logic on a machine without a GPU, nothing more.
 */
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { generate } from '../../lib/generate.js';
import type { KvCacheDtype } from '../../lib/model/kv-cache.js';
import { loadModel } from '../../lib/model/load.js';
import type { Model } from '../../lib/model/model.js';
import { cudaInfo } from '../../lib/native/backend.js';
import { mismatches } from '../helpers/attention-reference.js';
import { defineForwardSuites } from '../helpers/forward-suite.js';
import { gpuGate } from '../helpers/gpu.js';
import { definePrefixSuites } from '../helpers/prefix-suite.js';
import { defineStoryPairTests } from '../helpers/strategy-suite.js';
import { STORIES_REFERENCE_IDS, testModelsDir } from '../helpers/test-models.js';

const onCpu = process.env.CANOPY_GPU_SUITES_ON_CPU === '1';
if (onCpu) console.warn('[model.gpu] CANOPY_GPU_SUITES_ON_CPU=1: running the CUDA model suite on the CPU backend (checks the suite, not CUDA)');
const gate = onCpu ? { available: true, reason: '' } : gpuGate('CUDA model');
const backend = onCpu ? 'cpu' : 'cuda';
const dir = testModelsDir('CUDA model on stories260K');

/** Compute capability as a number (89 for 8.9), 0 when unknown. */
function computeCapability(): number {
  const [major, minor] = (cudaInfo().devices[0]?.computeCapability ?? '0.0').split('.').map(Number) as [number, number];
  return major * 10 + minor;
}

describe.runIf(gate.available)(`the forward pass on ${backend}`, () => defineForwardSuites({ backend }));
describe.runIf(gate.available)(`shared prefixes in the forward pass on ${backend}`, () => definePrefixSuites({ backend }));

describe.runIf(gate.available && dir)(`stories260K on ${backend}`, () => {
  const bin = join(dir ?? '', 'stories260K', 'stories260K.bin');

  it('greedy from BOS reproduces the 48 reference tokens exactly (f32 weights and cache)', async () => {
    const { model, tokenizer } = await loadModel(bin, { backend, dtype: 'f32' });
    const r = await generate({ model, tokenizer, tokens: [1], maxTokens: 48, stopAtEos: false });
    expect([1, ...r.tokens]).toEqual(STORIES_REFERENCE_IDS);
    expect(r.text).toBe(tokenizer.decode(STORIES_REFERENCE_IDS));
    model.dispose();
  });

  it('with f16 weights (the CUDA default): the same logits as the CPU over the same f16 weights, and the same greedy tokens', async () => {
    // Both widen the f16 weights to f32 and accumulate in f32: only the summation order differs
    // (f32 weights differ from these by up to 4e-3, so the tolerance tells the two apart).
    const gpu = await loadModel(bin, { backend, dtype: 'f16' });
    const cpu = await loadModel(bin, { backend: 'cpu', dtype: 'f16' });
    const ids = STORIES_REFERENCE_IDS.slice(0, 24);
    const logitsOf = async (m: Model) => {
      const cache = m.createCache({ capacity: 64 });
      const { logits } = await m.forward(cache, [{ sequence: 0, tokens: ids }], { logits: 'all' });
      return logits.toFloat32();
    };
    expect(mismatches(await logitsOf(gpu.model), await logitsOf(cpu.model), 1e-4, 1e-4)).toEqual([]);
    const a = await generate({ model: gpu.model, tokens: [1], maxTokens: 48, stopAtEos: false });
    const b = await generate({ model: cpu.model, tokens: [1], maxTokens: 48, stopAtEos: false });
    expect(a.tokens).toEqual(b.tokens);
    gpu.model.dispose();
    cpu.model.dispose();
  });
});

// fp8 caches need compute capability 8.9+ on CUDA (elsewhere a typed error, tested elsewhere).
const kvDtypes: KvCacheDtype[] = ['int8', 'int4', ...(onCpu || computeCapability() >= 89 ? (['fp8'] as const) : [])];
describe.runIf(gate.available && dir)(`greedy losslessness of every strategy on ${backend} (stories260K)`, () => defineStoryPairTests(dir ?? '', backend, kvDtypes, (pair) => {
  it('n samples per prompt (a forked cache) are reproducible and each as long as asked', async () => {
    const { target } = pair();
    const base = { model: target.model, tokenizer: target.tokenizer, prompt: 'Once upon a time', maxTokens: 30, temperature: 1, seed: 7, n: 3, stopAtEos: false };
    const a = await generate(base);
    const b = await generate(base);
    expect(a.map((r) => r.tokens)).toEqual(b.map((r) => r.tokens));
    expect(a.map((r) => r.tokens.length)).toEqual([30, 30, 30]);
  });

  it('seeded sampling is reproducible on the device', async () => {
    const { target } = pair();
    const base = { model: target.model, tokenizer: target.tokenizer, prompt: 'Once upon a time', maxTokens: 40, temperature: 0.8, topP: 0.9, seed: 42 };
    const a = await generate(base);
    const b = await generate(base);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens.length).toBeGreaterThan(0);
  });
}));
