// CUDA linear layer, version 1 (SIMT, bandwidth-oriented): one warp per output
// feature and group of up to 8 activation rows; lanes stride along `in` so the
// weight row is read coalesced once per row group; warp shuffles reduce.
// Tensor-core GEMM for prefill (mma.sync / wgmma) is the next version.
#include <cuda_runtime.h>

#include "../common/linear.h"
#include "check.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kRowsPerWarp = 8;
constexpr int kWarpsPerBlock = 4;

__global__ void LinearKernelV1(LinearParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kRowsPerWarp;
  if (o >= p.out) return;
  const int nr = static_cast<int>(min(static_cast<int64_t>(kRowsPerWarp), p.rows - n0));
  float acc[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = 0.f;
  const int64_t wrow = o * p.in;
  for (int64_t i = lane; i < p.in; i += 32) {
    const float w = LoadAsF32(p.w, p.w_dtype, wrow + i);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
      if (r < nr) acc[r] += w * p.x[(n0 + r) * p.in + i];
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    float v = acc[r];
    for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(0xffffffffu, v, s);
    if (lane == 0 && r < nr) {
      v += p.bias ? p.bias[o] : 0.f;
      float* y = p.y + (n0 + r) * p.out + o;
      *y = p.accumulate ? *y + v : v;
    }
  }
}

}  // namespace

Status Linear(const LinearParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckLinearParams(p));
  if (p.rows == 0) return Status::Ok();
  const int64_t gx = (p.out + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t gy = (p.rows + kRowsPerWarp - 1) / kRowsPerWarp;
  if (gx > 0x7fffffff || gy > 65535) return Status::InvalidArgument("linear (cuda): too many rows or outputs for one launch");
  LinearKernelV1<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), kWarpsPerBlock * 32>>>(p);
  return FromCudaError(cudaGetLastError(), "LinearKernelV1 launch");
}

}  // namespace cuda
}  // namespace canopy
