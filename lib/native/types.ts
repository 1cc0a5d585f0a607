/**
 * The typed surface of the native addon (csrc/napi/addon.cc). Only lib/
 * wrappers call these directly: they validate arguments first, so the native
 * checks are a second line of defence.
 */

import type { DType } from '../tensor/dtype.js';

/** Device memory owned by a JavaScript object (csrc/napi/device_buffer.h). */
export interface NativeDeviceBuffer {
  readonly bytes: number;
  readonly device: number;
  readonly freed: boolean;
  /** Frees now, or as soon as the async operations using it finish. */
  free(): void;
}

export interface NativeDeviceBufferConstructor {
  new (device: number, bytes: number): NativeDeviceBuffer;
}

/** A dense row-major tensor as the addon reads it. */
export interface TensorDescriptor {
  data: ArrayBufferView | ArrayBuffer | NativeDeviceBuffer;
  /** Offset into a DeviceBuffer, in bytes. */
  byteOffset?: number;
  dtype: DType;
  shape: readonly number[];
  strides?: readonly number[];
}

export interface NativeBuildInfo {
  napiVersion: number;
  cudaCompiled: boolean;
  cudaArchitectures: string;
  compiler: string;
  buildSystem: string;
}

export interface NativeCpuInfo {
  threads: number;
  /** The pool size without CANOPY_THREADS or setThreads: physical cores this process may use. */
  defaultThreads: number;
  model: string;
  features: string[];
}

export interface NativeCudaDevice {
  index: number;
  name: string;
  /** "major.minor", e.g. "9.0". */
  computeCapability: string;
  totalMemory: number;
  multiprocessors: number;
  /** SM boost clock, kHz. */
  clockKHz: number;
  usable: boolean;
  reason: string | null;
}

export interface NativeCudaInfo {
  compiled: boolean;
  available: boolean;
  reason: string | null;
  driverVersion: number;
  runtimeVersion: number;
  architectures: string;
  devices: NativeCudaDevice[];
}

/** The shared prefixes of a forward / step call, one entry per step sequence (len 0: none). */
export interface NativePrefixArgs {
  start: Int32Array;
  len: Int32Array;
  quantLen?: Int32Array;
  resStart?: Int32Array;
}

/** A Llama-family model held natively (csrc/napi/model_bindings.cc). */
export interface NativeModelHandle {
  forward(args: {
    tokens: Int32Array;
    positions: Int32Array;
    qoIndptr: Int32Array;
    kvStart: Int32Array;
    kvLenBefore: Int32Array;
    /** 1 causal, 2 tree */
    mask: number;
    parents?: Int32Array;
    k?: TensorDescriptor;
    v?: TensorDescriptor;
    /** A quantized cache instead of k and v (int4: the per-sequence ring starts and quantized lengths). */
    kvQuant?: { cache: NativeQuantKv; resStart?: Int32Array; quantLenBefore?: Int32Array; quantLenAfter?: Int32Array };
    /** Shared prefixes (csrc/common/llama.h): sequence b first attends to cache rows [start[b], start[b] + len[b]) (int4: their packed length and ring). */
    prefix?: NativePrefixArgs;
    logitRows: Int32Array;
    logits: TensorDescriptor;
    hidden?: TensorDescriptor;
  }): Promise<void>;
  /** forward() plus the token choice and the KV commit in the same call (csrc/common/decode_step.h). */
  step(args: Parameters<NativeModelHandle['forward']>[0] & {
    /** 1 argmax (causal), 2 greedy tree, 3 sample (causal), 4 sampled tree, 5 scores (top-k only) */
    choice: number;
    regionRows: number;
    topK?: number;
    nextToken: TensorDescriptor;
    acceptedCount: TensorDescriptor;
    acceptedNodes: TensorDescriptor;
    newLens: TensorDescriptor;
    topKIds?: TensorDescriptor;
    topKLogprobs?: TensorDescriptor;
    /** The sampler chain of choices 3 and 4 (csrc/common/decode_step.h). */
    sampling?: NativeStepSampling;
  }): Promise<void>;
  dispose(): void;
}

