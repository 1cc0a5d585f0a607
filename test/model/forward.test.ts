/** The native forward pass against the float64 reference on small random models. */
import { afterEach, describe, expect, it } from 'vitest';

import type { ModelConfig } from '../../lib/model/config.js';
import { Model } from '../../lib/model/model.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { mismatches } from '../helpers/attention-reference.js';
import { llamaReference } from '../helpers/llama-reference.js';
import { randomConfig, randomWeights } from '../helpers/random-model.js';

afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
});

const configs: Array<[string, ModelConfig]> = [
  ['GQA, interleaved RoPE, tied', randomConfig()],
  ['Qwen2-like: biases, half-split RoPE, untied, MQA', randomConfig({ architecture: 'qwen2', qkvBias: true, ropeStyle: 'half', tiedEmbeddings: false, nHeads: 2, nKvHeads: 1, headDim: 32 })],
  ['Llama-3 RoPE scaling, head size 8', randomConfig({ nHeads: 8, nKvHeads: 4, headDim: 8, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 } })],
];

const prompt = [3, 17, 5, 30, 1, 22, 9];
const TOL = { atol: 2e-4, rtol: 2e-4 };

function rowsOf(logits: Tensor, vocab: number): Float32Array[] {
  const all = logits.toFloat32();
  return Array.from({ length: all.length / vocab }, (_, i) => all.slice(i * vocab, (i + 1) * vocab));
}

describe.each(configs)('forward: %s', (_name, config) => {
  const tensors = randomWeights(config, 7);
  const ref = llamaReference(config, tensors, prompt);

  it.each(['auto', 'avx2'])('a prefill chunk gives the reference logits at every position (isa %s)', async (isa) => {
    if (isa === 'avx2') process.env.CANOPY_CPU_ISA = 'avx2';
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const cache = model.createCache({ capacity: 16 });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
    rowsOf(logits, config.vocabSize).forEach((row, t) => expect(mismatches(row, ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]));
    expect(cache.length(0)).toBe(prompt.length);
    model.dispose();
  });

  it('prefill then token-by-token decoding matches the reference, through the KV cache', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const cache = model.createCache({ capacity: 16 });
    await model.forward(cache, [{ sequence: 0, tokens: prompt.slice(0, 3) }]);
    for (let t = 3; t < prompt.length; t++) {
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [prompt[t]!] }]);
      expect(mismatches(logits.toFloat32(), ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]);
    }
  });

  it('a batch of sequences with different lengths equals running them one by one', async () => {
    const other = [8, 8, 2];
    const refOther = llamaReference(config, tensors, other);
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const cache = model.createCache({ capacity: 16, sequences: 2 });
    const { logits } = await model.forward(cache, [
      { sequence: 1, tokens: other },
      { sequence: 0, tokens: prompt },
    ]);
    const rows = rowsOf(logits, config.vocabSize); // sorted by sequence: 0, then 1
    expect(mismatches(rows[0]!, ref[prompt.length - 1]!, TOL.atol, TOL.rtol)).toEqual([]);
    expect(mismatches(rows[1]!, refOther[other.length - 1]!, TOL.atol, TOL.rtol)).toEqual([]);
  });

  it('a tree step gives each node the logits of its root-to-node path; commit keeps the accepted path', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
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
  });

  it('f16 weights and a bf16 cache stay close to the reference', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu', dtype: 'f16' });
    const cache = model.createCache({ capacity: 16, dtype: 'bf16' });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
    expect(mismatches(logits.toFloat32(), ref[prompt.length - 1]!, 3e-2, 3e-2)).toEqual([]);
  });
});

describe('KV cache fork and grow', () => {
  const config = randomConfig();
  const tensors = randomWeights(config, 5);

  it('a forked prefix gives the same next logits as prefilling it again; grow keeps committed rows', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
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
  });
});
