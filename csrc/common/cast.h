// Op family: cast (element type conversion).
//
//   out[i] = convert(in[i])   for i in [0, n)
//
// Shapes: `in` and `out` are dense buffers of n elements of their dtypes.
// Supported pairs: any of f32, f16, bf16 to any other of them (and to itself,
// a copy). Float conversions round to nearest even (see dtype.h); f16 <-> bf16
// goes through f32, which is exact for the widening step, so the result is the
// correctly rounded value of the source.
#pragma once

#include <cstdint>
#include <string>

#include "dtype.h"
#include "status.h"

namespace canopy {

inline bool CastSupported(DType from, DType to) { return IsFloatDType(from) && IsFloatDType(to); }

inline Status CheckCastArgs(DType from, DType to, int64_t n) {
  if (!CastSupported(from, to)) {
    return Status::InvalidArgument(std::string("cast: dtype pair ") + DTypeName(from) + " -> " + DTypeName(to) +
                                   " is not supported; both must be one of f32, f16, bf16");
  }
  if (n < 0) return Status::InvalidArgument("cast: n must be >= 0; received " + std::to_string(n));
  return Status::Ok();
}

namespace cpu {
// Host kernel: runs on the CPU thread pool.
Status Cast(const void* in, DType from, void* out, DType to, int64_t n);
}  // namespace cpu

namespace cuda {
// Device kernel on the current CUDA device, on the default stream; synchronous
// on return. `in` and `out` are device pointers.
Status Cast(const void* in, DType from, void* out, DType to, int64_t n);
// The same, returning once the kernel is queued (for callers that keep working in stream
// order, such as the forward pass).
Status CastAsync(const void* in, DType from, void* out, DType to, int64_t n);
}  // namespace cuda

}  // namespace canopy
