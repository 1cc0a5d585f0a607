// CUDA linear layer over GGUF block-quantized weights (csrc/common/quant_blocks.h):
//   y[n][o] = sum_i x[n][i] W[o][i] (+ bias[o])   with W read as stored (no dequantized copy).
//
// Types: Q8_0, Q4_0, Q4_K, Q6_K (CudaHasQuantKernel in linear.h); any other block type is refused
// with a Status naming it. The weights are dequantized in registers, 8 consecutive values (a
// "chunk") at a time, each value exactly as DequantizeBlock computes it on the host:
//   w = (d * sc) * q - dmin * m   in f32, every product and difference rounded (no contraction),
// and dotted with the f32 activations (no activation quantization, unlike the CPU kernels: the
// CUDA result is the f32 dot product of the exactly dequantized weights).
//
// Version 1, rows <= 64 (decode, verification, draft trees): one warp per output feature and group
// of up to 8 activation rows (as linear.cu's GEMV); lane l takes chunks l, l + 32, ... of the row
// (a warp reads 32 consecutive chunks: 8 whole Q8_0 / Q4_0 blocks, or one Q4_K / Q6_K super-block),
// accumulates each row in f32 and the warp reduces with shuffles. A row's arithmetic does not
// depend on the other rows, so each output element is bit-identical for rows = 1..64.
//
// Prefill (rows > 64): dequantized tiles. A block of 256 threads computes 64 outputs x 64 rows:
// per 32-value step it dequantizes the 64 x 32 weight tile into shared memory (f32: the exact
// dequantized values; one chunk per thread) and stages the 64 x 32 activations, then each thread
// accumulates a 4 x 4 sub-tile in f32. The summation order differs from version 1 (the values are
// the same up to f32 rounding). Tensor-core (mma) tiles are the next version.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "check.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kRowsPerWarp = 8;
constexpr int kWarpsPerBlock = 4;
constexpr int kMaxGemvRows = 64;  // above: the tiled kernel

__device__ __forceinline__ float F16At(const uint8_t* p) {
  return F16BitsToF32(static_cast<uint16_t>(__ldg(p) | (__ldg(p + 1) << 8)));
}

// The reference value of one code: (d * sc) * q - dmin * m, rounded as DequantizeBlock on the host.
__device__ __forceinline__ float DequantValue(float scale, int q, float offset) {
  return __fsub_rn(__fmul_rn(scale, static_cast<float>(q)), offset);
}

// Values [8k, 8k + 8) of the block at `blk` (k < block / 8) into w, dequantized.
template <QuantType T>
__device__ __forceinline__ void DequantChunk8(const uint8_t* blk, int k, float (&w)[8]) {
  if constexpr (T == QuantType::kQ8_0) {
    // f16 d; int8 q[32]
    const float d = F16At(blk);
#pragma unroll
    for (int t = 0; t < 8; ++t) w[t] = DequantValue(d, static_cast<int8_t>(__ldg(blk + 2 + 8 * k + t)), 0.f);
  } else if constexpr (T == QuantType::kQ4_0) {
    // f16 d; u8 qs[16]: codes 0..15 low nibbles, 16..31 high nibbles; value d * (n - 8)
    const float d = F16At(blk);
    const uint8_t* qs = blk + 2 + 8 * (k & 1);
    const int shift = k < 2 ? 0 : 4;
#pragma unroll
    for (int t = 0; t < 8; ++t) w[t] = DequantValue(d, ((__ldg(qs + t) >> shift) & 15) - 8, 0.f);
  } else if constexpr (T == QuantType::kQ4_K) {
    // f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; i = 64 h + 32 s + l
    const int i0 = 8 * k, h = i0 >> 6, s = (i0 >> 5) & 1, l0 = i0 & 31;
    const float d = F16At(blk), dmin = F16At(blk + 2);
    int sc, m;
    ScaleMinK4(2 * h + s, blk + 4, &sc, &m);  // reads the 2 or 3 bytes it needs
    const float scale = __fmul_rn(d, static_cast<float>(sc)), offset = __fmul_rn(dmin, static_cast<float>(m));
    const uint8_t* qs = blk + 16 + 32 * h + l0;
#pragma unroll
    for (int t = 0; t < 8; ++t) w[t] = DequantValue(scale, (__ldg(qs + t) >> (4 * s)) & 15, offset);
  } else {
    static_assert(T == QuantType::kQ6_K, "CUDA block kernels: Q8_0, Q4_0, Q4_K, Q6_K");
    // u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d; i = 128 h + 32 s + l, sub-block j = i / 16
    const int i0 = 8 * k, h = i0 >> 7, s = (i0 >> 5) & 3, l0 = i0 & 31;
    const float d = F16At(blk + 208);
    const int sc = static_cast<int8_t>(__ldg(blk + 192 + (i0 >> 4)));
    const float scale = __fmul_rn(d, static_cast<float>(sc));
    const uint8_t* ql = blk + 64 * h + 32 * (s & 1) + l0;
    const uint8_t* qh = blk + 128 + 32 * h + l0;
#pragma unroll
    for (int t = 0; t < 8; ++t) {
      const int low = (__ldg(ql + t) >> (4 * (s >> 1))) & 15;
      const int high = (__ldg(qh + t) >> (2 * s)) & 3;
      w[t] = DequantValue(scale, (low | (high << 4)) - 32, 0.f);
    }
  }
}

