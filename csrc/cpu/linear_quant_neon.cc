// The aarch64 dotprod (SDOT) build of the block-quantized linear layer's row loop
// (linear_quant_kernel.h with linear_quant_neon.h's IsaNeon<true>), compiled for armv8.2's
// dotprod extension (armv8.2-a+dotprod) in this translation unit's functions only (the rest of the library stays at
// the armv8-a baseline); chosen at run time when getauxval reports HWCAP_ASIMDDP (linear_quant.cc).
// Compiled to nothing on other architectures.
#include <cstdint>

#include "../common/linear.h"
#include "linear_quant_cpu.h"

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define CANOPY_HAVE_DOTPROD_TU 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
#pragma GCC push_options
// arm_neon.h declares vdotq_s32 under armv8.2-a+dotprod, and GCC inlines it only into functions
// of that architecture. Every CPU with dotprod implements armv8.2, so these functions (run only
// there) may use all of it.
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
#include "linear_quant_neon.h"
#define CANOPY_QUANT_NS quant_neon_dot
#include "linear_quant_kernel.h"
#undef CANOPY_QUANT_NS
namespace canopy {
namespace cpu {
namespace {
void RunNeonDot(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  quant_neon_dot::QuantRowsAnyType<neon::IsaNeon<true>>(p, act, o_begin, o_end);
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
QuantRowsFn QuantRowsNeonDot() {
#ifdef CANOPY_HAVE_DOTPROD_TU
  return RunNeonDot;
#else
  return nullptr;
#endif
}
}  // namespace cpu
}  // namespace canopy
