#include "tensor_arg.h"

#include <cmath>
#include <vector>

#include "errors.h"

namespace canopy {
namespace napi {
namespace {

std::string Describe(Napi::Value v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return "number " + v.ToString().Utf8Value();
  if (v.IsString()) return "'" + v.As<Napi::String>().Utf8Value() + "'";
  if (v.IsArray()) return "an array";
  if (v.IsTypedArray()) return "a typed array";
  if (v.IsArrayBuffer()) return "an ArrayBuffer";
  if (v.IsFunction()) return "a function";
  if (v.IsObject()) return "an object";
  return "a value of another type";
}

int64_t ParseDim(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsNumber()) throw ArgumentError(env, what + " must be a non-negative integer; received " + Describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
    throw ArgumentError(env, what + " must be a non-negative integer; received " + v.ToString().Utf8Value());
  }
  return static_cast<int64_t>(d);
}

}  // namespace

DType ParseDType(Napi::Env env, Napi::Value value, const std::string& name) {
  if (value.IsString()) {
    std::string s = value.As<Napi::String>().Utf8Value();
    for (int i = 0; i < kNumDTypes; ++i) {
      if (s == DTypeName(static_cast<DType>(i))) return static_cast<DType>(i);
    }
  }
  throw ArgumentError(env, name + " must be one of f32, f16, bf16, int8, uint8, int32; received " + Describe(value));
}

std::vector<int32_t> ParseInt32Array(Napi::Env env, Napi::Value value, const std::string& name) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw ArgumentError(env, name + " must be an Int32Array; received " + Describe(value));
  }
  Napi::Int32Array a = value.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

double ParseNumber(Napi::Env env, Napi::Value value, const std::string& name, double fallback) {
  if (value.IsUndefined() || value.IsNull()) return fallback;
  if (!value.IsNumber() || !std::isfinite(value.As<Napi::Number>().DoubleValue())) {
    throw ArgumentError(env, name + " must be a finite number; received " + Describe(value));
  }
  return value.As<Napi::Number>().DoubleValue();
}

