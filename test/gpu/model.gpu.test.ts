/**
 * The model on CUDA: the forward pass against the float64 reference on random models
 * (prefill, decoding through the cache, ragged batches, tree steps and commit, f16
 * weights with a bf16 cache), stories260K greedy from BOS reproducing the README's
 * reference ids, and every decoding strategy's greedy output equal to autoregressive
 * decoding on CUDA (16-bit and quantized caches).
 *
 * Runs where a usable GPU is present (skips, saying why, elsewhere; fails under
 * CANOPY_REQUIRE_GPU=1). CANOPY_GPU_SUITES_ON_CPU=1 runs the same suite on the CPU
 * backend: a check of this file's own logic on a machine without a GPU, nothing more.
 */
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type StrategyName, generate } from '../../lib/generate.js';
import type { ModelConfig } from '../../lib/model/config.js';
import { type LoadedModel, loadModel } from '../../lib/model/load.js';
import { Model } from '../../lib/model/model.js';
import { cudaInfo } from '../../lib/native/backend.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { mismatches } from '../helpers/attention-reference.js';
import { gpuGate } from '../helpers/gpu.js';
import { llamaReference } from '../helpers/llama-reference.js';
import { randomConfig, randomWeights } from '../helpers/random-model.js';
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

function rowsOf(logits: Tensor, vocab: number): Float32Array[] {
  const all = logits.toFloat32();
  return Array.from({ length: all.length / vocab }, (_, i) => all.slice(i * vocab, (i + 1) * vocab));
}

const configs: Array<[string, ModelConfig]> = [
  ['GQA, interleaved RoPE, tied', randomConfig()],
  ['Qwen2-like: biases, half-split RoPE, untied, MQA', randomConfig({ architecture: 'qwen2', qkvBias: true, ropeStyle: 'half', tiedEmbeddings: false, nHeads: 2, nKvHeads: 1, headDim: 32 })],
  ['Llama-3 RoPE scaling, head size 8', randomConfig({ nHeads: 8, nKvHeads: 4, headDim: 8, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 } })],
  ['head_dim 72 (not a multiple of 32), 3 layers', randomConfig({ nHeads: 4, nKvHeads: 2, headDim: 72, nLayers: 3 })],
];

const prompt = [3, 17, 5, 30, 1, 22, 9];
// f32 weights and cache on the GPU: the same tolerance as the CPU forward tests.
const TOL = { atol: 2e-4, rtol: 2e-4 };

