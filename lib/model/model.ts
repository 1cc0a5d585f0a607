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
import { type Backend, type Device, selectBackend } from '../native/backend.js';
import { native } from '../native/loader.js';
import { checkThreadsOption, setThreads } from '../native/threads.js';
import type { NativeLayerWeights, NativeModelConfig, NativeModelHandle, TensorDescriptor } from '../native/types.js';
import { Tensor } from '../tensor/tensor.js';
import type { FloatDType } from '../tensor/dtype.js';
import { CUDA_QUANT_TYPES, QUANT_TYPES, type QuantType, quantRowBytes } from '../tensor/quant-types.js';
import { type ModelConfig, expectedShapes, layerTensorNames } from './config.js';
import { KvCache, type KvCacheOptions } from './kv-cache.js';
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
   * tokens to the cache; tree steps leave them uncommitted.
   */
  async forward(cache: KvCache, step: ForwardSequence[], options: ForwardOptions = {}): Promise<ForwardResult> {
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
    const tokens: number[] = [];
    const positions: number[] = [];
    const parents: number[] = [];
    const qoIndptr = [0];
    const kvStart: number[] = [];
    const kvLen: number[] = [];
    const lastRows: number[] = [];
    let prevSeq = -1;
    for (const s of sorted) {
      if (s.sequence === prevSeq) throw new ArgumentError('step', 'at most one entry per sequence', s.sequence);
      prevSeq = s.sequence;
      const len = cache.length(s.sequence);
      const n = s.tokens.length;
      if (n === 0) throw new ArgumentError(`step[sequence ${s.sequence}].tokens`, 'at least one token', s.tokens);
      if (len + n > cache.capacity) {
        throw new ArgumentError(`step[sequence ${s.sequence}].tokens`, `at most ${cache.capacity - len} tokens (the cache's free rows)`, n);
      }
      const depth: number[] = [];
      for (let t = 0; t < n; t++) {
        const id = s.tokens[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
          throw new ArgumentError(`step[sequence ${s.sequence}].tokens[${t}]`, `a token id in [0, ${this.config.vocabSize - 1}]`, id);
        }
        tokens.push(id);
        if (isTree) {
          const p = s.parents![t]!;
          if (!Number.isInteger(p) || p < -1 || p >= t) {
            throw new ArgumentError(`step[sequence ${s.sequence}].parents[${t}]`, `-1 or an earlier node (0..${t - 1})`, p);
          }
          parents.push(p);
          depth.push(p < 0 ? 0 : depth[p]! + 1);
          positions.push(len + depth[t]!);
        } else {
          positions.push(len + t);
        }
      }
      qoIndptr.push(tokens.length);
      kvStart.push(cache.start(s.sequence));
      kvLen.push(len);
      lastRows.push(tokens.length - 1);
    }
    const want = options.logits ?? 'last';
    const rows = want === 'last' ? lastRows : want === 'all' ? tokens.map((_, i) => i) : want;
    if (!Array.isArray(rows) || rows.some((r) => !Number.isInteger(r) || r < 0 || r >= tokens.length)) {
      throw new ArgumentError('options.logits', `'last', 'all' or row indices in [0, ${tokens.length - 1}]`, want);
    }
    const stepSeqs = sorted.map((s) => s.sequence);
    const quant = cache.quantized ? cache.quantizedStep(stepSeqs, sorted.map((s) => s.tokens.length)) : undefined;
    const logits = Tensor.empty([rows.length, this.config.vocabSize], 'f32', { device: this.device });
    const hidden = options.hidden ? Tensor.empty([rows.length, this.config.dim], 'f32', { device: this.device }) : undefined;
    this.#inflight++;
    try {
      await awaitNative(
        callNative(() => this.#native.forward({
          tokens: Int32Array.from(tokens),
          positions: Int32Array.from(positions),
          qoIndptr: Int32Array.from(qoIndptr),
          kvStart: Int32Array.from(kvStart),
          kvLenBefore: Int32Array.from(kvLen),
          mask: isTree ? 2 : 1,
          ...(isTree ? { parents: Int32Array.from(parents) } : {}),
          ...(quant ? { kvQuant: quant.args } : { k: cache.k.descriptor('cache.k'), v: cache.v.descriptor('cache.v') }),
          logitRows: Int32Array.from(rows),
          logits: logits.descriptor('logits'),
          ...(hidden ? { hidden: hidden.descriptor('hidden') } : {}),
        })),
      );
    } catch (e) {
      logits.dispose();
      hidden?.dispose();
      throw e;
    } finally {
      if (--this.#inflight === 0 && this.#disposed) this.#releaseMaps();
    }
    if (quant) cache.quantizedStepDone(stepSeqs, quant.after);
    if (!isTree) sorted.forEach((s) => cache.advance(s.sequence, s.tokens.length));
    return hidden ? { logits, rows, hidden } : { logits, rows };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#native.dispose();
    this.#owned.forEach((t) => t.dispose());
    // With a forward in flight the native side still reads the weights: its finally releases them.
    if (this.#inflight === 0) this.#releaseMaps();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
