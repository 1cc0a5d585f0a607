/**
 * `canopy quantize` / quantize(): llama.cpp's per-tensor preset rules (stories260K's 64 / 172
 * dims hit every fallback; a 32-layer 7B-like shape exercises the layer rules), end to end on
 * stories260K's GGUF and on a Hugging Face folder written from it, greedy agreement with the f32
 * model, requantize-at-load equal to quantize-then-load, llama.cpp loading the output (where the
 * node-llama-cpp peer is installed), and bad arguments.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ArgumentError } from '../../lib/errors.js';
import { loadModel } from '../../lib/model/load.js';
import type { Model } from '../../lib/model/model.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import { loadWeights } from '../../lib/model/weights.js';
import { QUANT_PRESET_NAMES, type QuantPreset, type TensorStorage, presetTensorTypes, quantize } from '../../lib/quantize/index.js';
import { progressLine } from '../../lib/cli/quantize.js';
import { LlamaPeer, describeAgreement, llamaPeerAvailable, compareGreedyRuns, canopyGreedy } from '../helpers/llama-peer.js';
import { hfConfigJson, toHfTensors, writeHfDir } from '../helpers/model-writers.js';
import { testModelsDir } from '../helpers/test-models.js';

const tmp = mkdtempSync(join(tmpdir(), 'canopy-quantize-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// ---- the rules on shapes alone ---------------------------------------------------------------

/** Tensors of a llama model: [name, ne] (ne[0] = columns). */
function llamaTensors(o: { layers: number; dim: number; hidden: number; q: number; kv: number; vocab: number; output: boolean }) {
  const t: { name: string; ne: number[] }[] = [
    { name: 'token_embd.weight', ne: [o.dim, o.vocab] },
    { name: 'output_norm.weight', ne: [o.dim] },
  ];
  if (o.output) t.push({ name: 'output.weight', ne: [o.dim, o.vocab] });
  for (let i = o.layers - 1; i >= 0; i--) {
    // (written in reverse: the rules visit by layer whatever the input order)
    t.push(
      { name: `blk.${i}.attn_norm.weight`, ne: [o.dim] },
      { name: `blk.${i}.attn_q.weight`, ne: [o.dim, o.q] },
      { name: `blk.${i}.attn_k.weight`, ne: [o.dim, o.kv] },
      { name: `blk.${i}.attn_v.weight`, ne: [o.dim, o.kv] },
      { name: `blk.${i}.attn_output.weight`, ne: [o.q, o.dim] },
      { name: `blk.${i}.ffn_norm.weight`, ne: [o.dim] },
      { name: `blk.${i}.ffn_gate.weight`, ne: [o.dim, o.hidden] },
      { name: `blk.${i}.ffn_up.weight`, ne: [o.dim, o.hidden] },
      { name: `blk.${i}.ffn_down.weight`, ne: [o.hidden, o.dim] },
    );
  }
  return t;
}

/** Expected types by role: every layer alike except attn_v / ffn_down, given per layer. */
interface Expect {
  embd: TensorStorage;
  output?: TensorStorage;
  qkgu: TensorStorage;
  wo: TensorStorage;
  v: TensorStorage[];
  down: TensorStorage[];
}

function check(types: Map<string, TensorStorage>, e: Expect, layers: number): void {
  const want = new Map<string, TensorStorage>([
    ['token_embd.weight', e.embd],
    ['output_norm.weight', 'F32'],
  ]);
  if (e.output) want.set('output.weight', e.output);
  for (let i = 0; i < layers; i++) {
    for (const n of ['attn_q', 'attn_k', 'ffn_gate', 'ffn_up']) want.set(`blk.${i}.${n}.weight`, e.qkgu);
    want.set(`blk.${i}.attn_norm.weight`, 'F32');
    want.set(`blk.${i}.ffn_norm.weight`, 'F32');
    want.set(`blk.${i}.attn_output.weight`, e.wo);
    want.set(`blk.${i}.attn_v.weight`, e.v[i]!);
    want.set(`blk.${i}.ffn_down.weight`, e.down[i]!);
  }
  expect(Object.fromEntries([...types].sort())).toEqual(Object.fromEntries([...want].sort()));
}

const five = (t: TensorStorage): TensorStorage[] => [t, t, t, t, t];

