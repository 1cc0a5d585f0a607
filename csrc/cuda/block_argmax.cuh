// The argmax of a block: every thread offers one candidate and all get the best of them in the
// argmax order of verify.h (larger value first, ties to the lower id, NaN as -inf; ArgmaxBetter).
#pragma once

#include <cuda_runtime.h>

#include "../common/verify.h"

namespace canopy {
namespace cuda {

// A tree reduction through the caller's shared arrays of blockDim.x slots (a power of two).
// Every thread of the block must call it. The arrays hold the result in slot 0 until the caller
// reuses them (after a __syncthreads() of its own, once every thread has read the result).
__device__ inline ArgmaxCandidate BlockArgmax(ArgmaxCandidate mine, float* s_value, int32_t* s_index) {
  s_value[threadIdx.x] = mine.value;
  s_index[threadIdx.x] = mine.index;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h) {
      const ArgmaxCandidate own{s_value[threadIdx.x], s_index[threadIdx.x]};
      const ArgmaxCandidate other{s_value[threadIdx.x + h], s_index[threadIdx.x + h]};
      if (ArgmaxBetter(other, own)) {
        s_value[threadIdx.x] = other.value;
        s_index[threadIdx.x] = other.index;
      }
    }
    __syncthreads();
  }
  return ArgmaxCandidate{s_value[0], s_index[0]};
}

}  // namespace cuda
}  // namespace canopy
