// CUDA cast kernel: one element per thread in a grid-stride loop, using the
// same exact conversions as the CPU kernel (dtype.h), so results are bitwise
// identical to csrc/cpu/cast.cc.
#include <cuda_runtime.h>

#include <algorithm>

#include "../common/cast.h"
#include "check.cuh"

namespace canopy {
namespace cuda {
namespace {

__global__ void CastKernel(const void* in, DType from, void* out, DType to, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if (from == to && from != DType::kF32) {
      static_cast<uint16_t*>(out)[i] = static_cast<const uint16_t*>(in)[i];  // bit copy keeps NaN payloads
    } else {
      StoreFromF32(out, to, i, LoadAsF32(in, from, i));
    }
  }
}

}  // namespace

Status CastAsync(const void* in, DType from, void* out, DType to, int64_t n) {
  CANOPY_RETURN_IF_ERROR(CheckCastArgs(from, to, n));
  if (n == 0) return Status::Ok();
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65536);
  CastKernel<<<static_cast<unsigned>(blocks), kThreads>>>(in, from, out, to, n);
  return FromCudaError(cudaGetLastError(), "CastKernel launch");
}

Status Cast(const void* in, DType from, void* out, DType to, int64_t n) {
  CANOPY_RETURN_IF_ERROR(CastAsync(in, from, out, to, n));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
