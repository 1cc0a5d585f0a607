// cast(src, dst): Promise<void> — element type conversion on the tensors'
// device (CPU thread pool or CUDA). See csrc/common/cast.h for the math.
#include <napi.h>

#include "../common/cast.h"
#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"

namespace canopy {
namespace napi {
namespace {

Napi::Value Cast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg src = ParseTensorArg(env, info[0], "src");
  TensorArg dst = ParseTensorArg(env, info[1], "dst");
  const TensorView s = src.view, d = dst.view;
  ThrowIfError(env, CheckCastArgs(s.dtype, d.dtype, s.numel()));
  if (s.numel() != d.numel()) {
    throw ArgumentError(env, "cast: dst has " + std::to_string(d.numel()) + " elements but src has " +
                                 std::to_string(s.numel()));
  }
  if (s.device.kind != d.device.kind || s.device.index != d.device.index) {
    throw ArgumentError(env, "cast: src and dst must be on the same device");
  }
  std::function<Status()> work;
  if (s.device.kind == DeviceKind::kCuda) {
    const int dev = s.device.index;
    work = [=] {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::Cast(s.data, s.dtype, d.data, d.dtype, s.numel());
    };
  } else {
    work = [=] { return cpu::Cast(s.data, s.dtype, d.data, d.dtype, s.numel()); };
  }
  return RunAsync(env, std::move(work), {src, dst});
}

}  // namespace

void RegisterCastBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("cast", Napi::Function::New(env, CANOPY_GUARDED(Cast), "cast"));
}

}  // namespace napi
}  // namespace canopy
