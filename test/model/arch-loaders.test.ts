/**
 * How the loaders read each architecture's metadata: GGUF rope scaling keys as llama.cpp reads
 * them (type defaulting to linear, the older rope.scale_linear, yarn's original context and
 * multipliers), Hugging Face rope_scaling / transformers 5's rope_parameters, the allow-lists of
 * ignorable tensors (and nothing else ignored), Mistral's and Qwen2's sliding windows, Qwen3's q/k norms; and
 * files of other formats (PyTorch checkpoints, ggml, a bare safetensors file) named for what
 * they are instead of being read as a corrupt llama2.c header.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { ModelConfig } from '../../lib/model/config.js';
import { type GgufEntry, llamaGgufMetadata, syntheticVocabMetadata, writeGguf } from '../../lib/model/formats/gguf-writer.js';
import { yarnMscale } from '../../lib/model/rope.js';
import { Model } from '../../lib/model/model.js';
import { detectFormat, loadWeights } from '../../lib/model/weights.js';
import { mismatches } from '../helpers/attention-reference.js';
import { rowsOf } from '../helpers/forward-suite.js';
import { llamaReference } from '../helpers/llama-reference.js';
import { ARCH_FIXTURES, writeArchFixture } from '../helpers/arch-fixtures.js';
import { ggufName, hfName, writeHfDir, writeSafetensors } from '../helpers/model-writers.js';
import { randomWeights } from '../helpers/random-model.js';

const dir = mkdtempSync(join(tmpdir(), 'canopy-arch-loaders-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fixture = (name: string) => ARCH_FIXTURES.find((f) => f.name === name)!;

/** A GGUF of `config` with the standard metadata replaced / extended by `edit`. */
function gguf(name: string, config: ModelConfig, edit: (m: GgufEntry[]) => GgufEntry[] = (m) => m, tensorEdit: (t: { name: string; type: number; ne: number[]; data: Uint8Array }[]) => void = () => {}): string {
  const tensors = [...randomWeights(config, 2)].map(([n, t]) => {
    const v = t.toFloat32();
    return { name: ggufName(n), type: 0, ne: [...t.shape].reverse(), data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
  });
  tensorEdit(tensors);
  const path = join(dir, name);
  writeGguf(path, { metadata: edit([...llamaGgufMetadata(config, config.architecture), ...syntheticVocabMetadata(config.vocabSize)]), tensors });
  return path;
}

const plain = fixture('smollm2').config;
const configOf = (path: string) => {
  const w = loadWeights(path);
  w.dispose();
  return w.config;
};

describe('GGUF rope scaling keys, as llama.cpp reads them', () => {
  it('a factor without a type is linear (llama.cpp defaults to linear); type none ignores the factor', () => {
    expect(configOf(gguf('lin-default.gguf', plain, (m) => [...m, ['llama.rope.scaling.factor', 'float32', 2]])).ropeScaling).toEqual({ type: 'linear', factor: 2 });
    expect(configOf(gguf('lin-none.gguf', plain, (m) => [...m, ['llama.rope.scaling.type', 'string', 'none'], ['llama.rope.scaling.factor', 'float32', 2]])).ropeScaling).toBeUndefined();
  });

  it('the older llama.rope.scale_linear key; a factor of 0 or 1 is no scaling', () => {
    expect(configOf(gguf('scale-linear.gguf', plain, (m) => [...m, ['llama.rope.scale_linear', 'float32', 4]])).ropeScaling).toEqual({ type: 'linear', factor: 4 });
    expect(configOf(gguf('lin1.gguf', plain, (m) => [...m, ['llama.rope.scaling.type', 'string', 'linear'], ['llama.rope.scaling.factor', 'float32', 1]])).ropeScaling).toBeUndefined();
    expect(configOf(gguf('lin0.gguf', plain, (m) => [...m, ['llama.rope.scaling.factor', 'float32', 0]])).ropeScaling).toBeUndefined();
  });

  it('yarn: original context (default: context_length), betas, log multiplier and attn_factor', () => {
    const yarn = (extra: GgufEntry[]) => configOf(gguf(`yarn${extra.length}.gguf`, plain, (m) => [...m, ['llama.rope.scaling.type', 'string', 'yarn'], ['llama.rope.scaling.factor', 'float32', 8], ...extra])).ropeScaling;
    expect(yarn([])).toEqual({ type: 'yarn', factor: 8, originalMaxPositionEmbeddings: plain.maxSeqLen, betaFast: 32, betaSlow: 1, attentionFactor: yarnMscale(8), truncate: true });
    expect(
      yarn([
        ['llama.rope.scaling.original_context_length', 'uint32', 4096],
        ['llama.rope.scaling.yarn_beta_fast', 'float32', 16],
        ['llama.rope.scaling.yarn_beta_slow', 'float32', 2],
        ['llama.rope.scaling.yarn_log_multiplier', 'float32', 0.707],
        ['llama.rope.scaling.attn_factor', 'float32', 1.25],
      ]),
    ).toEqual({
      type: 'yarn',
      factor: 8,
      originalMaxPositionEmbeddings: 4096,
      betaFast: 16,
      betaSlow: 2,
      // DeepSeek's mscale_all_dim: get_mscale(8) / get_mscale(8, 0.707), times attn_factor.
      attentionFactor: (yarnMscale(8) / yarnMscale(8, Math.fround(0.707))) * 1.25,
      truncate: true,
    });
  });

  it("yarn extends the context: maxSeqLen is original_context_length * factor when context_length is the original", () => {
    const c = configOf(gguf('yarnctx.gguf', plain, (m) => [...m, ['llama.rope.scaling.type', 'string', 'yarn'], ['llama.rope.scaling.factor', 'float32', 4], ['llama.rope.scaling.original_context_length', 'uint32', plain.maxSeqLen]]));
    expect(c.maxSeqLen).toBe(4 * plain.maxSeqLen);
  });

  it('attn_factor other than 1 without yarn is refused', () => {
    expect(() => configOf(gguf('attnf.gguf', plain, (m) => [...m, ['llama.rope.scaling.attn_factor', 'float32', 2]]))).toThrow(
      /attnf\.gguf: llama\.rope\.scaling\.attn_factor 2 with rope scaling 'linear' is not supported \(only with yarn\)/,
    );
  });

  it('Qwen3 without its q/k norms: the missing tensor is named', () => {
    const q3 = fixture('qwen3').config;
    const path = gguf('q3-nonorm.gguf', q3, undefined, (t) => t.splice(t.findIndex((x) => x.name === 'blk.1.attn_k_norm.weight'), 1));
    expect(() => loadWeights(path)).toThrow(/q3-nonorm\.gguf: missing tensor 'blk\.1\.attn_k_norm\.weight' \(layers\.1\.kNorm, shape \[32\]\)/);
  });

  it('Qwen2 without its biases: the missing tensor is named; a llama file with biases loads them', () => {
    const q2 = fixture('qwen25').config;
    const path = gguf('q2-nobias.gguf', q2, undefined, (t) => t.splice(t.findIndex((x) => x.name === 'blk.0.attn_v.bias'), 1));
    expect(() => loadWeights(path)).toThrow(/q2-nobias\.gguf: missing tensor 'blk\.0\.attn_v\.bias' \(layers\.0\.bv, shape \[32\]\)/);
    const llamaBias = gguf('llama-bias.gguf', { ...plain, qkvBias: true });
    expect(configOf(llamaBias).qkvBias).toBe(true);
  });
});

describe('Hugging Face config.json', () => {
  const q3 = fixture('qwen3');
  const files = writeArchFixture(q3, dir, 4);
  const json = JSON.parse(readFileSync(join(files.hfDir!, 'config.json'), 'utf8')) as Record<string, unknown>;
  const st = readFileSync(join(files.hfDir!, 'model.safetensors'));
  const variantDir = (name: string, edit: (j: Record<string, unknown>) => Record<string, unknown>, weights?: Buffer) => {
    const d = join(dir, name);
    writeHfDir(d, edit({ ...json }), []);
    writeFileSync(join(d, 'model.safetensors'), weights ?? st);
    return d;
  };

  it("transformers 5's rope_parameters: theta and scaling from it", () => {
    const d = variantDir('rp5', (j) => {
      delete j.rope_theta;
      delete j.rope_scaling;
      return { ...j, rope_parameters: { rope_type: 'yarn', rope_theta: 5e6, factor: 2, original_max_position_embeddings: 128, attention_factor: 1.5 } };
    });
    const c = configOf(d);
    expect(c.ropeTheta).toBe(5e6);
    expect(c.ropeScaling).toEqual({ type: 'yarn', factor: 2, originalMaxPositionEmbeddings: 128, betaFast: 32, betaSlow: 1, attentionFactor: 1.5, truncate: true });
    const dflt = variantDir('rp5d', (j) => ({ ...j, rope_parameters: { rope_type: 'default', rope_theta: 20000 } }));
    expect(configOf(dflt).ropeTheta).toBe(20000);
    expect(configOf(dflt).ropeScaling).toBeUndefined();
  });

  it('yarn: mscale / mscale_all_dim give the attention factor their ratio; original defaults to max_position_embeddings, and the context grows by the factor', () => {
    const d = variantDir('yarnms', (j) => ({ ...j, rope_scaling: { rope_type: 'yarn', factor: 40, mscale: 1, mscale_all_dim: 0.707, beta_fast: 32, beta_slow: 1 } }));
    const s = configOf(d).ropeScaling;
    expect(configOf(d).maxSeqLen).toBe(40 * (json.max_position_embeddings as number));
    expect(s).toEqual({ type: 'yarn', factor: 40, originalMaxPositionEmbeddings: json.max_position_embeddings, betaFast: 32, betaSlow: 1, attentionFactor: yarnMscale(40, 1) / yarnMscale(40, 0.707), truncate: true });
  });

  it('rotary inv_freq buffers (per layer, or once) are ignored; any other unknown tensor is an error', () => {
    const extra = (names: string[]) => {
      const header = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
      const data = st.subarray(8 + Number(st.readBigUInt64LE(0)));
      const tensors = Object.entries(header)
        .filter(([n]) => n !== '__metadata__')
        .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: new Uint8Array(data.subarray(t.data_offsets[0], t.data_offsets[1])) }));
      for (const n of names) tensors.push({ name: n, dtype: 'F32', shape: [16], data: new Uint8Array(64) });
      const path = join(dir, `st-${names.length}.safetensors`);
      writeSafetensors(path, tensors);
      return readFileSync(path);
    };
    const ok = variantDir('invfreq', (j) => j, extra(['model.layers.0.self_attn.rotary_emb.inv_freq', 'model.layers.1.self_attn.rotary_emb.inv_freq', 'model.rotary_emb.inv_freq']));
    expect(configOf(ok).architecture).toBe('qwen3');
    const bad = variantDir('cos', (j) => j, extra(['model.layers.0.self_attn.rotary_emb.cos_cached']));
    expect(() => loadWeights(bad)).toThrow(/unexpected tensor 'model\.layers\.0\.self_attn\.rotary_emb\.cos_cached': not a weight of a qwen3 model that canopy knows/);
  });

  it("Mistral's sliding window on every layer (Mistral 7B v0.1), and its logits with a window of 8 equal the reference", async () => {
    const m = writeArchFixture(fixture('mistral'), dir, 6);
    const j = JSON.parse(readFileSync(join(m.hfDir!, 'config.json'), 'utf8')) as Record<string, unknown>;
    const d = join(dir, 'mistral-window');
    writeHfDir(d, { ...j, sliding_window: 8 }, []);
    writeFileSync(join(d, 'model.safetensors'), readFileSync(join(m.hfDir!, 'model.safetensors')));
    const c = configOf(d);
    expect(c.layerWindows).toEqual([8, 8]);
    expect(c.maxSeqLen).toBe(512); // the window does not limit the context
    expect(configOf(m.hfDir!).layerWindows).toBeUndefined(); // sliding_window null
    const tokens = Array.from({ length: 30 }, (_, i) => (i * 53 + 7) % 300);
    const w = loadWeights(d);
    const model = await Model.fromWeights(w, { backend: 'cpu', dtype: 'f32' });
    try {
      const cache = model.createCache({ capacity: tokens.length });
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens }], { logits: 'all' });
      const rows = rowsOf(logits, 300);
      const ref = llamaReference({ ...m.hfModel!.config, layerWindows: [8, 8] }, m.hfModel!.tensors, tokens);
      const full = llamaReference(m.hfModel!.config, m.hfModel!.tensors, tokens);
      rows.forEach((row, t) => expect(mismatches(row, ref[t]!, 2e-4, 2e-4), `position ${t}`).toEqual([]));
      // Past the window the logits differ from full attention's (the window is really applied).
      expect(mismatches(rows[29]!, full[29]!, 2e-4, 2e-4).length).toBeGreaterThan(0);
    } finally {
      model.dispose();
      w.dispose();
    }
  });

  it('Qwen2 with use_sliding_window: the window on layers >= max_window_layers; a window past the context is left out', () => {
    const q = writeArchFixture(fixture('qwen25'), dir, 8);
    const j = JSON.parse(readFileSync(join(q.hfDir!, 'config.json'), 'utf8')) as Record<string, unknown>;
    const at = (name: string, extra: Record<string, unknown>) => {
      const d = join(dir, name);
      writeHfDir(d, { ...j, ...extra }, []);
      writeFileSync(join(d, 'model.safetensors'), readFileSync(join(q.hfDir!, 'model.safetensors')));
      return configOf(d);
    };
    expect(at('q2-swa', { use_sliding_window: true, sliding_window: 64, max_window_layers: 1 }).layerWindows).toEqual([0, 64]);
    expect(at('q2-swa0', { use_sliding_window: true, sliding_window: 64, max_window_layers: 0 }).layerWindows).toEqual([64, 64]);
    expect(at('q2-swa-wide', { use_sliding_window: true, sliding_window: 4096, max_window_layers: 0 }).layerWindows).toBeUndefined();
    expect(at('q2-noswa', { use_sliding_window: false, sliding_window: 64, max_window_layers: 0 }).layerWindows).toBeUndefined();
  });

  it('a tied model whose folder still has lm_head.weight loads tied (transformers ties it to the embedding)', () => {
    const f = writeArchFixture(fixture('smollm2'), dir, 7);
    const out = join(dir, 'smol-lmhead');
    const t = randomWeights(f.hfModel!.config, 7);
    const tensors = [...f.hfModel!.tensors].map(([n, x]) => ({ name: hfName(n), dtype: 'F32', shape: [...x.shape], data: x.toFloat32() }));
    tensors.push({ name: 'lm_head.weight', dtype: 'F32', shape: [...t.get('embed')!.shape], data: t.get('embed')!.toFloat32() });
    writeHfDir(out, JSON.parse(readFileSync(join(f.hfDir!, 'config.json'), 'utf8')) as Record<string, unknown>, tensors);
    const w = loadWeights(out);
    expect(w.config.tiedEmbeddings).toBe(true);
    expect(w.tensors.has('output')).toBe(false);
    w.dispose();
  });
});

