// The sampler chain's arguments as JavaScript passes them (shared by samplingChain() and
// model.step()'s sampled choices): the settings object, the sparse logit bias, the per-row
// penalty windows (CSR) and the uniforms, copied on the JavaScript thread so the async work
// never races with JavaScript mutating them.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "../common/sampling.h"

namespace canopy {
namespace napi {

std::vector<double> ParseFloat64Array(Napi::Env env, Napi::Value v, const std::string& name);

// Everything the chain reads besides the logits, owned for the duration of the async work.
struct ChainInputs {
  SamplingParams params;
  std::vector<int32_t> bias_tokens, pen_indptr, pen_tokens, pen_counts;
  std::vector<double> bias_values, uniforms;
  bool has_pen = false, has_uniforms = false;
  SamplingBias bias() const;
  SamplingPenalties penalties() const;
  const double* uniforms_or_null() const { return has_uniforms ? uniforms.data() : nullptr; }
};

// {temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty}; `pre`
// prefixes the messages ("samplingChain: ", "step: sampling.").
SamplingParams ParseSamplingParams(Napi::Env env, Napi::Value v, const std::string& pre);

// The optional arrays (null / undefined: absent). `rows`: the penalty rows; `uniform_rows`: the
// uniforms' length.
void ParseChainArrays(Napi::Env env, ChainInputs* in, Napi::Value bias_tokens, Napi::Value bias_values, Napi::Value pen_indptr,
                      Napi::Value pen_tokens, Napi::Value pen_counts, Napi::Value uniforms, int64_t rows, int64_t uniform_rows,
                      const std::string& pre);

inline bool Absent(Napi::Value v) { return v.IsNull() || v.IsUndefined(); }

}  // namespace napi
}  // namespace canopy
