/**
 * Model: a Llama-family model whose forward pass is ONE native call per step
 * (all layers, off the JavaScript thread), on the CPU or a CUDA device.
 *
 * Weight storage (whatever the file holds): CPU keeps f32 / f16 / bf16 weights as they are
 * (memory-mapped, no copy) unless `dtype` asks for a conversion; CUDA uploads them and
 * converts to `dtype` (default f16). Conversions round to nearest even. Biases and the
 * attention/RMSNorm math stay f32. GGUF block-quantized matrices (`weights.quant`, e.g. Q4_K)
 * are read as stored, each with its own type (files mix them): on the CPU every type; CUDA
 * uploads the blocks as stored (owned copies, accounted as float weights are) for the types of
 * CUDA_QUANT_TYPES (the embedding: any type) and refuses a file with others, naming the tensor
 * ('auto' then picks the CPU and says why in fallbackReason); `dtype` applies to the float matrices.
 */

import { ArgumentError, DisposedError, awaitNative, callNative } from '../errors.js';
import { treeDepths } from '../kernels/attention.js';
import { type SamplerChain, chainHasPenalties, penaltyCounts } from '../kernels/sampling.js';
import { type Backend, type Device, selectBackend } from '../native/backend.js';
import { native } from '../native/loader.js';
import { checkThreadsOption, setThreads } from '../native/threads.js';
import type { NativeLayerWeights, NativeModelConfig, NativeModelHandle, NativeStepSampling, TensorDescriptor } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import type { FloatDType } from '../tensor/dtype.js';
import { CUDA_QUANT_TYPES, QUANT_TYPES, type QuantType, quantRowBytes } from '../tensor/quant-types.js';
import { type ModelConfig, expectedShapes, layerTensorNames } from './config.js';
import { KvCache, type KvCacheOptions, type KvStepPlan } from './kv-cache.js';
import { retainWeightMaps } from './formats/common.js';
import { ropeLocalInverseFrequencies, ropeParameters } from './rope.js';

/** Whether CUDA runs matrix `name` stored as `q`: the embedding lookup reads every type (unless it is also the output head). */
function cudaRunsQuant(name: string, q: QuantType, tied: boolean): boolean {
  return CUDA_QUANT_TYPES.includes(q) || (name === 'embed' && !tied);
}

export interface ModelWeights {
  config: ModelConfig;
  tensors: Map<string, Tensor>;
  /** Block-quantized matrices: canonical name -> type; each such tensor holds its blocks as uint8 (lib/tensor/quant-types.ts). */
  quant?: ReadonlyMap<string, QuantType>;
}

export interface ModelOptions {
  backend?: Backend | Device;
  /** Storage dtype of the weights on the device (CPU default: as loaded; CUDA default: f16). */
  dtype?: FloatDType;
  /**
   * CPU threads for every CPU kernel from now on (the pool is process-wide: see setThreads);
   * default: as it is (CANOPY_THREADS, else the physical cores). Results do not depend on it.
   */
  threads?: number;
  /**
   * The context the model will run with (default config.maxSeqLen): Phi-3's LongRoPE uses its
   * short factors when it is within the original training context, the long ones beyond (as
   * llama.cpp chooses by its context size).
   */
  contextLength?: number;
}

/** One sequence's tokens for a forward step. */
export interface ForwardSequence {
  /** Cache sequence index. */
  sequence: number;
  tokens: ArrayLike<number>;
  /**
   * Tree step: parents of the tokens (local indices, -1 = child of the committed prefix).
   * The tokens' keys are appended uncommitted; call cache.commit() after verification.
   */
  parents?: ArrayLike<number>;
}

export interface ForwardOptions {
  /** Which rows get logits: 'last' token of each sequence (default), 'all', or explicit indices. */
  logits?: 'last' | 'all' | number[];
  /** Also return the final-normed hidden states of those rows. */
  hidden?: boolean;
}

export interface ForwardResult {
  /** [rows, vocab] f32 on the model's device. */
  logits: Tensor;
  /** Token index (into the concatenated step tokens) of each logits row. */
  rows: number[];
  hidden?: Tensor;
}

/** The native forward's Gemma / Phi-3 options for `config` (empty for the plain Llama block). */
function gemmaOptions(config: ModelConfig): Partial<NativeModelConfig> {
  const out: Partial<NativeModelConfig> = {};
  if (config.embedScale !== undefined) out.embedScale = config.embedScale;
  if (config.activation === 'gelu_tanh') out.activation = 1;
  if (config.attnScale !== undefined) out.attnScale = config.attnScale;
  if (config.attnSoftcap !== undefined) out.attnSoftcap = config.attnSoftcap;
  if (config.finalSoftcap !== undefined) out.finalSoftcap = config.finalSoftcap;
  if (config.layerWindows !== undefined) out.layerWindows = Int32Array.from(config.layerWindows);
  const local = ropeLocalInverseFrequencies(config);
  if (local) out.invFreqLocal = local;
  return out;
}

