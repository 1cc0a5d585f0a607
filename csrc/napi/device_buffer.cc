#include "device_buffer.h"

#include <cmath>
#include <string>

#include "../common/runtime.h"
#include "errors.h"

namespace canopy {
namespace napi {

Napi::FunctionReference* DeviceBuffer::constructor_ = nullptr;

Napi::Function DeviceBuffer::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "DeviceBuffer",
                                  {
                                      InstanceMethod<&DeviceBuffer::Free>("free"),
                                      InstanceAccessor<&DeviceBuffer::GetBytes>("bytes"),
                                      InstanceAccessor<&DeviceBuffer::GetDevice>("device"),
                                      InstanceAccessor<&DeviceBuffer::GetFreed>("freed"),
                                  });
  constructor_ = new Napi::FunctionReference(Napi::Persistent(fn));
  return fn;
}

bool DeviceBuffer::IsInstance(Napi::Value v) {
  if (!v.IsObject() || constructor_ == nullptr) return false;
  return v.As<Napi::Object>().InstanceOf(constructor_->Value());
}

DeviceBuffer::DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
  GuardCall(info.Env(), [&] { Construct(info); });
}

void DeviceBuffer::Construct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw ArgumentError(env, "DeviceBuffer: expected (device: number, bytes: number)");
  }
  double device = info[0].As<Napi::Number>().DoubleValue();
  double bytes = info[1].As<Napi::Number>().DoubleValue();
  if (!(device >= 0) || device != std::floor(device) || device > 1024) {
    throw ArgumentError(env, "DeviceBuffer: device must be a CUDA ordinal >= 0; received " + std::to_string(device));
  }
  if (!(bytes >= 0) || bytes != std::floor(bytes) || bytes > 9007199254740991.0) {
    throw ArgumentError(env, "DeviceBuffer: bytes must be a non-negative integer; received " + std::to_string(bytes));
  }
  device_ = static_cast<int>(device);
  bytes_ = static_cast<size_t>(bytes);
  ThrowIfError(env, cuda::Malloc(device_, bytes_, &ptr_));
  if (bytes_ > 0) Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes_));
}

DeviceBuffer::~DeviceBuffer() {
  // GC safety net. Errors are ignored: at process exit the CUDA runtime may
  // already be unloading, and a destructor has nobody to report to.
  if (!memory_released_ && ptr_ != nullptr) cuda::Free(device_, ptr_);
}

void DeviceBuffer::ReleaseMemory() {
  if (memory_released_) return;
  memory_released_ = true;
  if (ptr_ != nullptr) {
    cuda::Free(device_, ptr_);
    Napi::MemoryManagement::AdjustExternalMemory(Env(), -static_cast<int64_t>(bytes_));
  }
  ptr_ = nullptr;
}

void DeviceBuffer::Release() {
  if (--busy_ == 0 && freed_) ReleaseMemory();
}

Napi::Value DeviceBuffer::Free(const Napi::CallbackInfo& info) {
  return Guard(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
    freed_ = true;
    if (busy_ == 0) ReleaseMemory();
    return info.Env().Undefined();
  });
}

Napi::Value DeviceBuffer::GetBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
}
Napi::Value DeviceBuffer::GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }
Napi::Value DeviceBuffer::GetFreed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), freed_); }

}  // namespace napi
}  // namespace canopy
