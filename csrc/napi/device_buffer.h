// DeviceBuffer: a block of CUDA device memory owned by a JavaScript object.
//
// JS: new DeviceBuffer(device: number, bytes: number); .device; .bytes;
// .freed; free(). Memory is freed by free() or, as a safety net, when the
// object is garbage collected. While an async operation uses the buffer it is
// "busy": free() then defers the release until the operation finishes, so an
// early dispose can never free memory a kernel is still using.
#pragma once

#include <napi.h>

#include <cstddef>

namespace canopy {
namespace napi {

class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::Function Init(Napi::Env env);
  static bool IsInstance(Napi::Value v);
  static DeviceBuffer* Unwrap(Napi::Value v) { return Napi::ObjectWrap<DeviceBuffer>::Unwrap(v.As<Napi::Object>()); }

  explicit DeviceBuffer(const Napi::CallbackInfo& info);
  ~DeviceBuffer() override;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  bool freed() const { return freed_; }

  // Busy counting for async operations (main thread only).
  void Acquire() { ++busy_; }
  void Release();

 private:
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value GetBytes(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetFreed(const Napi::CallbackInfo& info);
  void ReleaseMemory();
  void Construct(const Napi::CallbackInfo& info);

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
  bool freed_ = false;          // free() was called (memory may still be held while busy)
  bool memory_released_ = false;
  int busy_ = 0;
  static Napi::FunctionReference* constructor_;
};

}  // namespace napi
}  // namespace canopy
