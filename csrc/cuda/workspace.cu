#include <cuda_runtime.h>

#include <vector>

#include "../common/runtime.h"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {

namespace {

struct Slot {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// Grows slots[device] to at least `bytes` (1 MiB at least, 25% headroom); the caller holds the
// mutex guarding `slots`. The old buffer is freed only after the device is idle.
Status Acquire(std::vector<Slot>* slots, int device, size_t bytes, void** ptr) {
  if (device < 0) return Status::InvalidArgument("workspace: bad device");
  if (slots->size() <= static_cast<size_t>(device)) slots->resize(device + 1);
  Slot& s = (*slots)[device];
  if (s.bytes < bytes) {
    if (s.ptr) {
      CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
      cudaFree(s.ptr);
      s.ptr = nullptr;
      s.bytes = 0;
    }
    size_t want = bytes < (1u << 20) ? (1u << 20) : bytes + bytes / 4;
    Status st = Malloc(device, want, &s.ptr);
    if (!st.ok() && st.code() == StatusCode::kOutOfMemory && want > bytes) {
      want = bytes;  // the headroom did not fit: the exact size may
      st = Malloc(device, want, &s.ptr);
    }
    CANOPY_RETURN_IF_ERROR(st);
    s.bytes = want;
  }
  *ptr = s.ptr;
  return Status::Ok();
}

}  // namespace

std::mutex& WorkspaceMutex() {
  static std::mutex mu;
  return mu;
}

Status AcquireWorkspace(int device, size_t bytes, void** ptr) {
  static std::vector<Slot> slots;  // guarded by WorkspaceMutex()
  return Acquire(&slots, device, bytes, ptr);
}

std::mutex& ForwardScratchMutex() {
  static std::mutex mu;
  return mu;
}

std::vector<Slot>& ForwardSlots() {
  static std::vector<Slot> slots;  // guarded by ForwardScratchMutex()
  return slots;
}

Status AcquireForwardScratch(int device, size_t bytes, void** ptr) { return Acquire(&ForwardSlots(), device, bytes, ptr); }

Status TrimForwardScratch(int device, size_t used) {
  std::vector<Slot>& slots = ForwardSlots();
  if (device < 0 || static_cast<size_t>(device) >= slots.size()) return Status::Ok();
  Slot& s = slots[device];
  if (s.ptr != nullptr && s.bytes > (size_t{64} << 20) && used < s.bytes / 4) {
    CANOPY_RETURN_IF_ERROR(Free(device, s.ptr));
    s.ptr = nullptr;
    s.bytes = 0;
  }
  return Status::Ok();
}

Status WorkspaceLease::Acquire() {
  if (lock_.owns_lock()) return Status::Internal("workspace lease: acquired twice");
  lock_.lock();
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device_));
  void* p = nullptr;
  const size_t bytes = layout_.size() > 0 ? layout_.size() : 1;
  CANOPY_RETURN_IF_ERROR(buffer_ == kKernel ? AcquireWorkspace(device_, bytes, &p) : AcquireForwardScratch(device_, bytes, &p));
  base_ = static_cast<char*>(p);
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
