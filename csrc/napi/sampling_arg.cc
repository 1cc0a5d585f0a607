// See sampling_arg.h.
#include "sampling_arg.h"

#include "errors.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {

std::vector<double> ParseFloat64Array(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw ArgumentError(env, name + " must be a Float64Array");
  }
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  std::vector<double> out(a.ElementLength());
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[i];
  return out;
}

SamplingBias ChainInputs::bias() const {
  SamplingBias b;
  b.count = static_cast<int32_t>(bias_tokens.size());
  b.tokens = bias_tokens.data();
  b.values = bias_values.data();
  return b;
}

SamplingPenalties ChainInputs::penalties() const {
  SamplingPenalties p;
  if (has_pen) {
    p.indptr = pen_indptr.data();
    p.tokens = pen_tokens.data();
    p.counts = pen_counts.data();
  }
  return p;
}

SamplingParams ParseSamplingParams(Napi::Env env, Napi::Value v, const std::string& pre) {
  if (!v.IsObject()) throw ArgumentError(env, pre + "params must be an object");
  Napi::Object po = v.As<Napi::Object>();
  SamplingParams p;
  p.temperature = ParseNumber(env, po.Get("temperature"), "temperature", 0.0);
  const double top_k = ParseNumber(env, po.Get("topK"), "topK", 0.0);
  if (!(top_k >= 0 && top_k <= INT32_MAX) || top_k != static_cast<double>(static_cast<int64_t>(top_k))) {
    throw ArgumentError(env, pre + "topK must be an integer in [0, 2^31); received " + std::to_string(top_k));
  }
  p.top_k = static_cast<int32_t>(top_k);
  p.top_p = ParseNumber(env, po.Get("topP"), "topP", 1.0);
  p.min_p = ParseNumber(env, po.Get("minP"), "minP", 0.0);
  p.repeat_penalty = ParseNumber(env, po.Get("repeatPenalty"), "repeatPenalty", 1.0);
  p.frequency_penalty = ParseNumber(env, po.Get("frequencyPenalty"), "frequencyPenalty", 0.0);
  p.presence_penalty = ParseNumber(env, po.Get("presencePenalty"), "presencePenalty", 0.0);
  return p;
}

void ParseChainArrays(Napi::Env env, ChainInputs* in, Napi::Value bias_tokens, Napi::Value bias_values, Napi::Value pen_indptr,
                      Napi::Value pen_tokens, Napi::Value pen_counts, Napi::Value uniforms, int64_t rows, int64_t uniform_rows,
                      const std::string& pre) {
  if (!Absent(bias_tokens)) {
    in->bias_tokens = ParseInt32Array(env, bias_tokens, "biasTokens");
    in->bias_values = ParseFloat64Array(env, bias_values, "biasValues");
    if (in->bias_values.size() != in->bias_tokens.size()) {
      throw ArgumentError(env, pre + "biasValues must have one value per bias token (" + std::to_string(in->bias_tokens.size()) +
                                   "); received " + std::to_string(in->bias_values.size()));
    }
  }
  if (!Absent(pen_indptr)) {
    in->has_pen = true;
    in->pen_indptr = ParseInt32Array(env, pen_indptr, "penaltyIndptr");
    in->pen_tokens = ParseInt32Array(env, pen_tokens, "penaltyTokens");
    in->pen_counts = ParseInt32Array(env, pen_counts, "penaltyCounts");
    if (static_cast<int64_t>(in->pen_indptr.size()) != rows + 1) {
      throw ArgumentError(env, pre + "penaltyIndptr must have rows+1 = " + std::to_string(rows + 1) + " elements; received " +
                                   std::to_string(in->pen_indptr.size()));
    }
    const int64_t total = in->pen_indptr[rows];
    if (total < 0 || static_cast<int64_t>(in->pen_tokens.size()) != total || static_cast<int64_t>(in->pen_counts.size()) != total) {
      throw ArgumentError(env, pre + "penaltyTokens and penaltyCounts must have penaltyIndptr[rows] = " + std::to_string(total) +
                                   " elements");
    }
  }
  if (!Absent(uniforms)) {
    in->has_uniforms = true;
    in->uniforms = ParseFloat64Array(env, uniforms, "uniforms");
    if (static_cast<int64_t>(in->uniforms.size()) != uniform_rows) {
      throw ArgumentError(env, pre + "uniforms must have " + std::to_string(uniform_rows) + " elements; received " +
                                   std::to_string(in->uniforms.size()));
    }
  }
}

}  // namespace napi
}  // namespace canopy
