/**
 * Shared prefixes inside the forward pass (KvCache.attachPrefix, csrc/common/llama.h) against
 * forked copies of the prefix, for any backend: test/model/shared-prefix.test.ts runs it on the
 * CPU. Every forward-suite shape; prefix lengths 0, 3 and the whole prompt; batches of 1 and 3;
 * causal chunks, decode steps, tree steps with commit, and the native decode step (Model.step);
 * every KV dtype.
 *
 * Tolerance: a sequence with a shared prefix attends to it through prefix attention, whose
 * result is the LSE merge of the prefix part and its own part (merge_states.h): the same sums
 * in another order. So logits agree with forked copies within the attention tests' tolerance
 * for the cache dtype (test/kernels/prefix-attention.test.ts: f32 2e-5 absolute and relative;
 * a 16-bit cache rounds the merged attention output once, as forked copies round theirs, so a
 * value near a rounding boundary may land one 16-bit step away: f16 2e-4 / 1e-3, bf16 2e-3 /
 * 8e-3); quantized caches read the same codes either way and take the f32 tolerance. The float64
 * reference over the concatenated tokens checks both at the forward suite's tolerance.
 */
import { describe, expect, it } from 'vitest';

import type { ModelConfig } from '../../lib/model/config.js';
import type { KvCache, KvCacheDtype, KvCacheOptions } from '../../lib/model/kv-cache.js';
import { Model } from '../../lib/model/model.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { mismatches } from './attention-reference.js';
import { FORWARD_CONFIGS, rowsOf } from './forward-suite.js';
import { llamaReference } from './llama-reference.js';
import { randomConfig, randomWeights } from './random-model.js';

export interface PrefixSuiteOptions {
  backend: 'cpu' | 'cuda';
}

const prompt = [3, 17, 5, 30, 1, 22, 9];
/** The forward suite's tolerance against the float64 reference. */
const REF_TOL = { atol: 2e-4, rtol: 2e-4 };
/** Shared against forked, per cache dtype (see the header). */
export const SHARED_TOL: Record<KvCacheDtype, [number, number]> = {
  f32: [2e-5, 2e-5],
  f16: [2e-4, 1e-3],
  bf16: [2e-3, 8e-3],
  int8: [2e-5, 2e-5],
  fp8: [2e-5, 2e-5],
  int4: [2e-5, 2e-5],
};

/** Each sequence's own tokens after the prefix: a chunk, then one token per decode step. */
const OWN = [[4], [8, 2], [11, 6, 1]];

/**
 * Runs the same steps on `cache` over sequences 0..B-1 whose first `prefix` tokens are already
 * in place (shared or forked): an own chunk, a decode step, a tree step with commit, a decode
 * step. Returns every logits row, in order.
 */
async function runSteps(model: Model, cache: KvCache, B: number): Promise<Float32Array[]> {
  const vocab = model.config.vocabSize;
  const out: Float32Array[] = [];
  const take = (t: Tensor) => {
    out.push(...rowsOf(t, vocab));
    t.dispose();
  };
  const seqs = Array.from({ length: B }, (_, b) => b);
  take((await model.forward(cache, seqs.map((b) => ({ sequence: b, tokens: OWN[b]! })), { logits: 'all' })).logits);
  take((await model.forward(cache, seqs.map((b) => ({ sequence: b, tokens: [5 + b] })))).logits);
  const tree = { tokens: [12, 13, 14, 15], parents: [-1, -1, 0, 2] };
  take((await model.forward(cache, seqs.map((b) => ({ sequence: b, ...tree })), { logits: 'all' })).logits);
  await cache.commit(seqs.map((b) => ({ sequence: b, numNodes: 4, acceptedNodes: b === 1 ? [1] : [0, 2, 3] })));
  take((await model.forward(cache, seqs.map((b) => ({ sequence: b, tokens: [20 + b] })))).logits);
  return out;
}

/** The tokens sequence b holds after runSteps (prefix included), for the float64 reference. */
function tokensAfter(prefix: number[], b: number): number[] {
  return [...prefix, ...OWN[b]!, 5 + b, ...(b === 1 ? [13] : [12, 14, 15]), 20 + b];
}

