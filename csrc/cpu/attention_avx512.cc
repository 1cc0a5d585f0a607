// The AVX-512 build of the CPU attention tiles (chosen at run time when the
// CPU and OS support AVX-512; the rest of the library stays at the AVX2
// baseline so the binary runs everywhere).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common/attention.h"
#include "attention_cpu.h"

#include "avx512_begin.h"
#ifdef CANOPY_HAVE_AVX512_TU

#define CANOPY_TILE_NS tiles_avx512
#define CANOPY_TILE_VEC_BYTES 64
#include "attention_tiles.h"
#undef CANOPY_TILE_NS
#undef CANOPY_TILE_VEC_BYTES

namespace canopy {
namespace cpu {
namespace {
void RunAvx512(const AttentionParams& p, const AttentionWorkItem& w, const uint32_t* mask, int32_t words,
               const AttentionTileOutput& out, const AttentionScratch& sc) {
  // 32 zmm registers: a 4 keys x 4 vectors score tile (16 accumulators), a 4 rows x
  // 4 vectors value tile (16).
  tiles_avx512::RunWorkItem<4, 4, 4>(p, w, mask, words, out, sc);
}
}  // namespace
}  // namespace cpu
}  // namespace canopy

#endif
#include "avx512_end.h"

namespace canopy {
namespace cpu {
RunWorkItemFn AttentionWorkItemAvx512() {
#ifdef CANOPY_HAVE_AVX512_TU
  return &RunAvx512;
#else
  return nullptr;
#endif
}
}  // namespace cpu
}  // namespace canopy