export interface NativeStepSampling {
  params: { temperature: number; topK: number; topP: number; minP: number; repeatPenalty: number; frequencyPenalty: number; presencePenalty: number };
  biasTokens?: Int32Array;
  biasValues?: Float64Array;
  penaltyIndptr?: Int32Array;
  penaltyTokens?: Int32Array;
  penaltyCounts?: Int32Array;
  uniforms?: Float64Array;
  draftProbs?: TensorDescriptor;
  draftRows?: Int32Array;
  probs?: TensorDescriptor;
  probsRows?: Int32Array;
}

export interface NativeModelConfig {
  dim: number;
  hiddenDim: number;
  vocab: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  normEps: number;
  /** 0 interleaved pairs, 1 half split */
  ropeLayout: number;
  invFreq: Float32Array;
  /** Gemma / Phi-3 options (csrc/common/llama.h); absent: the plain Llama forward. */
  embedScale?: number;
  /** 0 silu (SwiGLU), 1 gelu with the tanh approximation (GeGLU) */
  activation?: number;
  attnScale?: number;
  attnSoftcap?: number;
  finalSoftcap?: number;
  layerWindows?: Int32Array;
  invFreqLocal?: Float32Array;
  /** Multiplies RoPE's cos and sin (YaRN); default 1. */
  ropeAttentionFactor?: number;
}

export interface NativeLayerWeights {
  attnNorm: TensorDescriptor;
  wq: TensorDescriptor;
  wk: TensorDescriptor;
  wv: TensorDescriptor;
  wo: TensorDescriptor;
  bq?: TensorDescriptor;
  bk?: TensorDescriptor;
  bv?: TensorDescriptor;
  /** Per-head q / k RMSNorm weights [headDim] (Qwen3), both or neither. */
  qNorm?: TensorDescriptor;
  kNorm?: TensorDescriptor;
  ffnNorm: TensorDescriptor;
  w1: TensorDescriptor;
  w2: TensorDescriptor;
  w3: TensorDescriptor;
  postAttnNorm?: TensorDescriptor;
  postFfnNorm?: TensorDescriptor;
}

/** A quantized KV cache as the addon reads it (csrc/napi/kv_quant_arg.h). */
export interface NativeQuantKv {
  format: 'int8' | 'int4' | 'fp8';
  group?: number;
  ring?: number;
  k: TensorDescriptor;
  v: TensorDescriptor;
  kScale: TensorDescriptor;
  vScale: TensorDescriptor;
  kZero?: TensorDescriptor;
  vZero?: TensorDescriptor;
  resK?: TensorDescriptor;
  resV?: TensorDescriptor;
}

/** A single-layer view of a quantized cache for attention, with int4's per-sequence arrays. */
export interface NativeQuantKvView {
  cache: NativeQuantKv;
  layer?: number;
  quantLens?: Int32Array;
  resStart?: Int32Array;
}

/** Keys and values of a batch for prefixAttention: plain tensors or a quantized view. */
export interface NativeKvSource {
  k?: TensorDescriptor;
  v?: TensorDescriptor;
  kvIndptr: Int32Array;
  kvLens?: Int32Array;
  kvQuant?: NativeQuantKvView;
}