/** One sequence of a decode step (Model.step). */
export interface StepSequence {
  /** Cache sequence index (increasing along the step). */
  sequence: number;
  /** Causal steps: the tokens to feed (a prompt chunk, or the pending token). Tree steps: exactly the pending token. */
  tokens: ArrayLike<number>;
  /** A draft tree below the pending token: parents[i] = the parent draft node, -1 for a child of the pending token. */
  draft?: { tokens: ArrayLike<number>; parents: ArrayLike<number> };
}

/**
 * A sampled step's token choice (Model.step's options.sampling): the native sampler chain
 * (csrc/common/sampling.h) on the logits where they are, then (tree steps) sampling
 * verification (verify.h) and the commit, in the same native call.
 */
export interface StepSampling {
  /** The chain (lib/kernels/sampling.ts checkSamplerChain); temperature 0 takes the argmax of the biased, penalised logits. */
  chain: SamplerChain;
  /**
   * Causal steps: one uniform per sequence (default 0). Tree steps with temperature > 0: one per
   * step row in verify.h's convention (a sequence's pending row drives its final draw, row 1 + i
   * the acceptance of draft node i).
   */
  uniforms?: Float64Array;
  /**
   * The penalty context of every logits row: the tokens before the position it predicts (a tree
   * row: the sequence's tokens, then the node's ancestors and the node). Required when the chain penalises.
   */
  contexts?: ReadonlyArray<ArrayLike<number>>;
  /**
   * Tree steps, temperature > 0: the draft's q, row rows[r] of tensor ([*, vocab] f32 on the model's
   * device) for step row r, -1 for none (every row with children needs one). Absent: point masses.
   */
  draftProbs?: { tensor: Tensor; rows: ArrayLike<number> };
  /** Causal steps: the processed distribution of sequence b is written to row rows[b] of tensor (-1: not written): a draft's q. */
  probsInto?: { tensor: Tensor; rows: ArrayLike<number> };
}

export interface StepOptions {
  /** Sample (the sampler chain) instead of the argmax / greedy verification. */
  sampling?: StepSampling;
  /** Return the logits rows (causal: the last token of each sequence; tree: every step token). */
  logits?: boolean;
  /** Return the final-normed hidden states of the same rows. */
  hidden?: boolean;
  /** Return the ids of the k largest logits of each row (argmax order; -1 past the row's values above -inf). */
  topK?: number;
}

export interface StepResult {
  /** Per step sequence, in order: the token after its accepted path and the accepted draft nodes (root to leaf). */
  sequences: Array<{ sequence: number; nextToken: number; acceptedNodes: number[] }>;
  /** Token index (into the concatenated step tokens: per sequence, pending then draft) of each logits row. */
  rows: number[];
  /** With options.logits: [rows, vocab] f32 on the model's device (the caller disposes it). */
  logits?: Tensor;
  /** With options.hidden: [rows, dim] f32. */
  hidden?: Tensor;
  /** With options.topK: [rows * topK] ids. */
  topK?: Int32Array;
}

export interface TopKResult {
  /** Token index (into the concatenated step tokens) of each row. */
  rows: number[];
  /** [rows * k] ids of the k largest logits of each row (argmax order; -1 past the row's values above -inf). */
  ids: Int32Array;
  /** [rows * k] their log-probabilities (log-softmax of the row, in double; -Infinity where the id is -1). */
  logprobs: Float32Array;
}

/** A step's sequences checked and laid out for the native call. */
interface PreparedStep {
  isTree: boolean;
  sorted: ForwardSequence[];
  tokens: number[];
  positions: number[];
  parents: number[];
  qoIndptr: number[];
  lastRows: number[];
  counts: number[];
}

interface StepOutputs {
  args: { logits: TensorDescriptor; hidden?: TensorDescriptor };
  logits?: Tensor;
  hidden?: Tensor;
  /** Gives back the logits buffer (disposes it, or frees the scratch). */
  release(): void;
}