describe('files of other formats say what they are', () => {
  const write = (name: string, bytes: Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };
  it.each([
    ['pytorch_model.bin (ZIP, torch.save)', 'pytorch_model.bin', Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(200)]), /pytorch_model\.bin: unknown model format: the file is a ZIP archive: a PyTorch checkpoint \(torch\.save/],
    ['legacy PyTorch pickle', 'old.pt', Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0, 0, 0, 0, 0, 0]), /old\.pt: unknown model format: the file is a Python pickle \(protocol 2\): a legacy PyTorch checkpoint/],
    ['pre-GGUF ggml', 'model.ggml', Buffer.concat([Buffer.from('tjgg', 'latin1'), Buffer.alloc(100)]), /model\.ggml: unknown model format: the file is a pre-GGUF llama\.cpp file \('ggjt' magic\)/],
    ['a safetensors file without its extension', 'weights', Buffer.concat([Buffer.from([30, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"__metadata__":{"a":"b"}}    ')]), /weights: unknown model format: the file is a safetensors file/],
  ])('%s', (_name, file, bytes, message) => {
    const p = write(file, bytes);
    expect(() => detectFormat(p)).toThrow(message);
    expect(() => loadWeights(p)).toThrow(message);
  });

  it('a llama2.c checkpoint with dim 640 (bytes 80 02 00 00, like a pickle header) is still read as llama2.c', () => {
    const b = Buffer.alloc(64);
    b.writeInt32LE(640, 0);
    expect(detectFormat(write('dim640.bin', b))).toBe('llama2c');
  });
});
