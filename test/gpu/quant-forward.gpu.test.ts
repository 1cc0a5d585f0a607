/**
 * GGUF block-quantized weights through the CUDA forward pass (csrc/cuda/linear_quant.cu: Q8_0, Q4_0,
 * Q4_K, Q6_K; the embedding lookup of every type):
 *   - a random model mixing types per tensor (Q6_K embedding, Q8_0 output, Q4_K, Q6_K, Q4_0, F16)
 *     against the float64 reference forward on the dequantized weights: CUDA dots the exactly
 *     dequantized weights with f32 activations, so only f32 arithmetic is left (rms error under
 *     1e-4 of the rms logit); against the CPU backend on the same file within the CPU's own bound
 *     (5% rms: it rounds the activations to 8 bits before each matrix); decode steps equal to the
 *     prefill's rows within f32 noise;
 *   - 'auto' puts such a file on CUDA, and a file with a matrix in a type without a CUDA kernel
 *     (Q5_K) on the CPU, saying which tensor; backend 'cuda' refuses that file naming it;
 *   - stories260K inflated (rows multiples of 256; test/helpers/quant-models.ts) in each CUDA type:
 *     the CUDA logits of a 100-token prefill (the tiled kernel: rows > 64) and of decode steps equal
 *     the CPU's f32 forward on the same dequantized weights within 1e-4 (abs and rel), greedy from BOS
 *     gives the same 48 tokens, and next-token choices under teacher forcing agree with the CPU
 *     backend on the quantized file (reported; held to >= 90%).
 *
 * Runs where a usable GPU is present (skips, saying why, elsewhere; fails under
 * CANOPY_REQUIRE_GPU=1). CANOPY_GPU_SUITES_ON_CPU=1 runs it on the CPU backend, held to the
 * reference with the CPU's activation rounding applied: a check of this file's logic only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { generate } from '../../lib/generate.js';
import type { GgufWeights } from '../../lib/model/formats/gguf.js';
import { Model } from '../../lib/model/model.js';
import { loadWeights } from '../../lib/model/weights.js';
import { QUANT_TYPES } from '../../lib/tensor/quant-types.js';
import { mismatches } from '../helpers/attention-reference.js';
import { gpuGate } from '../helpers/gpu.js';
import { llamaReference } from '../helpers/llama-reference.js';
import { writeGgufModel } from '../helpers/model-writers.js';
import { MIXED_MODEL_CONFIG, argmaxRows, dequantized, inflate, isNorm, writeMixedModel } from '../helpers/quant-models.js';
import { quantizeActivationsRef } from '../helpers/quant-reference.js';
import { testModelsDir } from '../helpers/test-models.js';

const onCpu = process.env.CANOPY_GPU_SUITES_ON_CPU === '1';
if (onCpu) console.warn('[quant-forward.gpu] CANOPY_GPU_SUITES_ON_CPU=1: running the CUDA suite on the CPU backend (checks the suite, not CUDA)');
const gate = onCpu ? { available: true, reason: '' } : gpuGate('CUDA block-quantized forward');
const backend = onCpu ? 'cpu' : 'cuda';
const device = onCpu ? 'cpu' : 'cuda:0';

const tmp = mkdtempSync(join(tmpdir(), 'canopy-quant-forward-gpu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** sqrt(sum (a - b)^2 / sum b^2) over rows of logits (b: float64 rows or a flat array). */
function relRms(got: Float32Array, want: ArrayLike<number>[] | Float32Array, vocab: number): number {
  let se = 0;
  let sr = 0;
  for (let i = 0; i < got.length; i++) {
    const w = want instanceof Float32Array ? want[i]! : want[Math.floor(i / vocab)]![i % vocab]!;
    se += (got[i]! - w) ** 2;
    sr += w ** 2;
  }
  return Math.sqrt(se / sr);
}

const config = MIXED_MODEL_CONFIG;
const Q8_0 = QUANT_TYPES.Q8_0.id;
const Q4_0 = QUANT_TYPES.Q4_0.id;
const Q4_K = QUANT_TYPES.Q4_K.id;
const Q5_K = QUANT_TYPES.Q5_K.id;
const Q6_K = QUANT_TYPES.Q6_K.id;
// Every CUDA block type, a float matrix, and per-matrix mixing.
const cudaTypeOf = (n: string) =>
  isNorm(n) ? 0 : n === 'embed' ? Q6_K : n === 'output' ? Q8_0 : /w2$/.test(n) ? Q4_K : /wv$/.test(n) ? Q4_0 : /wo$/.test(n) ? 1 : /w1$/.test(n) ? Q6_K : Q4_K;

