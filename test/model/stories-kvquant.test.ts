/**
 * Quantized KV caches on the real model ../shared/models/stories260K (CPU): greedy generation
 * with an int8 cache reproduces the f32 reference text (48 tokens and beyond); how long int4 and
 * fp8 keep the f32 greedy text is measured and reported, and so is the change in the average
 * next-token log-likelihood of a 300-token sampled story under each cache format.
 */
import { afterAll, describe, expect, it } from 'vitest';

import type { KvCacheOptions } from '../../lib/model/kv-cache.js';
import { loadModel } from '../../lib/model/load.js';
import type { Model } from '../../lib/model/model.js';
import { STORIES_REFERENCE_IDS, testModelsDir } from '../helpers/test-models.js';

const dir = testModelsDir('stories260K with quantized KV caches');
const report: string[] = [];
afterAll(() => {
  if (report.length) console.log(['[report] stories260K, quantized KV caches (CPU):', ...report.map((r) => `  ${r}`)].join('\n'));
});

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

function logSoftmaxAt(row: Float32Array, i: number): number {
  let m = -Infinity;
  for (const x of row) m = Math.max(m, x);
  let z = 0;
  for (const x of row) z += Math.exp(x - m);
  return row[i]! - m - Math.log(z);
}

/** Greedy decoding from BOS, one forward per token, with a cache of the given format. */
async function greedy(model: Model, n: number, opts: KvCacheOptions, quantized?: number[]): Promise<number[]> {
  const cache = model.createCache({ capacity: 512, ...opts });
  const out = [1];
  let next = 1;
  for (let i = 0; i < n; i++) {
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [next] }]);
    next = argmax(logits.toFloat32());
    logits.dispose();
    out.push(next);
  }
  quantized?.push(cache.quantizedLength(0));
  cache.dispose();
  return out;
}

/** Average log p(tokens[t] | tokens[<t]) for t >= 1, teacher-forced one token at a time. */
async function avgLogLikelihood(model: Model, tokens: number[], opts: KvCacheOptions): Promise<number> {
  const cache = model.createCache({ capacity: 512, ...opts });
  let sum = 0;
  for (let t = 0; t + 1 < tokens.length; t++) {
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [tokens[t]!] }]);
    sum += logSoftmaxAt(logits.toFloat32(), tokens[t + 1]!);
    logits.dispose();
  }
  cache.dispose();
  return sum / (tokens.length - 1);
}

/** A story sampled from the f32 model at temperature 1 (seeded), BOS first. */
async function sampledStory(model: Model, n: number, seed: number): Promise<number[]> {
  const cache = model.createCache({ capacity: 512 });
  let s = seed >>> 0;
  const uniform = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const out = [1];
  for (let i = 0; i < n; i++) {
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [out[out.length - 1]!] }]);
    const row = logits.toFloat32();
    logits.dispose();
    let m = -Infinity;
    for (const x of row) m = Math.max(m, x);
    const p = Array.from(row, (x) => Math.exp(x - m));
    const z = p.reduce((a, b) => a + b, 0);
    let u = uniform() * z;
    let tok = 0;
    while (tok < p.length - 1 && u >= p[tok]!) u -= p[tok++]!;
    out.push(tok);
  }
  cache.dispose();
  return out;
}

const agree = (a: number[], b: number[]) => {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n - 1; // generated tokens (BOS excluded)
};

describe.runIf(dir)('stories260K with quantized KV caches', () => {
  const bin = `${dir}/stories260K/stories260K.bin`;
  const GEN = 400;

  it('int8 KV: greedy from BOS reproduces the reference 48 tokens and the f32 text far beyond', async () => {
    const { model } = await loadModel(bin, { backend: 'cpu' });
    const f32 = await greedy(model, GEN, {});
    expect(f32.slice(0, 49)).toEqual(STORIES_REFERENCE_IDS);
    const int8 = await greedy(model, GEN, { dtype: 'int8' });
    expect(int8.slice(0, 49)).toEqual(STORIES_REFERENCE_IDS);
    const n = agree(int8, f32);
    report.push(`greedy agreement with the f32 cache over ${GEN} tokens: int8 ${n}`);
    expect(n).toBeGreaterThanOrEqual(48);
    model.dispose();
  });

  it('int4 and fp8 KV: how long greedy keeps the f32 text (reported)', async () => {
    const { model } = await loadModel(bin, { backend: 'cpu' });
    const f32 = await greedy(model, GEN, {});
    const rows: string[] = [];
    for (const [name, opts] of [
      ['bf16', { dtype: 'bf16' }],
      ['fp8', { dtype: 'fp8' }],
      ['int4 G=32 R=128', { dtype: 'int4', group: 32, residual: 128 }],
      ['int4 G=32 R=32', { dtype: 'int4', group: 32, residual: 32 }],
      ['int4 G=128 R=128', { dtype: 'int4', group: 128, residual: 128 }],
    ] as Array<[string, KvCacheOptions]>) {
      const q: number[] = [];
      const got = await greedy(model, GEN, opts, q);
      rows.push(`${name} ${agree(got, f32)}`);
      // int4 really quantized the old keys (all but the newest R and an incomplete group).
      if (opts.dtype === 'int4') expect(q[0], name).toBe(Math.floor((GEN - opts.residual!) / opts.group!) * opts.group!);
      // Every format reproduces at least the opening of the reference story.
      expect(agree(got, f32), name).toBeGreaterThanOrEqual(10);
    }
    report.push(`greedy agreement with the f32 cache over ${GEN} tokens: ${rows.join(', ')}`);
    model.dispose();
  });

  it('the change in average next-token log-likelihood of a 300-token story (reported)', async () => {
    const { model } = await loadModel(bin, { backend: 'cpu' });
    const story = await sampledStory(model, 300, 7);
    const base = await avgLogLikelihood(model, story, {});
    const rows: string[] = [];
    const delta: Record<string, number> = {};
    for (const [name, opts] of [
      ['bf16', { dtype: 'bf16' }],
      ['int8', { dtype: 'int8' }],
      ['fp8', { dtype: 'fp8' }],
      ['int4 G=32 R=128', { dtype: 'int4', group: 32, residual: 128 }],
      ['int4 G=32 R=32', { dtype: 'int4', group: 32, residual: 32 }],
    ] as Array<[string, KvCacheOptions]>) {
      const ll = await avgLogLikelihood(model, story, opts);
      delta[name] = ll - base;
      rows.push(`${name} ${(ll - base) >= 0 ? '+' : ''}${(ll - base).toExponential(2)}`);
    }
    report.push(`average log-likelihood (nats/token) of a 300-token sampled story with the f32 cache: ${base.toFixed(4)}; change: ${rows.join(', ')}`);
    // int8 changes it by well under a hundredth of a nat per token.
    expect(Math.abs(delta.int8!)).toBeLessThan(0.01);
    expect(Math.abs(delta['int4 G=32 R=128']!)).toBeLessThan(0.1);
    model.dispose();
  });
});
