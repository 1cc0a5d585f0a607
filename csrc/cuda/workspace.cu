#include <cuda_runtime.h>

#include <vector>

#include "../common/runtime.h"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {

std::mutex& WorkspaceMutex() {
  static std::mutex mu;
  return mu;
}

Status AcquireWorkspace(int device, size_t bytes, void** ptr) {
  struct Slot {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  static std::vector<Slot> slots;  // guarded by WorkspaceMutex()
  if (device < 0) return Status::InvalidArgument("workspace: bad device");
  if (slots.size() <= static_cast<size_t>(device)) slots.resize(device + 1);
  Slot& s = slots[device];
  if (s.bytes < bytes) {
    if (s.ptr) {
      CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
      cudaFree(s.ptr);
      s.ptr = nullptr;
      s.bytes = 0;
    }
    const size_t want = bytes < (1u << 20) ? (1u << 20) : bytes + bytes / 4;
    CANOPY_RETURN_IF_ERROR(Malloc(device, want, &s.ptr));
    s.bytes = want;
  }
  *ptr = s.ptr;
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