export class Model {
  readonly config: ModelConfig;
  readonly device: Device;
  readonly fallbackReason: string | undefined;
  /** Storage dtype of the float weight matrices on the device (block-quantized ones: weightTypes). */
  readonly weightDtype: FloatDType;
  /** The storage type of every matrix (canonical name -> f32 / f16 / bf16 or a block type). */
  readonly weightTypes: ReadonlyMap<string, FloatDType | QuantType>;
  readonly #native: NativeModelHandle;
  readonly #owned: Tensor[];
  /** Gives back this model's reference on the weights' file maps (lib/model/formats/common.ts). */
  readonly #releaseMaps: () => void;
  /** Forward calls in flight: the file maps are released only after the last one ends. */
  #inflight = 0;
  #disposed = false;
  /** Logits nobody reads (Model.step without options.logits), grow-only. */
  #scratch: Tensor | undefined;
  #scratchBusy = false;

  private constructor(
    config: ModelConfig,
    device: Device,
    weightDtype: FloatDType,
    weightTypes: ReadonlyMap<string, FloatDType | QuantType>,
    handle: NativeModelHandle,
    owned: Tensor[],
    releaseMaps: () => void,
    fallbackReason?: string,
  ) {
    this.config = config;
    this.device = device;
    this.weightDtype = weightDtype;
    this.weightTypes = weightTypes;
    this.#native = handle;
    this.#owned = owned;
    this.#releaseMaps = releaseMaps;
    this.fallbackReason = fallbackReason;
  }

