/**
 * The real model ../shared/models/stories260K end to end: greedy generation from BOS
 * reproduces the README's float64 reference ids exactly (f32, CPU), and the three file
 * formats (.bin, .gguf, a Hugging Face directory written from the .bin) give the same logits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { generate } from '../../lib/generate.js';
import { expectedShapes } from '../../lib/model/config.js';
import { loadModel } from '../../lib/model/load.js';
import { hfConfigJson, toHfTensors, writeHfDir } from '../helpers/model-writers.js';
import { STORIES_REFERENCE_IDS, readLlama2cReference, testModelsDir } from '../helpers/test-models.js';
import { mismatches } from '../helpers/attention-reference.js';
import { loadWeights } from '../../lib/model/weights.js';
import { ATTENTION_ISAS, useCpuIsa } from '../helpers/cpu-isa.js';

const dir = testModelsDir('stories260K end to end');
const tmp = mkdtempSync(join(tmpdir(), 'canopy-stories-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
});

describe.runIf(dir)('stories260K', () => {
  const bin = join(dir ?? '', 'stories260K', 'stories260K.bin');
  const gguf = join(dir ?? '', 'stories260K', 'stories260K.gguf');

  it.each(ATTENTION_ISAS)('greedy from BOS reproduces the 48 reference tokens exactly (f32, CPU, isa %s)', async (isa) => {
    useCpuIsa(isa);
    const { model, tokenizer } = await loadModel(bin, { backend: 'cpu' });
    const r = await generate({ model, tokenizer, tokens: [1], maxTokens: 48, stopAtEos: false });
    expect([1, ...r.tokens]).toEqual(STORIES_REFERENCE_IDS);
    expect(r.text).toBe(tokenizer.decode(STORIES_REFERENCE_IDS));
    expect(r.text.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
    model.dispose();
  });

  it('the .bin, the .gguf and a Hugging Face directory give the same logits and the same greedy text', async () => {
    // The HF directory: the .bin's tensors with q/k rows permuted to the half-split layout.
    const ref = readLlama2cReference(bin);
    const w = loadWeights(bin);
    const c = w.config;
    w.dispose();
    const { st } = toHfTensors(ref.tensors, expectedShapes(c), c, 'F32');
    const hfDir = join(tmp, 'stories-hf');
    writeHfDir(hfDir, hfConfigJson(c), st);
    const prompt = [1, 403, 407, 261, 378];
    const logitsOf = async (path: string) => {
      const { model } = await loadModel(path, { backend: 'cpu', tokenizer: join(dir!, 'stories260K', 'tok512.bin') });
      const cache = model.createCache({ capacity: 64 });
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }], { logits: 'all' });
      const out = Float32Array.from(logits.toFloat32());
      const g = await generate({ model, tokens: [1], maxTokens: 24, stopAtEos: false });
      model.dispose();
      return { out, tokens: g.tokens };
    };
    const a = await logitsOf(bin);
    const b = await logitsOf(gguf);
    const h = await logitsOf(hfDir);
    expect(mismatches(b.out, a.out, 1e-5, 1e-5)).toEqual([]);
    expect(mismatches(h.out, a.out, 1e-4, 1e-4)).toEqual([]); // half-split RoPE: same math, other summation order
    expect(b.tokens).toEqual(a.tokens);
    expect(h.tokens).toEqual(a.tokens);
  });

  it('text prompts through the tokenizer, and the draft model loads and generates', async () => {
    const { model, tokenizer } = await loadModel(bin, { backend: 'cpu' });
    const r = await generate({ model, tokenizer, prompt: 'Once upon a time', maxTokens: 30 });
    expect(r.text.length).toBeGreaterThan(20);
    expect(r.stats.promptTokens).toBe(5); // BOS + 4 tokens
    model.dispose();
    const draft = await loadModel(join(dir!, 'llama2xs-281K', 'model.bin'), { backend: 'cpu', tokenizer: join(dir!, 'stories260K', 'tok512.bin') });
    const d = await generate({ model: draft.model, tokenizer: draft.tokenizer, prompt: 'Once upon a time', maxTokens: 20 });
    expect(d.tokens.length).toBeGreaterThan(0);
    draft.model.dispose();
  });

  it('bad model paths give clear errors', async () => {
    await expect(loadModel(join(tmp, 'missing.bin'))).rejects.toThrow(/missing\.bin/);
  });
});