describe.runIf(gate.available).each(configs)(`forward on ${backend}: %s`, (_name, config) => {
  const tensors = randomWeights(config, 7);
  const ref = llamaReference(config, tensors, prompt);

  it('a prefill chunk gives the reference logits at every position (f32 weights)', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });
    expect(model.device).toBe(onCpu ? 'cpu' : 'cuda:0');
    const cache = model.createCache({ capacity: 16 });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
    rowsOf(logits, config.vocabSize).forEach((row, t) => expect(mismatches(row, ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]));
    expect(cache.length(0)).toBe(prompt.length);
    model.dispose();
  });

  it('prefill then token-by-token decoding matches the reference, through the KV cache', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });
    const cache = model.createCache({ capacity: 16 });
    await model.forward(cache, [{ sequence: 0, tokens: prompt.slice(0, 3) }]);
    for (let t = 3; t < prompt.length; t++) {
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [prompt[t]!] }]);
      expect(mismatches(logits.toFloat32(), ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]);
    }
    model.dispose();
  });

  it('a ragged batch equals running the sequences one by one', async () => {
    const other = [8, 8, 2];
    const refOther = llamaReference(config, tensors, other);
    const model = await Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });
    const cache = model.createCache({ capacity: 16, sequences: 2 });
    const { logits } = await model.forward(cache, [
      { sequence: 1, tokens: other },
      { sequence: 0, tokens: prompt },
    ]);
    const rows = rowsOf(logits, config.vocabSize);
    expect(mismatches(rows[0]!, ref[prompt.length - 1]!, TOL.atol, TOL.rtol)).toEqual([]);
    expect(mismatches(rows[1]!, refOther[other.length - 1]!, TOL.atol, TOL.rtol)).toEqual([]);
    model.dispose();
  });

  it('a tree step gives each node the logits of its root-to-node path; commit keeps the accepted path', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });
    const cache = model.createCache({ capacity: 32 });
    const prefix = prompt.slice(0, 4);
    await model.forward(cache, [{ sequence: 0, tokens: prefix }]);
    const treeTokens = [11, 12, 13, 14, 15, 16];
    const parents = [-1, -1, 0, 0, 2, 1];
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: treeTokens, parents }], { logits: 'all' });
    expect(cache.length(0)).toBe(prefix.length);
    const rows = rowsOf(logits, config.vocabSize);
    for (let node = 0; node < treeTokens.length; node++) {
      const path: number[] = [];
      for (let x = node; x >= 0; x = parents[x]!) path.unshift(treeTokens[x]!);
      const r = llamaReference(config, tensors, [...prefix, ...path]);
      expect(mismatches(rows[node]!, r[r.length - 1]!, TOL.atol, TOL.rtol), `node ${node}`).toEqual([]);
    }
    await cache.commit([{ sequence: 0, numNodes: treeTokens.length, acceptedNodes: [0, 2, 4] }]);
    expect(cache.length(0)).toBe(prefix.length + 3);
    const next = await model.forward(cache, [{ sequence: 0, tokens: [20] }]);
    const r = llamaReference(config, tensors, [...prefix, 11, 13, 15, 20]);
    expect(mismatches(next.logits.toFloat32(), r[r.length - 1]!, TOL.atol, TOL.rtol)).toEqual([]);
    model.dispose();
  });

  it('the default weights (f16 on CUDA) with a bf16 cache stay close to the reference', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend, dtype: 'f16' });
    const cache = model.createCache({ capacity: 16, dtype: 'bf16' });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
    expect(mismatches(logits.toFloat32(), ref[prompt.length - 1]!, 3e-2, 3e-2)).toEqual([]);
    model.dispose();
  });
});

describe.runIf(gate.available)(`KV cache fork and grow on ${backend}`, () => {
  const config = randomConfig();
  const tensors = randomWeights(config, 5);

  it('a forked prefix gives the same next logits as the original; grow keeps committed rows', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });
    const cache = model.createCache({ capacity: 12, sequences: 3 });
    await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
    cache.fork(0, 2);
    expect(cache.length(2)).toBe(prompt.length);
    const a = await model.forward(cache, [{ sequence: 0, tokens: [4] }, { sequence: 2, tokens: [4] }]);
    const rows = rowsOf(a.logits, config.vocabSize);
    expect(Array.from(rows[1]!)).toEqual(Array.from(rows[0]!));
    cache.grow(40);
    expect(cache.capacity).toBe(40);
    const b = await model.forward(cache, [{ sequence: 2, tokens: [9] }]);
    const ref = llamaReference(config, tensors, [...prompt, 4, 9]);
    expect(mismatches(b.logits.toFloat32(), ref.at(-1)!, TOL.atol, TOL.rtol)).toEqual([]);
    model.dispose();
  });
});

describe.runIf(gate.available)(`long context on ${backend}`, () => {
  // 700 keys: the CUDA attention splits them (split-KV partials merged in every layer).
  const config = randomConfig({ maxSeqLen: 1024 });
  const tensors = randomWeights(config, 11);
  const ids = Array.from({ length: 701 }, (_, i) => (i * 7 + 3) % config.vocabSize);

  it('a 700-token prefill, then a decode step, give the reference logits', async () => {
    const ref = llamaReference(config, tensors, ids);
    const model = await Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });
    const cache = model.createCache({ capacity: 768 });
    const pre = await model.forward(cache, [{ sequence: 0, tokens: ids.slice(0, 700) }]);
    expect(mismatches(pre.logits.toFloat32(), ref[699]!, TOL.atol, TOL.rtol)).toEqual([]);
    const next = await model.forward(cache, [{ sequence: 0, tokens: [ids[700]!] }]);
    expect(mismatches(next.logits.toFloat32(), ref[700]!, TOL.atol, TOL.rtol)).toEqual([]);
    model.dispose();
  });
});

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

