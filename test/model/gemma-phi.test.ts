/**
 * Gemma 2, Gemma 3 and Phi-3 from GGUF files and Hugging Face folders in their real layouts
 * (test/helpers/arch-models.ts): the loaded config carries each architecture's options, and the
 * native forward equals the float64 reference at every position, through the KV cache past the
 * sliding window, and for Phi-3 with LongRoPE's short and long factors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { ModelConfig } from '../../lib/model/config.js';
import { Model } from '../../lib/model/model.js';
import { loadWeights } from '../../lib/model/weights.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { mismatches } from '../helpers/attention-reference.js';
import { type ArchName, archConfig, archTensors, asTensors, writeArchGguf, writeArchHf } from '../helpers/arch-models.js';
import { rowsOf } from '../helpers/forward-suite.js';
import { llamaReference } from '../helpers/llama-reference.js';

const dir = mkdtempSync(join(tmpdir(), 'canopy-gemma-phi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TOL = { atol: 2e-4, rtol: 2e-4 };
// 20 tokens: past every sliding window of the configs (8).
const prompt = [5, 17, 260, 33, 1, 299, 42, 7, 7, 150, 88, 3, 201, 64, 9, 120, 11, 250, 30, 2];

/** The config fields a loader must reproduce (tokens ids aside). */
function archFields(c: ModelConfig) {
  return {
    architecture: c.architecture,
    headDim: c.headDim,
    ropeStyle: c.ropeStyle,
    tiedEmbeddings: c.tiedEmbeddings,
    embedScale: c.embedScale,
    activation: c.activation,
    postNorms: c.postNorms,
    attnScale: c.attnScale,
    attnSoftcap: c.attnSoftcap,
    finalSoftcap: c.finalSoftcap,
    layerWindows: c.layerWindows,
    ropeThetaLocal: c.ropeThetaLocal,
    ropeTheta: c.ropeTheta,
    // LongRoPE's attention factor is stored as f32 in GGUF and computed in float64 from a HF config.
    qkNorm: c.qkNorm,
    ropeScaling: c.ropeScaling?.type === 'longrope' ? { ...c.ropeScaling, attentionFactor: Math.fround(c.ropeScaling.attentionFactor) } : c.ropeScaling,
  };
}

async function logitsOf(config: ModelConfig, tensors: Map<string, Tensor>, tokens: number[], contextLength?: number): Promise<Float32Array[]> {
  const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu', dtype: 'f32', ...(contextLength ? { contextLength } : {}) });
  const cache = model.createCache({ capacity: 64 });
  const { logits } = await model.forward(cache, [{ sequence: 0, tokens }], { logits: 'all' });
  const rows = rowsOf(logits, config.vocabSize);
  model.dispose();
  return rows;
}

