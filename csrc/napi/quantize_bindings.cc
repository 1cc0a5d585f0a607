// quantizeRows(x, type, out): Promise<void> — x (f32, f16 or bf16 CPU tensor [rows, cols]) into
// `out` (uint8 CPU tensor of rows * QuantRowBytes(type, cols) bytes) in the GGUF block type `type`
// (ggml type id), with llama.cpp's reference quantizers (csrc/common/quantize.h).
#include <napi.h>

#include "../common/quantize_rows.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {
namespace {

Napi::Value QuantizeRowsBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg x = ParseTensorArg(env, info[0], "x");
  if (!info[1].IsNumber()) throw ArgumentError(env, "type must be a ggml type id (a number)");
  const int32_t type = info[1].As<Napi::Number>().Int32Value();
  TensorArg out = ParseTensorArg(env, info[2], "out");
  if (!IsValidQuantType(type)) throw ArgumentError(env, "type must be a GGUF block type canopy writes; received " + std::to_string(type));
  const QuantType qt = static_cast<QuantType>(type);
  if (x.view.device.kind != DeviceKind::kCpu || out.view.device.kind != DeviceKind::kCpu) {
    throw ArgumentError(env, "quantizeRows runs on the CPU: x and out must be CPU tensors");
  }
  if (!IsFloatDType(x.view.dtype) || x.view.ndim != 2) throw ArgumentError(env, "x must be an f32, f16 or bf16 [rows, cols] tensor; received " + ShapeText(x.view));
  if (out.view.dtype != DType::kU8) throw ArgumentError(env, "out must be a uint8 tensor");
  const int64_t rows = x.view.shape[0], cols = x.view.shape[1];
  const QuantTypeInfo qi = GetQuantTypeInfo(qt);
  if (cols % qi.block != 0) {
    throw ArgumentError(env, std::string("x's columns (") + std::to_string(cols) + ") must be a multiple of " + qi.name + "'s block of " + std::to_string(qi.block));
  }
  if (out.view.nbytes() != rows * QuantRowBytes(qt, cols)) {
    throw ArgumentError(env, "out must hold " + std::to_string(rows * QuantRowBytes(qt, cols)) + " bytes; received " + std::to_string(out.view.nbytes()));
  }
  const void* src = x.view.data;
  const DType dt = x.view.dtype;
  uint8_t* dst = static_cast<uint8_t*>(out.view.data);
  return RunAsync(env, [qt, src, dt, rows, cols, dst] { return cpu::QuantizeRows(qt, src, dt, rows, cols, dst); }, {x, out});
}

}  // namespace

void RegisterQuantizeBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("quantizeRows", Napi::Function::New(env, CANOPY_GUARDED(QuantizeRowsBinding), "quantizeRows"));
}

}  // namespace napi
}  // namespace canopy