/** The mixed-type random model (test/helpers/quant-models.ts) written with typeOf. */
function writeRandom(name: string, typeOf: (n: string) => number): string {
  const path = join(tmp, name);
  writeMixedModel(path, typeOf);
  return path;
}

describe.runIf(gate.available)(`a random model mixing block types per tensor on ${backend}`, () => {
  it('matches the float64 reference on the dequantized weights, the CPU backend within its activation rounding, and decode steps the prefill', async () => {
    const w = loadWeights(writeRandom('mixed.gguf', cudaTypeOf)) as GgufWeights;
    expect(w.quant.get('embed')).toBe('Q6_K');
    expect(w.quant.get('layers.0.wv')).toBe('Q4_0');
    const model = await Model.fromWeights(w, { backend });
    expect(model.device).toBe(device);
    expect(model.weightTypes.get('layers.1.w2')).toBe('Q4_K');
    const prompt = [5, 17, 299, 0, 42, 42, 7];
    const cache = model.createCache({ capacity: 32 });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
    const got = logits.toFloat32();
    logits.dispose();
    // CUDA: the exact dequantized weights times the f32 activations. The CPU (suite check only):
    // the same with its 8-bit activation rounding applied to each quantized matrix's input.
    const ref = llamaReference(config, dequantized(w), prompt, onCpu ? (name, x) => {
      const q = w.quant.get(name);
      if (q === undefined) return x;
      const { q: codes, d } = quantizeActivationsRef(Float32Array.from(x), 1, x.length, QUANT_TYPES[q].block);
      return Float64Array.from(codes, (c, i) => c * d[Math.floor(i / QUANT_TYPES[q].block)]!);
    } : undefined);
    const rel = relRms(got, ref, config.vocabSize);
    console.log(`random mixed-type model on ${backend}: rms logit error ${rel.toExponential(2)} of the rms logit against the float64 forward`);
    expect(rel).toBeLessThan(1e-4);

    // The CPU backend on the same file rounds activations to 8 bits: its own bound against float64 (5% rms).
    const cpu = await Model.fromWeights(w, { backend: 'cpu' });
    const cpuCache = cpu.createCache({ capacity: 32 });
    const cpuOut = await cpu.forward(cpuCache, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
    const relCpu = relRms(got, cpuOut.logits.toFloat32(), config.vocabSize);
    console.log(`random mixed-type model: ${backend} vs the CPU backend: rms difference ${(relCpu * 100).toFixed(2)}% of the rms logit`);
    expect(relCpu).toBeLessThan(0.05);
    cpuOut.logits.dispose();
    cpu.dispose();

    // Token by token (one row per matrix product) gives the prefill's rows within f32 noise.
    const cache2 = model.createCache({ capacity: 32 });
    for (let t = 0; t < prompt.length; t++) {
      const step = await model.forward(cache2, [{ sequence: 0, tokens: [prompt[t]!] }]);
      expect(mismatches(step.logits.toFloat32(), got.subarray(t * config.vocabSize, (t + 1) * config.vocabSize), 1e-5, 1e-5)).toEqual([]);
      step.logits.dispose();
    }
    model.dispose();
    w.dispose();
  });
});

describe.runIf(gate.available && !onCpu)('backend choice for block-quantized files', () => {
  it("'auto' picks CUDA when every quantized matrix has a CUDA kernel, and the CPU (naming the tensor) when one has not", async () => {
    const okWeights = loadWeights(writeRandom('auto-ok.gguf', cudaTypeOf));
    const ok = await Model.fromWeights(okWeights);
    expect(ok.device).toBe('cuda:0');
    expect(ok.fallbackReason).toBeUndefined();
    ok.dispose();
    okWeights.dispose();

    const q5 = loadWeights(writeRandom('auto-q5k.gguf', (n) => (n === 'layers.1.w1' ? Q5_K : cudaTypeOf(n))));
    const fallback = await Model.fromWeights(q5);
    expect(fallback.device).toBe('cpu');
    expect(fallback.fallbackReason).toMatch(/layers\.1\.w1 is Q5_K/);
    fallback.dispose();
    await expect(Model.fromWeights(q5, { backend: 'cuda' })).rejects.toThrow(/layers\.1\.w1 in Q5_K/);
    q5.dispose();
  });
});

const dir = testModelsDir('stories260K quantized on CUDA');

describe.runIf(gate.available && dir)(`stories260K (inflated) with block-quantized weights on ${backend}`, () => {
  const bin = join(dir ?? '', 'stories260K', 'stories260K.bin');
  const report: string[] = [];
  afterAll(() => {
    if (report.length) console.log([`stories260K inflated on ${backend}:`, ...report].join('\n  '));
  });

  it.each(['Q8_0', 'Q4_0', 'Q4_K', 'Q6_K'] as const)('%s: the f32 forward of the dequantized weights within 1e-4, the same greedy tokens, the CPU backend agreeing', async (type) => {
    const src = loadWeights(bin);
    const inflated = inflate(src.config, src.tensors);
    src.dispose();
    const path = join(tmp, `stories-wide-${type}.gguf`);
    writeGgufModel(path, inflated.config, inflated.tensors, inflated.shapes, (n) => (isNorm(n) ? 0 : QUANT_TYPES[type].id));
    const w = loadWeights(path) as GgufWeights;
    const model = await Model.fromWeights(w, { backend });
    expect(model.device).toBe(device);
    // The same function on the CPU in f32 over the float64-dequantized weights (exactly the values
    // the CUDA kernels dequantize): only the summation order differs from CUDA.
    const ref = await Model.fromWeights({ config: w.config, tensors: dequantized(w) }, { backend: 'cpu', dtype: 'f32' });
    const cpuQ = await Model.fromWeights(w, { backend: 'cpu' });
    const seq = [1, ...(await generate({ model: ref, tokens: [1], maxTokens: 100, stopAtEos: false })).tokens].slice(0, 100);
    const logitsOf = async (m: Model) => {
      const cache = m.createCache({ capacity: 128 });
      const { logits } = await m.forward(cache, [{ sequence: 0, tokens: seq }], { logits: 'all' });
      const out = logits.toFloat32();
      logits.dispose();
      return out;
    };
    const [got, want, cpuQuant] = [await logitsOf(model), await logitsOf(ref), await logitsOf(cpuQ)];
    const vocab = w.config.vocabSize;
    if (!onCpu) expect(mismatches(got, want, 1e-4, 1e-4)).toEqual([]); // 100 rows: the tiled prefill kernel
    // Decode steps (one row per matrix product: the GEMV kernel) on the first 8 positions.
    const cache = model.createCache({ capacity: 128 });
    for (let t = 0; t < 8; t++) {
      const step = await model.forward(cache, [{ sequence: 0, tokens: [seq[t]!] }]);
      const row = step.logits.toFloat32();
      step.logits.dispose();
      if (!onCpu) expect(mismatches(row, want.subarray(t * vocab, (t + 1) * vocab), 1e-4, 1e-4)).toEqual([]);
    }
    const a = await generate({ model, tokens: [1], maxTokens: 48, stopAtEos: false });
    const b = await generate({ model: onCpu ? cpuQ : ref, tokens: [1], maxTokens: 48, stopAtEos: false });
    expect(a.tokens).toEqual(b.tokens);
    // Against the CPU backend on the quantized file (it rounds activations to 8 bits): next-token
    // agreement under teacher forcing, and the rms logit difference.
    const next = argmaxRows(got, vocab);
    const cpuNext = argmaxRows(cpuQuant, vocab);
    const agree = next.filter((v, i) => v === cpuNext[i]).length / next.length;
    const rel = relRms(got, cpuQuant, vocab);
    report.push(`${type}: vs CPU backend: next-token agreement ${(agree * 100).toFixed(1)}% of ${next.length}, rms logit difference ${(rel * 100).toFixed(2)}%`);
    // Measured on the CPU (its f32 forward of the dequantized weights, which CUDA matches, against its
    // quantized-activation kernels): 97-100% agreement, rms difference 0.7-1.4% for these four types.
    expect(agree).toBeGreaterThanOrEqual(0.9);
    expect(rel).toBeLessThan(0.05);
    model.dispose();
    ref.dispose();
    cpuQ.dispose();
    w.dispose();
  }, 120_000);
});
