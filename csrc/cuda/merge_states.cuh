// CUDA-internal: merging split-KV partial states (f32) into the output dtype.
#pragma once

#include <cstdint>

#include "../common/dtype.h"
#include "../common/status.h"

namespace canopy {
namespace cuda {

// part_o [tokens][splits][heads][D] f32, part_lse [tokens][splits][heads] -> o (dtype), lse (optional).
Status MergePartials(const float* part_o, const float* part_lse, void* o, float* lse, DType dtype, int64_t tokens,
                     int32_t splits, int32_t heads, int32_t head_dim);

}  // namespace cuda
}  // namespace canopy
