// Private to the CPU linear layer: the per-ISA entry points.
#pragma once

#include <cstdint>

#include "../common/linear.h"

namespace canopy {
namespace cpu {
// Computes weight rows [o_begin, o_end) (a multiple of 4 apart except at the end) for all rows.
using LinearRowsFn = void (*)(const LinearParams&, int64_t, int64_t);
LinearRowsFn LinearRowsAvx512();  // nullptr when not built
}  // namespace cpu
}  // namespace canopy
