// A grow-only device workspace per CUDA device for small per-call uploads
// (work lists, index arrays, masks) and temporaries (split-KV partials).
// Callers hold WorkspaceMutex() from AcquireWorkspace until their kernels have
// finished with it.
#pragma once

#include <cstddef>
#include <mutex>

#include "../common/status.h"

namespace canopy {
namespace cuda {

// Offsets of regions in one allocation, each aligned to 256 bytes.
class WorkspaceLayout {
 public:
  size_t Add(size_t bytes) {
    const size_t off = size_;
    size_ += (bytes + 255) / 256 * 256;
    return off;
  }
  size_t size() const { return size_; }

 private:
  size_t size_ = 0;
};

std::mutex& WorkspaceMutex();
// Returns a device buffer of at least `bytes` on `device` (reallocating when too small).
Status AcquireWorkspace(int device, size_t bytes, void** ptr);

}  // namespace cuda
}  // namespace canopy