  /** Builds a model from loaded weights (see lib/model/weights.ts), placing them on the backend. */
  static async fromWeights(weights: ModelWeights, options: ModelOptions = {}): Promise<Model> {
    const { config, tensors } = weights;
    const quant = weights.quant ?? new Map<string, QuantType>();
    // Block-quantized weights: CUDA runs the linear layers of CUDA_QUANT_TYPES (the embedding lookup
    // reads every type); 'auto' picks the CPU for a file with any other block-quantized matrix.
    const threads = checkThreadsOption(options.threads);
    const contextLength = options.contextLength ?? config.maxSeqLen;
    if (!Number.isSafeInteger(contextLength) || contextLength < 1) throw new ArgumentError('options.contextLength', 'a positive integer', options.contextLength);
    const auto = (options.backend ?? 'auto') === 'auto';
    const selected = selectBackend(options.backend ?? 'auto', 'backend');
    const noCuda = [...quant].find(([name, q]) => !cudaRunsQuant(name, q, config.tiedEmbeddings));
    const placement =
      auto && noCuda && selected.device !== 'cpu'
        ? { device: 'cpu' as Device, fallbackReason: `${noCuda[0]} is ${noCuda[1]}: CUDA runs the block types ${CUDA_QUANT_TYPES.join(', ')} (others on the CPU only for now)` }
        : selected;
    if (threads !== undefined) setThreads(threads);
    const device = placement.device;
    const dtype = options.dtype ?? (device === 'cpu' ? undefined : 'f16');
    for (const [name, shape] of expectedShapes(config)) {
      const t = tensors.get(name);
      if (!t) throw new ArgumentError(`weights.tensors.get('${name}')`, 'a tensor', undefined);
      const q = quant.get(name);
      if (q !== undefined) {
        if (!(q in QUANT_TYPES)) throw new ArgumentError(`weights.quant.get('${name}')`, `one of ${Object.keys(QUANT_TYPES).join(', ')}`, q);
        if (shape.length !== 2 || shape[1]! % QUANT_TYPES[q].block !== 0) {
          throw new ArgumentError(`${name}.shape`, `a matrix with a multiple of ${QUANT_TYPES[q].block} columns for ${q}`, shape);
        }
        const bytes = shape[0]! * quantRowBytes(q, shape[1]!);
        if (t.dtype !== 'uint8' || t.byteLength !== bytes) {
          throw new ArgumentError(`weights.tensors.get('${name}')`, `uint8 blocks of ${bytes} bytes (${q} [${shape.join(', ')}])`, `${t.dtype} of ${t.byteLength} bytes`);
        }
        if (device !== 'cpu' && !cudaRunsQuant(name, q, config.tiedEmbeddings)) {
          throw new ArgumentError(
            'options.backend',
            `'cpu' for a model with ${name} in ${q}: CUDA runs the block types ${CUDA_QUANT_TYPES.join(', ')} (others on the CPU only for now)`,
            device,
          );
        }
      } else if (t.shape.join() !== shape.join()) {
        throw new ArgumentError(`${name}.shape`, `[${shape.join(', ')}]`, t.shape);
      }
    }
    const owned: Tensor[] = [];
    // The native model points into the weights' memory maps: hold them until dispose(), so
    // weights.dispose() before the model's cannot unmap memory the model still reads.
    const releaseMaps = retainWeightMaps(tensors);
    // Float matrices share one dtype: `dtype` if given, else the first float matrix's (the
    // embedding's when it is a float; a file mixing float dtypes is converted to it). Block-quantized
    // matrices keep their own types.
    const matrices = ['embed', ...(config.tiedEmbeddings ? [] : ['output'])];
    for (let i = 0; i < config.nLayers; i++) {
      const n = layerTensorNames(i);
      matrices.push(n.wq, n.wk, n.wv, n.wo, n.w1, n.w2, n.w3);
    }
    const firstFloat = matrices.find((n) => !quant.has(n));
    const matrixDtype: FloatDType = dtype ?? ((firstFloat ? tensors.get(firstFloat)!.dtype : 'f32') as FloatDType);
    const weightTypes = new Map<string, FloatDType | QuantType>();
    // Places one tensor: matrices in matrixDtype, norms as loaded on the CPU (f32 on CUDA),
    // biases f32; converted and moved copies are owned (disposed with the model).
    const place = async (name: string, kind: 'matrix' | 'norm' | 'bias'): Promise<TensorDescriptor> => {
      let t = tensors.get(name)!;
      const want: FloatDType = kind === 'bias' ? 'f32' : kind === 'norm' ? (device === 'cpu' ? (t.dtype as FloatDType) : 'f32') : matrixDtype;
      if (t.dtype !== want) {
        t = await t.cast(want);
        owned.push(t);
      }
      if (t.device !== device) {
        t = await t.to(device);
        owned.push(t);
      }
      return t.descriptor(name);
    };
    const placeMatrix = async (name: string): Promise<TensorDescriptor & { quant?: number }> => {
      const q = quant.get(name);
      if (q === undefined) {
        weightTypes.set(name, matrixDtype);
        return place(name, 'matrix');
      }
      weightTypes.set(name, q);
      // Uploaded as stored (the blocks, no dequantized copy) and owned, as a float matrix's copy.
      let t = tensors.get(name)!;
      if (t.device !== device) {
        t = await t.to(device);
        owned.push(t);
      }
      return { ...t.descriptor(name), quant: QUANT_TYPES[q].id };
    };
    try {
      const layers: NativeLayerWeights[] = [];
      for (let i = 0; i < config.nLayers; i++) {
        const n = layerTensorNames(i);
        layers.push({
          attnNorm: await place(n.attnNorm, 'norm'),
          wq: await placeMatrix(n.wq),
          wk: await placeMatrix(n.wk),
          wv: await placeMatrix(n.wv),
          wo: await placeMatrix(n.wo),
          ...(config.qkvBias ? { bq: await place(n.bq, 'bias'), bk: await place(n.bk, 'bias'), bv: await place(n.bv, 'bias') } : {}),
          ...(config.qkNorm ? { qNorm: await place(n.qNorm, 'norm'), kNorm: await place(n.kNorm, 'norm') } : {}),
          ffnNorm: await place(n.ffnNorm, 'norm'),
          w1: await placeMatrix(n.w1),
          w2: await placeMatrix(n.w2),
          w3: await placeMatrix(n.w3),
          ...(config.postNorms ? { postAttnNorm: await place(n.postAttnNorm, 'norm'), postFfnNorm: await place(n.postFfnNorm, 'norm') } : {}),
        });
      }
      const embed = await placeMatrix('embed');
      const norm = await place('norm', 'norm');
      const output = config.tiedEmbeddings ? undefined : await placeMatrix('output');
      const rope = ropeParameters(config, contextLength);
      const addon = native();
      const handle = callNative(
        () =>
          new addon.NativeModel({
            config: {
              dim: config.dim,
              hiddenDim: config.hiddenDim,
              vocab: config.vocabSize,
              nLayers: config.nLayers,
              nHeads: config.nHeads,
              nKvHeads: config.nKvHeads,
              headDim: config.headDim,
              normEps: config.normEps,
              ropeLayout: config.ropeStyle === 'interleaved' ? 0 : 1,
              invFreq: rope.invFreq,
              ropeAttentionFactor: rope.attentionFactor,
              ...gemmaOptions(config),
            },
            weights: { embed, norm, ...(output ? { output } : {}), layers },
          }),
      );
      return new Model(config, device, matrixDtype, weightTypes, handle, owned, releaseMaps, placement.fallbackReason);
    } catch (e) {
      owned.forEach((t) => t.dispose());
      releaseMaps();
      throw e;
    }
  }

