// argmaxRows(logits [rows, vocab] f32) -> Promise<void> writing best [rows] int32 (host):
// greedy token choice without copying the logits off the device (ties: lowest id).
#include <napi.h>

#include <vector>

#include "../common/runtime.h"
#include "../common/transformer_ops.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"

namespace canopy {
namespace napi {
namespace {

Napi::Value ArgmaxRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg logits = ParseTensorArg(env, info[0], "logits");
  TensorArg best = ParseTensorArg(env, info[1], "best");
  if (logits.view.dtype != DType::kF32 || logits.view.ndim != 2) throw ArgumentError(env, "logits must be f32 [rows, vocab]");
  if (best.view.dtype != DType::kI32 || best.view.ndim != 1 || best.view.shape[0] != logits.view.shape[0]) {
    throw ArgumentError(env, "best must be int32 [rows]");
  }
  if (best.view.device.kind != DeviceKind::kCpu) throw ArgumentError(env, "best must be a host array");
  const int64_t rows = logits.view.shape[0], vocab = logits.view.shape[1];
  if (vocab < 1) throw ArgumentError(env, "logits must have at least one column");
  const float* l = static_cast<const float*>(logits.view.data);
  int32_t* out = static_cast<int32_t*>(best.view.data);
  const bool cuda = logits.view.device.kind == DeviceKind::kCuda;
  const int dev = logits.view.device.index;
  return RunAsync(env, [=]() -> Status {
    if (!cuda) return cpu::Argmax(l, rows, vocab, out);
    CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
    return cuda::ArgmaxToHost(l, rows, vocab, out);
  }, {logits, best});
}

}  // namespace

void RegisterSamplingBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("argmaxRows", Napi::Function::New(env, CANOPY_GUARDED(ArgmaxRows), "argmaxRows"));
}

}  // namespace napi
}  // namespace canopy
