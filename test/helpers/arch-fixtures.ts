/**
 * Small random-weight models of each architecture canopy runs, in the tensor layout and with
 * the metadata the real files have: a GGUF file written by the project's writer
 * (lib/model/formats/gguf-writer.ts, with a synthetic SentencePiece vocabulary so llama.cpp can
 * load it too) and, where the architecture has one, a Hugging Face folder (config.json +
 * model.safetensors) of the same model.
 *
 *   writeArchFixture(fixture, dir) -> { gguf, hfDir?, ggufModel, hfModel? }
 *
 * ggufModel / hfModel are what each file must load as (config and canonical f32 tensors), the
 * input of the float64 reference (test/helpers/llama-reference.ts). The two describe the same
 * network: Hugging Face q/k rows are the GGUF rows permuted to the half-split RoPE layout for
 * architectures llama.cpp stores interleaved, and Llama 3's scaling is rope_scaling in
 * config.json but the rope_freqs.weight tensor in GGUF, as the real conversions have them.
 *
 * A llama.cpp agreement test on a fixture is one call: writeArchFixture(f, dir).gguf is an F32
 * file any GGUF reader loads (vocabulary of ARCH_VOCAB tokens >= 259).
 */
import { join } from 'node:path';

import type { ModelConfig } from '../../lib/model/config.js';
import { expectedShapes, layerTensorNames } from '../../lib/model/config.js';
import { syntheticVocabMetadata, writeLlamaGguf } from '../../lib/model/formats/gguf-writer.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { hfConfigJson, hfName, permuteToHalf, writeHfDir, type StTensor } from './model-writers.js';
import { randomConfig, randomWeights } from './random-model.js';
import { llama3FreqFactors } from './rope-reference.js';

/** Vocabulary size of every fixture (llama.cpp needs a vocabulary: 3 special + 256 byte tokens + pieces). */
export const ARCH_VOCAB = 300;

export interface ArchFixture {
  /** Short name, also the file stem. */
  name: string;
  /** What real model it stands for. */
  model: string;
  /** The config as the GGUF file must load. */
  config: ModelConfig;
  /** The GGUF general.architecture written (llama.cpp converts Mistral and SmolLM2 as 'llama'). */
  ggufArch: string;
  /** Fields of config.json beyond hfConfigJson(config), or undefined when there is no HF folder. */
  hf?: { json: Record<string, unknown>; config: Partial<ModelConfig> };
}

const base = (o: Partial<ModelConfig>): ModelConfig =>
  randomConfig({ vocabSize: ARCH_VOCAB, dim: 64, hiddenDim: 96, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, maxSeqLen: 512, normEps: 1e-5, ...o });

// Llama 3.1 / 3.2: theta 500000 and llama3 scaling (factor 8, low 1, high 4) over an original
// context of 64, so that with head size 16 the pairs fall in all three bands (kept, blended, divided).
const LLAMA3 = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 };
const llama3Factors = llama3FreqFactors(16, 500000, LLAMA3.factor, LLAMA3.lowFreqFactor, LLAMA3.highFreqFactor, LLAMA3.originalMaxPositionEmbeddings).map(Math.fround);
const llama3Hf = {
  json: {
    architectures: ['LlamaForCausalLM'],
    rope_scaling: { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 64 },
  },
  config: { ropeScaling: { type: 'llama3' as const, ...LLAMA3 }, ropeFreqFactors: undefined },
};

const YARN = { type: 'yarn' as const, factor: 4, originalMaxPositionEmbeddings: 64, betaFast: 32, betaSlow: 1, attentionFactor: 0.1 * Math.log(4) + 1, truncate: true };

