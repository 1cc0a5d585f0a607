// Grow-only device buffers, one per CUDA device and purpose, so per-call
// temporaries cost no cudaMalloc / cudaFree (cudaFree synchronises the device):
// - the kernel workspace: small per-call uploads of one op (work lists, index
//   arrays, masks) and its temporaries (split-KV partials);
// - the forward scratch: the activations and index arrays of one LlamaForward,
//   which calls ops that take the kernel workspace in turn (hence two buffers
//   and two mutexes, always taken in the order forward, then kernel).
// Callers hold the buffer's mutex from Acquire* until their kernels have
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

std::mutex& ForwardScratchMutex();
// As AcquireWorkspace, for the forward pass's scratch.
Status AcquireForwardScratch(int device, size_t bytes, void** ptr);
// Frees the forward scratch when it is over 64 MiB and more than 4x what the last pass used
// (`used` bytes), so a long prefill does not keep its peak for the life of the process. Call
// with ForwardScratchMutex() held and the device idle.
Status TrimForwardScratch(int device, size_t used);

}  // namespace cuda
}  // namespace canopy
