// The aarch64 NEON build of the linear tiles (linear_tiles.h): 8-lane vectors held as two q
// registers, fused multiply-adds by vfmaq_f32 and f16 weights widened by fcvtl (exact), so each
// output element follows the same 8-lane arithmetic as the x86 AVX2 path. Chosen at run time on
// aarch64 (linear.cc; CANOPY_CPU_ISA=portable selects the plain C++ tiles instead). Compiled to
// nothing on other architectures.
#include <cstdint>
#include <cstring>

#include "../common/linear.h"
#include "linear_cpu.h"

#if defined(__aarch64__)

#define CANOPY_LINEAR_NEON_TU 1
#define CANOPY_TILE_NS linear_neon
#define CANOPY_TILE_VEC_BYTES 32
#include "linear_tiles.h"
#undef CANOPY_TILE_NS
#undef CANOPY_TILE_VEC_BYTES
#undef CANOPY_LINEAR_NEON_TU

namespace canopy {
namespace cpu {
namespace {
void RunNeon(const LinearParams& p, int64_t o_begin, int64_t o_end, float* scratch) { linear_neon::Run(p, o_begin, o_end, scratch); }
static_assert(linear_neon::kChunk == kLinearChunk, "chunk sizes agree");
static_assert(linear_neon::ScratchFloats(1) <= kLinearChunk * (1 + 64 * 16), "scratch covers the tiles' needs");
}  // namespace
}  // namespace cpu
}  // namespace canopy

#endif

namespace canopy {
namespace cpu {
LinearRowsFn LinearRowsNeon() {
#if defined(__aarch64__)
  return &RunNeon;
#else
  return nullptr;
#endif
}
}  // namespace cpu
}  // namespace canopy
