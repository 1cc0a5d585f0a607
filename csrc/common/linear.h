// Op family: linear layers (GEMM / GEMV).
//
//   y[n][o] = sum_i x[n][i] * W[o][i]  (+ bias[o])     for n < rows, o < out
//
// x  [rows, in]  f32 activations
// W  [out, in]   f32, f16 or bf16 weights (PyTorch layout: y = x W^T), or, with w_quant set, a
//                GGUF block-quantized matrix as stored (quant_blocks.h; CUDA: CudaHasQuantKernel types)
// y  [rows, out] f32; accumulate == true adds into y (residual connections)
// Accumulation is fp32. Decode (rows = 1..8) is bound by reading W once; prefill
// (many rows) reuses each W tile across a block of rows.
//
// Contract (CPU): each y[n][o] is computed by the same sequence of operations whatever
// `rows` is and however the work is split over threads (csrc/cpu/linear_tiles.h states it),
// so a row is bit-identical alone (decode) and inside a batch (speculative verification).
// Results may differ between ISA paths (CANOPY_CPU_ISA), never within one.
//
// Contract (CUDA, block-quantized W; csrc/cuda/linear_quant.cu): Q8_0, Q4_0, Q4_K and Q6_K (any
// other block type: an InvalidArgument naming it). The weights are dequantized in registers to
// exactly DequantizeBlock's f32 values and dotted with the f32 activations in f32 (the CPU instead
// quantizes the activations to 8-bit blocks). Against the float64 dot product of those dequantized
// weights and x the CUDA result is within  in * 2^-23 * sum_i |W[o][i] x[n][i]|  (f32 accumulation;
// native tests check a tighter 16 * 2^-24 * sqrt(in) * sum|...| + tiny); against the CPU kernel the
// difference is the CPU's activation rounding, at most  sum_blocks sum_i |W[o][i]| * d_x / 2  (d_x:
// the block's activation step, max |x| / 127), plus the f32 terms of both. Bit-identical to the
// CPU is not promised. Within CUDA each output element is bit-identical for rows = 1..64 (one
// kernel, the same per-row order); prefill (rows > 64) sums in another order (tiled kernel).
#pragma once

#include <cstdint>
#include <string>

#include "dtype.h"
#include "quant_blocks.h"
#include "status.h"

namespace canopy {

struct LinearParams {
  const float* x = nullptr;
  const void* w = nullptr;
  DType w_dtype = DType::kF32;
  QuantType w_quant = QuantType::kNone;  // a block type: w holds its blocks and w_dtype is unused
  const float* bias = nullptr;  // optional [out] f32
  float* y = nullptr;
  int64_t rows = 0;
  int64_t in = 0;
  int64_t out = 0;
  bool accumulate = false;
};

inline LinearParams MakeLinearParams(const float* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t rows,
                                     int64_t in, int64_t out, bool accumulate) {
  LinearParams p;
  p.x = x;
  p.w = w;
  p.w_dtype = w_dtype;
  p.bias = bias;
  p.y = y;
  p.rows = rows;
  p.in = in;
  p.out = out;
  p.accumulate = accumulate;
  return p;
}

inline Status CheckLinearParams(const LinearParams& p) {
  if (p.w_quant != QuantType::kNone) {
    return Status::InvalidArgument(std::string("linear: ") + GetQuantTypeInfo(p.w_quant).name +
                                   " block-quantized weights go through LinearQuant (cpu::Linear and cuda::Linear dispatch to it)");
  }
  if (!IsFloatDType(p.w_dtype)) return Status::InvalidArgument("linear: weight dtype must be f32, f16 or bf16");
  if (p.rows < 0 || p.in <= 0 || p.out <= 0) return Status::InvalidArgument("linear: bad shape");
  return Status::Ok();
}

namespace cpu {
Status Linear(const LinearParams& p);
// The block-quantized path (csrc/cpu/linear_quant.cc); Linear dispatches to it when w_quant is set.
Status LinearQuant(const LinearParams& p);
Status CheckLinearQuantParams(const LinearParams& p);
}  // namespace cpu
namespace cuda {
Status Linear(const LinearParams& p);  // pointers are device pointers; block types go to LinearQuant
Status LinearQuant(const LinearParams& p);
}  // namespace cuda

// The block types with CUDA linear kernels (the others run on the CPU only, for now).
inline bool CudaHasQuantKernel(QuantType t) {
  return t == QuantType::kQ8_0 || t == QuantType::kQ4_0 || t == QuantType::kQ4_K || t == QuantType::kQ6_K;
}
constexpr const char* kCudaQuantTypesText = "Q8_0, Q4_0, Q4_K and Q6_K";

}  // namespace canopy
