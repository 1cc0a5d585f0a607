/**
 * CUDA verify and KV-commit kernels: identical results to the CPU kernels
 * (greedy tokens, sampled tokens for identical uniforms, committed caches bit
 * for bit). Runs where a usable GPU is present; skipped with the reason
 * printed where none is (`npm run test:gpu` makes a missing GPU fail).
 */
import { describe, expect, it } from 'vitest';

import { commitKvBatch } from '../../lib/kernels/kv-commit.js';
import { verifyGreedyBatch, verifySampling } from '../../lib/kernels/verify.js';
import { encodeFloats } from '../../lib/tensor/dtype.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { gpuGate } from '../helpers/gpu.js';
import { flatten, greedyCase, referenceBatch, runNativeBatch, samplingCase } from '../helpers/verify-cases.js';
import { argmaxRef, rng } from '../helpers/verify-reference.js';

const gate = gpuGate('CUDA verify / kv_commit');

describe.runIf(gate.available)('CUDA verify and kv_commit equal the CPU kernels', () => {
  it.each(['f32', 'f16', 'bf16'] as const)('greedy (%s): random ragged batches, vocab 1 to 32000', async (dtype) => {
    const r = rng(dtype.length * 13);
    for (const vocab of [1, 7, 255, 256, 257, 1000, 32000]) {
      const cases = Array.from({ length: vocab > 1000 ? 16 : 64 }, () => greedyCase(r, Math.floor(r() * 12), vocab, 0.8, vocab < 50 ? 2 : 0));
      for (const c of cases) c.tree.tokens = c.tree.parents.map((p) => (r() < 0.8 ? argmaxRef(c.rows[p + 1]!) : Math.floor(r() * vocab)));
      const indptr = [0];
      for (const c of cases) indptr.push(indptr[indptr.length - 1]! + c.tree.tokens.length);
      const encoded = encodeFloats(cases.flatMap((c) => flatten(c.rows)), dtype);
      const host = Tensor.from(encoded, { dtype, shape: [indptr[indptr.length - 1]! + cases.length, vocab] });
      const dev = await host.to('cuda');
      const tokens = cases.flatMap((c) => c.tree.tokens);
      const parents = cases.flatMap((c) => c.tree.parents);
      const cpu = await verifyGreedyBatch(indptr, tokens, parents, host);
      const gpu = await verifyGreedyBatch(indptr, tokens, parents, dev);
      expect(gpu).toEqual(cpu);
      dev.dispose();
    }
  });

  it.each([
    { withDraft: true, vocab: 5 },
    { withDraft: true, vocab: 700 },
    { withDraft: true, vocab: 32000 },
    { withDraft: false, vocab: 5 },
    { withDraft: false, vocab: 1000 },
    { withDraft: false, vocab: 32000 },
  ])('sampling (draft $withDraft, vocab $vocab): identical tokens for identical uniforms', async ({ withDraft, vocab }) => {
    const r = rng(vocab + (withDraft ? 1 : 0));
    const cases = Array.from({ length: vocab > 1000 ? 24 : 200 }, () => samplingCase(r, Math.floor(r() * 9), vocab, withDraft));
    const rows = cases.reduce((a, c) => a + c.tree.tokens.length + 1, 0);
    const uniforms = Float64Array.from({ length: rows }, () => r());
    const cpu = await runNativeBatch(cases, vocab, withDraft, uniforms, 'cpu');
    const gpu = await runNativeBatch(cases, vocab, withDraft, uniforms, 'cuda:0');
    expect(gpu).toEqual(cpu);
    expect(cpu).toEqual(referenceBatch(cases, withDraft, uniforms));
  });

  it('sampling: one tree under 2000 uniform vectors', async () => {
    const r = rng(99);
    const base = samplingCase(r, 7, 300, true);
    const cases = Array.from({ length: 2000 }, () => base);
    const uniforms = Float64Array.from({ length: 2000 * 8 }, () => r());
    expect(await runNativeBatch(cases, 300, true, uniforms, 'cuda:0')).toEqual(await runNativeBatch(cases, 300, true, uniforms, 'cpu'));
  });

  it('sampling: invalid probabilities are reported as argument errors, and the device stays usable', async () => {
    const bad = await Tensor.from(Float32Array.of(0.5, 0.4, 0, 0, 0.25, 0.25, 0.25, 0.25), { shape: [2, 4] }).to('cuda');
    await expect(verifySampling([1], [-1], bad, null, [0, 0])).rejects.toThrow(/targetProbs row 0 \(sequence 0\) must sum to 1/);
    const good = await Tensor.from(new Float32Array(8).fill(0.25), { shape: [2, 4] }).to('cuda');
    expect(await verifySampling([1], [-1], good, null, [0.9, 0.1])).toEqual({ acceptedNodes: [0], nextToken: 3 });
    bad.dispose();
    good.dispose();
  });

  it.each(['f32', 'f16', 'bf16'] as const)('commitKv (%s): the CUDA cache equals the CPU cache bit for bit', async (dtype) => {
    const r = rng(dtype.length * 5);
    for (let trial = 0; trial < 10; trial++) {
      const layers = 1 + Math.floor(r() * 3);
      const shape = [layers, 0, 1 + Math.floor(r() * 4), [1, 64, 128][Math.floor(r() * 3)]!];
      const kvIndptr = [0];
      const seqs = [];
      for (let b = 0; b < 1 + Math.floor(r() * 4); b++) {
        const numNodes = Math.floor(r() * 12);
        const prefixLen = Math.floor(r() * 20);
        seqs.push({ prefixLen, numNodes, acceptedNodes: [...Array(numNodes).keys()].filter(() => r() < 0.5) });
        kvIndptr.push(kvIndptr[kvIndptr.length - 1]! + prefixLen + numNodes + Math.floor(r() * 3));
      }
      shape[1] = kvIndptr[kvIndptr.length - 1]!;
      const n = shape.reduce((a, b) => a * b, 1);
      const make = () => Tensor.from(encodeFloats(Array.from({ length: n }, () => r() * 2 - 1), dtype), { dtype, shape });
      const kCpu = make();
      const vCpu = make();
      const kGpu = await kCpu.to('cuda');
      const vGpu = await vCpu.to('cuda');
      const lensCpu = await commitKvBatch(kCpu, vCpu, kvIndptr, seqs);
      const lensGpu = await commitKvBatch(kGpu, vGpu, kvIndptr, seqs);
      expect(lensGpu).toEqual(lensCpu);
      expect(Buffer.from(kGpu.toArray().buffer).equals(Buffer.from(kCpu.toArray().buffer))).toBe(true);
      expect(Buffer.from(vGpu.toArray().buffer).equals(Buffer.from(vCpu.toArray().buffer))).toBe(true);
      kGpu.dispose();
      vGpu.dispose();
    }
  });
});
