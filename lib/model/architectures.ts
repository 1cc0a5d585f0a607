/**
 * The architectures canopy runs, named as GGUF's general.architecture and Hugging Face's
 * config.json model_type name them, with what sets them apart and, per format, the tensors a
 * file may hold that are known to be safe to ignore. Any other tensor a loader does not
 * recognise is an error naming it: an unknown tensor may change the math (Llama 3.1's
 * rope_freqs.weight does), so it is never skipped silently.
 *
 *   llama    Llama 1/2/3.x, SmolLM/SmolLM2, TinyLlama, Mistral as llama.cpp converts it; GGUF q/k
 *            rows interleaved (Meta's layout); q/k/v biases only when the file has them.
 *   mistral  Hugging Face MistralForCausalLM (a llama with sliding_window; null in v0.2 and later).
 *   qwen2    Qwen2 / Qwen2.5: q/k/v biases; GGUF q/k rows half-split (NeoX).
 *   qwen3    Qwen3: per-head RMSNorm of q and k before RoPE (qNorm / kNorm [headDim]); no biases.
 *   gemma2   Gemma 2: GeGLU, post-attention / post-MLP norms, soft-capping, alternating sliding
 *            windows, embedding scale (lib/model/formats/arch-options.ts); GGUF q/k rows half-split.
 *   gemma3   Gemma 3 (text): as Gemma 2 without soft-capping, with q/k norms, 5 local layers per
 *            global one and a local RoPE base (HF model_type gemma3_text).
 *   phi3     Phi-3 / Phi-3.5: fused qkv and gate_up matrices, LongRoPE.
 *
 * GGUF allow-lists are empty: llama.cpp itself refuses a file with a tensor it does not create
 * ("wrong number of tensors"), so no converter writes one. Hugging Face checkpoints may carry
 * the rotary inverse-frequency buffer that older transformers versions saved with the weights
 * (it is recomputed from config.json).
 */
export type ArchitectureName = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma2' | 'gemma3' | 'phi3';

export interface ArchitectureInfo {
  /** The layout llama.cpp's converter stores q/k rows in, in GGUF (Hugging Face is always 'half'); config.ts's RopeStyle. */
  ggufRope: 'interleaved' | 'half';
  /** q/k/v biases: 'always', 'never', or 'optional' (present when the file has them). */
  qkvBias: 'always' | 'never' | 'optional';
  /** Per-head q/k RMSNorm. */
  qkNorm: boolean;
  /** Tensor names in GGUF files safe to ignore. */
  ggufIgnored: readonly RegExp[];
  /** Tensor names in Hugging Face safetensors safe to ignore. */
  hfIgnored: readonly RegExp[];
}

/** Rotary inverse frequencies saved as buffers by older transformers versions (per layer, or once). */
const HF_ROTARY_BUFFERS: readonly RegExp[] = [/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/, /^model\.rotary_emb\.inv_freq$/];

export const ARCHITECTURES: Readonly<Record<ArchitectureName, ArchitectureInfo>> = {
  llama: { ggufRope: 'interleaved', qkvBias: 'optional', qkNorm: false, ggufIgnored: [], hfIgnored: HF_ROTARY_BUFFERS },
  mistral: { ggufRope: 'interleaved', qkvBias: 'never', qkNorm: false, ggufIgnored: [], hfIgnored: HF_ROTARY_BUFFERS },
  qwen2: { ggufRope: 'half', qkvBias: 'always', qkNorm: false, ggufIgnored: [], hfIgnored: HF_ROTARY_BUFFERS },
  qwen3: { ggufRope: 'half', qkvBias: 'never', qkNorm: true, ggufIgnored: [], hfIgnored: HF_ROTARY_BUFFERS },
  // Gemma 2 / 3 and Phi-3: lib/model/formats/arch-options.ts.
  gemma2: { ggufRope: 'half', qkvBias: 'never', qkNorm: false, ggufIgnored: [], hfIgnored: HF_ROTARY_BUFFERS },
  gemma3: { ggufRope: 'half', qkvBias: 'never', qkNorm: true, ggufIgnored: [], hfIgnored: HF_ROTARY_BUFFERS },
  phi3: { ggufRope: 'half', qkvBias: 'never', qkNorm: false, ggufIgnored: [], hfIgnored: HF_ROTARY_BUFFERS },
};

export function isArchitecture(name: unknown): name is ArchitectureName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(ARCHITECTURES, name);
}

/** Whether tensor `name` of an `arch` file in `format` is on the allow-list of ignorable tensors. */
export function isIgnorableTensor(arch: ArchitectureName, format: 'gguf' | 'hf', name: string): boolean {
  const list = format === 'gguf' ? ARCHITECTURES[arch].ggufIgnored : ARCHITECTURES[arch].hfIgnored;
  return list.some((re) => re.test(name));
}