export const ARCH_FIXTURES: ArchFixture[] = [
  {
    name: 'llama31',
    model: 'Llama 3.1 8B (untied head, rope_freqs.weight)',
    config: base({ ropeTheta: 500000, ropeFreqFactors: llama3Factors, tiedEmbeddings: false }),
    ggufArch: 'llama',
    hf: llama3Hf,
  },
  {
    name: 'llama32',
    model: 'Llama 3.2 1B / 3B (tied head, rope_freqs.weight)',
    config: base({ ropeTheta: 500000, ropeFreqFactors: llama3Factors, tiedEmbeddings: true }),
    ggufArch: 'llama',
    hf: llama3Hf,
  },
  {
    name: 'qwen25',
    model: 'Qwen2.5 0.5B-3B (q/k/v biases, tied head, half-split RoPE)',
    config: base({ architecture: 'qwen2', qkvBias: true, ropeStyle: 'half', ropeTheta: 1000000, tiedEmbeddings: true, normEps: 1e-6 }),
    ggufArch: 'qwen2',
    hf: { json: { architectures: ['Qwen2ForCausalLM'], use_sliding_window: false, sliding_window: 131072, max_window_layers: 21 }, config: {} },
  },
  {
    name: 'qwen25yarn',
    model: 'Qwen2.5 7B with YaRN (factor 4) as its model card configures long contexts (untied)',
    config: base({ architecture: 'qwen2', qkvBias: true, ropeStyle: 'half', ropeTheta: 1000000, tiedEmbeddings: false, normEps: 1e-6, ropeScaling: YARN }),
    ggufArch: 'qwen2',
    hf: { json: { architectures: ['Qwen2ForCausalLM'], use_sliding_window: false, rope_scaling: { type: 'yarn', factor: 4.0, original_max_position_embeddings: 64 } }, config: {} },
  },
  {
    name: 'qwen3',
    model: 'Qwen3 0.6B (q/k RMSNorm, heads wider than the model, tied head)',
    config: base({ architecture: 'qwen3', qkNorm: true, ropeStyle: 'half', ropeTheta: 1000000, headDim: 32, tiedEmbeddings: true, normEps: 1e-6 }),
    ggufArch: 'qwen3',
    hf: { json: { architectures: ['Qwen3ForCausalLM'], head_dim: 32, attention_bias: false, use_sliding_window: false, sliding_window: null }, config: {} },
  },
  {
    name: 'mistral',
    model: 'Mistral 7B v0.3 / Nemo (explicit head_dim, untied head, no sliding window)',
    config: base({ architecture: 'llama', ropeTheta: 1000000, headDim: 24, tiedEmbeddings: false }),
    ggufArch: 'llama',
    hf: { json: { architectures: ['MistralForCausalLM'], model_type: 'mistral', head_dim: 24, sliding_window: null }, config: { architecture: 'mistral' } },
  },
  {
    name: 'smollm2',
    model: 'SmolLM2 135M / 360M (tied head, theta 100000, multi-head attention)',
    config: base({ ropeTheta: 100000, nKvHeads: 4, tiedEmbeddings: true }),
    ggufArch: 'llama',
    hf: { json: { architectures: ['LlamaForCausalLM'] }, config: {} },
  },
  {
    name: 'linear',
    model: 'a Llama fine-tuned with linear RoPE scaling (factor 2)',
    config: base({ ropeScaling: { type: 'linear', factor: 2 } }),
    ggufArch: 'llama',
    hf: { json: { rope_scaling: { type: 'linear', factor: 2.0 } }, config: {} },
  },
];

export interface ArchModel {
  config: ModelConfig;
  tensors: Map<string, Tensor>;
}

export interface ArchFixtureFiles {
  gguf: string;
  hfDir?: string;
  ggufModel: ArchModel;
  hfModel?: ArchModel;
}

/** Writes `fixture` under `dir` (GGUF always, the HF folder when the fixture has one); deterministic per seed. */
export function writeArchFixture(fixture: ArchFixture, dir: string, seed = 3): ArchFixtureFiles {
  const config = fixture.config;
  const tensors = randomWeights(config, seed);
  const gguf = join(dir, `${fixture.name}.gguf`);
  writeLlamaGguf(
    gguf,
    { ...config, architecture: fixture.ggufArch as ModelConfig['architecture'] },
    [...tensors].map(([n, t]) => [n, t.toFloat32()] as [string, Float32Array]),
    { extraMetadata: [['general.name', 'string', `canopy ${fixture.name} fixture`], ...syntheticVocabMetadata(config.vocabSize)] },
  );
  const out: ArchFixtureFiles = { gguf, ggufModel: { config: { ...config, architecture: fixture.ggufArch as ModelConfig['architecture'] }, tensors } };
  if (!fixture.hf) return out;
  const hfConfig: ModelConfig = { ...config, ropeStyle: 'half', ...fixture.hf.config };
  if (hfConfig.ropeFreqFactors === undefined) delete hfConfig.ropeFreqFactors;
  const permute = config.ropeStyle === 'interleaved';
  const hfTensors = new Map<string, Tensor>();
  const st: StTensor[] = [];
  const shapes = expectedShapes(hfConfig);
  const q = new Set(Array.from({ length: config.nLayers }, (_, i) => layerTensorNames(i).wq));
  const k = new Set(Array.from({ length: config.nLayers }, (_, i) => layerTensorNames(i).wk));
  for (const [name, t] of tensors) {
    const shape = shapes.get(name)!;
    let v = t.toFloat32();
    if (permute && q.has(name)) v = permuteToHalf(v, config.nHeads, config.headDim, shape[1]!);
    if (permute && k.has(name)) v = permuteToHalf(v, config.nKvHeads, config.headDim, shape[1]!);
    hfTensors.set(name, Tensor.from(v, { shape }));
    st.push({ name: hfName(name), dtype: 'F32', shape: [...shape], data: v });
  }
  const hfDir = join(dir, `${fixture.name}-hf`);
  const json = hfConfigJson(hfConfig, { ...fixture.hf.json });
  if (!('head_dim' in json) && config.headDim * config.nHeads !== config.dim) json.head_dim = config.headDim;
  writeHfDir(hfDir, json, st);
  return { ...out, hfDir, hfModel: { config: hfConfig, tensors: hfTensors } };
}
