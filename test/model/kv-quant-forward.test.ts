/**
 * The forward pass over quantized KV caches (model.createCache({ dtype: 'int8' | 'int4' | 'fp8' }))
 * on small random models: the int4 ring plumbing equals the f32 cache when nothing is quantized,
 * a tree step plus commit equals decoding the accepted path token by token in the same format,
 * batches equal sequences run one by one, rollback works, and the error against the f32 cache is
 * reported.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { ArgumentError } from '../../lib/errors.js';
import { dequantizeKv } from '../../lib/kernels/kv-quant.js';
import type { KvCacheOptions } from '../../lib/model/kv-cache.js';
import { Model } from '../../lib/model/model.js';
import type { ModelConfig } from '../../lib/model/config.js';
import { mismatches } from '../helpers/attention-reference.js';
import { describeBadInputs } from '../helpers/bad-inputs.js';
import { randomConfig, randomWeights } from '../helpers/random-model.js';

afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
});

const configs: Array<[string, ModelConfig]> = [
  ['head size 16 (AVX2 tiles)', randomConfig({ maxSeqLen: 256 })],
  ['head size 64, MQA (AVX-512 tiles)', randomConfig({ maxSeqLen: 256, nHeads: 4, nKvHeads: 1, headDim: 64, dim: 96 })],
];

/** Deterministic pseudo-random token ids. */
function tokensOf(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % vocab;
  });
}

// Logit error / max |logit| over 100 steps of the random models: measured 0.008-0.013 (bf16),
// 0.015-0.026 (int8), 0.07-0.09 (fp8), 0.12-0.17 (int4), about 5x each format's per-element
// error; the limits are twice that.
const LIMIT: Record<string, number> = { bf16: 0.03, int8: 0.06, fp8: 0.2, int4: 0.35 };
// Tree step + commit against the same path decoded causally: layers after the first see inputs
// that differ in the last bits (differently shaped attention reductions), so an element at a
// rounding tie can land on the neighbouring code: one quantization step (int8: max/127) in one
// element, about 1e-3 in the logits. A wrong row committed moves them by 1e-1 (the negative
// control below).
const PATH_TOL = 5e-3;
const FORMATS: Array<[string, KvCacheOptions]> = [
  ['int8', { dtype: 'int8' }],
  ['fp8', { dtype: 'fp8' }],
  ['int4', { dtype: 'int4', group: 32, residual: 32, residualDtype: 'f16' }],
];

