// linearQuant(x, w, type, y, bias?, accumulate?): Promise<void> — y = x W^T (+ bias) with W a GGUF
// block-quantized matrix as stored (csrc/common/quant_blocks.h), on the CPU or a CUDA device (all
// tensors on one device; CUDA: the types of CudaHasQuantKernel, csrc/cuda/linear_quant.cu).
//   x  f32 [rows, in]; w uint8 holding out * (in / B) blocks of `type` (ggml type id), any shape;
//   y  f32 [rows, out]; bias f32 [out] or undefined.
#include <napi.h>

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {
namespace {

Napi::Value LinearQuantBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg x = ParseTensorArg(env, info[0], "x");
  TensorArg w = ParseTensorArg(env, info[1], "w");
  if (!info[2].IsNumber()) throw ArgumentError(env, "type must be a ggml type id (a number)");
  const int32_t type = info[2].As<Napi::Number>().Int32Value();
  TensorArg y = ParseTensorArg(env, info[3], "y");
  const bool has_bias = info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull();
  TensorArg bias;
  if (has_bias) bias = ParseTensorArg(env, info[4], "bias");
  const bool accumulate = info.Length() > 5 && info[5].ToBoolean().Value();
  if (!IsValidQuantType(type)) throw ArgumentError(env, "type must be a block type canopy reads; received " + std::to_string(type));
  const QuantType qt = static_cast<QuantType>(type);
  auto same_device = [](const TensorView& p, const TensorView& q) { return p.device.kind == q.device.kind && p.device.index == q.device.index; };
  if (!same_device(x.view, w.view) || !same_device(x.view, y.view) || (has_bias && !same_device(x.view, bias.view))) {
    throw ArgumentError(env, "linearQuant: x, w, bias and y must be on one device");
  }
  const bool cuda = x.view.device.kind == DeviceKind::kCuda;
  if (cuda && !CudaHasQuantKernel(qt)) {
    throw ArgumentError(env, std::string("linearQuant: ") + GetQuantTypeInfo(qt).name + " weights have no CUDA kernel yet (" +
                                 kCudaQuantTypesText + " do); use CPU tensors");
  }
  if (x.view.dtype != DType::kF32 || x.view.ndim != 2) throw ArgumentError(env, "x must be an f32 [rows, in] tensor");
  if (y.view.dtype != DType::kF32 || y.view.ndim != 2) throw ArgumentError(env, "y must be an f32 [rows, out] tensor");
  if (w.view.dtype != DType::kU8) throw ArgumentError(env, "w must be a uint8 tensor of blocks");
  const int64_t rows = x.view.shape[0], in = x.view.shape[1], out = y.view.shape[1];
  if (y.view.shape[0] != rows) throw ArgumentError(env, "y must have x's " + std::to_string(rows) + " rows");
  const QuantTypeInfo qi = GetQuantTypeInfo(qt);
  if (in % qi.block != 0) {
    throw ArgumentError(env, std::string("x's in (") + std::to_string(in) + ") must be a multiple of " + qi.name + "'s block of " +
                                 std::to_string(qi.block));
  }
  if (w.view.nbytes() != out * QuantRowBytes(qt, in)) {
    throw ArgumentError(env, std::string("w must hold ") + std::to_string(out * QuantRowBytes(qt, in)) + " bytes (" + std::to_string(out) +
                                 " rows of " + std::to_string(in) + " " + qi.name + " values); received " + std::to_string(w.view.nbytes()));
  }
  if (has_bias && (bias.view.dtype != DType::kF32 || bias.view.numel() != out)) {
    throw ArgumentError(env, "bias must be an f32 tensor of " + std::to_string(out) + " elements");
  }
  LinearParams p = MakeLinearParams(static_cast<const float*>(x.view.data), w.view.data, DType::kU8,
                                    has_bias ? static_cast<const float*>(bias.view.data) : nullptr, static_cast<float*>(y.view.data), rows,
                                    in, out, accumulate);
  p.w_quant = qt;
  std::vector<TensorArg> keep = {x, w, y};
  if (has_bias) keep.push_back(bias);
  if (cuda) {
    const int dev = x.view.device.index;
    return RunAsync(
        env,
        [p, dev] {
          CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
          return cuda::Linear(p);
        },
        keep);
  }
  return RunAsync(env, [p] { return cpu::Linear(p); }, keep);
}

}  // namespace

void RegisterLinearQuantBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("linearQuant", Napi::Function::New(env, CANOPY_GUARDED(LinearQuantBinding), "linearQuant"));
}

}  // namespace napi
}  // namespace canopy
