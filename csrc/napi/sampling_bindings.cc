// argmaxRows(logits [rows, vocab] f32) -> Promise<void> writing best [rows] int32 (host):
// greedy token choice without copying the logits off the device (ties: lowest id).
//
// samplingChain(logits, params, biasTokens, biasValues, penaltyIndptr, penaltyTokens,
//               penaltyCounts, uniforms, tokens, probs, processedLogits) -> Promise<void>
//   the sampler chain of csrc/common/sampling.h. logits [rows, vocab] f32 (host or CUDA);
//   params {temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty};
//   biasTokens Int32Array | null with biasValues Float64Array; penaltyIndptr [rows+1] /
//   penaltyTokens / penaltyCounts Int32Array | null; uniforms Float64Array [rows] | null;
//   tokens int32 [rows] host (written); probs and processedLogits f32 [rows, vocab] on the
//   logits' device, or null.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "../common/runtime.h"
#include "../common/sampling.h"
#include "../common/transformer_ops.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "sampling_arg.h"

namespace canopy {
namespace napi {
namespace {

Napi::Value ArgmaxRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg logits = ParseTensorArg(env, info[0], "logits");
  TensorArg best = ParseTensorArg(env, info[1], "best");
  if (logits.view.dtype != DType::kF32 || logits.view.ndim != 2) throw ArgumentError(env, "logits must be f32 [rows, vocab]");
  if (best.view.dtype != DType::kI32 || best.view.ndim != 1 || best.view.shape[0] != logits.view.shape[0]) {
    throw ArgumentError(env, "best must be int32 [rows]");
  }
  if (best.view.device.kind != DeviceKind::kCpu) throw ArgumentError(env, "best must be a host array");
  const int64_t rows = logits.view.shape[0], vocab = logits.view.shape[1];
  if (vocab < 1) throw ArgumentError(env, "logits must have at least one column");
  const float* l = static_cast<const float*>(logits.view.data);
  int32_t* out = static_cast<int32_t*>(best.view.data);
  const bool cuda = logits.view.device.kind == DeviceKind::kCuda;
  const int dev = logits.view.device.index;
  return RunAsync(env, [=]() -> Status {
    if (!cuda) return cpu::Argmax(l, rows, vocab, out);
    CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
    return cuda::ArgmaxToHost(l, rows, vocab, out);
  }, {logits, best});
}

Napi::Value SamplingChainBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg logits = ParseTensorArg(env, info[0], "logits");
  if (logits.view.dtype != DType::kF32 || logits.view.ndim != 2) {
    throw ArgumentError(env, "samplingChain: logits must be f32 [rows, vocab]; received " +
                                 std::string(DTypeName(logits.view.dtype)) + " " + ShapeText(logits.view));
  }
  const int64_t rows = logits.view.shape[0], vocab = logits.view.shape[1];
  auto in = std::make_shared<ChainInputs>();
  in->params = ParseSamplingParams(env, info[1], "samplingChain: ");
  ParseChainArrays(env, in.get(), info[2], info[3], info[4], info[5], info[6], info[7], rows, rows, "samplingChain: ");
  ThrowIfError(env, CheckSamplingArgs(rows, vocab, in->params, in->bias(), in->penalties(),
                                      in->has_uniforms ? in->uniforms.data() : nullptr));
  TensorArg tokens = ParseTensorArg(env, info[8], "tokens");
  if (tokens.view.dtype != DType::kI32 || tokens.view.ndim != 1 || tokens.view.shape[0] != rows ||
      tokens.view.device.kind != DeviceKind::kCpu) {
    throw ArgumentError(env, "samplingChain: tokens must be a host int32 [" + std::to_string(rows) + "] array");
  }
  std::vector<TensorArg> keep{logits, tokens};
  SamplingOutput out;
  out.tokens = static_cast<int32_t*>(tokens.view.data);
  const char* names[2] = {"probs", "processedLogits"};
  for (int i = 0; i < 2; ++i) {
    if (Absent(info[9 + i])) continue;
    TensorArg t = ParseTensorArg(env, info[9 + i], names[i]);
    if (t.view.dtype != DType::kF32 || t.view.ndim != 2 || t.view.shape[0] != rows || t.view.shape[1] != vocab) {
      throw ArgumentError(env, std::string("samplingChain: ") + names[i] + " must be f32 [" + std::to_string(rows) + ", " +
                                   std::to_string(vocab) + "]; received " + ShapeText(t.view));
    }
    if (t.view.device.kind != logits.view.device.kind || t.view.device.index != logits.view.device.index) {
      throw ArgumentError(env, std::string("samplingChain: ") + names[i] + " must be on the logits' device");
    }
    (i == 0 ? out.probs : out.logits) = static_cast<float*>(t.view.data);
    keep.push_back(t);
  }
  const float* l = static_cast<const float*>(logits.view.data);
  const bool cuda = logits.view.device.kind == DeviceKind::kCuda;
  const int dev = logits.view.device.index;
  return RunAsync(env, [=]() -> Status {
    const double* u = in->has_uniforms ? in->uniforms.data() : nullptr;
    if (!cuda) return cpu::SamplingChain(l, rows, vocab, in->params, in->bias(), in->penalties(), u, out);
    CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
    return cuda::SamplingChain(l, rows, vocab, in->params, in->bias(), in->penalties(), u, out);
  }, std::move(keep));
}

}  // namespace

void RegisterSamplingBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("argmaxRows", Napi::Function::New(env, CANOPY_GUARDED(ArgmaxRows), "argmaxRows"));
  exports.Set("samplingChain", Napi::Function::New(env, CANOPY_GUARDED(SamplingChainBinding), "samplingChain"));
}

}  // namespace napi
}  // namespace canopy
