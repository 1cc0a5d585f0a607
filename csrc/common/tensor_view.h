// TensorView: a non-owning view of a dense, row-major tensor in host or device
// memory. Kernels take views; ownership lives in the N-API layer (host
// ArrayBuffers) or in DeviceBuffer (device memory).
#pragma once

#include <cstdint>
#include <string>

#include "dtype.h"
#include "status.h"

namespace canopy {

constexpr int kMaxDims = 8;

enum class DeviceKind : int32_t { kCpu = 0, kCuda = 1 };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int32_t index = 0;  // CUDA ordinal; 0 for CPU
};

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device;
  int32_t ndim = 0;
  int64_t shape[kMaxDims] = {0};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t nbytes() const { return numel() * DTypeSize(dtype); }
};

// Checks the shape is well formed: 0 <= ndim <= kMaxDims, every dim >= 0 and
// the element count and byte size fit in int64 without overflow.
inline Status ValidateShape(const int64_t* shape, int ndim, DType dtype, const char* name) {
  if (ndim < 0 || ndim > kMaxDims) {
    return Status::InvalidArgument(std::string(name) + ": ndim must be in 0.." + std::to_string(kMaxDims) +
                                   "; received " + std::to_string(ndim));
  }
  const int64_t kLimit = INT64_C(1) << 50;  // 1 PiB: far above any real tensor, far below overflow
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) {
    if (shape[i] < 0) {
      return Status::InvalidArgument(std::string(name) + ": shape[" + std::to_string(i) +
                                     "] must be >= 0; received " + std::to_string(shape[i]));
    }
    if (shape[i] > 0 && n > kLimit / shape[i]) {
      return Status::InvalidArgument(std::string(name) + ": shape is too large (more than 2^50 elements)");
    }
    n *= shape[i];
  }
  if (n > kLimit / DTypeSize(dtype)) {
    return Status::InvalidArgument(std::string(name) + ": shape is too large (more than 2^50 bytes)");
  }
  return Status::Ok();
}

}  // namespace canopy