describe.each(configs)('quantized KV forward: %s', (_name, config) => {
  const tensors = randomWeights(config, 11);

  it('int4 with an f32 ring that nothing leaves yet equals the f32 cache (the ring plumbing)', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const f32 = model.createCache({ capacity: 96 });
    const i4 = model.createCache({ capacity: 96, dtype: 'int4', residual: 96, residualCapacity: 200, residualDtype: 'f32' });
    const prompt = tokensOf(40, config.vocabSize, 1);
    const a = await model.forward(f32, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
    const b = await model.forward(i4, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
    expect(mismatches(b.logits.toFloat32(), a.logits.toFloat32(), 1e-5, 1e-5)).toEqual([]);
    for (const t of tokensOf(10, config.vocabSize, 2)) {
      const x = await model.forward(f32, [{ sequence: 0, tokens: [t] }]);
      const y = await model.forward(i4, [{ sequence: 0, tokens: [t] }]);
      expect(mismatches(y.logits.toFloat32(), x.logits.toFloat32(), 1e-5, 1e-5)).toEqual([]);
    }
    expect(i4.quantizedLength(0)).toBe(0);
    model.dispose();
  });

  it.each(FORMATS)('%s: a tree step and commit equal decoding the accepted path token by token', async (_f, opts) => {
    for (const isa of ['auto', 'avx2']) {
      if (isa === 'avx2') process.env.CANOPY_CPU_ISA = 'avx2';
      else delete process.env.CANOPY_CPU_ISA;
      const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
      const prompt = tokensOf(70, config.vocabSize, 3);
      const tree = [11, 12, 13, 14, 15, 16];
      const parents = [-1, -1, 0, 0, 2, 1];
      const after = tokensOf(40, config.vocabSize, 4);
      // A: prompt, tree step, commit 0 -> 2 -> 4, then decode.
      const a = model.createCache({ capacity: 160, ...opts });
      await model.forward(a, [{ sequence: 0, tokens: prompt }]);
      const t = await model.forward(a, [{ sequence: 0, tokens: tree, parents }], { logits: 'all' });
      const treeRows = t.logits.toFloat32();
      await a.commit([{ sequence: 0, numNodes: tree.length, acceptedNodes: [0, 2, 4] }]);
      expect(a.length(0)).toBe(73);
      // B: prompt, then the accepted path causally.
      const b = model.createCache({ capacity: 160, ...opts });
      await model.forward(b, [{ sequence: 0, tokens: prompt }]);
      const V = config.vocabSize;
      for (const [i, node] of [0, 2, 4].entries()) {
        const r = await model.forward(b, [{ sequence: 0, tokens: [tree[node]!] }]);
        expect(mismatches(treeRows.subarray(node * V, (node + 1) * V), r.logits.toFloat32(), PATH_TOL, PATH_TOL), `tree node ${node} (path step ${i}), isa ${isa}`).toEqual([]);
      }
      // Negative control: committing a wrong path (node 5 instead of node 4) is detected.
      const c = model.createCache({ capacity: 160, ...opts });
      await model.forward(c, [{ sequence: 0, tokens: prompt }]);
      await model.forward(c, [{ sequence: 0, tokens: tree, parents }]);
      await c.commit([{ sequence: 0, numNodes: tree.length, acceptedNodes: [0, 2, 5] }]);
      for (const [j, tok] of after.entries()) {
        const x = await model.forward(a, [{ sequence: 0, tokens: [tok] }]);
        const y = await model.forward(b, [{ sequence: 0, tokens: [tok] }]);
        expect(mismatches(x.logits.toFloat32(), y.logits.toFloat32(), PATH_TOL, PATH_TOL), `after commit, isa ${isa}`).toEqual([]);
        if (j === 0) {
          const z = await model.forward(c, [{ sequence: 0, tokens: [tok] }]);
          expect(mismatches(z.logits.toFloat32(), y.logits.toFloat32(), PATH_TOL, PATH_TOL).length, 'a wrong path must differ').toBeGreaterThan(0);
        }
      }
      expect(a.quantizedLength(0)).toBe(b.quantizedLength(0));
      if (opts.dtype === 'int4') expect(a.quantizedLength(0)).toBe(64); // 113 keys, newest 32 in 16-bit: groups 0, 1 packed
      model.dispose();
    }
  });

  it.each(FORMATS)('%s: a batch of sequences equals running them one by one', async (_f, opts) => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const p0 = tokensOf(75, config.vocabSize, 5);
    const p1 = tokensOf(33, config.vocabSize, 6);
    const both = model.createCache({ capacity: 128, sequences: 2, ...opts });
    const { logits } = await model.forward(both, [
      { sequence: 0, tokens: p0 },
      { sequence: 1, tokens: p1 },
    ]);
    const step = await model.forward(both, [
      { sequence: 1, tokens: [7] },
      { sequence: 0, tokens: [9] },
    ]);
    const V = config.vocabSize;
    for (const [seq, prompt, next] of [
      [0, p0, 9],
      [1, p1, 7],
    ] as const) {
      const one = model.createCache({ capacity: 128, ...opts });
      const r = await model.forward(one, [{ sequence: 0, tokens: prompt }]);
      expect(mismatches(logits.toFloat32().subarray(seq * V, (seq + 1) * V), r.logits.toFloat32(), 1e-4, 1e-4), `prefill, sequence ${seq}`).toEqual([]);
      const s = await model.forward(one, [{ sequence: 0, tokens: [next] }]);
      expect(mismatches(step.logits.toFloat32().subarray(seq * V, (seq + 1) * V), s.logits.toFloat32(), 1e-4, 1e-4), `decode, sequence ${seq}`).toEqual([]);
    }
    model.dispose();
  });

  it('stays close to the f32 cache over 100 decoded tokens (error reported); a too-coarse cache is detected', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const toks = tokensOf(100, config.vocabSize, 8);
    const run = async (opts: KvCacheOptions) => {
      const cache = model.createCache({ capacity: 128, ...opts });
      const out: Float32Array[] = [];
      for (const t of toks) out.push((await model.forward(cache, [{ sequence: 0, tokens: [t] }])).logits.toFloat32());
      return out;
    };
    const ref = await run({});
    const errors: Record<string, number> = {};
    for (const [name, opts] of [...FORMATS, ['bf16', { dtype: 'bf16' }] as [string, KvCacheOptions]]) {
      const got = await run(opts);
      let maxErr = 0;
      let scale = 0;
      got.forEach((row, i) => row.forEach((x, j) => {
        maxErr = Math.max(maxErr, Math.abs(x - ref[i]![j]!));
        scale = Math.max(scale, Math.abs(ref[i]![j]!));
      }));
      console.log(`[report] ${name} cache, ${config.headDim}-dim heads: max |logit error| over 100 decode steps ${maxErr.toExponential(2)} (max |logit| ${scale.toFixed(2)})`);
      errors[name] = maxErr / scale;
    }
    for (const [name, e] of Object.entries(errors)) {
      expect(e, name).toBeLessThan(LIMIT[name]!);
      expect(e, name).toBeGreaterThan(0);
    }
    // The error follows each format's precision.
    expect(errors.bf16!).toBeLessThan(errors.int8!);
    expect(errors.int8!).toBeLessThan(errors.fp8!);
    expect(errors.fp8!).toBeLessThan(errors.int4!);
    model.dispose();
  });

  it.each(['f32', 'f16'] as const)('int4: rolling back below the quantized length keeps the values attention saw (%s ring); decoding goes on', async (residualDtype) => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const opts: KvCacheOptions = { capacity: 160, dtype: 'int4', group: 32, residual: 32, residualDtype };
    const a = model.createCache(opts);
    const b = model.createCache(opts);
    const toks = tokensOf(110, config.vocabSize, 9);
    for (const c of [a, b]) {
      await model.forward(c, [{ sequence: 0, tokens: toks.slice(0, 100) }]);
      await c.quantizeCompleted();
      expect(c.quantizedLength(0)).toBe(64);
    }
    // Roll a back into group 1 (keys 32..63): keys 32..49 return to the ring, dequantized.
    a.truncate(0, 50);
    expect([a.length(0), a.quantizedLength(0)]).toEqual([50, 32]);
    const tol = residualDtype === 'f32' ? 0 : 2 ** -11;
    for (let layer = 0; layer < config.nLayers; layer++) {
      // What attention over b (never rolled back) sees for keys 0..49.
      const full = await dequantizeKv(b.quantized!, { kvStart: [0], kvLens: [100], quantLens: [64], layer });
      const back = await dequantizeKv(a.quantized!, { kvStart: [0], kvLens: [50], quantLens: [32], layer });
      const row = config.nKvHeads * config.headDim;
      expect(mismatches(back.k.toFloat32(), full.k.toFloat32().subarray(0, 50 * row), 1e-7, tol), `keys, layer ${layer}`).toEqual([]);
      expect(mismatches(back.v.toFloat32(), full.v.toFloat32().subarray(0, 50 * row), 1e-7, tol), `values, layer ${layer}`).toEqual([]);
    }
    // Decoding goes on from the rolled-back cache.
    await model.forward(a, [{ sequence: 0, tokens: toks.slice(50, 100) }]);
    await model.forward(a, [{ sequence: 0, tokens: [toks[100]!] }]);
    expect([a.length(0), a.quantizedLength(0)]).toEqual([101, 64]);
    model.dispose();
  });

  it('int4: a step longer than the residual ring allows is refused with a message naming the step', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const cache = model.createCache({ capacity: 200, dtype: 'int4', group: 32, residual: 32, residualCapacity: 80 });
    await expect(model.forward(cache, [{ sequence: 0, tokens: tokensOf(81, config.vocabSize, 1) }])).rejects.toThrow(ArgumentError);
    await expect(model.forward(cache, [{ sequence: 0, tokens: tokensOf(81, config.vocabSize, 1) }])).rejects.toThrow(
      /step\[sequence 0\]\.tokens must be at most 80 tokens for this int4 cache/,
    );
    // In chunks it fits: quantizing completed groups makes room (80 keys: 32 leave the ring).
    await model.forward(cache, [{ sequence: 0, tokens: tokensOf(80, config.vocabSize, 1) }]);
    await expect(model.forward(cache, [{ sequence: 0, tokens: tokensOf(33, config.vocabSize, 2) }])).rejects.toThrow(/at most 32 tokens/);
    await model.forward(cache, [{ sequence: 0, tokens: tokensOf(32, config.vocabSize, 2) }]);
    expect([cache.length(0), cache.quantizedLength(0)]).toEqual([112, 32]);
    model.dispose();
  });

  it('reports bytes per token of each cache format', async () => {
    const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });
    const bytes = Object.fromEntries(
      (['f32', 'bf16', 'int8', 'fp8', 'int4'] as const).map((dtype) => {
        const c = model.createCache({ capacity: 64, dtype });
        const b = c.bytesPerToken;
        c.dispose();
        return [dtype, b];
      }),
    );
    const { nLayers: L, nKvHeads: H, headDim: D } = config;
    expect(bytes).toEqual({ f32: 8 * L * H * D, bf16: 4 * L * H * D, int8: 2 * L * H * (D + 4), fp8: 2 * L * H * (D + 4), int4: L * H * (D + D / 4 + 8) });
    model.dispose();
  });
});