/** A cache with the prefix in slot 0 and sequences 0..B-1 attached to it. */
async function sharedCache(model: Model, prefix: number[], B: number, options: KvCacheOptions = {}): Promise<KvCache> {
  const cache = model.createCache({ capacity: 24, sequences: B, prefixes: 1, prefixCapacity: Math.max(1, prefix.length), ...options });
  const slot = cache.prefixSlot(0);
  if (prefix.length) await model.forward(cache, [{ sequence: slot, tokens: prefix }]);
  if (options.dtype === 'int4') await cache.quantizeCompleted();
  for (let b = 0; b < B; b++) cache.attachPrefix(b, slot);
  return cache;
}

/** A cache whose sequences hold copies of the prefix (forked, or each prefilled: quantized caches cannot fork). */
async function forkedCache(model: Model, prefix: number[], B: number, options: KvCacheOptions = {}): Promise<KvCache> {
  const cache = model.createCache({ capacity: 24 + prefix.length, sequences: B, ...options });
  if (prefix.length === 0) return cache;
  if (cache.forkable) {
    await model.forward(cache, [{ sequence: 0, tokens: prefix }]);
    for (let b = 1; b < B; b++) cache.fork(0, b);
  } else {
    await model.forward(cache, Array.from({ length: B }, (_, b) => ({ sequence: b, tokens: prefix })));
  }
  if (options.dtype === 'int4') await cache.quantizeCompleted();
  return cache;
}

function expectClose(got: Float32Array[], want: Float32Array[], [atol, rtol]: [number, number], what: string): void {
  expect(got.length, what).toBe(want.length);
  got.forEach((row, i) => expect(mismatches(row, want[i]!, atol, rtol), `${what}, row ${i}`).toEqual([]));
}

