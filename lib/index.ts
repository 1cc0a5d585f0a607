/**
 * canopy-llm: fast LLM decoding from Node.js.
 *
 * This entry point exports the foundation: tensors, dtypes, backend
 * selection, errors and the installation report; the kernels; and the tokenizers.
 */

export { Tensor, validateShape, MAX_DIMS, type FromOptions, type FromFileOptions } from './tensor/tensor.js';
export {
  DTYPES,
  type DType,
  type FloatDType,
  type AnyTypedArray,
  dtypeSize,
  isDType,
  toF16Bits,
  toBF16Bits,
  fromF16Bits,
  fromBF16Bits,
  encodeFloats,
  decodeFloats,
} from './tensor/dtype.js';
export { selectBackend, cudaInfo, type Backend, type Device, type Placement } from './native/backend.js';
export { loadAddon, type AddonSource } from './native/loader.js';
export { setThreads, getThreads, defaultThreads } from './native/threads.js';
export { linear, type LinearOptions } from './kernels/linear.js';
export { info, type CanopyInfo } from './info.js';
export {
  verifyGreedy,
  verifyGreedyBatch,
  verifySampling,
  verifySamplingBatch,
  type VerifyResult,
  type RowsLike,
  type UniformsLike,
} from './kernels/verify.js';
export { commitKv, commitKvBatch, type KvCommitSequence } from './kernels/kv-commit.js';
export { linearQuant, type LinearQuantOptions } from './kernels/linear-quant.js';
export { QUANT_TYPES, QUANT_TYPE_NAMES, isQuantType, quantRowBytes, type QuantType, type QuantTypeInfo } from './tensor/quant-types.js';
export { type IntArrayLike } from './kernels/args.js';
export {
  CanopyError,
  ArgumentError,
  DisposedError,
  OutOfMemoryError,
  CudaUnavailableError,
  CudaError,
  IoError,
  NativeLoadError,
  InternalError,
  NumericError,
  type CanopyErrorCode,
  type CudaUnavailableReason,
} from './errors.js';
export {
  attention,
  treeAttention,
  treeDepths,
  mergeStates,
  mergeStatesInPlace,
  mergeStatesN,
  type AttentionOptions,
  type TreeAttentionOptions,
  type AttentionResult,
  type AttentionState,
  type AttentionMask,
  quantizedAttention,
  type QuantizedAttentionOptions,
  type QuantizedKvView,
} from './kernels/attention.js';
export { prefixAttention, type PrefixAttentionOptions, type PrefixLevel, type PrefixKv } from './kernels/prefix-attention.js';
export {
  QuantizedKv,
  KV_QUANT_FORMATS,
  type KvQuantFormat,
  type QuantizedKvOptions,
  type QuantizedKvSequences,
  type AppendKvOptions,
  type KvGroupRanges,
  type DequantizeKvOptions,
  type QuantizeKvOptions,
  type QuantizedSequences,
  appendQuantizedKv,
  quantizeKvGroups,
  restoreKvGroupsSync,
  commitQuantizedKv,
  dequantizeKv,
  quantizeKv,
  quantizedBytesPerToken,
} from './kernels/kv-quant.js';
export { Model, type ModelOptions, type ModelWeights, type ForwardSequence, type ForwardOptions, type ForwardResult, type StepSequence, type StepOptions, type StepResult, type StepSampling, type TopKResult } from './model/model.js';
export { KvCache, type KvCacheOptions, type KvCacheDtype, type KvStepPlan } from './model/kv-cache.js';
export { generate, stream, type GenerateOptions, type GenerateResult, type GenerateStats, type FinishReason, type TextTokenizer, type StreamPiece, type SingleOptions, type BatchOptions, type TokenLogprob } from './generate.js';
export {
  chat,
  streamChat,
  ChatSession,
  chatTemplateFor,
  chatPromptIds,
  type ChatOptions,
  type ChatResult,
  type ChatSessionOptions,
  type ChatGenerateOptions,
  type ChatSetup,
  type TurnStats,
} from './chat/session.js';
export { ChatTemplate, ChatTemplateError, type ChatMessage, type RenderOptions } from './chat/template.js';
export { Sampler, type SamplingOptions } from './decode/sampling.js';
export {
  samplingChain,
  sampleRows,
  argmaxRows,
  checkSamplerChain,
  penaltyCounts,
  type SamplerChain,
  type SamplerChainOptions,
  type ChainRequest,
  type ChainResult,
} from './kernels/sampling.js';
export {
  loadTokenizer,
  findTokenizerFor,
  type LoadTokenizerOptions,
  type Tokenizer,
  type EncodeOptions,
  type StreamDecoder,
  Llama2cTokenizer,
  readLlama2cTokenizer,
  GgufTokenizer,
  type GgufVocabulary,
  HfTokenizer,
  readHfTokenizer,
  type HfTokenizerFiles,
} from './model/tokenizer/index.js';
export { type ModelConfig, type RopeStyle, type Llama3RopeScaling, expectedShapes, layerTensorNames } from './model/config.js';
export {
  loadWeights,
  detectFormat,
  type LoadedWeights,
  type LoadWeightsOptions,
  type WeightFormat,
  type Llama2cWeights,
  type GgufWeights,
  type HfWeights,
} from './model/weights.js';
export { readGguf, ggmlTypeBlock, type GgufFile, type GgufTensorInfo, type GgufValue } from './model/formats/gguf.js';
export { readSafetensors, type SafetensorsFile, type SafetensorsTensorInfo } from './model/formats/safetensors.js';
export { loadModel, ggufVocabulary, LOAD_QUANT_DTYPES, type LoadModelOptions, type LoadedModel, type LoadQuantDtype } from './model/load.js';
export {
  quantize,
  QUANT_PRESETS,
  QUANT_PRESET_NAMES,
  isQuantPreset,
  type QuantPreset,
  type QuantizeOptions,
  type QuantizeProgress,
  type QuantizeResult,
} from './quantize/index.js';
export { STRATEGIES, type StrategyName } from './generate.js';
export { decodeLoop, type LoopOptions, type LoopResult } from './decode/loop.js';
export type { Proposer, DraftTree, ProposeContext, StepFeedback, SpeculationStats } from './decode/types.js';
export { GoodputController, CostCurve, type GoodputOptions, type StepObservation } from './decode/controller.js';
export { DraftChainProposer, DraftTreeProposer, growShrinkPolicy, type DraftLengthPolicy, type DraftChainOptions, type DraftTreeOptions } from './decode/proposers/draft-model.js';
export { LookupProposer, NgramTreeProposer, mergeChains, type LookupOptions } from './decode/proposers/lookup.js';
export { TokenRecyclingProposer, type TokenRecyclingOptions } from './decode/proposers/token-recycling.js';
export { MODEL_PRESETS, weightBytesPerToken } from './model/presets.js';
export { JacobiProposer, type JacobiOptions } from './decode/proposers/jacobi.js';
export { HeadsProposer, type HeadsProposerOptions } from './decode/proposers/heads.js';
export { type PredictionHeads, loadHeads, saveHeads, headLogits } from './model/heads.js';
export { trainHeads, type TrainHeadsOptions, type TrainHeadsReport } from './train/heads.js';
