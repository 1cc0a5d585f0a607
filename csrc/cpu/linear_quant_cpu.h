// Private to the CPU block-quantized linear layer (linear_quant*.cc): activation quantization
// and the per-ISA integer dot products.
//
// Activations are quantized per row in blocks of the weight's block size (32, or 256 for the
// K-quants), as ggml's q8_0 / q8_K do:
//   a = max |x_i| over the block, d = a / 127, q_i = rint(x_i * (127 / a)) (ties to even), in
//   [-127, 127] (a = 0: d = 0, q = 0; a non-finite block: d = NaN, q = 0, so its rows give NaN),
// with d kept in f32 (ggml rounds q8_0's d to f16) and the sums of the codes per 16 values (ggml's
// q8_K bsums) for the types with mins.
// A weight block dotted with an activation block is then integer arithmetic, exact in int32, scaled
// once per block in f32 (linear_quant_kernel.h states the per-output arithmetic). Every ISA computes
// the integer parts exactly and the f32 parts in the same order, so all paths give bit-identical
// results, and each output element is computed the same way whatever the number of rows or threads.
#pragma once

#include <cstdint>
#include <vector>

namespace canopy {
struct LinearParams;
namespace cpu {

struct QuantActivations {
  int64_t rows = 0, in = 0;
  int block = 32;
  std::vector<int8_t> q;        // [rows][in]
  std::vector<float> d;         // [rows][in / block]
  std::vector<int32_t> sum16;   // [rows][in / 16]
};

void QuantizeActivations(const float* x, int64_t rows, int64_t in, int block, QuantActivations* out);

// Computes weight rows [o_begin, o_end) of p for every activation row (linear_quant_kernel.h).
using QuantRowsFn = void (*)(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end);
QuantRowsFn QuantRowsPortable();
QuantRowsFn QuantRowsAvx2();  // nullptr when not built for x86
QuantRowsFn QuantRowsVnni();  // AVX-512 VNNI (256-bit vpdpbusd); nullptr when not built
QuantRowsFn QuantRowsNeon();     // aarch64 NEON (vmull_s8 + pairwise adds); nullptr on other builds
QuantRowsFn QuantRowsNeonDot();  // aarch64 dotprod (sdot, linear_quant_neon.cc); nullptr on other builds

}  // namespace cpu
}  // namespace canopy
