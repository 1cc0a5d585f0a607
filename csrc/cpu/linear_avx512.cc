// The AVX-512 build of the linear tiles (see attention_avx512.cc for the pattern).
#include <cstdint>
#include <cstring>

#include "../common/linear.h"
#include "linear_cpu.h"

#include "avx512_begin.h"
#ifdef CANOPY_HAVE_AVX512_TU

#define CANOPY_TILE_NS linear_avx512
#define CANOPY_TILE_VEC_BYTES 64
#include "linear_tiles.h"
#undef CANOPY_TILE_NS
#undef CANOPY_TILE_VEC_BYTES

namespace canopy {
namespace cpu {
namespace {
void RunAvx512(const LinearParams& p, int64_t o_begin, int64_t o_end, float* scratch) {
  linear_avx512::Run(p, o_begin, o_end, scratch);
}
static_assert(linear_avx512::kChunk == kLinearChunk, "chunk sizes agree");
static_assert(linear_avx512::ScratchFloats(1) <= kLinearChunk * (1 + 64 * 16), "scratch covers the tiles' needs");
}  // namespace
}  // namespace cpu
}  // namespace canopy

#endif
#include "avx512_end.h"

namespace canopy {
namespace cpu {
LinearRowsFn LinearRowsAvx512() {
#ifdef CANOPY_HAVE_AVX512_TU
  return &RunAvx512;
#else
  return nullptr;
#endif
}
}  // namespace cpu
}  // namespace canopy
