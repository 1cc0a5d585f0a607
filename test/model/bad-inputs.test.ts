/**
 * Bad model files: truncated, corrupt, inconsistent or unsupported. Each must
 * fail with a CanopyError naming the file (and the tensor or field), never
 * crash or allocate from an unchecked length.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import type { ModelConfig } from '../../lib/model/config.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import { readSafetensors } from '../../lib/model/formats/safetensors.js';
import { loadWeights } from '../../lib/model/weights.js';
import { type BadInputCase, describeBadInputs } from '../helpers/bad-inputs.js';
import {
  type GgufEntry,
  type StTensor,
  ggufName,
  llamaGgufMetadata,
  syntheticTensors,
  toHfTensors,
  writeGguf,
  writeHfDir,
} from '../helpers/model-writers.js';
import { testModelsDir } from '../helpers/test-models.js';

const models = testModelsDir('model file bad inputs (real files)');
const dir = mkdtempSync(join(tmpdir(), 'canopy-bad-models-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `bytes` to a new file in the temp dir and returns its path. */
function file(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** A copy of `src` changed by `edit`. */
function variant(name: string, src: Buffer, edit: (b: Buffer) => Buffer): string {
  return file(name, edit(Buffer.from(src)));
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ------------------------------------------------------------- real files

if (models) {
  const bin = readFileSync(join(models, 'stories260K', 'stories260K.bin'));
  const gguf = readFileSync(join(models, 'stories260K', 'stories260K.gguf'));
  const i32 = (at: number, v: number) => (b: Buffer) => (b.writeInt32LE(v, at), b);
  const u64 = (at: number, v: bigint) => (b: Buffer) => (b.writeBigUInt64LE(v, at), b);
  const cut = (n: number) => (b: Buffer) => b.subarray(0, n);
  const archAt = gguf.indexOf('general.architecture') + 20 + 4 + 8; // key, type, string length

  const cases: BadInputCase[] = [
    ['llama2.c: nonexistent path', () => loadWeights(join(dir, 'missing.bin')), /cannot open .*missing\.bin/],
    ['llama2.c: truncated in the header', () => loadWeights(variant('t10.bin', bin, cut(10))), /t10\.bin: 10 bytes is too short for a llama2\.c checkpoint/],
    [
      'llama2.c: truncated in the embedding',
      () => loadWeights(variant('t1028.bin', bin, cut(1028))),
      /t1028\.bin: tensor 'token_embedding_table' \(embed\) needs bytes \[28, 131100\) but the file holds 1028 bytes; is the file truncated\?/,
    ],
    [
      'llama2.c: truncated in the middle of the layers',
      () => loadWeights(variant('t600000.bin', bin, cut(600000))),
      /t600000\.bin: tensor 'w\d\[layer \d\]' \(layers\.\d\.w\d\) needs bytes \[\d+, \d+\) but the file holds 600000 bytes/,
    ],
    [
      'llama2.c: truncated in the RoPE tables',
      () => loadWeights(variant('tlast.bin', bin, cut(bin.length - 1))),
      /tlast\.bin: the RoPE tables \(freq_cis_real, freq_cis_imag\) end at byte 1056540 but the file holds 1056539 bytes/,
    ],
    ['llama2.c: trailing bytes', () => loadWeights(variant('long.bin', bin, (b) => Buffer.concat([b, Buffer.alloc(4)]))), /long\.bin: the llama2\.c v0 header describes 1056540 bytes .* holds 1056544/],
    ['llama2.c: negative dim', () => loadWeights(variant('dim.bin', bin, i32(0, -64))), /dim\.bin: not a llama2\.c checkpoint or a corrupt header: dim -64 is out of range/],
    ['llama2.c: absurd n_layers', () => loadWeights(variant('layers.bin', bin, i32(8, 1e9))), /layers\.bin: .*n_layers 1000000000 is out of range \[1, 4096\]/],
    ['llama2.c: n_kv_heads does not divide n_heads', () => loadWeights(variant('kv.bin', bin, i32(16, 3))), /kv\.bin: .*n_heads 8 is not a multiple of n_kv_heads 3/],
    ['llama2.c: dims that do not match the data', () => loadWeights(variant('hidden.bin', bin, i32(4, 100))), /hidden\.bin: the llama2\.c v0 header describes \d+ bytes of weights but the file holds 1056540/],
    ['llama2.c: "ak42" magic with version 7', () => loadWeights(variant('v7.bin', bin, (b) => (b.writeUInt32LE(0x616b3432, 0), b.writeInt32LE(7, 4), b))), /v7\.bin: llama2\.c checkpoint version 7 is not supported/],

    ['GGUF: truncated in the magic', () => loadWeights(variant('t3.gguf', gguf, cut(3))), /t3\.gguf: 3 bytes is too short for a GGUF file/],
    [
      'GGUF: truncated in the tokenizer metadata',
      () => loadWeights(variant('t2000.gguf', gguf, cut(2000))),
      /t2000\.gguf: metadata 'tokenizer\.ggml\.tokens' claims 512 elements .* only \d+ bytes remain/,
    ],
    ['GGUF: truncated in a metadata string', () => loadWeights(variant('t5000.gguf', gguf, cut(5000))), /t5000\.gguf: .*metadata 'tokenizer\.ggml\.(tokens|scores)/],
    ['GGUF: truncated in the metadata counts', () => loadWeights(variant('t100.gguf', gguf, cut(100))), /t100\.gguf: the header claims 19 metadata entries but only 76 bytes follow/],
    ['GGUF: truncated in a tensor name', () => loadWeights(variant('t13000.gguf', gguf, cut(13000))), /t13000\.gguf: the name of tensor 28 claims 19 bytes at offset 12982 \(10 bytes remain/],
    [
      'GGUF: truncated in a tensor info',
      () => loadWeights(variant('tinfo.gguf', gguf, cut(gguf.indexOf('blk.3.ffn_up.weight') + 19 + 2))),
      /tinfo\.gguf: unexpected end of file reading the dimension count of tensor 'blk\.3\.ffn_up\.weight'/,
    ],
    [
      'GGUF: truncated in the data',
      () => loadWeights(variant('t600000.gguf', gguf, cut(600000))),
      /t600000\.gguf: tensor 'blk\.\d\.\w+\.weight' \(layers\.\d\.\w+\) \(F32 \[[\d, ]+\]\) needs bytes \[\d+, \d+\) but the file holds 600000 bytes; is the file truncated\?/,
    ],
    ['GGUF: last byte missing', () => loadWeights(variant('tlast.gguf', gguf, cut(gguf.length - 1))), /tlast\.gguf: tensor 'blk\.4\.ffn_norm\.weight' \(layers\.4\.ffnNorm\) .* holds 1185375 bytes/],
    ['GGUF: flipped magic (.gguf name)', () => loadWeights(variant('magic.gguf', gguf, (b) => (b[3] = 0x58, b))), /magic\.gguf: bad magic "GGUX"/],
    ['GGUF: flipped magic (other name: read as llama2.c)', () => loadWeights(variant('magic.model', gguf, (b) => (b[0] = 0x58, b))), /magic\.model: not a llama2\.c checkpoint or a corrupt header/],
    ['GGUF: version 1', () => loadWeights(variant('ver1.gguf', gguf, (b) => (b.writeUInt32LE(1, 4), b))), /ver1\.gguf: GGUF version 1 is not supported .*obsolete/],
    ['GGUF: big-endian', () => loadWeights(variant('be.gguf', gguf, (b) => (b.writeUInt32BE(3, 4), b))), /be\.gguf: GGUF version 50331648 is not supported .*big-endian/],
    ['GGUF: absurd tensor count', () => loadWeights(variant('nt.gguf', gguf, u64(8, 2n ** 60n))), /nt\.gguf: the header claims 1152921504606846976 tensors but only \d+ bytes follow/],
    ['GGUF: absurd metadata count', () => loadWeights(variant('nkv.gguf', gguf, u64(16, 2n ** 62n))), /nkv\.gguf: the header claims 4611686018427387904 metadata entries/],
    ['GGUF: absurd key length', () => loadWeights(variant('klen.gguf', gguf, u64(24, 2n ** 63n))), /klen\.gguf: the key of metadata entry 0 claims 9223372036854775808 bytes/],
    ['GGUF: absurd array length', () => loadWeights(variant('alen.gguf', gguf, u64(61, 2n ** 40n))), /alen\.gguf: metadata 'tokenizer\.ggml\.tokens' claims 1099511627776 elements/],
    ['GGUF: unknown value type', () => loadWeights(variant('vtype.gguf', gguf, (b) => (b.writeUInt32LE(77, 53), b))), /vtype\.gguf: metadata 'tokenizer\.ggml\.tokens' has unknown value type 77/],
    ['GGUF: unknown architecture', () => loadWeights(variant('arch.gguf', gguf, (b) => (b.write('llamx', archAt, 'latin1'), b))), /arch\.gguf: general\.architecture "llamx" is not supported \(supported: llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3\)/],
  ];
  describeBadInputs('real model files', cases);
}

// --------------------------------------------------------- synthetic GGUF

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
  ropeStyle: 'interleaved',
  normEps: 1e-5,
  tiedEmbeddings: false,
  qkvBias: false,
  bosTokenId: 1,
  eosTokenIds: [2],
};
const { tensors: tinyTensors, shapes: tinyShapes } = syntheticTensors(tiny, 5);

/** A tiny GGUF model with its tensor list edited (all F32). */
function ggufModel(name: string, edit: (t: { name: string; type: number; ne: number[]; data: Uint8Array }[]) => void, metadata?: GgufEntry[]): string {
  const specs = [...tinyTensors].map(([n, v]) => ({ name: ggufName(n), type: 0, ne: [...tinyShapes.get(n)!].reverse(), data: new Uint8Array(v.buffer) }));
  edit(specs);
  const path = join(dir, name);
  writeGguf(path, { metadata: metadata ?? llamaGgufMetadata(tiny), tensors: specs });
  return path;
}

function oneTensorGguf(name: string, patch: (b: Buffer, infoAt: number) => void): string {
  const path = join(dir, name);
  writeGguf(path, { metadata: [], tensors: [{ name: 'x', type: 0, ne: [4], data: new Uint8Array(16) }] });
  const b = readFileSync(path);
  patch(b, 24 + 8 + 1); // after the header and the name "x": n_dims, ne[0], type, offset
  writeFileSync(path, b);
  return path;
}

const withoutKey = (key: string) => llamaGgufMetadata(tiny).filter(([k]) => k !== key);

describeBadInputs('GGUF files', [
  ['missing tensor', () => loadWeights(ggufModel('drop.gguf', (t) => t.splice(t.findIndex((x) => x.name === 'blk.1.ffn_up.weight'), 1))), /drop\.gguf: missing tensor 'blk\.1\.ffn_up\.weight' \(layers\.1\.w3, shape \[48, 32\]\)/],
  [
    'wrong shape (ne not reversed)',
    () => loadWeights(ggufModel('shape.gguf', (t) => ((x) => (x.ne = [...x.ne].reverse()))(t.find((x) => x.name === 'blk.0.attn_k.weight')!))),
    /shape\.gguf: tensor 'blk\.0\.attn_k\.weight' \(layers\.0\.wk\) has shape \[32, 16\]; expected \[16, 32\] from the config/,
  ],
  ['unexpected tensor', () => loadWeights(ggufModel('extra.gguf', (t) => t.push({ name: 'blk.0.attn_rot_embd', type: 0, ne: [8], data: new Uint8Array(32) }))), /extra\.gguf: unexpected tensor 'blk\.0\.attn_rot_embd' \(F32 ne \[8\]\): not a weight of a llama model that canopy knows; refusing to ignore it, as it may change the math/],
  ['q/k norms in a llama file', () => loadWeights(ggufModel('qknorm.gguf', (t) => t.push({ name: 'blk.0.attn_q_norm.weight', type: 0, ne: [8], data: new Uint8Array(32) }))), /qknorm\.gguf: tensor 'blk\.0\.attn_q_norm\.weight' \(layers\.0\.qNorm\) is not expected under this config/],
  ['a layer beyond block_count', () => loadWeights(ggufModel('layer9.gguf', (t) => t.push({ name: 'blk.9.attn_norm.weight', type: 0, ne: [32], data: new Uint8Array(128) }))), /layer9\.gguf: tensor 'blk\.9\.attn_norm\.weight' \(layers\.9\.attnNorm\) is not expected/],
  ['rope_freqs (Llama 3.1) holding 0', () => loadWeights(ggufModel('freqs.gguf', (t) => t.push({ name: 'rope_freqs.weight', type: 0, ne: [4], data: new Uint8Array(16) }))), /freqs\.gguf: tensor 'rope_freqs\.weight' holds 0 at element 0; RoPE frequency factors must be positive/],
  [
    'rope_freqs of the wrong length',
    () => loadWeights(ggufModel('freqs6.gguf', (t) => t.push({ name: 'rope_freqs.weight', type: 0, ne: [6], data: new Uint8Array(new Float32Array(6).fill(1).buffer) }))),
    /freqs6\.gguf: tensor 'rope_freqs\.weight' is F32 ne \[6\]; expected F32 \[4\] \(headDim \/ 2 RoPE frequency factors\)/,
  ],
  [
    'unsupported tensor type (Q8_1)',
    () => loadWeights(ggufModel('q81.gguf', (t) => Object.assign(t.find((x) => x.name === 'blk.0.attn_q.weight')!, { type: 9, data: new Uint8Array((32 * 32 * 36) / 32) }))),
    /q81\.gguf: tensor 'blk\.0\.attn_q\.weight' has type Q8_1, which canopy does not load \(F32, F16, BF16, Q8_0, Q4_0, .*IQ4_XS\)/,
  ],
  ['missing embedding_length', () => loadWeights(ggufModel('nodim.gguf', () => {}, withoutKey('llama.embedding_length'))), /nodim\.gguf: metadata 'llama\.embedding_length' is missing/],
  ['missing rms epsilon', () => loadWeights(ggufModel('noeps.gguf', () => {}, withoutKey('llama.attention.layer_norm_rms_epsilon'))), /noeps\.gguf: metadata 'llama\.attention\.layer_norm_rms_epsilon' is missing/],
  ['missing architecture', () => loadWeights(ggufModel('noarch.gguf', () => {}, withoutKey('general.architecture'))), /noarch\.gguf: metadata 'general\.architecture' is missing/],
  [
    'a string where a number belongs',
    () => loadWeights(ggufModel('strdim.gguf', () => {}, [...withoutKey('llama.block_count'), ['llama.block_count', 'string', '2']])),
    /strdim\.gguf: metadata 'llama\.block_count' must be an integer; found "2"/,
  ],
  ['head_count 0', () => loadWeights(ggufModel('heads0.gguf', () => {}, [...withoutKey('llama.attention.head_count'), ['llama.attention.head_count', 'uint32', 0]])), /heads0\.gguf: metadata 'llama\.attention\.head_count' must be a positive integer/],
  ['rope scaling', () => loadWeights(ggufModel('ntk.gguf', () => {}, [...llamaGgufMetadata(tiny), ['llama.rope.scaling.type', 'string', 'dynamic']])), /ntk\.gguf: llama\.rope\.scaling\.type "dynamic" is not supported \(none, linear, yarn\)/],
  ['LongRoPE on llama', () => loadWeights(ggufModel('longrope.gguf', () => {}, [...llamaGgufMetadata(tiny), ['llama.rope.scaling.type', 'string', 'longrope']])), /longrope\.gguf: llama\.rope\.scaling\.type 'longrope' \(Phi-3's LongRoPE\) is not supported for llama models/],
  [
    'a negative rope scaling factor',
    () => loadWeights(ggufModel('negf.gguf', () => {}, [...llamaGgufMetadata(tiny), ['llama.rope.scaling.type', 'string', 'linear'], ['llama.rope.scaling.factor', 'float32', -2]])),
    /negf\.gguf: llama\.rope\.scaling\.factor must be a positive number; found -2/,
  ],
  [
    'yarn_ext_factor other than 1',
    () => loadWeights(ggufModel('ext.gguf', () => {}, [...llamaGgufMetadata(tiny), ['llama.rope.scaling.type', 'string', 'yarn'], ['llama.rope.scaling.factor', 'float32', 4], ['llama.rope.scaling.yarn_ext_factor', 'float32', 0.5]])),
    /ext\.gguf: llama\.rope\.scaling\.yarn_ext_factor 0\.5 is not supported \(1 only\)/,
  ],
  ['alignment not a power of two', () => readGguf(ggufModel('align3.gguf', () => {}, [...llamaGgufMetadata(tiny), ['general.alignment', 'uint32', 3]])), /align3\.gguf: general\.alignment must be a power of two; found 3/],
  ['duplicate metadata key', () => readGguf(ggufModel('dupkey.gguf', () => {}, [...llamaGgufMetadata(tiny), ['llama.block_count', 'uint32', 2]])), /dupkey\.gguf: metadata key 'llama\.block_count' appears twice/],
  ['duplicate tensor', () => readGguf(ggufModel('duptensor.gguf', (t) => t.push({ ...t[0]! }))), /duptensor\.gguf: tensor 'token_embd\.weight' appears twice/],
  ['9 dimensions', () => readGguf(oneTensorGguf('ndims.gguf', (b, at) => b.writeUInt32LE(9, at))), /ndims\.gguf: tensor 'x' has 9 dimensions \(1 to 4 allowed\)/],
  ['absurd dimension', () => readGguf(oneTensorGguf('bigdim.gguf', (b, at) => b.writeBigUInt64LE(2n ** 62n, at + 4))), /bigdim\.gguf: tensor 'x' has dimension 4611686018427387904/],
  ['unknown ggml type', () => readGguf(oneTensorGguf('type99.gguf', (b, at) => b.writeUInt32LE(99, at + 12))), /type99\.gguf: tensor 'x' has unknown ggml type 99/],
  ['misaligned tensor offset', () => readGguf(oneTensorGguf('misaligned.gguf', (b, at) => b.writeBigUInt64LE(4n, at + 16))), /misaligned\.gguf: tensor 'x' has offset 4, not a multiple of the alignment 32/],
  ['Q8_0 columns not a multiple of 32', () => readGguf(oneTensorGguf('q8cols.gguf', (b, at) => b.writeUInt32LE(8, at + 12))), /q8cols\.gguf: tensor 'x' \(Q8_0\) has 4 columns, not a multiple of its block size 32/],
  ['a tensor past the end of the file', () => loadWeights(ggufModel('past.gguf', (t) => (t.at(-1)!.data = new Uint8Array(0)))), /past\.gguf: tensor 'output\.weight' \(output\) \(F32 \[20, 32\]\) needs bytes \[66368, 68928\) but the file holds 66368 bytes/],
]);

// ------------------------------------------------ safetensors / Hugging Face

function hfConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'llama',
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 20,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    ...extra,
  };
}

function hfTensors(): StTensor[] {
  return toHfTensors(tinyTensors, tinyShapes, tiny, 'F32').st;
}

/** A tiny HF directory, with its config and tensor list edited. */
function hfDir(name: string, config: Record<string, unknown> = hfConfig(), edit?: (t: StTensor[]) => void, shards = 1): string {
  const t = hfTensors();
  edit?.(t);
  const out = join(dir, name);
  writeHfDir(out, config, t, { shards });
  return out;
}

/** A tiny HF directory whose model.safetensors bytes are edited afterwards. */
function hfBytes(name: string, edit: (b: Buffer) => Buffer): string {
  const out = hfDir(name);
  const p = join(out, 'model.safetensors');
  writeFileSync(p, edit(readFileSync(p)));
  return out;
}

/** A safetensors file with a hand-written JSON header. */
function stRaw(name: string, header: unknown, dataBytes: number): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return file(name, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
}

const without = (key: string) => {
  const c = hfConfig();
  delete c[key];
  return c;
};
const st = (name: string) => esc(join(dir, name, 'model.safetensors'));
const cfg = (name: string) => esc(join(dir, name, 'config.json'));

describeBadInputs('Hugging Face directories and safetensors files', [
  ['no config.json', () => loadWeights((mkdirSync(join(dir, 'empty'), { recursive: true }), join(dir, 'empty'))), /empty: no config\.json/],
  ['config.json is not JSON', () => loadWeights((hfDir('badjson'), writeFileSync(join(dir, 'badjson', 'config.json'), '{"model_type": '), join(dir, 'badjson'))), new RegExp(`${cfg('badjson')} is not valid JSON`)],
  ['missing hidden_size', () => loadWeights(hfDir('nohidden', without('hidden_size'))), new RegExp(`${cfg('nohidden')}: field 'hidden_size' is missing \\(a positive integer\\)`)],
  ['missing intermediate_size', () => loadWeights(hfDir('nointer', without('intermediate_size'))), new RegExp(`${cfg('nointer')}: field 'intermediate_size' is missing`)],
  ['missing num_hidden_layers', () => loadWeights(hfDir('nolayers', without('num_hidden_layers'))), /nolayers[\\/]config\.json: field 'num_hidden_layers' is missing/],
  ['missing num_attention_heads', () => loadWeights(hfDir('noheads', without('num_attention_heads'))), /noheads[\\/]config\.json: field 'num_attention_heads' is missing/],
  ['missing vocab_size', () => loadWeights(hfDir('novocab', without('vocab_size'))), /novocab[\\/]config\.json: field 'vocab_size' is missing/],
  ['a string where a number belongs', () => loadWeights(hfDir('strlayers', hfConfig({ num_hidden_layers: '2' }))), /strlayers[\\/]config\.json: field 'num_hidden_layers' must be a positive integer; found "2"/],
  ['missing model_type', () => loadWeights(hfDir('notype', without('model_type'))), /notype[\\/]config\.json: model_type is missing \(supported: llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3\)/],
  ['unknown model_type', () => loadWeights(hfDir('gpt2', hfConfig({ model_type: 'gpt2' }))), /gpt2[\\/]config\.json: model_type "gpt2" is not supported/],
  ['unsupported rope_scaling', () => loadWeights(hfDir('ntk', hfConfig({ rope_scaling: { rope_type: 'dynamic', factor: 4 } }))), /ntk[\\/]config\.json: rope_scaling type "dynamic" is not supported \(default, linear, llama3, yarn\)/],
  ['yarn without a factor', () => loadWeights(hfDir('yarn0', hfConfig({ rope_scaling: { rope_type: 'yarn', original_max_position_embeddings: 64 } }))), /yarn0[\\/]config\.json: rope_scaling\.factor must be a positive number; found undefined/],
  ['yarn with beta_fast <= beta_slow', () => loadWeights(hfDir('yarnb', hfConfig({ rope_scaling: { rope_type: 'yarn', factor: 4, beta_fast: 1, beta_slow: 2 } }))), /yarnb[\\/]config\.json: rope_scaling\.beta_fast 1 must be greater than beta_slow 2/],
  ['linear with factor 0', () => loadWeights(hfDir('lin0', hfConfig({ rope_scaling: { type: 'linear', factor: 0 } }))), /lin0[\\/]config\.json: rope_scaling\.factor must be a positive number; found 0/],
  [
    'rope_parameters per layer type on llama',
    () => loadWeights(hfDir('rpl', hfConfig({ rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } } }))),
    /rpl[\\/]config\.json: rope_parameters per layer type \(full_attention, sliding_attention\) is not supported for model_type llama/,
  ],
  ['rope_parameters that is not an object', () => loadWeights(hfDir('rp', hfConfig({ rope_parameters: 5 }))), /rp[\\/]config\.json: field 'rope_parameters' must be an object; found 5/],
  ['llama3 rope_scaling missing a field', () => loadWeights(hfDir('l3', hfConfig({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } }))), /l3[\\/]config\.json: rope_scaling\.original_max_position_embeddings must be a positive number; found undefined/],
  ['a gelu MLP', () => loadWeights(hfDir('gelu', hfConfig({ hidden_act: 'gelu_pytorch_tanh' }))), /gelu[\\/]config\.json: hidden_act "gelu_pytorch_tanh" is not supported \(llama models use "silu"\)/],
  ['attention_bias on llama', () => loadWeights(hfDir('abias', hfConfig({ attention_bias: true }))), /abias[\\/]config\.json: attention_bias true is not supported/],
  ['bad eos_token_id', () => loadWeights(hfDir('eos', hfConfig({ eos_token_id: ['2'] }))), /eos[\\/]config\.json: field 'eos_token_id' must be a token id or an array of them/],
  ['no weights file', () => loadWeights((hfDir('noweights'), rmSync(join(dir, 'noweights', 'model.safetensors')), join(dir, 'noweights'))), /noweights: no model\.safetensors or model\.safetensors\.index\.json/],
  [
    'missing tensor',
    () => loadWeights(hfDir('drop', hfConfig(), (t) => t.splice(t.findIndex((x) => x.name === 'model.layers.1.mlp.up_proj.weight'), 1))),
    new RegExp(`${st('drop')}: missing tensor 'model\\.layers\\.1\\.mlp\\.up_proj\\.weight' \\(layers\\.1\\.w3, shape \\[48, 32\\]\\)`),
  ],
  ['missing lm_head when not tied', () => loadWeights(hfDir('nohead', hfConfig(), (t) => t.splice(t.findIndex((x) => x.name === 'lm_head.weight'), 1))), /nohead[\\/]model\.safetensors: missing tensor 'lm_head\.weight' \(output/],
  [
    'wrong shape',
    () => loadWeights(hfDir('shape', hfConfig(), (t) => ((x) => (x.shape = [...x.shape].reverse()))(t.find((x) => x.name === 'model.layers.0.self_attn.k_proj.weight')!))),
    new RegExp(`${st('shape')}: tensor 'model\\.layers\\.0\\.self_attn\\.k_proj\\.weight' \\(layers\\.0\\.wk\\) has shape \\[32, 16\\]; expected \\[16, 32\\]`),
  ],
  ['config dims that disagree with the tensors', () => loadWeights(hfDir('dims', hfConfig({ intermediate_size: 64 }))), /dims[\\/]model\.safetensors: tensor 'model\.layers\.0\.mlp\.gate_proj\.weight' \(layers\.0\.w1\) has shape \[48, 32\]; expected \[64, 32\]/],
  [
    'unexpected tensor (an o_proj bias: it would change the math)',
    () => loadWeights(hfDir('extra', hfConfig(), (t) => t.push({ name: 'model.layers.0.self_attn.o_proj.bias', dtype: 'F32', shape: [32], data: new Float32Array(32) }))),
    /extra[\\/]model\.safetensors: unexpected tensor 'model\.layers\.0\.self_attn\.o_proj\.bias': not a weight of a llama model that canopy knows; refusing to ignore it/,
  ],
  ['q/k norms in a llama folder', () => loadWeights(hfDir('qkn', hfConfig(), (t) => t.push({ name: 'model.layers.0.self_attn.q_norm.weight', dtype: 'F32', shape: [8], data: new Float32Array(8) }))), /qkn[\\/]model\.safetensors: tensor 'model\.layers\.0\.self_attn\.q_norm\.weight' \(layers\.0\.qNorm\) is not expected under this config/],
  ['attention_bias on qwen3', () => loadWeights(hfDir('q3bias', hfConfig({ model_type: 'qwen3', attention_bias: true }))), /q3bias[\\/]config\.json: attention_bias true is not supported \(qwen3 models without biases only\)/],
  ['unsupported dtype', () => loadWeights(hfDir('f64', hfConfig(), (t) => Object.assign(t.find((x) => x.name === 'model.norm.weight')!, { dtype: 'F64', data: new Float64Array(32) }))), /f64[\\/]model\.safetensors: tensor 'model\.norm\.weight' has dtype F64, which canopy does not load/],
  ['truncated in the header length', () => loadWeights(hfBytes('t4', (b) => b.subarray(0, 4))), /t4[\\/]model\.safetensors: 4 bytes is too short for a safetensors file/],
  ['truncated in the JSON header', () => loadWeights(hfBytes('t100', (b) => b.subarray(0, 100))), /t100[\\/]model\.safetensors: the header length \d+ runs past the end of the file \(100 bytes\)/],
  ['truncated in the data', () => loadWeights(hfBytes('tdata', (b) => b.subarray(0, b.length - 5000))), /tdata[\\/]model\.safetensors: tensor '[\w.]+' \([\w.]+\) \(F32 \[[\d, ]+\]\) needs bytes \[\d+, \d+\) but the file holds \d+ bytes; is the file truncated\?/],
  ['last byte missing', () => loadWeights(hfBytes('tlast', (b) => b.subarray(0, b.length - 1))), /tlast[\\/]model\.safetensors: tensor '[\w.]+' .* is the file truncated\?/],
  ['absurd header length', () => loadWeights(hfBytes('hlen', (b) => (b.writeBigUInt64LE(2n ** 62n, 0), b))), /hlen[\\/]model\.safetensors: the header length 4611686018427387904 exceeds safetensors' limit/],
  ['header is not JSON', () => readSafetensors(file('garbage.safetensors', Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{{{{')]))), /garbage\.safetensors: the header is not valid JSON/],
  ['data_offsets disagree with the shape', () => readSafetensors(stRaw('offsets.safetensors', { a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 10] } }, 10)), /offsets\.safetensors: tensor 'a': data_offsets \[0, 10\] hold 10 bytes but F32 \[2, 3\] needs 24/],
  ['unknown dtype', () => readSafetensors(stRaw('dtype.safetensors', { a: { dtype: 'F12', shape: [1], data_offsets: [0, 2] } }, 2)), /dtype\.safetensors: tensor 'a': unknown dtype "F12"/],
  ['negative dimension', () => readSafetensors(stRaw('negdim.safetensors', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, 0)), /negdim\.safetensors: tensor 'a': shape must be an array of at most 8 non-negative integers; found \[-1\]/],
  ['index names a missing shard', () => loadWeights((hfDir('shard1', hfConfig(), undefined, 2), rmSync(join(dir, 'shard1', 'model-00002-of-00002.safetensors')), join(dir, 'shard1'))), /cannot open .*shard1[\\/]model-00002-of-00002\.safetensors/],
  [
    'index names a tensor its shard lacks',
    () => {
      const out = hfDir('shard2', hfConfig(), undefined, 2);
      const p = join(out, 'model.safetensors.index.json');
      const index = JSON.parse(readFileSync(p, 'utf8')) as { weight_map: Record<string, string> };
      index.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
      writeFileSync(p, JSON.stringify(index));
      return loadWeights(out);
    },
    /shard2[\\/]model\.safetensors\.index\.json: weight_map puts tensor 'model\.norm\.weight' in .*model-00001-of-00002\.safetensors, which has no such tensor/,
  ],
  [
    'index escaping the directory',
    () => {
      const out = hfDir('shard3', hfConfig(), undefined, 2);
      writeFileSync(join(out, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.norm.weight': '../x.safetensors' } }));
      return loadWeights(out);
    },
    /shard3[\\/]model\.safetensors\.index\.json: weight_map names "\.\.\/x\.safetensors" for tensor 'model\.norm\.weight'; expected a file name in the model directory/,
  ],
  ['sharded: missing tensor names the directory and shards', () => loadWeights(hfDir('shard4', hfConfig(), (t) => t.splice(t.findIndex((x) => x.name === 'model.norm.weight'), 1), 2)), /shard4 \(model-00001-of-00002\.safetensors, model-00002-of-00002\.safetensors\): missing tensor 'model\.norm\.weight' \(norm/],
]);

describeBadInputs('loadWeights arguments', [
  ['empty path', () => loadWeights(''), /path must be a file or directory path; received ""/],
  ['unknown format', () => loadWeights(join(dir), { format: 'onnx' as never }), /options\.format must be one of llama2c, gguf, hf; received "onnx"/],
  ['nonexistent directory', () => loadWeights(join(dir, 'nope', 'model')), /cannot open .*nope[\\/]model/],
  [
    'a .safetensors file instead of its directory',
    () => loadWeights((hfDir('stfile'), join(dir, 'stfile', 'model.safetensors'))),
    /stfile[\\/]model\.safetensors: a Hugging Face model is loaded from its directory/,
  ],
  ['a directory given as GGUF', () => loadWeights(dir, { format: 'gguf' }), /canopy-bad-models-\w+ is not a regular file/],
]);

// Controls: the writers above produce loadable files when unedited, so each case fails for the stated reason.
describe('controls: the unedited synthetic files load', () => {
  it('GGUF and Hugging Face (single and sharded)', () => {
    for (const w of [loadWeights(ggufModel('ok.gguf', () => {})), loadWeights(hfDir('ok-hf')), loadWeights(hfDir('ok-shards', hfConfig(), undefined, 2))]) {
      expect(w.config).toEqual({ ...tiny, ropeStyle: w.format === 'hf' ? 'half' : 'interleaved', ...(w.format === 'hf' ? { bosTokenId: undefined, eosTokenIds: undefined } : {}) });
      expect(w.tensors.size).toBe(tinyShapes.size);
      w.dispose();
    }
  });
});
