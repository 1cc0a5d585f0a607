// The AVX-512 VNNI build of the block-quantized linear layer's row loop (linear_quant_kernel.h with
// linear_quant_x86.h's vpdpbusd lanes on 256-bit vectors), compiled for that target in this
// translation unit only; chosen at run time (linear_quant.cc).
#include <cstdint>

#include "../common/linear.h"
#include "linear_quant_cpu.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CANOPY_HAVE_VNNI_TU 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#endif
#include "linear_quant_x86.h"
#define CANOPY_QUANT_NS quant_vnni
#include "linear_quant_kernel.h"
#undef CANOPY_QUANT_NS
#include "linear_quant_gemm.h"
namespace canopy {
namespace cpu {
namespace {
void RunVnni(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  // 2 or more activation rows: the register-blocked GEMM (linear_quant_gemm.h), same bits.
  if (quant_gemm::Run(p, act, o_begin, o_end)) return;
  quant_vnni::QuantRowsAnyType<x86::IsaX86<true>>(p, act, o_begin, o_end);
}
}  // namespace
}  // namespace cpu
}  // namespace canopy
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace canopy {
namespace cpu {
QuantRowsFn QuantRowsVnni() {
#ifdef CANOPY_HAVE_VNNI_TU
  return RunVnni;
#else
  return nullptr;
#endif
}
}  // namespace cpu
}  // namespace canopy
