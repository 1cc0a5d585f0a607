import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { randomValues } from '../../lib/bench/suites/util.js';
import { type ModelConfig, expectedShapes } from '../../lib/model/config.js';
import { loadHf } from '../../lib/model/formats/hf.js';
import { loadLlama2c } from '../../lib/model/formats/llama2c.js';
import { readSafetensors } from '../../lib/model/formats/safetensors.js';
import { encodeFloats } from '../../lib/tensor/dtype.js';
import { hfConfigJson, hfName, permuteToHalf, permuteToInterleaved, syntheticTensors, toHfTensors, writeHfDir, writeSafetensors } from '../helpers/model-writers.js';
import { readLlama2cReference, testModelsDir } from '../helpers/test-models.js';

const models = testModelsDir('Hugging Face loader (from stories260K.bin)');
const dir = mkdtempSync(join(tmpdir(), 'canopy-hf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

/** config.json for a canonical config, as transformers writes it. */
describe('the Hugging Face q/k permutation (convert_llama_weights_to_hf.py)', () => {
  it('takes rows [0, 2, 4, ..., 1, 3, 5, ...] of each head and is undone by its inverse', () => {
    // 2 heads of head_dim 8, one column holding the row index.
    const w = Float32Array.from({ length: 16 }, (_, i) => i);
    expect(Array.from(permuteToHalf(w, 2, 8, 1))).toEqual([0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15]);
    const big = randomValues(4 * 16 * 5, 9);
    expect(firstDiff(permuteToInterleaved(permuteToHalf(big, 4, 16, 5), 4, 16, 5), big)).toBe(-1);
    expect(firstDiff(permuteToHalf(big, 4, 16, 5), big)).not.toBe(-1);
  });

  it("makes 'half' RoPE on the permuted weights equal 'interleaved' RoPE on the originals (float64)", () => {
    const nHeads = 3;
    const headDim = 8;
    const cols = 5;
    const theta = 10000;
    const wq = Array.from(randomValues(nHeads * headDim * cols, 11));
    const wk = Array.from(randomValues(nHeads * headDim * cols, 12));
    const x = Array.from(randomValues(cols, 13));
    const matvec = (w: ArrayLike<number>) => Array.from({ length: nHeads * headDim }, (_, r) => x.reduce((s, xv, c) => s + w[r * cols + c]! * xv, 0));
    // Pair (a, b) of head h, frequency index i: rotate by pos * theta^(-2i / headDim).
    const rope = (v: number[], pos: number, pair: (i: number) => [number, number]) => {
      const out = [...v];
      for (let h = 0; h < nHeads; h++) {
        for (let i = 0; i < headDim / 2; i++) {
          const [a, b] = pair(i).map((j) => h * headDim + j) as [number, number];
          const ang = pos * theta ** ((-2 * i) / headDim);
          out[a] = v[a]! * Math.cos(ang) - v[b]! * Math.sin(ang);
          out[b] = v[a]! * Math.sin(ang) + v[b]! * Math.cos(ang);
        }
      }
      return out;
    };
    const interleaved = (i: number): [number, number] => [2 * i, 2 * i + 1];
    const half = (i: number): [number, number] => [i, i + headDim / 2];
    const pq = permuteToHalf(Float32Array.from(wq), nHeads, headDim, cols);
    const pk = permuteToHalf(Float32Array.from(wk), nHeads, headDim, cols);
    for (const [pQ, pK] of [
      [7, 3],
      [100, 1],
    ] as const) {
      const q = rope(matvec(Float32Array.from(wq)), pQ, interleaved);
      const qh = rope(matvec(pq), pQ, half);
      // The rotated vectors are the same up to the row permutation...
      const back = permuteToInterleaved(Float64ArrayToF32(qh), nHeads, headDim, 1);
      for (let i = 0; i < q.length; i++) expect(Math.abs(back[i]! - q[i]!)).toBeLessThan(1e-6);
      // ...so attention scores (per-head q . k) are equal.
      const k = rope(matvec(Float32Array.from(wk)), pK, interleaved);
      const kh = rope(matvec(pk), pK, half);
      for (let h = 0; h < nHeads; h++) {
        let s1 = 0;
        let s2 = 0;
        for (let d = 0; d < headDim; d++) {
          s1 += q[h * headDim + d]! * k[h * headDim + d]!;
          s2 += qh[h * headDim + d]! * kh[h * headDim + d]!;
        }
        expect(Math.abs(s1 - s2)).toBeLessThan(1e-12 * Math.max(1, Math.abs(s1)));
      }
      // Negative control: interleaved RoPE on the permuted weights does not give the same scores.
      const wrong = rope(matvec(pq), pQ, interleaved);
      expect(permuteToInterleaved(Float64ArrayToF32(wrong), nHeads, headDim, 1).some((v, i) => Math.abs(v - q[i]!) > 1e-3)).toBe(true);
    }
  });
});

function Float64ArrayToF32(v: number[]): Float32Array {
  return Float32Array.from(v);
}

describe.skipIf(!models)('a Hugging Face directory written from stories260K.bin', () => {
  const bin = models ? join(models, 'stories260K', 'stories260K.bin') : '';
  const variants = [
    ['F32', 1],
    ['F32', 3],
    ['F16', 1],
    ['BF16', 1],
    ['BF16', 4],
  ] as const;

  it.each(variants)('%s in %i file(s): config with ropeStyle half, tensors equal the permuted originals', (dtype, shards) => {
    const ref = readLlama2cReference(bin);
    const v0 = loadLlama2c(bin);
    const c = v0.config;
    v0.dispose();
    const shapes = expectedShapes(c);
    const { st, permuted } = toHfTensors(ref.tensors, shapes, c, dtype);
    const out = join(dir, `stories-${dtype}-${shards}`);
    writeHfDir(out, hfConfigJson(c), st, { shards });
    const w = loadHf(out);
    try {
      expect(w.format).toBe('hf');
      expect(w.config).toEqual({ ...c, ropeStyle: 'half' });
      expect(w.metadata.files).toHaveLength(shards);
      expect(w.metadata.config.model_type).toBe('llama');
      expect([...w.tensors.keys()].sort()).toEqual([...shapes.keys()].sort());
      for (const [name, values] of permuted) {
        const t = w.tensors.get(name)!;
        expect(t.shape, name).toEqual(shapes.get(name));
        if (dtype === 'F32') {
          expect(t.dtype).toBe('f32');
          expect(firstDiff(t.toArray(), values), name).toBe(-1);
        } else {
          expect(t.dtype).toBe(dtype === 'F16' ? 'f16' : 'bf16');
          expect(firstDiff(t.toArray(), encodeFloats(values, t.dtype as 'f16' | 'bf16')), name).toBe(-1);
        }
      }
      if (dtype === 'F32') {
        // The inverse permutation brings q and k back to the .bin's rows.
        const wq = w.tensors.get('layers.3.wq')!.toArray() as Float32Array;
        const wk = w.tensors.get('layers.3.wk')!.toArray() as Float32Array;
        expect(firstDiff(permuteToInterleaved(wq, c.nHeads, c.headDim, c.dim), ref.tensors.get('layers.3.wq')!)).toBe(-1);
        expect(firstDiff(permuteToInterleaved(wk, c.nKvHeads, c.headDim, c.dim), ref.tensors.get('layers.3.wk')!)).toBe(-1);
        expect(firstDiff(wq, ref.tensors.get('layers.3.wq')!)).not.toBe(-1); // the permutation did move rows
      }
    } finally {
      w.dispose();
    }
  });
});

// A small config for synthetic directories.
const tiny: ModelConfig = {
  architecture: 'llama',
  dim: 32,
  hiddenDim: 48,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 8,
  vocabSize: 20,
  maxSeqLen: 64,
  ropeTheta: 10000,
  ropeStyle: 'half',
  normEps: 1e-5,
  tiedEmbeddings: false,
  qkvBias: false,
  bosTokenId: 1,
  eosTokenIds: [2],
};

function writeTiny(name: string, c: ModelConfig, extra: Record<string, unknown> = {}, mutate?: (st: ReturnType<typeof toHfTensors>['st']) => void) {
  const { tensors, shapes } = syntheticTensors(c, 7);
  const { st } = toHfTensors(tensors, shapes, c, 'F32');
  mutate?.(st);
  const out = join(dir, name);
  writeHfDir(out, hfConfigJson(c, extra), st);
  return { out, tensors };
}

describe('config.json fields', () => {
  it('llama3 rope_scaling, an eos_token_id array, an explicit head_dim', () => {
    const c: ModelConfig = {
      ...tiny,
      headDim: 16, // head_dim * n_heads (64) != hidden_size (32), as Llama 3.2-style configs may have
      ropeTheta: 500000,
      ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      eosTokenIds: [2, 5, 9],
    };
    const { out } = writeTiny('llama3', c, {
      head_dim: 16,
      rope_scaling: { rope_type: 'llama3', factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 },
    });
    const w = loadHf(out);
    expect(w.config).toEqual(c);
    expect(w.tensors.get('layers.0.wq')!.shape).toEqual([64, 32]);
    expect(w.tensors.get('layers.0.wo')!.shape).toEqual([32, 64]);
    w.dispose();
  });

  it('qwen2: q/k/v biases loaded, qkvBias true', () => {
    const c: ModelConfig = { ...tiny, architecture: 'qwen2', qkvBias: true, tiedEmbeddings: true };
    const { out, tensors } = writeTiny('qwen2', c);
    const w = loadHf(out);
    expect(w.config).toEqual(c);
    expect(firstDiff(w.tensors.get('layers.1.bv')!.toArray(), tensors.get('layers.1.bv')!)).toBe(-1);
    expect(w.tensors.has('output')).toBe(false);
    w.dispose();
  });

  it('mistral: an active sliding window applies to every layer (layerWindows), without limiting the context', () => {
    const c: ModelConfig = { ...tiny, architecture: 'mistral' };
    const { out } = writeTiny('mistral', { ...c, maxSeqLen: 4096 }, { sliding_window: 48 });
    expect(loadHf(out).config).toEqual({ ...c, maxSeqLen: 4096, layerWindows: Array(c.nLayers).fill(48) });
    const { out: out2 } = writeTiny('mistral-nowindow', c, { sliding_window: null });
    expect(loadHf(out2).config.maxSeqLen).toBe(64);
  });

  it('defaults: num_key_value_heads, rope_theta, max_position_embeddings; tying decided by lm_head when tie_word_embeddings is absent', () => {
    const c: ModelConfig = { ...tiny, nKvHeads: 4, tiedEmbeddings: true };
    const { out } = writeTiny('defaults', c, {
      num_key_value_heads: undefined,
      rope_theta: undefined,
      max_position_embeddings: undefined,
      tie_word_embeddings: undefined,
      bos_token_id: undefined,
      eos_token_id: undefined,
    });
    const w = loadHf(out);
    const { bosTokenId: _b, eosTokenIds: _e, ...rest } = c;
    expect(w.config).toEqual({ ...rest, maxSeqLen: 2048 });
    const { out: untied } = writeTiny('defaults-untied', { ...tiny, tiedEmbeddings: false }, { tie_word_embeddings: undefined });
    expect(loadHf(untied).config.tiedEmbeddings).toBe(false);
  });

  it('tie_word_embeddings true ignores a stored lm_head (as transformers does); rotary inv_freq buffers are skipped', () => {
    const { out } = writeTiny('tied-with-head', { ...tiny, tiedEmbeddings: false }, { tie_word_embeddings: true }, (st) =>
      st.push({ name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F32', shape: [4], data: new Float32Array(4) }),
    );
    const w = loadHf(out);
    expect(w.config.tiedEmbeddings).toBe(true);
    expect(w.tensors.has('output')).toBe(false);
  });
});

describe('safetensors', () => {
  it('reads __metadata__, dtypes, shapes and offsets; loads unaligned data (read, not mapped) with the right values', () => {
    const a = randomValues(6, 1);
    const b = encodeFloats(randomValues(3, 2), 'bf16');
    const path = join(dir, 'unaligned.safetensors');
    writeSafetensors(path, [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: a },
      { name: 'b', dtype: 'BF16', shape: [3], data: b },
    ], { format: 'pt', note: 'x' }, { align: false });
    const f = readSafetensors(path);
    expect(f.metadata).toEqual({ format: 'pt', note: 'x' });
    expect(f.tensors.map((t) => [t.name, t.dtype, t.shape, t.begin, t.end])).toEqual([
      ['a', 'F32', [2, 3], 0, 24],
      ['b', 'BF16', [3], 24, 30],
    ]);
    expect(f.dataOffset % 4).not.toBe(0); // the point of this case
    // Through a model directory: a canonical tensor at an unaligned offset.
    const c: ModelConfig = { ...tiny, tiedEmbeddings: true };
    const { tensors, shapes } = syntheticTensors(c, 3);
    const { st } = toHfTensors(tensors, shapes, c, 'F32');
    const out = join(dir, 'unaligned-model');
    writeHfDir(out, hfConfigJson(c), []);
    // Pad the metadata until the data section starts at an odd offset.
    for (let k = 0; k < 8; k++) {
      writeSafetensors(join(out, 'model.safetensors'), st, { pad: 'x'.repeat(k) }, { align: false });
      if (readSafetensors(join(out, 'model.safetensors')).dataOffset % 2 === 1) break;
    }
    expect(readSafetensors(join(out, 'model.safetensors')).dataOffset % 2).toBe(1);
    const w = loadHf(out);
    expect(firstDiff(w.tensors.get('layers.1.w2')!.toArray(), tensors.get('layers.1.w2')!)).toBe(-1);
    expect(hfName('layers.1.w2')).toBe('model.layers.1.mlp.down_proj.weight');
  });
});