// stories260K: dim 64, hidden 172 (ffn_down rows of 172: no block type fits, F16), 8 q / 4 kv
// heads (n_head / n_head_kv = 2), 5 layers, a separate output.weight. attn_v / ffn_down "more
// bits" layers for n = 5: i < 0, i >= 4, (i - 0) % 3 == 2 -> layers 2 and 4.
const STORIES: Record<QuantPreset, Expect> = {
  Q4_0: { embd: 'Q4_0', output: 'Q8_0', qkgu: 'Q4_0', wo: 'Q4_0', v: five('Q4_0'), down: five('F16') },
  Q4_1: { embd: 'Q4_1', output: 'Q8_0', qkgu: 'Q4_1', wo: 'Q4_1', v: five('Q4_1'), down: five('F16') },
  Q5_0: { embd: 'Q5_0', output: 'Q8_0', qkgu: 'Q5_0', wo: 'Q5_0', v: five('Q5_0'), down: five('F16') },
  Q5_1: { embd: 'Q5_1', output: 'Q8_0', qkgu: 'Q5_1', wo: 'Q5_1', v: five('Q5_1'), down: five('F16') },
  Q8_0: { embd: 'Q8_0', output: 'Q8_0', qkgu: 'Q8_0', wo: 'Q8_0', v: five('Q8_0'), down: five('F16') },
  // Q2_K -> IQ4_NL; attn_v Q3_K (gqa < 4) -> IQ4_NL; attn_output / ffn_down Q3_K -> IQ4_NL (-> F16 at 172)
  Q2_K: { embd: 'IQ4_NL', output: 'Q8_0', qkgu: 'IQ4_NL', wo: 'IQ4_NL', v: five('IQ4_NL'), down: five('F16') },
  // Q3_K -> IQ4_NL; attn_v Q5_K for the first two (-> Q5_1), then Q4_K (-> Q5_0); attn_output Q4_K -> Q5_0
  Q3_K_M: { embd: 'IQ4_NL', output: 'Q8_0', qkgu: 'IQ4_NL', wo: 'Q5_0', v: ['Q5_1', 'Q5_1', 'Q5_0', 'Q5_0', 'Q5_0'], down: five('F16') },
  // Q4_K -> Q5_0; attn_v Q5_K for i < 4 (-> Q5_1)
  Q4_K_S: { embd: 'Q5_0', output: 'Q8_0', qkgu: 'Q5_0', wo: 'Q5_0', v: ['Q5_1', 'Q5_1', 'Q5_1', 'Q5_1', 'Q5_0'], down: five('F16') },
  // attn_v Q6_K (-> Q8_0) on layers 2 and 4
  Q4_K_M: { embd: 'Q5_0', output: 'Q8_0', qkgu: 'Q5_0', wo: 'Q5_0', v: ['Q5_0', 'Q5_0', 'Q8_0', 'Q5_0', 'Q8_0'], down: five('F16') },
  // Q5_K -> Q5_1
  Q5_K_S: { embd: 'Q5_1', output: 'Q8_0', qkgu: 'Q5_1', wo: 'Q5_1', v: five('Q5_1'), down: five('F16') },
  Q5_K_M: { embd: 'Q5_1', output: 'Q8_0', qkgu: 'Q5_1', wo: 'Q5_1', v: ['Q5_1', 'Q5_1', 'Q8_0', 'Q5_1', 'Q8_0'], down: five('F16') },
  // Q6_K -> Q8_0
  Q6_K: { embd: 'Q8_0', output: 'Q8_0', qkgu: 'Q8_0', wo: 'Q8_0', v: five('Q8_0'), down: five('F16') },
  IQ4_NL: { embd: 'IQ4_NL', output: 'Q8_0', qkgu: 'IQ4_NL', wo: 'IQ4_NL', v: five('IQ4_NL'), down: five('F16') },
  // IQ4_XS -> IQ4_NL
  IQ4_XS: { embd: 'IQ4_NL', output: 'Q8_0', qkgu: 'IQ4_NL', wo: 'IQ4_NL', v: five('IQ4_NL'), down: five('F16') },
};