describe.runIf(gate.available && dir)(`greedy losslessness of every strategy on ${backend} (stories260K)`, () => {
  let target: LoadedModel;
  let draft: LoadedModel;
  beforeAll(async () => {
    target = await loadModel(join(dir!, 'stories260K', 'stories260K.bin'), { backend });
    draft = await loadModel(join(dir!, 'llama2xs-281K', 'model.bin'), { backend, tokenizer: join(dir!, 'stories260K', 'tok512.bin') });
  });
  afterAll(() => {
    target?.model.dispose();
    draft?.model.dispose();
  });

  const prompts = ['Once upon a time', 'The little dog', 'Tom and Sue went to the park. They', 'One day, a big bird'];
  const strategies: StrategyName[] = ['speculative', 'tree', 'lookup', 'ngram-tree', 'token-recycling', 'jacobi'];

  it.each(strategies)('%s equals autoregressive, batch 1 and a ragged batch', async (strategy) => {
    const base = { model: target.model, tokenizer: target.tokenizer, maxTokens: 60, temperature: 0 };
    const withDraft = strategy === 'speculative' || strategy === 'tree' ? { draft: draft.model } : {};
    for (const prompt of prompts.slice(0, 2)) {
      const ar = await generate({ ...base, prompt });
      const sp = await generate({ ...base, prompt, strategy, ...withDraft, speculation: { autoDisable: false } });
      expect(sp.tokens).toEqual(ar.tokens);
      expect(sp.text).toBe(ar.text);
      expect(sp.stats.speculation?.strategy).toBeDefined();
    }
    const arBatch = await generate({ ...base, prompt: prompts });
    const spBatch = await generate({ ...base, prompt: prompts, strategy, ...withDraft, speculation: { autoDisable: false } });
    expect(spBatch.map((r) => r.tokens)).toEqual(arBatch.map((r) => r.tokens));
  });

  it.each(['int8', 'int4', 'fp8'] as const)('with a %s KV cache, speculative, tree and lookup equal autoregressive over the same cache format', async (kvDtype) => {
    if (kvDtype === 'fp8' && !onCpu && computeCapability() < 89) return; // fp8 needs sm_89+ (a typed error, tested elsewhere)
    const base = { model: target.model, tokenizer: target.tokenizer, maxTokens: 60, temperature: 0, kvDtype };
    const ar = await generate({ ...base, prompt: prompts.slice(0, 2) });
    for (const strategy of ['speculative', 'tree', 'lookup'] as const) {
      const sp = await generate({ ...base, prompt: prompts.slice(0, 2), strategy, ...(strategy === 'lookup' ? {} : { draft: draft.model }), speculation: { autoDisable: false } });
      expect(sp.map((r) => r.tokens), strategy).toEqual(ar.map((r) => r.tokens));
    }
  });

  it('n samples per prompt (a forked cache) are reproducible and each as long as asked', async () => {
    const base = { model: target.model, tokenizer: target.tokenizer, prompt: 'Once upon a time', maxTokens: 30, temperature: 1, seed: 7, n: 3, stopAtEos: false };
    const a = await generate(base);
    const b = await generate(base);
    expect(a.map((r) => r.tokens)).toEqual(b.map((r) => r.tokens));
    expect(a.map((r) => r.tokens.length)).toEqual([30, 30, 30]);
  });

  it('seeded sampling is reproducible on the device', async () => {
    const base = { model: target.model, tokenizer: target.tokenizer, prompt: 'Once upon a time', maxTokens: 40, temperature: 0.8, topP: 0.9, seed: 42 };
    const a = await generate(base);
    const b = await generate(base);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens.length).toBeGreaterThan(0);
  });
});
