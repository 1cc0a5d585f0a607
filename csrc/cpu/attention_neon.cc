// The aarch64 NEON build of the CPU attention tiles (attention_tiles.h with 128-bit vectors:
// one q register per vector, so the tiles can use NEON's 32 registers: a 4 keys x 4 vectors
// score tile and a 4 rows x 4 vectors value tile, 16 accumulators each). Chosen at run time on
// aarch64 (attention.cc) unless CANOPY_CPU_ISA=portable asks for the generic 256-bit tiles.
// Handles head_dim a multiple of 4. Compiled to nothing on other architectures.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common/attention.h"
#include "attention_cpu.h"

#if defined(__aarch64__)

#define CANOPY_TILE_NS tiles_neon
#define CANOPY_TILE_VEC_BYTES 16
#include "attention_tiles.h"
#undef CANOPY_TILE_NS
#undef CANOPY_TILE_VEC_BYTES

namespace canopy {
namespace cpu {
namespace {
void RunNeon(const AttentionParams& p, const AttentionWorkItem& w, const uint32_t* mask, int32_t words,
             const AttentionTileOutput& out, const AttentionScratch& sc) {
  tiles_neon::RunWorkItem<4, 4, 4>(p, w, mask, words, out, sc);
}
}  // namespace
}  // namespace cpu
}  // namespace canopy

#endif

namespace canopy {
namespace cpu {
RunWorkItemFn AttentionWorkItemNeon() {
#if defined(__aarch64__)
  return &RunNeon;
#else
  return nullptr;
#endif
}
}  // namespace cpu
}  // namespace canopy
