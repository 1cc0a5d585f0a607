// Small host-side integer arrays passed as tensor descriptors (tree layouts,
// index pointers, per-sequence outputs). Inputs are copied into a vector on
// the JavaScript thread, so the async work never races with JavaScript
// mutating them; outputs are written in place (the TensorArg keeps them alive).
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "errors.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {

// Checks `arg` is a 1-D int32 CPU tensor of `length` elements (any length when length < 0).
inline void CheckHostInt32(Napi::Env env, const TensorArg& arg, const std::string& name, int64_t length) {
  const TensorView& t = arg.view;
  if (t.dtype != DType::kI32) {
    throw ArgumentError(env, name + " must be an int32 tensor; received " + DTypeName(t.dtype));
  }
  if (t.device.kind != DeviceKind::kCpu) throw ArgumentError(env, name + " must be in host (CPU) memory");
  if (t.ndim != 1) throw ArgumentError(env, name + " must be 1-D; received " + std::to_string(t.ndim) + " dims");
  if (length >= 0 && t.shape[0] != length) {
    throw ArgumentError(env, name + " must have " + std::to_string(length) + " elements; received " +
                                 std::to_string(t.shape[0]));
  }
}

inline std::vector<int32_t> CopyHostInt32(Napi::Env env, const TensorArg& arg, const std::string& name,
                                          int64_t length) {
  CheckHostInt32(env, arg, name, length);
  const int32_t* p = static_cast<const int32_t*>(arg.view.data);
  return std::vector<int32_t>(p, p + arg.view.shape[0]);
}

}  // namespace napi
}  // namespace canopy
