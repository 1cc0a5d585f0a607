// Private to the CPU linear layer: the per-ISA entry points (tiles in linear_tiles.h).
#pragma once

#include <cstdint>

#include "../common/linear.h"

namespace canopy {
namespace cpu {
// Computes weight rows [o_begin, o_end) for all activation rows; o_begin is a multiple of
// kLinearChunk (o_end too, except at `out`). scratch: kLinearChunk * in floats owned by the
// calling thread (16-bit weights are widened there for many rows), or nullptr.
using LinearRowsFn = void (*)(const LinearParams&, int64_t, int64_t, float*);
constexpr int64_t kLinearChunk = 24;  // linear_tiles.h's kChunk

LinearRowsFn LinearRowsAvx512();    // nullptr when not built
LinearRowsFn LinearRowsPortable();  // plain C++ vectors (what non-x86 builds run); CANOPY_CPU_ISA=portable
LinearRowsFn LinearRowsNeon();      // aarch64 NEON (linear_neon.cc); nullptr on other builds

// The path CANOPY_CPU_ISA and the CPU choose: "avx512" (when built and the CPU has it),
// "avx2" (the x86 baseline), "neon" (aarch64) or "portable"; `name` receives it.
LinearRowsFn SelectLinearRows(const char** name);
}  // namespace cpu
}  // namespace canopy
