// CUDA linear layers (GEMV for decode; the same kernels tile prefill rows by 8).
//
// Version 1 (SIMT, the reference): one warp per output feature and group of up
// to 8 activation rows; lanes stride along `in` one element at a time (a warp
// reads 64-128 contiguous bytes per step); warp shuffles reduce.
//
// Version 2 (SIMT, vectorised): the same work split, but each lane reads 16
// bytes of the weight row per step (8 f16/bf16 or 4 f32 weights, through the
// read-only cache) and the matching activations as float4, so a warp moves
// 512 contiguous bytes per load and keeps several loads in flight: decode reads
// the weights once at close to the memory bandwidth. Taken when rows of W and
// x start 16-byte aligned (in a multiple of 8 for 16-bit weights, of 4 for
// f32); otherwise, or with CANOPY_CUDA_KERNELS=v1, version 1 runs.
// Accumulation is fp32 in both; only the summation order differs.
//
// Tensor-core GEMM for prefill (mma.sync / wgmma) is the next version.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/linear.h"
#include "check.cuh"
#include "kernel_version.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kRowsPerWarp = 8;
constexpr int kWarpsPerBlock = 4;

// Sums each row's per-lane partial dot products across the warp and lane 0 writes y[n0 + r][o]
// (+ bias; added into y with accumulate). Rows r >= nr are past the end.
__device__ __forceinline__ void ReduceAndStore(const LinearParams& p, const float (&acc)[kRowsPerWarp], int nr, int64_t n0,
                                               int64_t o, int lane) {
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
  ReduceAndStore(p, acc, nr, n0, o, lane);
}

// Weights per 16-byte vector.
template <DType kW>
constexpr int kVecElems = kW == DType::kF32 ? 4 : 8;

// Widens one 16-byte vector of weights to floats (exact: f16 and bf16 are subsets of f32).
template <DType kW>
__device__ __forceinline__ void WidenVec(const uint4& raw, float* w) {
  const uint32_t u[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if constexpr (kW == DType::kF32) {
      w[k] = __uint_as_float(u[k]);
    } else if constexpr (kW == DType::kF16) {
      // Element 2k is the low half of word k (little-endian), as in memory.
      w[2 * k] = __half2float(__ushort_as_half(static_cast<unsigned short>(u[k] & 0xffffu)));
      w[2 * k + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(u[k] >> 16)));
    } else {
      // bf16 is the top half of an f32: shift the low element up, mask the high one.
      w[2 * k] = __uint_as_float(u[k] << 16);
      w[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
  }
}

template <DType kW>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) LinearKernelV2(LinearParams p) {
  constexpr int kE = kVecElems<kW>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kRowsPerWarp;
  if (o >= p.out) return;  // warp-uniform
  const int nr = static_cast<int>(min(static_cast<int64_t>(kRowsPerWarp), p.rows - n0));
  const int64_t nvec = p.in / kE;  // exact: the launcher checked in % kE == 0
  const uint4* wrow = reinterpret_cast<const uint4*>(static_cast<const char*>(p.w) + o * p.in * (16 / kE));
  const float* x0 = p.x + n0 * p.in;
  float acc[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = 0.f;
#pragma unroll 4
  for (int64_t vi = lane; vi < nvec; vi += 32) {
    float w[kE];
    WidenVec<kW>(__ldg(wrow + vi), w);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (r < nr) {
        const float4* xr = reinterpret_cast<const float4*>(x0 + r * p.in + vi * kE);
#pragma unroll
        for (int q = 0; q < kE / 4; ++q) {
          const float4 xv = xr[q];
          acc[r] += w[4 * q] * xv.x + w[4 * q + 1] * xv.y + w[4 * q + 2] * xv.z + w[4 * q + 3] * xv.w;
        }
      }
    }
  }
  ReduceAndStore(p, acc, nr, n0, o, lane);
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

}  // namespace

Status Linear(const LinearParams& p) {
  if (p.w_quant != QuantType::kNone) return LinearQuant(p);  // linear_quant.cu
  CANOPY_RETURN_IF_ERROR(CheckLinearParams(p));
  if (p.rows == 0) return Status::Ok();
  const int64_t gx = (p.out + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t gy = (p.rows + kRowsPerWarp - 1) / kRowsPerWarp;
  if (gx > 0x7fffffff || gy > 65535) return Status::InvalidArgument("linear (cuda): too many rows or outputs for one launch");
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  // Version 2 needs every weight row and activation row to start on 16 bytes: the bases
  // aligned, and `in` a multiple of the elements per 16 bytes (4 f32 activations too).
  const int vec = p.w_dtype == DType::kF32 ? 4 : 8;
  if (!ForceV1Kernels() && p.in % vec == 0 && Aligned16(p.w) && Aligned16(p.x)) {
    switch (p.w_dtype) {
      case DType::kF32: LinearKernelV2<DType::kF32><<<grid, kWarpsPerBlock * 32>>>(p); break;
      case DType::kF16: LinearKernelV2<DType::kF16><<<grid, kWarpsPerBlock * 32>>>(p); break;
      default: LinearKernelV2<DType::kBF16><<<grid, kWarpsPerBlock * 32>>>(p); break;
    }
    return FromCudaError(cudaGetLastError(), "LinearKernelV2 launch");
  }
  LinearKernelV1<<<grid, kWarpsPerBlock * 32>>>(p);
  return FromCudaError(cudaGetLastError(), "LinearKernelV1 launch");
}

}  // namespace cuda
}  // namespace canopy
