// Parsing tensor descriptors passed from TypeScript.
//
// A descriptor is a plain object:
//   { data: ArrayBufferView | ArrayBuffer | DeviceBuffer, byteOffset?: number (DeviceBuffer only),
//     dtype: 'f32' | 'f16' | 'bf16' | 'int8' | 'uint8' | 'int32', shape: number[], strides?: number[] }
// The TypeScript layer validates first; these checks are the second line, so
// a hand-made bad descriptor still gets an error naming the argument instead
// of reading out of bounds.
#pragma once

#include <napi.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "../common/tensor_view.h"
#include "device_buffer.h"

namespace canopy {
namespace napi {

struct TensorArg {
  TensorView view;
  DeviceBuffer* device_buffer = nullptr;  // set for CUDA tensors
  // Keeps the backing JS object alive while an async operation runs.
  std::shared_ptr<Napi::ObjectReference> keep_alive;
};

// Parses and checks `value` as the tensor argument called `name`.
TensorArg ParseTensorArg(Napi::Env env, Napi::Value value, const std::string& name);

DType ParseDType(Napi::Env env, Napi::Value value, const std::string& name);

// "[2, 3, 4]": a tensor's shape as messages write it.
std::string ShapeText(const TensorView& t);

// Throws "<name> must have shape [..]; received [..]" unless t has exactly `shape`.
void CheckTensorShape(Napi::Env env, const TensorArg& t, std::initializer_list<int64_t> shape, const std::string& name);

// Copies an Int32Array argument (small index arrays: indptrs, parents). Throws naming
// `name` when it is not an Int32Array.
std::vector<int32_t> ParseInt32Array(Napi::Env env, Napi::Value value, const std::string& name);

// Reads a numeric option; throws naming `name` when present but not a finite number.
double ParseNumber(Napi::Env env, Napi::Value value, const std::string& name, double fallback);

}  // namespace napi
}  // namespace canopy
