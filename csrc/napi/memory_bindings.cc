// Copies between host and device tensors (any direction).
//
//   copy(dst, src): Promise<void>  off the JavaScript thread
//   copySync(dst, src): void       for small transfers
// dst and src are tensor descriptors of the same byte size.
#include <napi.h>

#include <cstring>

#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"

namespace canopy {
namespace napi {
namespace {

std::function<Status()> MakeCopy(Napi::Env env, const TensorArg& dst, const TensorArg& src) {
  if (dst.view.nbytes() != src.view.nbytes()) {
    throw ArgumentError(env, "copy: dst holds " + std::to_string(dst.view.nbytes()) + " bytes but src holds " +
                                 std::to_string(src.view.nbytes()));
  }
  void* d = dst.view.data;
  const void* s = src.view.data;
  const size_t n = static_cast<size_t>(src.view.nbytes());
  const bool d_cuda = dst.view.device.kind == DeviceKind::kCuda;
  const bool s_cuda = src.view.device.kind == DeviceKind::kCuda;
  if (d_cuda && s_cuda) {
    if (dst.view.device.index != src.view.device.index) {
      throw ArgumentError(env, "copy: copies between two CUDA devices are not supported (cuda:" +
                                   std::to_string(src.view.device.index) + " -> cuda:" +
                                   std::to_string(dst.view.device.index) + ")");
    }
    int dev = dst.view.device.index;
    return [=] { return cuda::CopyDeviceToDevice(dev, d, s, n); };
  }
  if (d_cuda) {
    int dev = dst.view.device.index;
    return [=] { return cuda::CopyHostToDevice(dev, d, s, n); };
  }
  if (s_cuda) {
    int dev = src.view.device.index;
    return [=] { return cuda::CopyDeviceToHost(dev, d, s, n); };
  }
  return [=] {
    if (n > 0) std::memmove(d, s, n);
    return Status::Ok();
  };
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg dst = ParseTensorArg(env, info[0], "dst");
  TensorArg src = ParseTensorArg(env, info[1], "src");
  auto work = MakeCopy(env, dst, src);
  return RunAsync(env, std::move(work), {dst, src});
}

Napi::Value CopySync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg dst = ParseTensorArg(env, info[0], "dst");
  TensorArg src = ParseTensorArg(env, info[1], "src");
  ThrowIfError(env, MakeCopy(env, dst, src)());
  return env.Undefined();
}

}  // namespace

void RegisterMemoryBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("copy", Napi::Function::New(env, CANOPY_GUARDED(Copy), "copy"));
  exports.Set("copySync", Napi::Function::New(env, CANOPY_GUARDED(CopySync), "copySync"));
}

}  // namespace napi
}  // namespace canopy