describe('preset rules (llama_tensor_get_type)', () => {
  const stories = llamaTensors({ layers: 5, dim: 64, hidden: 172, q: 64, kv: 32, vocab: 512, output: true });
  for (const preset of QUANT_PRESET_NAMES) {
    it(`${preset} on stories260K's shapes: every fallback`, () => {
      check(presetTensorTypes(preset, stories, { nHeads: 8, nKvHeads: 4, nLayers: 5 }), STORIES[preset], 5);
    });
  }

  // A 7B-like shape: 32 layers, dim 4096, hidden 11008 (43 * 256), 32 q / 8 kv heads (gqa 4).
  // "more bits" layers for n = 32: i < 4, i >= 28, (i - 4) % 3 == 2.
  const MORE = new Set([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
  const big = (output: boolean) => llamaTensors({ layers: 32, dim: 4096, hidden: 11008, q: 4096, kv: 1024, vocab: 32000, output });
  const per = (f: (i: number) => TensorStorage) => Array.from({ length: 32 }, (_, i) => f(i));
  const model = { nHeads: 32, nKvHeads: 8, nLayers: 32 };
  const cases: [QuantPreset, Expect][] = [
    ['Q4_K_M', { embd: 'Q4_K', output: 'Q6_K', qkgu: 'Q4_K', wo: 'Q4_K', v: per((i) => (MORE.has(i) ? 'Q6_K' : 'Q4_K')), down: per((i) => (MORE.has(i) ? 'Q6_K' : 'Q4_K')) }],
    ['Q5_K_M', { embd: 'Q5_K', output: 'Q6_K', qkgu: 'Q5_K', wo: 'Q5_K', v: per((i) => (MORE.has(i) ? 'Q6_K' : 'Q5_K')), down: per((i) => (MORE.has(i) ? 'Q6_K' : 'Q5_K')) }],
    ['Q4_K_S', { embd: 'Q4_K', output: 'Q6_K', qkgu: 'Q4_K', wo: 'Q4_K', v: per((i) => (i < 4 ? 'Q5_K' : 'Q4_K')), down: per((i) => (i < 4 ? 'Q5_K' : 'Q4_K')) }],
    ['Q5_K_S', { embd: 'Q5_K', output: 'Q6_K', qkgu: 'Q5_K', wo: 'Q5_K', v: per(() => 'Q5_K'), down: per(() => 'Q5_K') }],
    ['Q2_K', { embd: 'Q2_K', output: 'Q6_K', qkgu: 'Q2_K', wo: 'Q3_K', v: per(() => 'Q4_K'), down: per(() => 'Q3_K') }],
    ['Q3_K_M', { embd: 'Q3_K', output: 'Q6_K', qkgu: 'Q3_K', wo: 'Q4_K', v: per((i) => (i < 2 ? 'Q5_K' : 'Q4_K')), down: per((i) => (i < 2 ? 'Q5_K' : 'Q4_K')) }],
    ['IQ4_XS', { embd: 'IQ4_XS', output: 'Q6_K', qkgu: 'IQ4_XS', wo: 'IQ4_XS', v: per(() => 'Q5_K'), down: per((i) => (i < 4 ? 'Q5_K' : 'IQ4_XS')) }],
    ['Q6_K', { embd: 'Q6_K', output: 'Q6_K', qkgu: 'Q6_K', wo: 'Q6_K', v: per(() => 'Q6_K'), down: per(() => 'Q6_K') }],
    ['Q8_0', { embd: 'Q8_0', output: 'Q8_0', qkgu: 'Q8_0', wo: 'Q8_0', v: per(() => 'Q8_0'), down: per(() => 'Q8_0') }],
    ['Q4_0', { embd: 'Q4_0', output: 'Q6_K', qkgu: 'Q4_0', wo: 'Q4_0', v: per(() => 'Q4_0'), down: per(() => 'Q4_0') }],
  ];
  for (const [preset, e] of cases) {
    it(`${preset} on a 32-layer 7B-like shape`, () => check(presetTensorTypes(preset, big(true), model), e, 32));
  }
  it('a tied embedding takes the output rule (Q6_K)', () => {
    const types = presetTensorTypes('Q4_K_M', big(false), model);
    expect(types.get('token_embd.weight')).toBe('Q6_K');
    expect(types.has('output.weight')).toBe(false);
  });
});

// ---- end to end on stories260K ------------------------------------------------------------------

const dir = testModelsDir('canopy quantize');
const gguf = join(dir ?? '', 'stories260K', 'stories260K.gguf');

/** The f32 model's greedy path of n tokens from BOS (one token per step). */
async function greedyPath(model: Model, n: number): Promise<number[]> {
  const cache = model.createCache({ capacity: n + 1 });
  const ids = [1];
  let next = 1;
  for (let i = 0; i < n; i++) {
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [next] }]);
    const row = logits.toFloat32();
    logits.dispose();
    next = row.indexOf(Math.max(...row));
    ids.push(next);
  }
  cache.dispose();
  return ids;
}

