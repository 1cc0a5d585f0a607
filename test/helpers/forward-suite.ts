/**
 * The native forward pass against the float64 reference on small random models, for any
 * backend: test/model/forward.test.ts runs it on the CPU (both ISAs), test/gpu/model.gpu.test.ts
 * on CUDA. Prefill at every position, decoding through the KV cache, ragged batches, tree steps
 * and commit, f16 weights with a bf16 cache, cache fork and grow, and a 700-key context (split-KV
 * on CUDA).
 */
import { describe, expect, it } from 'vitest';

import type { ModelConfig } from '../../lib/model/config.js';
import { Model } from '../../lib/model/model.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { mismatches } from './attention-reference.js';
import { llamaReference } from './llama-reference.js';
import { randomConfig, randomWeights } from './random-model.js';

export interface ForwardSuiteOptions {
  backend: 'cpu' | 'cuda';
  /** Values of CANOPY_CPU_ISA to run the prefill test under ('auto' leaves it unset). */
  isas?: string[];
}

/** The model shapes every forward suite runs (also the shared-prefix suite, test/helpers/prefix-suite.ts). */
export const FORWARD_CONFIGS: Array<[string, ModelConfig]> = [
  ['GQA, interleaved RoPE, tied', randomConfig()],
  ['Qwen2-like: biases, half-split RoPE, untied, MQA', randomConfig({ architecture: 'qwen2', qkvBias: true, ropeStyle: 'half', tiedEmbeddings: false, nHeads: 2, nKvHeads: 1, headDim: 32 })],
  ['Llama-3 RoPE scaling, head size 8', randomConfig({ nHeads: 8, nKvHeads: 4, headDim: 8, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 } })],
  ['head_dim 72 (not a multiple of 32), 3 layers', randomConfig({ nHeads: 4, nKvHeads: 2, headDim: 72, nLayers: 3 })],
  [
    'Gemma 2-like: GeGLU, post norms, embedding scale, query scale, soft-capping, window 3 on alternate layers',
    randomConfig({
      architecture: 'gemma2',
      nLayers: 3,
      ropeStyle: 'half',
      activation: 'gelu_tanh',
      postNorms: true,
      embedScale: 8,
      attnScale: 1 / Math.sqrt(24),
      attnSoftcap: 1.5,
      finalSoftcap: 2,
      layerWindows: [3, 0, 3],
    }),
  ],
  [
    'Gemma 3-like: q/k norms, 5 local layers (window 4, RoPE base 10k) per global one (base 1M, linear scaling 8)',
    randomConfig({
      architecture: 'gemma3',
      qkNorm: true,
      nLayers: 6,
      dim: 32,
      hiddenDim: 40,
      ropeStyle: 'half',
      activation: 'gelu_tanh',
      postNorms: true,
      embedScale: Math.sqrt(32),
      layerWindows: [4, 4, 4, 4, 4, 0],
      ropeTheta: 1e6,
      ropeThetaLocal: 10000,
      ropeScaling: { type: 'linear', factor: 8 },
    }),
  ],
  [
    'Phi-3-like: LongRoPE (long factors past the original 32 positions, attention factor)',
    randomConfig({
      architecture: 'phi3',
      ropeStyle: 'half',
      tiedEmbeddings: false,
      ropeScaling: {
        type: 'longrope',
        longFactors: [1, 1.5, 2, 3, 5, 8, 13, 21],
        shortFactors: [1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7],
        originalMaxPositionEmbeddings: 32,
        attentionFactor: Math.sqrt(1 + Math.log(64 / 32) / Math.log(32)),
      },
    }),
  ],
  ['Qwen3-like: per-head q/k RMSNorm, half-split RoPE, heads wider than dim, untied', randomConfig({ architecture: 'qwen3', qkNorm: true, ropeStyle: 'half', nHeads: 4, nKvHeads: 2, headDim: 24, tiedEmbeddings: false, ropeTheta: 1000000 })],
  ['YaRN (factor 4, attention factor 1.1386), half-split RoPE', randomConfig({ architecture: 'qwen2', ropeStyle: 'half', headDim: 32, nHeads: 2, nKvHeads: 2, ropeScaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64, betaFast: 32, betaSlow: 1, attentionFactor: 0.1 * Math.log(4) + 1, truncate: true } })],
  ['linear RoPE scaling (factor 2.5)', randomConfig({ ropeScaling: { type: 'linear', factor: 2.5 } })],
  ['GGUF rope_freqs factors (Llama 3.1 as llama.cpp stores it)', randomConfig({ nHeads: 8, nKvHeads: 4, headDim: 8, ropeTheta: 500000, ropeFreqFactors: [1, 1.5, 4.25, 8] })],
];