// Chunk c (values [8c, 8c + 8)) of a weight row.
template <QuantType T>
__device__ __forceinline__ void RowChunk8(const uint8_t* wrow, int64_t c, float (&w)[8]) {
  constexpr int kChunks = GetQuantTypeInfoConst(T).block / 8, kBytes = GetQuantTypeInfoConst(T).bytes;
  DequantChunk8<T>(wrow + (c / kChunks) * kBytes, static_cast<int>(c % kChunks), w);
}

// Bytes of one weight row (in a multiple of the block; checked by the launcher).
template <QuantType T>
__device__ __forceinline__ int64_t RowBytes(int64_t in) {
  constexpr int kBlock = GetQuantTypeInfoConst(T).block, kBytes = GetQuantTypeInfoConst(T).bytes;
  return in / kBlock * kBytes;
}

__device__ __forceinline__ void StoreOut(const LinearParams& p, int64_t n, int64_t o, float v) {
  v += p.bias ? p.bias[o] : 0.f;
  float* y = p.y + n * p.out + o;
  *y = p.accumulate ? *y + v : v;
}

// Version 1: GEMV / small-M (see the top of the file). kVecX: x rows start 16-byte aligned.
template <QuantType T, bool kVecX>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) LinearQuantGemv(LinearParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kRowsPerWarp;
  if (o >= p.out) return;  // warp-uniform
  const int nr = static_cast<int>(min(static_cast<int64_t>(kRowsPerWarp), p.rows - n0));
  const uint8_t* wrow = static_cast<const uint8_t*>(p.w) + o * RowBytes<T>(p.in);
  const float* x0 = p.x + n0 * p.in;
  const int64_t nchunks = p.in / 8;
  float acc[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = 0.f;
#pragma unroll 2
  for (int64_t c = lane; c < nchunks; c += 32) {
    float w[8];
    RowChunk8<T>(wrow, c, w);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (r < nr) {
        const float* xr = x0 + r * p.in + 8 * c;
        float xv[8];
        if constexpr (kVecX) {
          const float4 a = *reinterpret_cast<const float4*>(xr), b = *reinterpret_cast<const float4*>(xr + 4);
          xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w, xv[4] = b.x, xv[5] = b.y, xv[6] = b.z, xv[7] = b.w;
        } else {
#pragma unroll
          for (int t = 0; t < 8; ++t) xv[t] = xr[t];
        }
#pragma unroll
        for (int t = 0; t < 8; ++t) acc[r] = fmaf(w[t], xv[t], acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    float v = acc[r];
    for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(0xffffffffu, v, s);
    if (lane == 0 && r < nr) StoreOut(p, n0 + r, o, v);
  }
}

// Prefill: 64 outputs x 64 rows per block of 256 threads, 32 values of `in` per step.
constexpr int kTile = 64;
constexpr int kTileK = 32;

template <QuantType T>
__global__ void __launch_bounds__(256) LinearQuantTiled(LinearParams p) {
  __shared__ float ws[kTile][kTileK + 1];
  __shared__ float xs[kTile][kTileK + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * kTile, n0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t row_bytes = RowBytes<T>(p.in);
  // This thread's share of the staging: tile row lr, chunk lc (8 values) of the 32.
  const int lr = tid / 4, lc = tid % 4;
  const bool w_live = o0 + lr < p.out, x_live = n0 + lr < p.rows;
  const uint8_t* wrow = static_cast<const uint8_t*>(p.w) + (w_live ? (o0 + lr) * row_bytes : 0);
  const float* xrow = p.x + (x_live ? (n0 + lr) * p.in : 0);
  float acc[4][4];
#pragma unroll
  for (int b = 0; b < 4; ++b)
#pragma unroll
    for (int a = 0; a < 4; ++a) acc[b][a] = 0.f;
  for (int64_t k0 = 0; k0 < p.in; k0 += kTileK) {
    float w[8];
    if (w_live) {
      RowChunk8<T>(wrow, k0 / 8 + lc, w);
    } else {
#pragma unroll
      for (int t = 0; t < 8; ++t) w[t] = 0.f;
    }
#pragma unroll
    for (int t = 0; t < 8; ++t) {
      ws[lr][8 * lc + t] = w[t];
      xs[lr][8 * lc + t] = x_live ? xrow[k0 + 8 * lc + t] : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kTileK; ++k) {
      float wv[4], xv[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) wv[a] = ws[tx + 16 * a][k];
#pragma unroll
      for (int b = 0; b < 4; ++b) xv[b] = xs[ty + 16 * b][k];
#pragma unroll
      for (int b = 0; b < 4; ++b)
#pragma unroll
        for (int a = 0; a < 4; ++a) acc[b][a] = fmaf(wv[a], xv[b], acc[b][a]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    const int64_t n = n0 + ty + 16 * b;
    if (n >= p.rows) continue;
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int64_t o = o0 + tx + 16 * a;
      if (o < p.out) StoreOut(p, n, o, acc[b][a]);
    }
  }
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

template <QuantType T>
Status Launch(const LinearParams& p) {
  if (p.rows <= kMaxGemvRows) {
    const int64_t gx = (p.out + kWarpsPerBlock - 1) / kWarpsPerBlock;
    const int64_t gy = (p.rows + kRowsPerWarp - 1) / kRowsPerWarp;
    if (gx > 0x7fffffff) return Status::InvalidArgument("linear (cuda): too many outputs for one launch");
    const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
    if (Aligned16(p.x)) {
      LinearQuantGemv<T, true><<<grid, kWarpsPerBlock * 32>>>(p);
    } else {
      LinearQuantGemv<T, false><<<grid, kWarpsPerBlock * 32>>>(p);
    }
    return FromCudaError(cudaGetLastError(), "LinearQuantGemv launch");
  }
  const int64_t gx = (p.out + kTile - 1) / kTile, gy = (p.rows + kTile - 1) / kTile;
  if (gx > 0x7fffffff || gy > 65535) return Status::InvalidArgument("linear (cuda): too many rows or outputs for one launch");
  LinearQuantTiled<T><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), 256>>>(p);
  return FromCudaError(cudaGetLastError(), "LinearQuantTiled launch");
}

}  // namespace

Status LinearQuant(const LinearParams& p) {
  const QuantTypeInfo info = GetQuantTypeInfo(p.w_quant);
  if (info.block != 0 && !CudaHasQuantKernel(p.w_quant)) {
    return Status::InvalidArgument(std::string("linear (cuda): ") + info.name + " weights have no CUDA kernel yet (" +
                                   kCudaQuantTypesText + " do); run this model on the CPU");
  }
  CANOPY_RETURN_IF_ERROR(cpu::CheckLinearQuantParams(p));
  if (p.rows == 0) return Status::Ok();
  switch (p.w_quant) {
    case QuantType::kQ8_0: return Launch<QuantType::kQ8_0>(p);
    case QuantType::kQ4_0: return Launch<QuantType::kQ4_0>(p);
    case QuantType::kQ4_K: return Launch<QuantType::kQ4_K>(p);
    case QuantType::kQ6_K: return Launch<QuantType::kQ6_K>(p);
    default: return Status::Internal("linear (cuda): unreachable block type");
  }
}

}  // namespace cuda
}  // namespace canopy
