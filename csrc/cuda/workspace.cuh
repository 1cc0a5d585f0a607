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

// One op's hold on a workspace: reserve aligned regions, Acquire (takes the buffer's mutex,
// grows the buffer on the current device), then At<T>(offset) for device pointers. The mutex is
// held until the lease is destroyed; the op must have finished with the memory by then (a
// synchronising copy or cudaDeviceSynchronize; later launches on the default stream are ordered
// after it anyway).
class WorkspaceLease {
 public:
  enum Buffer { kKernel, kForward };
  explicit WorkspaceLease(Buffer buffer = kKernel)
      : buffer_(buffer), lock_(buffer == kKernel ? WorkspaceMutex() : ForwardScratchMutex(), std::defer_lock) {}
  // Reserves `bytes` (aligned to 256) and returns its offset.
  size_t Reserve(size_t bytes) { return layout_.Add(bytes); }
  size_t size() const { return layout_.size(); }
  Status Acquire();
  template <typename T>
  T* At(size_t off) const {
    return reinterpret_cast<T*>(base_ + off);
  }
  int device() const { return device_; }

 private:
  Buffer buffer_;
  std::unique_lock<std::mutex> lock_;
  WorkspaceLayout layout_;
  char* base_ = nullptr;
  int device_ = 0;
};

}  // namespace cuda
}  // namespace canopy