  /**
   * A KV cache for this model on its device: f32 by default; f16 / bf16; or quantized with
   * `dtype: 'int8' | 'int4' | 'fp8'` (see KvCacheOptions and lib/kernels/kv-quant.ts).
   */
  createCache(options: KvCacheOptions = {}): KvCache {
    if (this.#disposed) throw new DisposedError('Model');
    return new KvCache(this.config, this.device, options);
  }

  /**
   * Runs every layer over the step's tokens (one native call). Causal steps commit the
   * tokens to the cache; tree steps leave them uncommitted. A sequence with a shared prefix
   * (KvCache.attachPrefix) attends to the prefix rows through prefix attention (the prefix part
   * and its own part merged by LSE: equal to attention over the concatenated keys up to the
   * summation order); its positions continue after the prefix.
   */
  async forward(cache: KvCache, step: ForwardSequence[], options: ForwardOptions = {}): Promise<ForwardResult> {
    const c = this.#prepare(cache, step);
    const want = options.logits ?? 'last';
    const rows = want === 'last' ? c.lastRows : want === 'all' ? c.tokens.map((_, i) => i) : want;
    if (!Array.isArray(rows) || rows.some((r) => !Number.isInteger(r) || r < 0 || r >= c.tokens.length)) {
      throw new ArgumentError('options.logits', `'last', 'all' or row indices in [0, ${c.tokens.length - 1}]`, want);
    }
    const plan = cache.plan(c.sorted.map((s) => s.sequence), c.counts);
    const out = this.#outputs(rows.length, true, options.hidden === true);
    await this.#call(() => this.#native.forward({ ...this.#nativeArgs(c, plan, rows), ...out.args }), out);
    plan.done(c.isTree ? undefined : c.counts.map((n, i) => plan.kvLenBefore[i]! + n));
    return out.hidden ? { logits: out.logits!, rows, hidden: out.hidden } : { logits: out.logits!, rows };
  }

  /**
   * One greedy decode step in ONE native call (csrc/common/decode_step.h): the forward pass,
   * the token choice and the KV commit; only token ids and accepted nodes cross to JavaScript
   * unless the options ask for more.
   *
   *   causal (no sequence has a draft): each sequence's tokens are fed and committed;
   *     nextToken = argmax of the logits after its last token.
   *   tree (some sequence has a non-empty draft): each sequence feeds exactly one token, its
   *     pending token, with its draft tree below it; greedy verification accepts a path
   *     (acceptedNodes: draft node indices, root to leaf) and nextToken follows it; the pending
   *     token and the accepted nodes are committed. Equals forward + verifyGreedyBatch + commit.
   *   nextToken is -1 where the logits row has no value above -inf (NaN weights or overflow).
   *   With options.sampling the choice is the native sampler chain instead: causal steps draw
   *   each sequence's token with its uniform; tree steps run the chain over every row (each
   *   penalised from its own path) and verify by SpecInfer sampling against the draft's q (or
   *   point masses), then commit. nextToken is -1 where the path reaches a row with no finite
   *   distribution. Only ids and counts cross to JavaScript.
   * Sequences must be given in increasing order.
   */
  async step(cache: KvCache, step: StepSequence[], options: StepOptions = {}): Promise<StepResult> {
    const isTree = Array.isArray(step) && step.some((s) => (s?.draft?.tokens.length ?? 0) > 0);
    const fwd: ForwardSequence[] = [];
    let prev = -1;
    for (const s of Array.isArray(step) ? step : []) {
      if (s === null || typeof s !== 'object' || !(s.sequence > prev)) throw new ArgumentError('step', 'sequences in increasing order', step);
      prev = s.sequence;
      if (!isTree) {
        fwd.push({ sequence: s.sequence, tokens: s.tokens });
        continue;
      }
      if (s.tokens?.length !== 1) throw new ArgumentError(`step[sequence ${s.sequence}].tokens`, 'exactly one (pending) token in a tree step', s.tokens);
      const d = s.draft ?? { tokens: [], parents: [] };
      if (d.parents?.length !== d.tokens.length) throw new ArgumentError(`step[sequence ${s.sequence}].draft.parents`, `${d.tokens.length} entries`, d.parents);
      fwd.push({ sequence: s.sequence, tokens: [s.tokens[0]!, ...Array.from(d.tokens)], parents: [-1, ...Array.from(d.parents, (p) => p + 1)] });
    }
    const c = this.#prepare(cache, fwd);
    const topK = options.topK ?? 0;
    if (!Number.isInteger(topK) || topK < 0 || topK > Math.min(1024, this.config.vocabSize)) {
      throw new ArgumentError('options.topK', `an integer in [0, ${Math.min(1024, this.config.vocabSize)}]`, topK);
    }
    const rows = isTree ? c.tokens.map((_, i) => i) : c.lastRows;
    const B = c.sorted.length;
    const plan = cache.plan(c.sorted.map((s) => s.sequence), c.counts);
    const out = this.#outputs(rows.length, options.logits === true, options.hidden === true);
    const nextToken = new Int32Array(B);
    const acceptedCount = new Int32Array(B);
    const acceptedNodes = new Int32Array(c.tokens.length - B);
    const newLens = new Int32Array(B);
    const topKIds = topK > 0 ? new Int32Array(rows.length * topK) : undefined;
    const i32 = (data: Int32Array) => ({ data, dtype: 'int32' as const, shape: [data.length] });
    const sampling = options.sampling ? this.#samplingArgs(options.sampling, c, rows.length) : undefined;
    await this.#call(
      () =>
        this.#native.step({
          ...this.#nativeArgs(c, plan, rows),
          ...out.args,
          choice: (isTree ? 2 : 1) + (sampling ? 2 : 0),
          ...(sampling ? { sampling } : {}),
          regionRows: plan.regionRows,
          topK,
          nextToken: i32(nextToken),
          acceptedCount: i32(acceptedCount),
          acceptedNodes: i32(acceptedNodes),
          newLens: i32(newLens),
          ...(topKIds ? { topKIds: i32(topKIds) } : {}),
        }),
      out,
    );
    plan.done(newLens);
    let node = 0;
    const sequences = c.sorted.map((s, b) => {
      const nodes = Array.from(acceptedNodes.subarray(node, node + acceptedCount[b]!));
      node += s.tokens.length - 1;
      return { sequence: s.sequence, nextToken: nextToken[b]!, acceptedNodes: isTree ? nodes : [] };
    });
    if (!options.logits) out.release();
    return {
      sequences,
      rows,
      ...(options.logits ? { logits: out.logits! } : {}),
      ...(out.hidden ? { hidden: out.hidden } : {}),
      ...(topKIds ? { topK: topKIds } : {}),
    };
  }

  /**
   * The ids of the k largest logits of chosen rows and their log-probabilities, after a forward
   * over `step` (ONE native call; no logits cross to JavaScript): causal steps commit their
   * tokens and tree steps leave them uncommitted, as forward() does. For draft models that
   * score their candidates (the draft-tree proposer).
   */
  async topK(cache: KvCache, step: ForwardSequence[], options: { k: number; logits?: 'last' | 'all' | number[] }): Promise<TopKResult> {
    const c = this.#prepare(cache, step);
    const k = options?.k;
    if (!Number.isInteger(k) || k < 1 || k > Math.min(1024, this.config.vocabSize)) {
      throw new ArgumentError('options.k', `an integer in [1, ${Math.min(1024, this.config.vocabSize)}]`, k);
    }
    const want = options.logits ?? 'last';
    const rows = want === 'last' ? c.lastRows : want === 'all' ? c.tokens.map((_, i) => i) : want;
    if (!Array.isArray(rows) || rows.length === 0 || rows.some((r) => !Number.isInteger(r) || r < 0 || r >= c.tokens.length)) {
      throw new ArgumentError('options.logits', `'last', 'all' or row indices in [0, ${c.tokens.length - 1}]`, want);
    }
    const B = c.sorted.length;
    const plan = cache.plan(c.sorted.map((s) => s.sequence), c.counts);
    const out = this.#outputs(rows.length, false, false);
    const ids = new Int32Array(rows.length * k);
    const logprobs = new Float32Array(rows.length * k);
    const i32 = (data: Int32Array) => ({ data, dtype: 'int32' as const, shape: [data.length] });
    const newLens = new Int32Array(B);
    await this.#call(
      () =>
        this.#native.step({
          ...this.#nativeArgs(c, plan, rows),
          ...out.args,
          choice: 5,
          regionRows: plan.regionRows,
          topK: k,
          nextToken: i32(new Int32Array(B)),
          acceptedCount: i32(new Int32Array(B)),
          acceptedNodes: i32(new Int32Array(c.tokens.length - B)),
          newLens: i32(newLens),
          topKIds: i32(ids),
          topKLogprobs: { data: logprobs, dtype: 'f32', shape: [logprobs.length] },
        }),
      out,
    );
    plan.done(c.isTree ? undefined : newLens);
    out.release();
    return { rows, ids, logprobs };
  }

  /** The native sampler-chain arguments of a sampled step (lib/kernels/sampling.ts's checks, per logits row). */
  #samplingArgs(o: StepSampling, c: PreparedStep, rows: number): NativeStepSampling {
    const chain = o.chain;
    if (chain === null || typeof chain !== 'object' || !(chain.logitBias instanceof Map)) {
      throw new ArgumentError('options.sampling.chain', 'a SamplerChain (checkSamplerChain)', chain);
    }
    const vocab = this.config.vocabSize;
    for (const t of chain.logitBias.keys()) if (t >= vocab) throw new ArgumentError('options.sampling.chain.logitBias', `token ids in [0, ${vocab})`, t);
    const out: NativeStepSampling = {
      params: {
        temperature: chain.temperature,
        topK: chain.topK,
        topP: chain.topP,
        minP: chain.minP,
        repeatPenalty: chain.repeatPenalty,
        frequencyPenalty: chain.frequencyPenalty,
        presencePenalty: chain.presencePenalty,
      },
    };
    if (chain.logitBias.size) {
      out.biasTokens = Int32Array.from(chain.logitBias.keys());
      out.biasValues = Float64Array.from(chain.logitBias.values());
    }
    if (chainHasPenalties(chain)) {
      if (!o.contexts || o.contexts.length !== rows) throw new ArgumentError('options.sampling.contexts', `${rows} token contexts (one per logits row) when penalties are on`, o.contexts?.length);
      const pen = penaltyCounts(o.contexts, chain.penaltyLastN);
      for (const t of pen.tokens) if (t < 0 || t >= vocab) throw new ArgumentError('options.sampling.contexts', `token ids in [0, ${vocab})`, t);
      out.penaltyIndptr = pen.indptr;
      out.penaltyTokens = pen.tokens;
      out.penaltyCounts = pen.counts;
    }
    if (o.uniforms !== undefined) {
      if (!(o.uniforms instanceof Float64Array)) throw new ArgumentError('options.sampling.uniforms', 'a Float64Array', o.uniforms);
      out.uniforms = o.uniforms;
    }
    const rowsArg = (name: string, x: { tensor: Tensor; rows: ArrayLike<number> }, length: number) => {
      if (!(x?.tensor instanceof Tensor) || x.tensor.device !== this.device || x.tensor.dtype !== 'f32') {
        throw new ArgumentError(`options.sampling.${name}.tensor`, `an f32 Tensor on the model's device (${this.device})`, x?.tensor);
      }
      if (x.rows?.length !== length) throw new ArgumentError(`options.sampling.${name}.rows`, `${length} row indices`, x.rows?.length);
      return { desc: x.tensor.descriptor(name), rows: Int32Array.from(x.rows) };
    };
    if (o.draftProbs) {
      if (!c.isTree) throw new ArgumentError('options.sampling.draftProbs', 'absent in a causal step (q belongs to tree steps)', 'given');
      const a = rowsArg('draftProbs', o.draftProbs, c.tokens.length);
      out.draftProbs = a.desc;
      out.draftRows = a.rows;
    }
    if (o.probsInto) {
      if (c.isTree) throw new ArgumentError('options.sampling.probsInto', 'absent in a tree step', 'given');
      const a = rowsArg('probsInto', o.probsInto, c.sorted.length);
      out.probs = a.desc;
      out.probsRows = a.rows;
    }
    return out;
  }

  /** Checks a step's sequences against the model and cache; its tokens, positions and layout. */
  #prepare(cache: KvCache, step: ForwardSequence[]): PreparedStep {
    if (this.#disposed) throw new DisposedError('Model');
    if (!(cache instanceof KvCache)) throw new ArgumentError('cache', 'a KvCache from model.createCache()', cache);
    const geometry = [cache.k.shape[0], cache.k.shape[2]];
    if (geometry.join() !== [this.config.nLayers, this.config.nKvHeads].join()) {
      throw new ArgumentError('cache', `a KvCache of this model (${this.config.nLayers} layers, ${this.config.nKvHeads} kv heads)`, `one of ${geometry[0]} layers, ${geometry[1]} kv heads`);
    }
    if (!Array.isArray(step) || step.length === 0) throw new ArgumentError('step', 'a non-empty array of {sequence, tokens}', step);
    const isTree = step.some((s) => s.parents !== undefined);
    if (isTree && !step.every((s) => s.parents !== undefined)) {
      throw new ArgumentError('step', 'either all sequences with parents (a tree step) or none', step);
    }
    const sorted = [...step].sort((a, b) => a.sequence - b.sequence);
    const c: PreparedStep = { isTree, sorted, tokens: [], positions: [], parents: [], qoIndptr: [0], lastRows: [], counts: [] };
    let prevSeq = -1;
    for (const s of sorted) {
      if (s.sequence === prevSeq) throw new ArgumentError('step', 'at most one entry per sequence', s.sequence);
      prevSeq = s.sequence;
      const len = cache.length(s.sequence);
      const n = s.tokens.length;
      if (n === 0) throw new ArgumentError(`step[sequence ${s.sequence}].tokens`, 'at least one token', s.tokens);
      for (let t = 0; t < n; t++) {
        const id = s.tokens[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
          throw new ArgumentError(`step[sequence ${s.sequence}].tokens[${t}]`, `a token id in [0, ${this.config.vocabSize - 1}]`, id);
        }
        c.tokens.push(id);
      }
      if (isTree) {
        const parents = Array.from({ length: n }, (_, t) => s.parents![t]!);
        parents.forEach((p, t) => {
          if (!Number.isInteger(p) || p < -1 || p >= t) throw new ArgumentError(`step[sequence ${s.sequence}].parents[${t}]`, `-1 or an earlier node (0..${t - 1})`, p);
        });
        c.parents.push(...parents);
        treeDepths(parents).forEach((d) => c.positions.push(len + d));
      } else {
        for (let t = 0; t < n; t++) c.positions.push(len + t);
      }
      c.qoIndptr.push(c.tokens.length);
      c.lastRows.push(c.tokens.length - 1);
      c.counts.push(n);
    }
    return c;
  }

  /** The native options of a prepared step (without its outputs). */
  #nativeArgs(c: PreparedStep, plan: KvStepPlan, rows: number[]) {
    return {
      tokens: Int32Array.from(c.tokens),
      positions: Int32Array.from(c.positions),
      qoIndptr: Int32Array.from(c.qoIndptr),
      kvStart: plan.kvStart,
      kvLenBefore: plan.kvLenBefore,
      mask: c.isTree ? 2 : 1,
      ...(c.isTree ? { parents: Int32Array.from(c.parents) } : {}),
      ...plan.args,
      ...(plan.prefix ? { prefix: plan.prefix } : {}),
      logitRows: Int32Array.from(rows),
    };
  }

  /**
   * The logits (and hidden) outputs of a call. Logits nobody reads after the call go to a
   * grow-only scratch buffer of the model (one call at a time uses it).
   */
  #outputs(rows: number, keepLogits: boolean, hidden: boolean): StepOutputs {
    const vocab = this.config.vocabSize;
    const h = hidden ? Tensor.empty([rows, this.config.dim], 'f32', { device: this.device }) : undefined;
    let logits: Tensor | undefined;
    let desc: TensorDescriptor;
    let release = () => {};
    if (keepLogits || this.#scratchBusy) {
      logits = Tensor.empty([rows, vocab], 'f32', { device: this.device });
      desc = logits.descriptor('logits');
      release = () => logits!.dispose();
    } else {
      if (!this.#scratch || this.#scratch.shape[0]! < rows) {
        this.#scratch?.dispose();
        this.#scratch = Tensor.empty([Math.max(rows, 2 * (this.#scratch?.shape[0] ?? 0)), vocab], 'f32', { device: this.device });
      }
      this.#scratchBusy = true;
      const d = this.#scratch.descriptor('logits');
      // Host memory: a view of exactly the rows (the addon checks the length); device buffers may be larger.
      const data = ArrayBuffer.isView(d.data) ? new Float32Array(d.data.buffer, d.data.byteOffset, rows * vocab) : d.data;
      desc = { ...d, data, shape: [rows, vocab] };
      release = () => (this.#scratchBusy = false);
    }
    const out: StepOutputs = {
      args: { logits: desc, ...(h ? { hidden: h.descriptor('hidden') } : {}) },
      ...(logits ? { logits } : {}),
      ...(h ? { hidden: h } : {}),
      release,
    };
    return out;
  }

  /** Runs one native call; on failure frees the outputs. */
  async #call(run: () => Promise<void>, out: StepOutputs): Promise<void> {
    this.#inflight++;
    try {
      await awaitNative(callNative(run));
    } catch (e) {
      out.release();
      out.hidden?.dispose();
      throw e;
    } finally {
      if (--this.#inflight === 0 && this.#disposed) this.#releaseMaps();
    }
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#native.dispose();
    this.#owned.forEach((t) => t.dispose());
    this.#scratch?.dispose();
    // With a forward in flight the native side still reads the weights: its finally releases them.
    if (this.#inflight === 0) this.#releaseMaps();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