export interface NativeAddon {
  DeviceBuffer: NativeDeviceBufferConstructor;
  NativeModel: new (desc: {
    config: NativeModelConfig;
    weights: { embed: TensorDescriptor; norm: TensorDescriptor; output?: TensorDescriptor; layers: NativeLayerWeights[] };
  }) => NativeModelHandle;
  buildInfo(): NativeBuildInfo;
  cpuInfo(): NativeCpuInfo;
  cudaInfo(): NativeCudaInfo;
  /** Free and total bytes of a CUDA device's memory (cudaMemGetInfo); throws where CUDA is unusable. */
  cudaMemInfo(device: number): { free: number; total: number };
  /** Maps [offset, offset+length) of a file copy-on-write. */
  mapFile(path: string, offset: number, length: number): ArrayBuffer;
  /**
   * Unmaps a buffer from mapFile now, detaching it first (views over it then read as empty).
   * False when the buffer is not a live mapping (already unmapped, or not from mapFile).
   */
  unmapFile(buffer: ArrayBuffer): boolean;
  /**
   * Test hook (csrc/napi/test_bindings.cc): throws a C++ exception of `kind` ('bad_alloc', 'huge',
   * 'runtime', 'unknown') in a binding ('sync'), a thread-pool chunk ('pool'), an async worker
   * ('async') or a pool chunk inside an async worker ('poolAsync').
   */
  throwForTest(where: 'sync' | 'pool' | 'async' | 'poolAsync', kind: 'bad_alloc' | 'huge' | 'runtime' | 'unknown'): Promise<void> | undefined;
  copy(dst: TensorDescriptor, src: TensorDescriptor): Promise<void>;
  copySync(dst: TensorDescriptor, src: TensorDescriptor): void;
  cast(src: TensorDescriptor, dst: TensorDescriptor): Promise<void>;
  /** y = x W^T (+ bias) with W GGUF blocks of ggml type id `type` (CPU; lib/kernels/linear-quant.ts). */
  linearQuant(x: TensorDescriptor, w: TensorDescriptor, type: number, y: TensorDescriptor, bias?: TensorDescriptor, accumulate?: boolean): Promise<void>;
  /** x (f32/f16/bf16 [rows, cols], CPU) quantized into `out` (uint8 blocks of ggml type id `type`): lib/kernels/quantize.ts. */
  quantizeRows(x: TensorDescriptor, type: number, out: TensorDescriptor): Promise<void>;
  /** Linear layer y = x w^T (+ bias) (csrc/common/linear.h); accumulate adds into y. */
  linear(args: { x: TensorDescriptor; w: TensorDescriptor; bias?: TensorDescriptor; y: TensorDescriptor; accumulate: boolean }): Promise<void>;
  /** Resizes the CPU thread pool (waits for a running kernel to finish); returns the new size. */
  setThreads(threads: number): number;
  /** mask: 0 none, 1 causal (bottom-right), 2 tree (parents required). kvQuant replaces k and v. */
  attention(args: {
    q: TensorDescriptor;
    k?: TensorDescriptor;
    v?: TensorDescriptor;
    kvQuant?: NativeQuantKvView;
    o: TensorDescriptor;
    lse?: TensorDescriptor;
    qoIndptr: Int32Array;
    kvIndptr: Int32Array;
    kvLens?: Int32Array;
    mask: number;
    scale: number;
    parents?: Int32Array;
    numSplits?: number;
    naive?: boolean;
    softcap?: number;
    window?: number;
    qPos?: Int32Array;
    kvPos?: Int32Array;
  }): Promise<void>;
  /** Shared-prefix attention (csrc/common/prefix_attention.h). */
  prefixAttention(args: {
    q: TensorDescriptor;
    o: TensorDescriptor;
    lse?: TensorDescriptor;
    qoIndptr: Int32Array;
    scale: number;
    mask: number;
    parents?: Int32Array;
    numSplits?: number;
    softcap?: number;
    window?: number;
    levels: Array<{ seqIndptr: Int32Array; kv: NativeKvSource }>;
    suffix: NativeKvSource;
  }): Promise<void>;
  /** Quantized KV cache ops (csrc/common/kv_quant.h; csrc/napi/kv_quant_bindings.cc). */
  kvQuantAppend(args: {
    cache: NativeQuantKv;
    layer: number;
    kvStart: Int32Array;
    resStart?: Int32Array;
    qoIndptr: Int32Array;
    posBefore: Int32Array;
    quantLen?: Int32Array;
    k: TensorDescriptor;
    v: TensorDescriptor;
  }): Promise<void>;
  kvQuantizeGroups(args: { cache: NativeQuantKv; kvStart: Int32Array; resStart: Int32Array; from: Int32Array; to: Int32Array }): Promise<void>;
  kvRestoreGroupsSync(args: { cache: NativeQuantKv; kvStart: Int32Array; resStart: Int32Array; from: Int32Array; to: Int32Array }): void;
  kvQuantCommit(args: {
    cache: NativeQuantKv;
    kvStart: Int32Array;
    resStart?: Int32Array;
    prefixLens: Int32Array;
    treeIndptr: Int32Array;
    acceptedCount: Int32Array;
    acceptedNodes: Int32Array;
    newLens: TensorDescriptor;
  }): Promise<void>;
  kvDequantize(args: {
    cache: NativeQuantKv;
    layer: number;
    kvStart: Int32Array;
    resStart?: Int32Array;
    kvLens: Int32Array;
    quantLens?: Int32Array;
    kOut: TensorDescriptor;
    vOut: TensorDescriptor;
  }): Promise<void>;
  mergeStates(args: {
    va: TensorDescriptor;
    sa: TensorDescriptor;
    vb: TensorDescriptor;
    sb: TensorDescriptor;
    vOut: TensorDescriptor;
    sOut?: TensorDescriptor;
  }): Promise<void>;
  /** CPU machine limits for benchmarks (csrc/common/machine_bench.h). */
  measureMachine(bytes: number, repeats: number): Promise<{ copyGBps: number; readGBps: number; peakGFlops: number; vectorBits: number; threads: number }>;
  /** CUDA device-to-device copy bandwidth, GB/s (read + write). */
  measureCudaCopy(device: number, bytes: number, repeats: number): Promise<number>;
  /** Greedy choice per row: best[r] = argmax of logits row r (ties: lowest id); logits may be on CUDA. */
  argmaxRows(logits: TensorDescriptor, best: TensorDescriptor): Promise<void>;
  /**
   * The sampler chain (csrc/common/sampling.h): logits [rows, vocab] f32 (host or CUDA); tokens
   * int32 [rows] host (written; -1: no finite distribution); probs / processedLogits f32
   * [rows, vocab] on the logits' device or null.
   */
  samplingChain(
    logits: TensorDescriptor,
    params: { temperature: number; topK: number; topP: number; minP: number; repeatPenalty: number; frequencyPenalty: number; presencePenalty: number },
    biasTokens: Int32Array | null,
    biasValues: Float64Array | null,
    penaltyIndptr: Int32Array | null,
    penaltyTokens: Int32Array | null,
    penaltyCounts: Int32Array | null,
    uniforms: Float64Array | null,
    tokens: TensorDescriptor,
    probs: TensorDescriptor | null,
    processedLogits: TensorDescriptor | null,
  ): Promise<void>;
  mergeStatesN(args: { v: TensorDescriptor; s: TensorDescriptor; vOut: TensorDescriptor; sOut?: TensorDescriptor }): Promise<void>;
  /**
   * Greedy tree verification (csrc/common/verify.h). Tree arrays and outputs are int32 host
   * descriptors: treeIndptr [B+1], treeTokens [N], parents [N]; logits [N+B, vocab] f32/f16/bf16
   * (host or CUDA); outputs acceptedCount [B], acceptedNodes [N] (CSR by treeIndptr, -1 padded),
   * nextToken [B].
   */
  verifyGreedy(
    treeIndptr: TensorDescriptor,
    treeTokens: TensorDescriptor,
    parents: TensorDescriptor,
    logits: TensorDescriptor,
    acceptedCount: TensorDescriptor,
    acceptedNodes: TensorDescriptor,
    nextToken: TensorDescriptor,
  ): Promise<void>;
  /**
   * Sampling tree verification (SpecInfer); targetProbs / draftProbs [N+B, vocab] f32 on one
   * device; uniforms N+B values in [0, 1) (verify.h states which uniform decides what).
   */
  verifySampling(
    treeIndptr: TensorDescriptor,
    treeTokens: TensorDescriptor,
    parents: TensorDescriptor,
    targetProbs: TensorDescriptor,
    draftProbs: TensorDescriptor | null,
    uniforms: Float64Array | Float32Array,
    acceptedCount: TensorDescriptor,
    acceptedNodes: TensorDescriptor,
    nextToken: TensorDescriptor,
  ): Promise<void>;
  /**
   * KV commit (csrc/common/kv_commit.h): k, v [capacity, H, D] or [layers, capacity, H, D];
   * int32 host plan kvIndptr [B+1], prefixLens [B], treeIndptr [B+1], acceptedCount [B],
   * acceptedNodes [N]; output newLens [B].
   */
  commitKv(
    k: TensorDescriptor,
    v: TensorDescriptor,
    kvIndptr: TensorDescriptor,
    prefixLens: TensorDescriptor,
    treeIndptr: TensorDescriptor,
    acceptedCount: TensorDescriptor,
    acceptedNodes: TensorDescriptor,
    newLens: TensorDescriptor,
  ): Promise<void>;
}
