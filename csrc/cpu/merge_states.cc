// CPU merging of attention states (math in csrc/common/merge_states.h).
// MergeNParams.dtype is the dtype of BOTH v and v_out here; the attention
// kernel merges f32 partials and rounds once itself.
#include <cmath>
#include <vector>

#include "../common/merge_states.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {

Status MergeStates(const MergeParams& p) {
  if (!IsFloatDType(p.dtype)) return Status::InvalidArgument("mergeStates: dtype must be f32, f16 or bf16");
  if (p.tokens < 0 || p.heads <= 0 || p.head_dim <= 0) return Status::InvalidArgument("mergeStates: bad shape");
  const int64_t n = p.tokens * p.heads;
  const int D = p.head_dim;
  ParallelFor(n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float wa, wb;
      const float s = MergeWeights(p.s_a[i], p.s_b[i], &wa, &wb);
      for (int d = 0; d < D; ++d) {
        const int64_t k = i * D + d;
        // Skip a zero-weight side entirely so a NaN in an empty state cannot leak.
        float acc = 0.f;
        if (wa != 0.f) acc += wa * LoadAsF32(p.v_a, p.dtype, k);
        if (wb != 0.f) acc += wb * LoadAsF32(p.v_b, p.dtype, k);
        StoreFromF32(p.v_out, p.dtype, k, acc);
      }
      if (p.s_out) p.s_out[i] = s;
    }
  });
  return Status::Ok();
}

Status MergeStatesN(const MergeNParams& p) {
  if (!IsFloatDType(p.dtype)) return Status::InvalidArgument("mergeStates: dtype must be f32, f16 or bf16");
  if (p.tokens < 0 || p.heads <= 0 || p.head_dim <= 0 || p.num_states <= 0) {
    return Status::InvalidArgument("mergeStates: bad shape");
  }
  const int S = p.num_states, H = p.heads, D = p.head_dim;
  ParallelFor(p.tokens * H, 64, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(D);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = i / H, h = i % H;
      float m = -INFINITY;
      for (int s = 0; s < S; ++s) m = std::fmax(m, p.s[(t * S + s) * H + h]);
      for (int d = 0; d < D; ++d) acc[d] = 0.f;
      float sum = 0.f;
      if (m != -INFINITY) {
        for (int s = 0; s < S; ++s) {
          const float ls = p.s[(t * S + s) * H + h];
          if (ls == -INFINITY) continue;
          const float w = std::exp(ls - m);
          sum += w;
          const int64_t base = ((t * S + s) * H + h) * D;
          for (int d = 0; d < D; ++d) acc[d] += w * LoadAsF32(p.v, p.dtype, base + d);
        }
      }
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      for (int d = 0; d < D; ++d) StoreFromF32(p.v_out, p.dtype, i * D + d, acc[d] * inv);
      if (p.s_out) p.s_out[i] = sum > 0.f ? m + std::log(sum) : -INFINITY;
    }
  });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
