/**
 * Every architecture from its files: a small random-weight GGUF with the real tensor layout and
 * metadata (Llama 3.1 / 3.2 with rope_freqs.weight, Qwen2.5 with biases, Qwen2.5 with YaRN, Qwen3
 * with q/k norms, Mistral with an explicit head size, SmolLM2, linear scaling) and the Hugging
 * Face folder of the same model: the loaders report the config the files describe, and canopy's
 * logits at every position equal the float64 reference of the model the files were written from.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Model } from '../../lib/model/model.js';
import { loadModel } from '../../lib/model/load.js';
import { loadWeights } from '../../lib/model/weights.js';
import { ARCH_FIXTURES, type ArchModel, writeArchFixture } from '../helpers/arch-fixtures.js';
import { mismatches } from '../helpers/attention-reference.js';
import { rowsOf } from '../helpers/forward-suite.js';
import { llamaReference } from '../helpers/llama-reference.js';

const dir = mkdtempSync(join(tmpdir(), 'canopy-arch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 40 tokens: positions well past the llama3 fixtures' original context of 64 / 8 per band and the
// YaRN ramp's dims; the reference is O(n^2) per layer, so not hundreds.
const tokens = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 300);
const TOL = { atol: 2e-4, rtol: 2e-4 };

async function logitsOf(path: string): Promise<{ rows: Float32Array[]; config: ArchModel['config'] }> {
  const weights = loadWeights(path);
  try {
    const model = await Model.fromWeights(weights, { backend: 'cpu', dtype: 'f32' });
    try {
      const cache = model.createCache({ capacity: tokens.length });
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens }], { logits: 'all' });
      return { rows: rowsOf(logits, weights.config.vocabSize), config: weights.config };
    } finally {
      model.dispose();
    }
  } finally {
    weights.dispose();
  }
}

function expectReference(rows: Float32Array[], model: ArchModel): void {
  const ref = llamaReference(model.config, model.tensors, tokens);
  rows.forEach((row, t) => expect(mismatches(row, ref[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]));
}

/** The config fields a loader must get right, with f32-stored numbers compared as f32. */
function comparable(c: ArchModel['config']): Record<string, unknown> {
  const { bosTokenId: _b, eosTokenIds: _e, ...rest } = c;
  return JSON.parse(
    JSON.stringify({ ...rest, qkNorm: rest.qkNorm ?? false, ropeFreqFactors: rest.ropeFreqFactors?.map(Math.fround) }, (_k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Math.fround(v) : v)),
  );
}

describe.each(ARCH_FIXTURES)('architecture $name: $model', (fixture) => {
  const files = writeArchFixture(fixture, dir);

  it('the GGUF file loads as the config it was written from', () => {
    const w = loadWeights(files.gguf);
    try {
      expect(comparable(w.config)).toEqual(comparable(files.ggufModel.config));
    } finally {
      w.dispose();
    }
  });

  it('GGUF: the logits at every position equal the float64 reference', async () => {
    const { rows } = await logitsOf(files.gguf);
    expectReference(rows, files.ggufModel);
  });

  it.runIf(fixture.hf)('the Hugging Face folder loads as its config, and its logits equal the reference and the GGUF file\'s', async () => {
    const w = loadWeights(files.hfDir!);
    try {
      expect(comparable(w.config)).toEqual(comparable(files.hfModel!.config));
    } finally {
      w.dispose();
    }
    const hf = await logitsOf(files.hfDir!);
    expectReference(hf.rows, files.hfModel!);
    // The same network in the other layout (q/k rows permuted; llama3 as rope_scaling instead of rope_freqs).
    const gguf = await logitsOf(files.gguf);
    hf.rows.forEach((row, t) => expect(mismatches(row, gguf.rows[t]!, TOL.atol, TOL.rtol), `position ${t}`).toEqual([]));
  });
}, 60_000);

describe('loadModel on an architecture fixture', () => {
  it('Qwen3 GGUF: loads with its embedded vocabulary and generates a forward step', async () => {
    const f = ARCH_FIXTURES.find((x) => x.name === 'qwen3')!;
    const files = writeArchFixture(f, dir, 5);
    const { model, tokenizer, format } = await loadModel(files.gguf, { backend: 'cpu' });
    try {
      expect(format).toBe('gguf');
      expect(model.config.architecture).toBe('qwen3');
      expect(model.config.qkNorm).toBe(true);
      expect(tokenizer.vocabSize).toBe(300);
      const cache = model.createCache({ capacity: 8 });
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [5, 6, 7] }]);
      const ref = llamaReference(files.ggufModel.config, files.ggufModel.tensors, [5, 6, 7]);
      expect(mismatches(logits.toFloat32(), ref[2]!, TOL.atol, TOL.rtol)).toEqual([]);
    } finally {
      model.dispose();
    }
  });
});
