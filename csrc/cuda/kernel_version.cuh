// Which version of a CUDA kernel family runs. Kernels are numbered as they are
// explored (llm.c style): version 1 is the plain SIMT reference the later
// versions are tested against. CANOPY_CUDA_KERNELS=v1 forces version 1
// everywhere (before/after benchmarks, bisecting a wrong result); it is read on
// every launch so tests can switch it between calls.
#pragma once

#include <cstdlib>
#include <cstring>

namespace canopy {
namespace cuda {

inline bool ForceV1Kernels() {
  const char* e = std::getenv("CANOPY_CUDA_KERNELS");
  return e != nullptr && std::strcmp(e, "v1") == 0;
}

}  // namespace cuda
}  // namespace canopy