const prompt = [3, 17, 5, 30, 1, 22, 9];
const TOL = { atol: 2e-4, rtol: 2e-4 };

export function rowsOf(logits: Tensor, vocab: number): Float32Array[] {
  const all = logits.toFloat32();
  return Array.from({ length: all.length / vocab }, (_, i) => all.slice(i * vocab, (i + 1) * vocab));
}

/** Defines the forward-pass suites for `backend` (call at the top level of a test file). */
export function defineForwardSuites({ backend, isas = ['auto'] }: ForwardSuiteOptions): void {
  // f32 weights and cache unless a test says otherwise (CUDA's default weights are f16).
  const f32 = async (config: ModelConfig, tensors: Map<string, Tensor>) => Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });

  describe.each(FORWARD_CONFIGS)(`forward on ${backend}: %s`, (_name, config) => {
    const tensors = randomWeights(config, 7);
    const ref = llamaReference(config, tensors, prompt);

    it.each(isas)('a prefill chunk gives the reference logits at every position (isa %s)', async (isa) => {
      if (isa !== 'auto') process.env.CANOPY_CPU_ISA = isa;
      try {
        const model = await f32(config, tensors);
        expect(model.device).toBe(backend === 'cpu' ? 'cpu' : 'cuda:0');
        const cache = model.createCache({ capacity: 16 });
        const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
        rowsOf(logits, config.vocabSize).forEach((row, t) => expect(mismatches(row, ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]));
        expect(cache.length(0)).toBe(prompt.length);
        model.dispose();
      } finally {
        delete process.env.CANOPY_CPU_ISA;
      }
    });

    it('prefill then token-by-token decoding matches the reference, through the KV cache', async () => {
      const model = await f32(config, tensors);
      const cache = model.createCache({ capacity: 16 });
      await model.forward(cache, [{ sequence: 0, tokens: prompt.slice(0, 3) }]);
      for (let t = 3; t < prompt.length; t++) {
        const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [prompt[t]!] }]);
        expect(mismatches(logits.toFloat32(), ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]);
      }
      model.dispose();
    });

    it('a batch of sequences with different lengths equals running them one by one', async () => {
      const other = [8, 8, 2];
      const refOther = llamaReference(config, tensors, other);
      const model = await f32(config, tensors);
      const cache = model.createCache({ capacity: 16, sequences: 2 });
      const { logits } = await model.forward(cache, [
        { sequence: 1, tokens: other },
        { sequence: 0, tokens: prompt },
      ]);
      const rows = rowsOf(logits, config.vocabSize); // sorted by sequence: 0, then 1
      expect(mismatches(rows[0]!, ref[prompt.length - 1]!, TOL.atol, TOL.rtol)).toEqual([]);
      expect(mismatches(rows[1]!, refOther[other.length - 1]!, TOL.atol, TOL.rtol)).toEqual([]);
      model.dispose();
    });

    it('a tree step gives each node the logits of its root-to-node path; commit keeps the accepted path', async () => {
      const model = await f32(config, tensors);
      const cache = model.createCache({ capacity: 32 });
      const prefix = prompt.slice(0, 4);
      await model.forward(cache, [{ sequence: 0, tokens: prefix }]);
      const treeTokens = [11, 12, 13, 14, 15, 16];
      const parents = [-1, -1, 0, 0, 2, 1];
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: treeTokens, parents }], { logits: 'all' });
      expect(cache.length(0)).toBe(prefix.length); // tree tokens are not committed
      const rows = rowsOf(logits, config.vocabSize);
      for (let node = 0; node < treeTokens.length; node++) {
        const path: number[] = [];
        for (let x = node; x >= 0; x = parents[x]!) path.unshift(treeTokens[x]!);
        const r = llamaReference(config, tensors, [...prefix, ...path]);
        expect(mismatches(rows[node]!, r[r.length - 1]!, TOL.atol, TOL.rtol), `node ${node}`).toEqual([]);
      }
      // Accept 0 -> 2 -> 4, then decode one more token on top of it.
      await cache.commit([{ sequence: 0, numNodes: treeTokens.length, acceptedNodes: [0, 2, 4] }]);
      expect(cache.length(0)).toBe(prefix.length + 3);
      const next = await model.forward(cache, [{ sequence: 0, tokens: [20] }]);
      const r = llamaReference(config, tensors, [...prefix, 11, 13, 15, 20]);
      expect(mismatches(next.logits.toFloat32(), r[r.length - 1]!, TOL.atol, TOL.rtol)).toEqual([]);
      model.dispose();
    });

    it('f16 weights and a bf16 cache stay close to the reference', async () => {
      const model = await Model.fromWeights({ config, tensors }, { backend, dtype: 'f16' });
      const cache = model.createCache({ capacity: 16, dtype: 'bf16' });
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
      expect(mismatches(logits.toFloat32(), ref[prompt.length - 1]!, 3e-2, 3e-2)).toEqual([]);
      model.dispose();
    });
  });

  describe(`KV cache fork and grow on ${backend}`, () => {
    const config = randomConfig();
    const tensors = randomWeights(config, 5);

    it('a forked prefix gives the same next logits as prefilling it again; grow keeps committed rows', async () => {
      const model = await f32(config, tensors);
      const cache = model.createCache({ capacity: 12, sequences: 3 });
      await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
      cache.fork(0, 2);
      expect(cache.length(2)).toBe(prompt.length);
      const a = await model.forward(cache, [{ sequence: 0, tokens: [4] }, { sequence: 2, tokens: [4] }]);
      const rows = rowsOf(a.logits, config.vocabSize);
      expect(Array.from(rows[1]!)).toEqual(Array.from(rows[0]!));
      cache.grow(40);
      expect(cache.capacity).toBe(40);
      expect(cache.length(2)).toBe(prompt.length + 1);
      const b = await model.forward(cache, [{ sequence: 2, tokens: [9] }]);
      const ref = llamaReference(config, tensors, [...prompt, 4, 9]);
      expect(mismatches(b.logits.toFloat32(), ref.at(-1)!, TOL.atol, TOL.rtol)).toEqual([]);
      expect(() => cache.grow(10)).toThrow(/capacity must be an integer >= the current capacity 40; received 10/);
      expect(() => cache.fork(0, 1, 99)).toThrow(/length must be an integer in \[0, 8\]; received 99/);
      model.dispose();
    });
  });

  describe(`long context on ${backend}`, () => {
    // 700 keys: CUDA attention splits them (split-KV partials merged in every layer).
    const config = randomConfig({ maxSeqLen: 1024 });
    const tensors = randomWeights(config, 11);
    const ids = Array.from({ length: 701 }, (_, i) => (i * 7 + 3) % config.vocabSize);

    it('a 700-token prefill, then a decode step, give the reference logits', async () => {
      const ref = llamaReference(config, tensors, ids);
      const model = await f32(config, tensors);
      const cache = model.createCache({ capacity: 768 });
      const pre = await model.forward(cache, [{ sequence: 0, tokens: ids.slice(0, 700) }]);
      expect(mismatches(pre.logits.toFloat32(), ref[699]!, TOL.atol, TOL.rtol)).toEqual([]);
      const next = await model.forward(cache, [{ sequence: 0, tokens: [ids[700]!] }]);
      expect(mismatches(next.logits.toFloat32(), ref[700]!, TOL.atol, TOL.rtol)).toEqual([]);
      model.dispose();
    });
  });
}
