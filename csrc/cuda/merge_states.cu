// CUDA merging of attention states (math in csrc/common/merge_states.h): one
// thread block per (token, head); threads stride over head_dim. The weights
// are computed by every thread from the (few) LSEs, so no reduction is needed.
#include <cuda_runtime.h>

#include "../common/merge_states.h"
#include "check.cuh"
#include "merge_states.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kThreads = 128;

__global__ void MergeTwoKernel(MergeParams p) {
  const int64_t i = blockIdx.x;  // token * heads + head
  float wa, wb;
  const float s = MergeWeights(p.s_a[i], p.s_b[i], &wa, &wb);
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    const int64_t k = i * p.head_dim + d;
    float acc = 0.f;
    if (wa != 0.f) acc += wa * LoadAsF32(p.v_a, p.dtype, k);
    if (wb != 0.f) acc += wb * LoadAsF32(p.v_b, p.dtype, k);
    StoreFromF32(p.v_out, p.dtype, k, acc);
  }
  if (p.s_out && threadIdx.x == 0) p.s_out[i] = s;
}

// v [tokens][S][H][D] (in_dtype) -> v_out [tokens][H][D] (out_dtype)
__global__ void MergeNKernel(const void* v, DType in_dtype, const float* s, void* v_out, DType out_dtype, float* s_out,
                             int32_t S, int32_t H, int32_t D) {
  const int64_t i = blockIdx.x;
  const int64_t t = i / H, h = i % H;
  float m = -INFINITY;
  for (int k = 0; k < S; ++k) m = fmaxf(m, s[(t * S + k) * H + h]);
  float sum = 0.f;
  if (m != -INFINITY) {
    for (int k = 0; k < S; ++k) {
      const float ls = s[(t * S + k) * H + h];
      sum += ls == -INFINITY ? 0.f : expf(ls - m);
    }
  }
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
    if (m != -INFINITY) {
      for (int k = 0; k < S; ++k) {
        const float ls = s[(t * S + k) * H + h];
        if (ls == -INFINITY) continue;
        acc += expf(ls - m) * LoadAsF32(v, in_dtype, ((t * S + k) * H + h) * D + d);
      }
    }
    StoreFromF32(v_out, out_dtype, i * D + d, acc * inv);
  }
  if (s_out && threadIdx.x == 0) s_out[i] = sum > 0.f ? m + logf(sum) : -INFINITY;
}

// One block per (token, head) on grid x: at most 2^31 - 1 blocks.
Status CheckMergeGrid(int64_t n) {
  if (n > 0x7fffffff) return Status::InvalidArgument("mergeStates (cuda): tokens x heads must be < 2^31");
  return Status::Ok();
}

}  // namespace

Status MergeStates(const MergeParams& p) {
  if (!IsFloatDType(p.dtype)) return Status::InvalidArgument("mergeStates: dtype must be f32, f16 or bf16");
  // Same shape checks as the CPU kernel (cpu/merge_states.cc), so both devices accept the same calls.
  if (p.tokens < 0 || p.heads <= 0 || p.head_dim <= 0) return Status::InvalidArgument("mergeStates: bad shape");
  const int64_t n = p.tokens * p.heads;
  if (n == 0) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckMergeGrid(n));
  MergeTwoKernel<<<static_cast<unsigned>(n), kThreads>>>(p);
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Status::Ok();
}

Status MergeStatesN(const MergeNParams& p) {
  if (!IsFloatDType(p.dtype)) return Status::InvalidArgument("mergeStates: dtype must be f32, f16 or bf16");
  if (p.tokens < 0 || p.heads <= 0 || p.head_dim <= 0 || p.num_states <= 0) {
    return Status::InvalidArgument("mergeStates: bad shape");
  }
  const int64_t n = p.tokens * p.heads;
  if (n == 0) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckMergeGrid(n));
  MergeNKernel<<<static_cast<unsigned>(n), kThreads>>>(p.v, p.dtype, p.s, p.v_out, p.dtype, p.s_out, p.num_states, p.heads,
                                                        p.head_dim);
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Status::Ok();
}

Status MergePartials(const float* part_o, const float* part_lse, void* o, float* lse, DType dtype, int64_t tokens,
                     int32_t splits, int32_t heads, int32_t head_dim) {
  const int64_t n = tokens * heads;
  if (n == 0) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckMergeGrid(n));
  MergeNKernel<<<static_cast<unsigned>(n), kThreads>>>(part_o, DType::kF32, part_lse, o, dtype, lse, splits, heads, head_dim);
  return FromCudaError(cudaGetLastError(), "MergeNKernel launch");
}

}  // namespace cuda
}  // namespace canopy
