// The portable build of the linear tiles: GCC/Clang vector extensions with no intrinsics
// (scalar f16 conversion, lane-wise fused multiply-add). Non-x86 builds run this code as their
// baseline; on x86 CANOPY_CPU_ISA=portable selects it so that tests hold it to the reference.
#include <cstdint>

#include "../common/linear.h"
#include "linear_cpu.h"

#define CANOPY_LINEAR_PORTABLE 1
#define CANOPY_TILE_NS linear_portable
#define CANOPY_TILE_VEC_BYTES 32
#include "linear_tiles.h"
#undef CANOPY_TILE_NS
#undef CANOPY_TILE_VEC_BYTES
#undef CANOPY_LINEAR_PORTABLE

namespace canopy {
namespace cpu {
namespace {
void RunPortable(const LinearParams& p, int64_t o_begin, int64_t o_end, float* scratch) {
  linear_portable::Run(p, o_begin, o_end, scratch);
}
static_assert(linear_portable::kChunk == kLinearChunk, "chunk sizes agree");
static_assert(linear_portable::ScratchFloats(1) <= kLinearChunk * (1 + 64 * 16), "scratch covers the tiles' needs");
}  // namespace
LinearRowsFn LinearRowsPortable() { return &RunPortable; }
}  // namespace cpu
}  // namespace canopy