describe.each(['gemma2', 'gemma3', 'phi3'] as ArchName[])('%s', (arch) => {
  const config = archConfig(arch);
  const values = archTensors(config, 11);
  const canonical = asTensors(config, values);
  const ref = llamaReference(config, canonical, prompt);

  it('the float64 reference depends on every architecture option (so the tests below can fail)', () => {
    const drops: Array<[string, Partial<ModelConfig>]> = [
      ['layerWindows', { layerWindows: undefined }],
      ['attnSoftcap', { attnSoftcap: undefined }],
      ['finalSoftcap', { finalSoftcap: undefined }],
      ['embedScale', { embedScale: undefined }],
      ['activation', { activation: undefined }],
      ['attnScale', { attnScale: undefined }],
      ['ropeThetaLocal', { ropeThetaLocal: undefined }],
      ['ropeScaling', { ropeScaling: undefined }],
      ['qkNorm', { qkNorm: undefined }],
    ];
    for (const [key, change] of drops) {
      if (config[key as keyof ModelConfig] === undefined) continue;
      if (key === 'attnScale' && config.attnScale === 1 / Math.sqrt(config.headDim)) continue;
      const other = llamaReference({ ...config, ...change }, canonical, prompt);
      expect(mismatches(other.at(-1)!, ref.at(-1)!, 1e-3, 1e-3).length, `without ${key}`).toBeGreaterThan(0);
    }
  });

  it('from GGUF: the config carries the architecture, and the logits equal the float64 reference at every position', async () => {
    const path = join(dir, `${arch}.gguf`);
    writeArchGguf(path, config, values);
    const w = loadWeights(path);
    expect(archFields(w.config)).toEqual(archFields(config));
    const rows = await logitsOf(w.config, w.tensors, prompt);
    rows.forEach((row, t) => expect(mismatches(row, ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]));
    w.dispose();
  });

  it('from a Hugging Face folder: the same config and logits', async () => {
    const hf = join(dir, `${arch}-hf`);
    writeArchHf(hf, config, values);
    const w = loadWeights(hf);
    const got = archFields(w.config);
    // HF gives query_pre_attn_scalar (the scale is its inverse square root: equal up to rounding).
    expect(got.attnScale ?? 0).toBeCloseTo(config.attnScale ?? 0, 12);
    expect({ ...got, attnScale: 0, embedScale: 0 }).toEqual({ ...archFields(config), attnScale: 0, embedScale: 0 });
    const rows = await logitsOf(w.config, w.tensors, prompt);
    rows.forEach((row, t) => expect(mismatches(row, ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]));
    w.dispose();
  });

  it('decoding token by token through the KV cache, past the window, matches the reference', async () => {
    const model = await Model.fromWeights({ config, tensors: canonical }, { backend: 'cpu', dtype: 'f32' });
    const cache = model.createCache({ capacity: 64 });
    await model.forward(cache, [{ sequence: 0, tokens: prompt.slice(0, 5) }]);
    for (let t = 5; t < prompt.length; t++) {
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [prompt[t]!] }]);
      expect(mismatches(logits.toFloat32(), ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]);
    }
    model.dispose();
  });

  it('a quantized (int8) KV cache stays close to the reference past the window', async () => {
    const model = await Model.fromWeights({ config, tensors: canonical }, { backend: 'cpu', dtype: 'f32' });
    const cache = model.createCache({ capacity: 64, dtype: 'int8' });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
    // int8 keys and values (error <= scale / 2 per element): a relative RMS error of a few 1e-3
    // (Phi-3's LongRoPE factor multiplies the scores by about 2.4, and the key error with them).
    const got = logits.toFloat32();
    const want = ref.at(-1)!;
    let err = 0;
    let norm = 0;
    for (let i = 0; i < want.length; i++) {
      err += (got[i]! - want[i]!) ** 2;
      norm += want[i]! ** 2;
    }
    expect(Math.sqrt(err / norm)).toBeLessThan(2e-2);
    model.dispose();
  });
});

describe('Gemma 3 under transformers 5: rope_parameters per layer type', () => {
  it('full_attention gives the global RoPE (base 1M, linear 8), sliding_attention the local base', async () => {
    const config = archConfig('gemma3');
    const values = archTensors(config, 11);
    const hf = join(dir, 'gemma3-tf5');
    writeArchHf(hf, config, values, (j) => {
      const { rope_theta: _t, rope_scaling: _s, rope_local_base_freq: _l, ...rest } = j;
      return { ...rest, rope_parameters: { full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 10000 } } };
    });
    const w = loadWeights(hf);
    expect({ theta: w.config.ropeTheta, local: w.config.ropeThetaLocal, scaling: w.config.ropeScaling }).toEqual({ theta: 1e6, local: 10000, scaling: { type: 'linear', factor: 8 } });
    const ref = llamaReference(config, asTensors(config, values), prompt);
    const rows = await logitsOf(w.config, w.tensors, prompt);
    rows.forEach((row, t) => expect(mismatches(row, ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]));
    w.dispose();
  });
});

describe('Phi-3 LongRoPE: short factors within the original context, long factors beyond', () => {
  const config = archConfig('phi3');
  const canonical = asTensors(config, archTensors(config, 5));
  const tokens = prompt.slice(0, 12);

  it('contextLength within the original 32 positions uses the short factors; the default (maxSeqLen 4096) the long ones', async () => {
    const short = llamaReference(config, canonical, tokens, undefined, 32);
    const long = llamaReference(config, canonical, tokens);
    expect(mismatches(short.at(-1)!, long.at(-1)!, 1e-3, 1e-3).length).toBeGreaterThan(0); // the choice matters
    const gotShort = await logitsOf(config, canonical, tokens, 32);
    const gotLong = await logitsOf(config, canonical, tokens);
    gotShort.forEach((row, t) => expect(mismatches(row, short[t]!, TOL.atol, TOL.rtol), `short, position ${t}`).toEqual([]));
    gotLong.forEach((row, t) => expect(mismatches(row, long[t]!, TOL.atol, TOL.rtol), `long, position ${t}`).toEqual([]));
  });

  it('the attention factor is sqrt(1 + ln(s) / ln(original)) when a Hugging Face config omits it', () => {
    const hf = join(dir, 'phi3-factor');
    const values = archTensors(config, 1);
    writeArchHf(hf, config, values);
    const w = loadWeights(hf);
    const s = w.config.ropeScaling;
    expect(s?.type).toBe('longrope');
    if (s?.type === 'longrope') expect(s.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(4096 / 32) / Math.log(32)), 12);
    w.dispose();
  });
});