std::string ShapeText(const TensorView& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

void CheckTensorShape(Napi::Env env, const TensorArg& t, std::initializer_list<int64_t> shape, const std::string& name) {
  bool ok = t.view.ndim == static_cast<int>(shape.size());
  int i = 0;
  for (int64_t d : shape) ok = ok && t.view.shape[i++] == d;
  if (!ok) {
    std::string want = "[";
    i = 0;
    for (int64_t d : shape) want += (i++ ? ", " : "") + std::to_string(d);
    throw ArgumentError(env, name + " must have shape " + want + "]; received " + ShapeText(t.view));
  }
}

TensorArg ParseTensorArg(Napi::Env env, Napi::Value value, const std::string& name) {
  if (!value.IsObject() || value.IsArray() || value.IsTypedArray()) {
    throw ArgumentError(env, name + " must be a tensor descriptor {data, dtype, shape}; received " + Describe(value));
  }
  Napi::Object obj = value.As<Napi::Object>();
  TensorArg arg;
  TensorView& t = arg.view;
  t.dtype = ParseDType(env, obj.Get("dtype"), name + ".dtype");

  Napi::Value shape_v = obj.Get("shape");
  if (!shape_v.IsArray()) throw ArgumentError(env, name + ".shape must be an array of integers; received " + Describe(shape_v));
  Napi::Array shape = shape_v.As<Napi::Array>();
  if (shape.Length() > static_cast<uint32_t>(kMaxDims)) {
    throw ArgumentError(env, name + ".shape must have at most " + std::to_string(kMaxDims) + " dims; received " +
                                 std::to_string(shape.Length()));
  }
  t.ndim = static_cast<int32_t>(shape.Length());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = ParseDim(env, shape.Get(i), name + ".shape[" + std::to_string(i) + "]");
  ThrowIfError(env, ValidateShape(t.shape, t.ndim, t.dtype, name.c_str()));

  Napi::Value strides_v = obj.Get("strides");
  if (!strides_v.IsUndefined() && !strides_v.IsNull()) {
    if (!strides_v.IsArray() || strides_v.As<Napi::Array>().Length() != static_cast<uint32_t>(t.ndim)) {
      throw ArgumentError(env, name + ".strides must be an array with one entry per dim");
    }
    Napi::Array strides = strides_v.As<Napi::Array>();
    int64_t expected = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      Napi::Value sv = strides.Get(i);
      double s = sv.IsNumber() ? sv.As<Napi::Number>().DoubleValue() : std::nan("");
      if (t.shape[i] != 1 && s != static_cast<double>(expected)) {
        throw ArgumentError(env, name + " must be contiguous (row-major): strides[" + std::to_string(i) + "] must be " +
                                     std::to_string(expected) + "; received " + sv.ToString().Utf8Value());
      }
      expected *= t.shape[i];
    }
  }

  const int64_t need = t.nbytes();
  Napi::Value data = obj.Get("data");
  if (DeviceBuffer::IsInstance(data)) {
    DeviceBuffer* buf = DeviceBuffer::Unwrap(data);
    if (buf->freed()) throw StatusToError(env, Status::InvalidArgument(name + " uses a device buffer that was disposed"));
    int64_t offset = 0;
    Napi::Value off_v = obj.Get("byteOffset");
    if (!off_v.IsUndefined()) offset = ParseDim(env, off_v, name + ".byteOffset");
    if (offset % DTypeSize(t.dtype) != 0) {
      throw ArgumentError(env, name + ".byteOffset must be a multiple of " + std::to_string(DTypeSize(t.dtype)));
    }
    if (offset > static_cast<int64_t>(buf->bytes()) || need > static_cast<int64_t>(buf->bytes()) - offset) {
      throw ArgumentError(env, name + ": shape needs " + std::to_string(need) + " bytes but the device buffer holds " +
                                   std::to_string(buf->bytes()) + " bytes after offset " + std::to_string(offset));
    }
    t.data = static_cast<char*>(buf->data()) + offset;
    t.device.kind = DeviceKind::kCuda;
    t.device.index = buf->device();
    arg.device_buffer = buf;
  } else if (data.IsTypedArray() || data.IsArrayBuffer() || data.IsDataView()) {
    uint8_t* base = nullptr;
    size_t len = 0;
    if (data.IsTypedArray()) {
      Napi::TypedArray ta = data.As<Napi::TypedArray>();
      Napi::ArrayBuffer ab = ta.ArrayBuffer();
      base = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
      len = ta.ByteLength();
    } else if (data.IsDataView()) {
      Napi::DataView dv = data.As<Napi::DataView>();
      base = static_cast<uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
      len = dv.ByteLength();
    } else {
      Napi::ArrayBuffer ab = data.As<Napi::ArrayBuffer>();
      base = static_cast<uint8_t*>(ab.Data());
      len = ab.ByteLength();
    }
    if (static_cast<int64_t>(len) != need) {
      throw ArgumentError(env, name + ": shape and dtype need " + std::to_string(need) + " bytes but data holds " +
                                   std::to_string(len) + " bytes");
    }
    if (need > 0 && (base == nullptr || reinterpret_cast<uintptr_t>(base) % DTypeSize(t.dtype) != 0)) {
      throw ArgumentError(env, name + ".data is not aligned to " + std::to_string(DTypeSize(t.dtype)) +
                                   " bytes (or its buffer was detached)");
    }
    t.data = base;
    t.device.kind = DeviceKind::kCpu;
  } else {
    throw ArgumentError(env, name + ".data must be a typed array, an ArrayBuffer or a DeviceBuffer; received " +
                                 Describe(data));
  }
  arg.keep_alive = std::make_shared<Napi::ObjectReference>(Napi::Persistent(obj));
  return arg;
}

}  // namespace napi
}  // namespace canopy