/** Defines the shared-prefix suites for `backend` (call at the top level of a test file). */
export function definePrefixSuites({ backend }: PrefixSuiteOptions): void {
  const f32 = async (config: ModelConfig, tensors: Map<string, Tensor>) => Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });

  describe.each(FORWARD_CONFIGS)(`shared prefixes in the forward pass on ${backend}: %s`, (_name, config) => {
    const tensors = randomWeights(config, 7);

    it.each([
      [0, 3],
      [3, 3],
      [7, 3],
      [7, 1],
    ])('prefix of %i tokens, batch %i: logits equal forked copies and the float64 reference', async (L, B) => {
      const model = await f32(config, tensors);
      const prefix = prompt.slice(0, L);
      const shared = await sharedCache(model, prefix, B);
      const forked = await forkedCache(model, prefix, B);
      const a = await runSteps(model, shared, B);
      const b = await runSteps(model, forked, B);
      expectClose(a, b, SHARED_TOL.f32, `prefix ${L}`);
      for (let s = 0; s < B; s++) {
        expect(shared.length(s)).toBe(forked.length(s));
        const toks = tokensAfter(prefix, s);
        const ref = llamaReference(config, tensors, toks);
        expect(mismatches(a.at(-B + s)!, ref.at(-1)!, REF_TOL.atol, REF_TOL.rtol), `sequence ${s} vs float64`).toEqual([]);
      }
      shared.dispose();
      forked.dispose();
      model.dispose();
    });
  });

  describe(`shared prefixes on ${backend}: the native decode step, KV dtypes, the cache's rules`, () => {
    const config = randomConfig();
    const tensors = randomWeights(config, 11);

    it.each([
      [3, 1],
      [7, 2],
      [7, 4],
    ])('Model.step greedy (causal and tree) with a prefix of %i tokens, batch %i: the same tokens, nodes and logits as forked copies', async (L, B) => {
      const model = await f32(config, tensors);
      const prefix = prompt.slice(0, L);
      const caches = [await sharedCache(model, prefix, B), await forkedCache(model, prefix, B)];
      const results = [];
      for (const cache of caches) {
        const seqs = Array.from({ length: B }, (_, b) => b);
        const got: unknown[] = [];
        const logits: Float32Array[] = [];
        const s1 = await model.step(cache, seqs.map((b) => ({ sequence: b, tokens: OWN[b % 3]! })), { logits: true });
        got.push(s1.sequences);
        logits.push(...rowsOf(s1.logits!, config.vocabSize));
        let next = s1.sequences.map((x) => x.nextToken);
        for (let i = 0; i < 3; i++) {
          // Drafts: the true greedy token on one branch (accepted), noise on the other.
          const st = await model.step(
            cache,
            seqs.map((b) => ({ sequence: b, tokens: [next[b]!], draft: { tokens: [(next[b]! * 7 + i) % config.vocabSize, 1, 2, 3], parents: [-1, -1, 1, 2] } })),
            { logits: true },
          );
          got.push(st.sequences);
          logits.push(...rowsOf(st.logits!, config.vocabSize));
          next = st.sequences.map((x) => x.nextToken);
        }
        got.push(seqs.map((b) => cache.length(b)));
        results.push({ got, logits });
      }
      expect(results[0]!.got).toEqual(results[1]!.got);
      expectClose(results[0]!.logits, results[1]!.logits, SHARED_TOL.f32, 'step logits');
      caches.forEach((c) => c.dispose());
      model.dispose();
    });

    const dtypes: Array<[KvCacheDtype, KvCacheOptions]> = [
      ['f16', {}],
      ['bf16', {}],
      ['int8', {}],
      ['fp8', {}],
      ['int4', { group: 32, residual: 32, residualCapacity: 96 }],
    ];
    // fp8 attention runs on CUDA only on cc 8.9+: the GPU suites' own fp8 tests cover it there.
    it.each(dtypes.filter(([d]) => d !== 'fp8' || backend === 'cpu'))('a %s cache: shared equals copies of the prefix (quantized: each prefilled) within its tolerance', async (dtype, extra) => {
      const model = await f32(config, tensors);
      // 70 prefix tokens: int4 packs the first 32 keys (residual 32), the rest stays in the slot's ring.
      const prefix = Array.from({ length: 70 }, (_, i) => (i * 13 + 5) % config.vocabSize);
      const B = 3;
      const options = { dtype, ...extra };
      const shared = await sharedCache(model, prefix, B, options);
      const forked = await forkedCache(model, prefix, B, options);
      if (dtype === 'int4') expect([shared.quantizedLength(0), forked.quantizedLength(0)]).toEqual([32, 32]);
      const a = await runSteps(model, shared, B);
      const b = await runSteps(model, forked, B);
      expectClose(a, b, SHARED_TOL[dtype], dtype);
      // int4: the prefix slot brings its own residual ring (f16 rows), which outweighs the packed rows saved at this size.
      if (dtype !== 'int4') expect(shared.bytes).toBeLessThan(forked.bytes);
      shared.dispose();
      forked.dispose();
      model.dispose();
    });

    it('a mixed batch (two prefix slots out of order, two lengths of one prefix, a sequence without one) equals the float64 reference per sequence', async () => {
      const model = await f32(config, tensors);
      const other = [8, 8, 2, 19, 4];
      const cache = model.createCache({ capacity: 24, sequences: 5, prefixes: 2, prefixCapacity: 8 });
      const [s0, s1] = [cache.prefixSlot(0), cache.prefixSlot(1)];
      await model.forward(cache, [{ sequence: s0, tokens: prompt }, { sequence: s1, tokens: other }]);
      // Sequences: 0 reads `other` (slot 1, rows after slot 0's: the prefix rows come out of order, so
      // llama.h puts the later groups on a second level), 1 and 4 read prompt[0..7), 2 reads
      // prompt[0..3), 3 has no prefix.
      const prefixes: Array<[number, number] | undefined> = [[s1, 5], [s0, 7], [s0, 3], undefined, [s0, 7]];
      prefixes.forEach((x, b) => x && cache.attachPrefix(b, x[0], x[1]));
      const held = (b: number) => (prefixes[b] ? (prefixes[b]![0] === s0 ? prompt : other).slice(0, prefixes[b]![1]) : []);
      const own = [[4], [8, 2], [11, 6, 1], [3, 3], [7]];
      const tokens = own.map((t, b) => [...held(b), ...t]);
      let logits = rowsOf((await model.forward(cache, own.map((t, b) => ({ sequence: b, tokens: t })))).logits, config.vocabSize);
      tokens.forEach((t, b) => expect(mismatches(logits[b]!, llamaReference(config, tensors, t).at(-1)!, REF_TOL.atol, REF_TOL.rtol), `sequence ${b}`).toEqual([]));
      // A tree step over the same mixed batch.
      const tree = { tokens: [12, 13, 14], parents: [-1, 0, -1] };
      logits = rowsOf((await model.forward(cache, own.map((_, b) => ({ sequence: b, ...tree })), { logits: 'all' })).logits, config.vocabSize);
      tokens.forEach((t, b) => {
        const want = llamaReference(config, tensors, [...t, 12, 13]).at(-1)!;
        expect(mismatches(logits[3 * b + 1]!, want, REF_TOL.atol, REF_TOL.rtol), `sequence ${b}, node 1`).toEqual([]);
      });
      cache.dispose();
      model.dispose();
    });

    it('the KV cache holds the prefix once: bytes of one prefix slot plus the sequences own rows', async () => {
      const model = await f32(config, tensors);
      const n = 4;
      const shared = model.createCache({ capacity: 40, sequences: n, prefixes: 1, prefixCapacity: 200 });
      const forked = model.createCache({ capacity: 240, sequences: n });
      const perRow = 2 * config.nLayers * config.nKvHeads * config.headDim * 4;
      expect(shared.bytes).toBe((200 + n * 40) * perRow);
      expect(forked.bytes).toBe(n * 240 * perRow);
      shared.dispose();
      forked.dispose();
      model.dispose();
    });

    it('a source is frozen while sequences read it; truncate keeps the prefix or detaches; fork carries it', async () => {
      const model = await f32(config, tensors);
      const cache = model.createCache({ capacity: 16, sequences: 3, prefixes: 1, prefixCapacity: 8 });
      const slot = cache.prefixSlot(0);
      expect(slot).toBe(3);
      await model.forward(cache, [{ sequence: slot, tokens: prompt }]);
      cache.attachPrefix(0, slot);
      cache.attachPrefix(1, slot, 4);
      expect(cache.length(0)).toBe(7);
      expect(cache.length(1)).toBe(4);
      expect(cache.prefixOf(1)).toEqual({ source: slot, length: 4 });
      await expect(model.forward(cache, [{ sequence: slot, tokens: [1] }])).rejects.toThrow(/step\[sequence 3\] must be a sequence no other sequence reads as its shared prefix/);
      expect(() => cache.truncate(slot, 5)).toThrow(/length must be at least 7/);
      expect(() => cache.attachPrefix(2, 0)).toThrow(/source must be a sequence without a shared prefix of its own/);
      expect(() => cache.prefixSlot(1)).toThrow(/slot must be an integer in \[0, 0\]/);
      await model.forward(cache, [{ sequence: 0, tokens: [4, 5] }, { sequence: 1, tokens: [6] }]);
      expect(cache.free(0)).toBe(14);
      expect(() => cache.truncate(0, 3)).toThrow(/length must be 0 or at least the shared prefix's 7 rows/);
      cache.truncate(0, 8);
      expect(cache.length(0)).toBe(8);
      cache.fork(0, 2);
      expect(cache.prefixOf(2)).toEqual({ source: slot, length: 7 });
      expect(cache.length(2)).toBe(8);
      const ab = await model.forward(cache, [{ sequence: 0, tokens: [9] }, { sequence: 2, tokens: [9] }]);
      const rows = rowsOf(ab.logits, config.vocabSize);
      expect(Array.from(rows[1]!)).toEqual(Array.from(rows[0]!));
      const ref = llamaReference(config, tensors, [...prompt, 4, 9]);
      expect(mismatches(rows[0]!, ref.at(-1)!, REF_TOL.atol, REF_TOL.rtol)).toEqual([]);
      // Detach everything: the slot may step again.
      for (const s of [0, 1, 2]) cache.truncate(s, 0);
      expect(cache.prefixOf(0)).toBeUndefined();
      await model.forward(cache, [{ sequence: slot, tokens: [1] }]);
      expect(cache.length(slot)).toBe(8);
      cache.dispose();
      model.dispose();
    });
  });
}
