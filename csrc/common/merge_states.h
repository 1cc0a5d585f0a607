// Op family: merging attention states.
//
// A state is (v, s): v [tokens, heads, head_dim] the attention output over some set of keys,
// s [tokens, heads] f32 its log-sum-exp (natural log). The state of the union of two
// disjoint key sets A and B is
//   m = max(s_a, s_b),  w_a = exp(s_a - m),  w_b = exp(s_b - m)
//   s = m + log(w_a + w_b),  v = (w_a v_a + w_b v_b) / (w_a + w_b)
// An empty set has s = -inf and contributes nothing; two empty sets give v = 0, s = -inf
// (never NaN). Values accumulate in fp32; v storage is f32, f16 or bf16.
//
//   MergeStates:       (v_a, s_a) + (v_b, s_b) -> (v_out, s_out)   (v_out may alias v_a)
//   MergeStatesN:      v [tokens, num_states, heads, head_dim], s [tokens, num_states, heads]
//                      -> v_out [tokens, heads, head_dim], s_out [tokens, heads]
#pragma once

#include <cmath>
#include <cstdint>

#include "dtype.h"
#include "status.h"

namespace canopy {

struct MergeParams {
  const void* v_a = nullptr;
  const float* s_a = nullptr;
  const void* v_b = nullptr;
  const float* s_b = nullptr;
  void* v_out = nullptr;
  float* s_out = nullptr;  // optional
  DType dtype = DType::kF32;
  int64_t tokens = 0;
  int32_t heads = 0;
  int32_t head_dim = 0;
};

struct MergeNParams {
  const void* v = nullptr;   // [tokens, num_states, heads, head_dim]
  const float* s = nullptr;  // [tokens, num_states, heads]
  void* v_out = nullptr;
  float* s_out = nullptr;    // optional
  DType dtype = DType::kF32;
  int64_t tokens = 0;
  int32_t num_states = 0;
  int32_t heads = 0;
  int32_t head_dim = 0;
};

// The weights of a merge, safe for -inf inputs: returns the merged lse and sets w_a, w_b
// (both 0 when both inputs are empty).
CANOPY_HD float MergeWeights(float s_a, float s_b, float* w_a, float* w_b) {
  const float m = s_a > s_b ? s_a : s_b;
  if (m == -INFINITY) {
    *w_a = 0.f;
    *w_b = 0.f;
    return -INFINITY;
  }
  const float ea = s_a == -INFINITY ? 0.f : expf(s_a - m);
  const float eb = s_b == -INFINITY ? 0.f : expf(s_b - m);
  const float sum = ea + eb;
  *w_a = ea / sum;
  *w_b = eb / sum;
  return m + logf(sum);
}

namespace cpu {
Status MergeStates(const MergeParams& p);
Status MergeStatesN(const MergeNParams& p);
}  // namespace cpu

namespace cuda {
Status MergeStates(const MergeParams& p);
Status MergeStatesN(const MergeNParams& p);
}  // namespace cuda

}  // namespace canopy
