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

std::vector<double> ParseFloat64Array(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw ArgumentError(env, name + " must be a Float64Array");
  }
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  std::vector<double> out(a.ElementLength());
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[i];
  return out;
}

bool Absent(Napi::Value v) { return v.IsNull() || v.IsUndefined(); }

// Everything the chain reads besides the logits, owned for the duration of the async work.
struct ChainInputs {
  SamplingParams params;
  std::vector<int32_t> bias_tokens, pen_indptr, pen_tokens, pen_counts;
  std::vector<double> bias_values, uniforms;
  bool has_pen = false, has_uniforms = false;
  SamplingBias bias() const {
    SamplingBias b;
    b.count = static_cast<int32_t>(bias_tokens.size());
    b.tokens = bias_tokens.data();
    b.values = bias_values.data();
    return b;
  }
  SamplingPenalties penalties() const {
    SamplingPenalties p;
    if (has_pen) {
      p.indptr = pen_indptr.data();
      p.tokens = pen_tokens.data();
      p.counts = pen_counts.data();
    }
    return p;
  }
};

Napi::Value SamplingChainBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg logits = ParseTensorArg(env, info[0], "logits");
  if (logits.view.dtype != DType::kF32 || logits.view.ndim != 2) {
    throw ArgumentError(env, "samplingChain: logits must be f32 [rows, vocab]; received " +
                                 std::string(DTypeName(logits.view.dtype)) + " " + ShapeText(logits.view));
  }
  const int64_t rows = logits.view.shape[0], vocab = logits.view.shape[1];
  auto in = std::make_shared<ChainInputs>();
  if (!info[1].IsObject()) throw ArgumentError(env, "samplingChain: params must be an object");
  Napi::Object po = info[1].As<Napi::Object>();
  in->params.temperature = ParseNumber(env, po.Get("temperature"), "temperature", 0.0);
  const double top_k = ParseNumber(env, po.Get("topK"), "topK", 0.0);
  if (!(top_k >= 0 && top_k <= INT32_MAX) || top_k != static_cast<double>(static_cast<int64_t>(top_k))) {
    throw ArgumentError(env, "samplingChain: topK must be an integer in [0, 2^31); received " + std::to_string(top_k));
  }
  in->params.top_k = static_cast<int32_t>(top_k);
  in->params.top_p = ParseNumber(env, po.Get("topP"), "topP", 1.0);
  in->params.min_p = ParseNumber(env, po.Get("minP"), "minP", 0.0);
  in->params.repeat_penalty = ParseNumber(env, po.Get("repeatPenalty"), "repeatPenalty", 1.0);
  in->params.frequency_penalty = ParseNumber(env, po.Get("frequencyPenalty"), "frequencyPenalty", 0.0);
  in->params.presence_penalty = ParseNumber(env, po.Get("presencePenalty"), "presencePenalty", 0.0);
  if (!Absent(info[2])) {
    in->bias_tokens = ParseInt32Array(env, info[2], "biasTokens");
    in->bias_values = ParseFloat64Array(env, info[3], "biasValues");
    if (in->bias_values.size() != in->bias_tokens.size()) {
      throw ArgumentError(env, "samplingChain: biasValues must have one value per bias token (" +
                                   std::to_string(in->bias_tokens.size()) + "); received " +
                                   std::to_string(in->bias_values.size()));
    }
  }
  if (!Absent(info[4])) {
    in->has_pen = true;
    in->pen_indptr = ParseInt32Array(env, info[4], "penaltyIndptr");
    in->pen_tokens = ParseInt32Array(env, info[5], "penaltyTokens");
    in->pen_counts = ParseInt32Array(env, info[6], "penaltyCounts");
    if (static_cast<int64_t>(in->pen_indptr.size()) != rows + 1) {
      throw ArgumentError(env, "samplingChain: penaltyIndptr must have rows+1 = " + std::to_string(rows + 1) +
                                   " elements; received " + std::to_string(in->pen_indptr.size()));
    }
    const int64_t total = in->pen_indptr[rows];
    if (total < 0 || static_cast<int64_t>(in->pen_tokens.size()) != total ||
        static_cast<int64_t>(in->pen_counts.size()) != total) {
      throw ArgumentError(env, "samplingChain: penaltyTokens and penaltyCounts must have penaltyIndptr[rows] = " +
                                   std::to_string(total) + " elements");
    }
  }
  if (!Absent(info[7])) {
    in->has_uniforms = true;
    in->uniforms = ParseFloat64Array(env, info[7], "uniforms");
    if (static_cast<int64_t>(in->uniforms.size()) != rows) {
      throw ArgumentError(env, "samplingChain: uniforms must have rows = " + std::to_string(rows) + " elements; received " +
                                   std::to_string(in->uniforms.size()));
    }
  }
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
