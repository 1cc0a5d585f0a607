/**
 * Small random Gemma 2, Gemma 3 and Phi-3 models written in their real layouts (test code only):
 * GGUF files as llama.cpp's converter writes them (Gemma norm weights with the +1 applied,
 * Phi-3's fused attn_qkv and ffn_up, LongRoPE factor tensors, each architecture's metadata keys)
 * and Hugging Face folders as transformers saves them (Gemma norms as w with 1 + w applied by
 * the model, Gemma 2's four layer norms, Phi-3's qkv_proj / gate_up_proj, rope_scaling). The
 * canonical tensors (the effective weights: what the float64 reference runs) come with them.
 * Ready for a llama.cpp agreement test: the GGUF carries a synthetic SentencePiece vocabulary.
 */
import { writeFileSync } from 'node:fs';

import { randomValues } from '../../lib/bench/suites/util.js';
import { type ModelConfig, expectedShapes, layerTensorNames } from '../../lib/model/config.js';
import { type GgufEntry, type GgufTensorSpec, ggmlFloatBytes, ggufName, llamaGgufMetadata, syntheticVocabMetadata, writeGguf } from '../../lib/model/formats/gguf-writer.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { type StTensor, writeHfDir } from './model-writers.js';

export type ArchName = 'gemma2' | 'gemma3' | 'phi3';

/**
 * A small config of `arch` with the architecture's real options: Gemma 2 alternates window /
 * global layers with soft-capping, Gemma 3 has 5 local layers (RoPE base 10k) per global one
 * (base 1M, linear scaling 8) and q/k norms, Phi-3 has LongRoPE with an original context of 32.
 * vocabSize >= 259 so that llama.cpp accepts the synthetic vocabulary.
 */
export function archConfig(arch: ArchName, overrides: Partial<ModelConfig> = {}): ModelConfig {
  const base: ModelConfig = {
    architecture: arch,
    dim: 64,
    hiddenDim: 96,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 16,
    vocabSize: 300,
    maxSeqLen: 512,
    ropeTheta: 10000,
    ropeStyle: 'half',
    normEps: 1e-6,
    tiedEmbeddings: true,
    qkvBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
  if (arch === 'gemma2') {
    Object.assign(base, {
      nLayers: 4,
      headDim: 32, // != dim / nHeads: written as key_length
      embedScale: Math.fround(Math.sqrt(64)),
      activation: 'gelu_tanh',
      postNorms: true,
      attnScale: 1 / Math.sqrt(32),
      attnSoftcap: 5,
      finalSoftcap: 3,
      layerWindows: [8, 0, 8, 0],
    } satisfies Partial<ModelConfig>);
  } else if (arch === 'gemma3') {
    Object.assign(base, {
      nLayers: 6,
      qkNorm: true,
      embedScale: Math.fround(Math.sqrt(64)),
      activation: 'gelu_tanh',
      postNorms: true,
      attnScale: 1 / Math.sqrt(16),
      layerWindows: [8, 8, 8, 8, 8, 0],
      ropeTheta: 1e6,
      ropeThetaLocal: 10000,
      ropeScaling: { type: 'linear', factor: 8 },
    } satisfies Partial<ModelConfig>);
  } else {
    const half = base.headDim / 2;
    Object.assign(base, {
      tiedEmbeddings: false,
      maxSeqLen: 4096,
      ropeScaling: {
        type: 'longrope',
        longFactors: Array.from({ length: half }, (_, j) => Math.fround(1 + j * 0.9)),
        shortFactors: Array.from({ length: half }, (_, j) => Math.fround(1 + j * 0.05)),
        originalMaxPositionEmbeddings: 32,
        attentionFactor: Math.fround(Math.sqrt(1 + Math.log(4096 / 32) / Math.log(32))),
      },
    } satisfies Partial<ModelConfig>);
  }
  return { ...base, ...overrides };
}

/** Random canonical tensors of `config` (norms around 1, matrices uniform in +-scale). */
export function archTensors(config: ModelConfig, seed = 3, scale = 0.3): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  let s = seed;
  for (const [name, shape] of expectedShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = randomValues(n, s++);
    const isNorm = name.endsWith('Norm') || name === 'norm';
    for (let i = 0; i < n; i++) v[i] = isNorm ? 1 + 0.3 * v[i]! : scale * v[i]!;
    out.set(name, v);
  }
  return out;
}

export function asTensors(config: ModelConfig, values: Map<string, Float32Array>): Map<string, Tensor> {
  const shapes = expectedShapes(config);
  return new Map([...values].map(([k, v]) => [k, Tensor.from(v, { shape: shapes.get(k)! })]));
}