// ---------------------------------------------------------------------------
describe('bad inputs to quantized model caches', async () => {
  const config = randomConfig({ maxSeqLen: 128 });
  const model = await Model.fromWeights({ config, tensors: randomWeights(config, 3) }, { backend: 'cpu' });
  const other = randomConfig({ maxSeqLen: 128, nLayers: 3 });
  const otherModel = await Model.fromWeights({ config: other, tensors: randomWeights(other, 4) }, { backend: 'cpu' });
  const i4 = model.createCache({ capacity: 64, dtype: 'int4', residual: 32, residualCapacity: 70 });
  const wrongLayers = otherModel.createCache({ capacity: 64, dtype: 'int8' });
  describeBadInputs('createCache, forward, commit', [
    ['unknown dtype', () => model.createCache({ dtype: 'int5' as never }), /dtype must be one of 'f32', 'f16', 'bf16', 'int8', 'int4', 'fp8'; received "int5"/],
    ['int4 group 16', () => model.createCache({ dtype: 'int4', group: 16 as never }), /group must be 32, 64 or 128; received 16/],
    ['int4 ring smaller than residual + group', () => model.createCache({ dtype: 'int4', residual: 64, residualCapacity: 90 }), /ring must be an integer >= residual \+ group \(96\); received 90/],
    ['a tree larger than the ring allows', () => i4.commit([{ sequence: 0, numNodes: 71, acceptedNodes: [] }]), /entries\[sequence 0\]\.numNodes must be at most 70/],
    ['truncate past the length', () => i4.truncate(0, 5), /length must be an integer in \[0, 0\]; received 5/],
    ['a cache of another model', () => model.forward(wrongLayers, [{ sequence: 0, tokens: [1] }]), /cache must be a KvCache of this model \(2 layers, 2 kv heads\); received "one of 3 layers, 2 kv heads"/],
  ]);
});