/** Every position's logits of a teacher-forced pass. */
async function allLogits(model: Model, tokens: number[]): Promise<Float32Array> {
  const cache = model.createCache({ capacity: tokens.length });
  const { logits } = await model.forward(cache, [{ sequence: 0, tokens }], { logits: 'all' });
  const all = logits.toFloat32();
  logits.dispose();
  cache.dispose();
  return all;
}

function argmaxRows(all: Float32Array, vocab: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < all.length / vocab; r++) {
    const row = all.subarray(r * vocab, (r + 1) * vocab);
    out.push(row.indexOf(Math.max(...row)));
  }
  return out;
}

describe.runIf(dir)('quantize() on stories260K', () => {
  let path: number[] = [];
  let f32Argmax: number[] = [];

  it('writes every preset; the file loads in canopy with the types the rules chose', async () => {
    const { model } = await loadModel(gguf, { backend: 'cpu' });
    path = await greedyPath(model, 255); // 256 tokens: BOS + 255
    f32Argmax = argmaxRows(await allLogits(model, path), 512);
    model.dispose();
    for (const preset of QUANT_PRESET_NAMES) {
      const out = join(tmp, `stories-${preset}.gguf`);
      const seen: number[] = [];
      const r = await quantize(gguf, out, { type: preset, onProgress: (p) => seen.push(p.done) });
      expect(seen).toEqual(Array.from({ length: 48 }, (_, i) => i + 1));
      const file = readGguf(out);
      expect(file.metadata.get('general.file_type')).toBe({ Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, Q2_K: 10, Q3_K_M: 12, Q4_K_S: 14, Q4_K_M: 15, Q5_K_S: 16, Q5_K_M: 17, Q6_K: 18, IQ4_NL: 25, IQ4_XS: 30 }[preset]);
      expect(file.metadata.get('tokenizer.ggml.tokens')).toEqual(readGguf(gguf).metadata.get('tokenizer.ggml.tokens'));
      const stored = new Map(file.tensors.map((t) => [t.name, t.typeName]));
      for (const [name, s] of r.tensors) expect(stored.get(name), name).toBe(s);
      const w = loadWeights(out);
      w.dispose();
    }
  }, 120_000);

  for (const preset of ['Q8_0', 'Q6_K'] as const) {
    it(`${preset}: greedy tokens agree with the f32 model on >= 97% of 256 teacher-forced positions`, async () => {
      const { model } = await loadModel(join(tmp, `stories-${preset}.gguf`), { backend: 'cpu' });
      const q = argmaxRows(await allLogits(model, path), 512);
      model.dispose();
      const agree = q.filter((t, i) => t === f32Argmax[i]).length / q.length;
      console.log(`stories260K ${preset} vs f32: ${(agree * 100).toFixed(1)}% of ${q.length} positions`);
      expect(agree).toBeGreaterThanOrEqual(0.97);
    });
  }

  for (const dtype of ['q8_0', 'q6_k'] as const) {
    it(`loadModel({ dtype: '${dtype}' }) gives the logits of quantize-then-load, bit for bit`, async () => {
      const preset = dtype === 'q8_0' ? 'Q8_0' : 'Q6_K'; // on stories260K the preset is the pure type
      const a = await loadModel(gguf, { backend: 'cpu', dtype });
      const b = await loadModel(join(tmp, `stories-${preset}.gguf`), { backend: 'cpu' });
      expect(Object.fromEntries(a.model.weightTypes)).toEqual(Object.fromEntries(b.model.weightTypes));
      const la = await allLogits(a.model, path.slice(0, 64));
      const lb = await allLogits(b.model, path.slice(0, 64));
      a.model.dispose();
      b.model.dispose();
      expect(Buffer.from(la.buffer).equals(Buffer.from(lb.buffer))).toBe(true);
    });
  }

  it('a Hugging Face folder (written from the GGUF: q/k in the half layout) gives the same tensors and vocabulary', async () => {
    const w = loadWeights(gguf);
    const tensors = new Map<string, Float32Array>();
    const shapes = new Map<string, number[]>();
    for (const [name, t] of w.tensors) {
      tensors.set(name, Float32Array.from(t.toFloat32()));
      shapes.set(name, [...t.shape]);
    }
    const config = w.config;
    w.dispose();
    const hf = join(tmp, 'hf');
    const { st } = toHfTensors(tensors, shapes, config, 'F32');
    writeHfDir(hf, hfConfigJson({ ...config, architecture: 'llama' }), st);
    copyFileSync(join(dir!, 'stories260K', 'tok512.bin'), join(hf, 'tok512.bin'));
    const fromHf = join(tmp, 'from-hf-Q8_0.gguf');
    const fromGgufF16 = join(tmp, 'from-gguf-Q8_0.gguf');
    await quantize(hf, fromHf, { type: 'Q8_0' });
    await quantize(gguf, fromGgufF16, { type: 'Q8_0' });
    const a = readGguf(fromHf);
    const b = readGguf(fromGgufF16);
    expect(a.tensors.map((t) => [t.name, t.typeName])).toEqual(b.tensors.map((t) => [t.name, t.typeName]));
    const wa = loadWeights(fromHf);
    const wb = loadWeights(fromGgufF16);
    for (const [name, t] of wa.tensors) {
      expect(Buffer.from(t.toArray().buffer, t.toArray().byteOffset, t.byteLength).equals(Buffer.from(wb.tensors.get(name)!.toArray().buffer, wb.tensors.get(name)!.toArray().byteOffset, t.byteLength)), name).toBe(true);
    }
    wa.dispose();
    wb.dispose();
    // The llama2.c vocabulary written as the SentencePiece GGUF vocabulary the original file holds.
    const orig = readGguf(gguf).metadata;
    for (const key of ['tokenizer.ggml.model', 'tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type']) {
      expect(a.metadata.get(key), key).toEqual(orig.get(key));
    }
    const { model, tokenizer } = await loadModel(fromHf, { backend: 'cpu' });
    model.dispose();
    expect(tokenizer.encode('Once upon a time', { bos: true })).toEqual((await loadModel(gguf, { backend: 'cpu' }).then((m) => (m.model.dispose(), m.tokenizer))).encode('Once upon a time', { bos: true }));
  }, 60_000);

  it('bad arguments are ArgumentErrors naming them', async () => {
    await expect(quantize(gguf, join(tmp, 'x.gguf'), { type: 'Q4_K_X' as QuantPreset })).rejects.toThrow(/options\.type.*Q4_K_M/);
    await expect(quantize(gguf, gguf, { type: 'Q8_0' })).rejects.toThrow(ArgumentError);
    await expect(quantize('', join(tmp, 'x.gguf'), { type: 'Q8_0' })).rejects.toThrow(/input/);
    await expect(quantize(join(tmp, 'stories-Q8_0.gguf'), join(tmp, 'y.gguf'), { type: 'Q4_0' })).rejects.toThrow(/requantizing block-quantized files is not supported/);
    await expect(quantize(gguf, join(tmp, 'x.gguf'), { type: 'Q8_0', onProgress: 3 as never })).rejects.toThrow(/onProgress/);
    await expect(loadModel(gguf, { dtype: 'q9_0' as never })).rejects.toThrow(/options\.dtype/);
  });

  it('the progress line', () => {
    expect(progressLine({ tensor: 'blk.0.attn_q.weight', storage: 'Q4_K', done: 3, count: 12, doneValues: 1, totalValues: 4 }, 8)).toBe('[##......]  25% 3/12 blk.0.attn_q.weight Q4_K');
  });
});

// ---- llama.cpp loads what canopy writes ------------------------------------------------------

const peerOk = dir !== undefined && llamaPeerAvailable('canopy quantize vs llama.cpp');
describe.runIf(peerOk)('llama.cpp loads `quantize` output and agrees with canopy on it', () => {
  let peer: LlamaPeer;
  afterAll(async () => {
    await peer?.close();
  });
  it('every preset: llama.cpp greedy == canopy greedy on >= 97% of 200 teacher-forced positions', async () => {
    peer = await LlamaPeer.start();
    const { model } = await loadModel(gguf, { backend: 'cpu' });
    const path = await greedyPath(model, 200);
    model.dispose();
    const tokens = path.slice(0, 200);
    for (const preset of QUANT_PRESET_NAMES) {
      const out = join(tmp, `peer-${preset}.gguf`);
      await quantize(gguf, out, { type: preset });
      const a = compareGreedyRuns(await canopyGreedy(out, tokens), await peer.greedy(out, tokens));
      console.log(describeAgreement(`stories260K ${preset}, canopy vs llama.cpp`, a));
      expect(a.fraction, preset).toBeGreaterThanOrEqual(0.97);
    }
  }, 300_000);
});