const concat = (parts: Float32Array[]) => {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

/** The GGUF metadata llama.cpp reads for `c` (architecture keys, a synthetic vocabulary). */
export function archGgufMetadata(c: ModelConfig): GgufEntry[] {
  const a = c.architecture;
  const m: GgufEntry[] = [
    ...llamaGgufMetadata(c, a),
    [`${a}.attention.key_length`, 'uint32', c.headDim],
    [`${a}.attention.value_length`, 'uint32', c.headDim],
    [`${a}.rope.dimension_count`, 'uint32', c.headDim],
  ];
  if (a === 'gemma2' || a === 'gemma3') {
    const window = c.layerWindows?.find((w) => w > 0);
    if (window !== undefined) m.push([`${a}.attention.sliding_window`, 'uint32', window]);
    if (c.attnSoftcap !== undefined) m.push([`${a}.attn_logit_softcapping`, 'float32', c.attnSoftcap]);
    if (c.finalSoftcap !== undefined) m.push([`${a}.final_logit_softcapping`, 'float32', c.finalSoftcap]);
  }
  if (c.ropeScaling?.type === 'linear') {
    m.push([`${a}.rope.scaling.type`, 'string', 'linear'], [`${a}.rope.scaling.factor`, 'float32', c.ropeScaling.factor]);
  }
  if (c.ropeScaling?.type === 'longrope') {
    m.push(
      [`${a}.rope.scaling.attn_factor`, 'float32', c.ropeScaling.attentionFactor],
      [`${a}.rope.scaling.original_context_length`, 'uint32', c.ropeScaling.originalMaxPositionEmbeddings],
    );
  }
  // llamaGgufMetadata may already write some of these (head size, rope scaling): keep the first.
  const seen = new Set<string>();
  return [...m, ...syntheticVocabMetadata(c.vocabSize)].filter(([k]) => (seen.has(k) ? false : (seen.add(k), true)));
}

/** Writes `c` as llama.cpp's converter would, F32 (or `type` for matrices): see the module comment. */
export function writeArchGguf(path: string, c: ModelConfig, values: Map<string, Float32Array>, type: 0 | 1 | 30 = 0): void {
  const shapes = expectedShapes(c);
  const specs: GgufTensorSpec[] = [];
  const add = (name: string, v: Float32Array, ne: number[]) => {
    const t = ne.length === 1 ? 0 : type;
    specs.push({ name, type: t, ne, data: ggmlFloatBytes(v, t) });
  };
  const fused = new Set<string>();
  for (let i = 0; i < c.nLayers && c.architecture === 'phi3'; i++) {
    const n = layerTensorNames(i);
    add(`blk.${i}.attn_qkv.weight`, concat([values.get(n.wq)!, values.get(n.wk)!, values.get(n.wv)!]), [c.dim, (c.nHeads + 2 * c.nKvHeads) * c.headDim]);
    add(`blk.${i}.ffn_up.weight`, concat([values.get(n.w1)!, values.get(n.w3)!]), [c.dim, 2 * c.hiddenDim]);
    [n.wq, n.wk, n.wv, n.w1, n.w3].forEach((x) => fused.add(x));
  }
  for (const [name, v] of values) {
    if (fused.has(name)) continue;
    add(ggufName(name), v, [...shapes.get(name)!].reverse());
  }
  if (c.ropeScaling?.type === 'longrope') {
    add('rope_factors_long.weight', Float32Array.from(c.ropeScaling.longFactors), [c.headDim / 2]);
    add('rope_factors_short.weight', Float32Array.from(c.ropeScaling.shortFactors), [c.headDim / 2]);
  }
  writeGguf(path, { metadata: archGgufMetadata(c), tensors: specs });
}

const HF_TYPES: Record<ArchName, { model_type: string; architectures: string[] }> = {
  gemma2: { model_type: 'gemma2', architectures: ['Gemma2ForCausalLM'] },
  gemma3: { model_type: 'gemma3_text', architectures: ['Gemma3ForCausalLM'] },
  phi3: { model_type: 'phi3', architectures: ['Phi3ForCausalLM'] },
};

/** config.json of `c` with the fields transformers' Gemma2Config / Gemma3TextConfig / Phi3Config use. */
export function archHfConfig(c: ModelConfig): Record<string, unknown> {
  const a = c.architecture as ArchName;
  const json: Record<string, unknown> = {
    ...HF_TYPES[a],
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.normEps,
    tie_word_embeddings: c.tiedEmbeddings,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  };
  if (a === 'gemma2' || a === 'gemma3') {
    json.hidden_activation = 'gelu_pytorch_tanh';
    json.query_pre_attn_scalar = 1 / c.attnScale! ** 2;
    json.sliding_window = c.layerWindows?.find((w) => w > 0) ?? null;
    json.attn_logit_softcapping = c.attnSoftcap ?? null;
    json.final_logit_softcapping = c.finalSoftcap ?? null;
  }
  if (a === 'gemma3') {
    json.rope_local_base_freq = c.ropeThetaLocal;
    json.layer_types = c.layerWindows!.map((w) => (w > 0 ? 'sliding_attention' : 'full_attention'));
    json.rope_scaling = c.ropeScaling?.type === 'linear' ? { rope_type: 'linear', factor: c.ropeScaling.factor } : null;
  }
  if (a === 'phi3' && c.ropeScaling?.type === 'longrope') {
    json.original_max_position_embeddings = c.ropeScaling.originalMaxPositionEmbeddings;
    json.rope_scaling = { type: 'longrope', long_factor: c.ropeScaling.longFactors, short_factor: c.ropeScaling.shortFactors };
  }
  return json;
}

/** Writes a Hugging Face folder of `c` (F32) with the architecture's own tensor names and layout. */
export function writeArchHf(dir: string, c: ModelConfig, values: Map<string, Float32Array>, editConfig: (json: Record<string, unknown>) => Record<string, unknown> = (j) => j): void {
  const a = c.architecture as ArchName;
  const shapes = expectedShapes(c);
  const st: StTensor[] = [];
  const gemma = a !== 'phi3';
  const put = (name: string, v: Float32Array, shape: number[]) => st.push({ name, dtype: 'F32', shape, data: v });
  // Gemma RMSNorm weights are stored as w, the model multiplying by (1 + w).
  const norm = (v: Float32Array) => (gemma ? v.map((x) => x - 1) : v);
  put('model.embed_tokens.weight', values.get('embed')!, shapes.get('embed')!);
  put('model.norm.weight', norm(values.get('norm')!), [c.dim]);
  if (!c.tiedEmbeddings) put('lm_head.weight', values.get('output')!, shapes.get('output')!);
  for (let i = 0; i < c.nLayers; i++) {
    const n = layerTensorNames(i);
    const p = `model.layers.${i}.`;
    const get = (x: string) => values.get(x)!;
    put(`${p}input_layernorm.weight`, norm(get(n.attnNorm)), [c.dim]);
    if (gemma) {
      put(`${p}post_attention_layernorm.weight`, norm(get(n.postAttnNorm)), [c.dim]);
      put(`${p}pre_feedforward_layernorm.weight`, norm(get(n.ffnNorm)), [c.dim]);
      put(`${p}post_feedforward_layernorm.weight`, norm(get(n.postFfnNorm)), [c.dim]);
      put(`${p}self_attn.q_proj.weight`, get(n.wq), shapes.get(n.wq)!);
      put(`${p}self_attn.k_proj.weight`, get(n.wk), shapes.get(n.wk)!);
      put(`${p}self_attn.v_proj.weight`, get(n.wv), shapes.get(n.wv)!);
      if (c.qkNorm) {
        put(`${p}self_attn.q_norm.weight`, norm(get(n.qNorm)), [c.headDim]);
        put(`${p}self_attn.k_norm.weight`, norm(get(n.kNorm)), [c.headDim]);
      }
      put(`${p}mlp.gate_proj.weight`, get(n.w1), shapes.get(n.w1)!);
      put(`${p}mlp.up_proj.weight`, get(n.w3), shapes.get(n.w3)!);
    } else {
      put(`${p}post_attention_layernorm.weight`, get(n.ffnNorm), [c.dim]);
      put(`${p}self_attn.qkv_proj.weight`, concat([get(n.wq), get(n.wk), get(n.wv)]), [(c.nHeads + 2 * c.nKvHeads) * c.headDim, c.dim]);
      put(`${p}mlp.gate_up_proj.weight`, concat([get(n.w1), get(n.w3)]), [2 * c.hiddenDim, c.dim]);
    }
    put(`${p}self_attn.o_proj.weight`, get(n.wo), shapes.get(n.wo)!);
    put(`${p}mlp.down_proj.weight`, get(n.w2), shapes.get(n.w2)!);
  }
  writeHfDir(dir, editConfig(archHfConfig(c)), st);
  writeFileSync(`${dir}/generation_config.json`, JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }));
}
