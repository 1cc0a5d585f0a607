// Linear layer (csrc/common/linear.h):
//
//   linear({x, w, bias?, y, accumulate?}): Promise<void>
//
// x [rows, in] f32, w [out, in] f32/f16/bf16, bias [out] f32 (optional), y [rows, out] f32
// (written, or added to when accumulate). All on one device (host or CUDA). The TypeScript
// wrapper (lib/kernels/linear.ts) validates first; these checks are the second line.
#include <napi.h>

#include <string>

#include "../common/linear.h"
#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {
namespace {

Napi::Value Linear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw ArgumentError(env, "linear: expected an object {x, w, bias?, y, accumulate?}");
  Napi::Object a = info[0].As<Napi::Object>();
  TensorArg x = ParseTensorArg(env, a.Get("x"), "x");
  TensorArg w = ParseTensorArg(env, a.Get("w"), "w");
  TensorArg y = ParseTensorArg(env, a.Get("y"), "y");
  const bool has_bias = a.Has("bias") && !a.Get("bias").IsUndefined() && !a.Get("bias").IsNull();
  TensorArg bias;
  if (has_bias) bias = ParseTensorArg(env, a.Get("bias"), "bias");
  const bool accumulate = a.Has("accumulate") && a.Get("accumulate").ToBoolean().Value();
  const TensorView xv = x.view, wv = w.view, yv = y.view;
  if (xv.dtype != DType::kF32 || xv.ndim != 2) throw ArgumentError(env, "linear: x must be a 2-d f32 tensor [rows, in]; received " + std::string(DTypeName(xv.dtype)) + " " + ShapeText(xv));
  if (!IsFloatDType(wv.dtype) || wv.ndim != 2) throw ArgumentError(env, "linear: w must be a 2-d f32, f16 or bf16 tensor [out, in]; received " + std::string(DTypeName(wv.dtype)) + " " + ShapeText(wv));
  const int64_t rows = xv.shape[0], in = xv.shape[1], out = wv.shape[0];
  if (wv.shape[1] != in) throw ArgumentError(env, "linear: w must be [out, " + std::to_string(in) + "]; received " + ShapeText(wv));
  if (in <= 0 || out <= 0) throw ArgumentError(env, "linear: in and out must be >= 1; received in " + std::to_string(in) + ", out " + std::to_string(out));
  if (yv.dtype != DType::kF32 || yv.ndim != 2 || yv.shape[0] != rows || yv.shape[1] != out) {
    throw ArgumentError(env, "linear: y must be f32 [" + std::to_string(rows) + ", " + std::to_string(out) + "]; received " + std::string(DTypeName(yv.dtype)) + " " + ShapeText(yv));
  }
  if (has_bias && (bias.view.dtype != DType::kF32 || bias.view.ndim != 1 || bias.view.shape[0] != out)) {
    throw ArgumentError(env, "linear: bias must be f32 [" + std::to_string(out) + "]; received " + std::string(DTypeName(bias.view.dtype)) + " " + ShapeText(bias.view));
  }
  auto same_device = [](const TensorView& p, const TensorView& q) { return p.device.kind == q.device.kind && p.device.index == q.device.index; };
  if (!same_device(xv, wv) || !same_device(xv, yv) || (has_bias && !same_device(xv, bias.view))) {
    throw ArgumentError(env, "linear: x, w, bias and y must be on one device");
  }
  {
    const char* y0 = static_cast<const char*>(yv.data);
    const char* x0 = static_cast<const char*>(xv.data);
    if (yv.nbytes() > 0 && xv.nbytes() > 0 && y0 < x0 + xv.nbytes() && x0 < y0 + yv.nbytes()) {
      throw ArgumentError(env, "linear: y must not share memory with x");
    }
  }
  const LinearParams p = MakeLinearParams(static_cast<const float*>(xv.data), wv.data, wv.dtype,
                                          has_bias ? static_cast<const float*>(bias.view.data) : nullptr,
                                          static_cast<float*>(yv.data), rows, in, out, accumulate);
  std::function<Status()> work;
  if (xv.device.kind == DeviceKind::kCuda) {
    const int dev = xv.device.index;
    work = [=] {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::Linear(p);
    };
  } else {
    work = [=] { return cpu::Linear(p); };
  }
  std::vector<TensorArg> keep = {x, w, y};
  if (has_bias) keep.push_back(bias);
  return RunAsync(env, std::move(work), std::move(keep));
}

}  // namespace

void RegisterLinearBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("linear", Napi::Function::New(env, CANOPY_GUARDED(Linear), "linear"));
}

}  // namespace napi
}  // namespace canopy
