#include "kv_quant_arg.h"

#include <cmath>

#include "errors.h"

namespace canopy {
namespace napi {
namespace {

void Expect(Napi::Env env, const TensorArg& t, const std::string& name, DType dtype, std::initializer_list<int64_t> shape) {
  if (t.view.dtype != dtype) {
    throw ArgumentError(env, name + ".dtype must be " + DTypeName(dtype) + "; received " + DTypeName(t.view.dtype));
  }
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

}  // namespace

QuantKvArg ParseQuantKvArg(Napi::Env env, Napi::Value value, const std::string& name) {
  if (!value.IsObject()) throw ArgumentError(env, name + " must be a quantized KV cache descriptor {format, k, v, ...}");
  Napi::Object o = value.As<Napi::Object>();
  QuantKvArg out;
  QuantKvCache& c = out.cache;
  Napi::Value fv = o.Get("format");
  const std::string format = fv.IsString() ? fv.As<Napi::String>().Utf8Value() : "";
  if (format == "int8") {
    c.format = KvFormat::kInt8;
  } else if (format == "int4") {
    c.format = KvFormat::kInt4;
  } else if (format == "fp8") {
    c.format = KvFormat::kFp8;
  } else {
    throw ArgumentError(env, name + ".format must be 'int8', 'int4' or 'fp8'");
  }
  TensorArg k = ParseTensorArg(env, o.Get("k"), name + ".k");
  if (k.view.ndim != 4) throw ArgumentError(env, name + ".k must have shape [layers, rows, numKvHeads, headDim]; received " + ShapeText(k.view));
  const int64_t L = k.view.shape[0], rows = k.view.shape[1], H = k.view.shape[2];
  const int64_t D = c.format == KvFormat::kInt4 ? 2 * k.view.shape[3] : k.view.shape[3];
  if (L < 1 || L > 4096 || H < 1 || H > 1024 || D < 1 || D > 256 || rows > (INT64_C(1) << 40)) {
    throw ArgumentError(env, name + ".k has an unsupported shape " + ShapeText(k.view));
  }
  c.layers = static_cast<int32_t>(L);
  c.rows = rows;
  c.num_kv_heads = static_cast<int32_t>(H);
  c.head_dim = static_cast<int32_t>(D);
  const DType code = c.format == KvFormat::kInt8 ? DType::kI8 : DType::kU8;
  Expect(env, k, name + ".k", code, {L, rows, H, k.view.shape[3]});
  TensorArg v = ParseTensorArg(env, o.Get("v"), name + ".v");
  Expect(env, v, name + ".v", code, {L, rows, H, k.view.shape[3]});
  out.tensors = {k, v};
  if (c.format == KvFormat::kInt4) {
    const double g = ParseNumber(env, o.Get("group"), name + ".group", 0);
    if (g != 32 && g != 64 && g != 128) throw ArgumentError(env, name + ".group must be 32, 64 or 128");
    c.group = static_cast<int32_t>(g);
    if (rows % c.group != 0) throw ArgumentError(env, name + ": rows (" + std::to_string(rows) + ") must be a multiple of the group");
    const double ring = ParseNumber(env, o.Get("ring"), name + ".ring", 0);
    if (!(ring >= c.group) || ring > (1 << 30) || ring != std::floor(ring)) {
      throw ArgumentError(env, name + ".ring must be an integer >= the group (" + std::to_string(c.group) + ")");
    }
    c.ring = static_cast<int32_t>(ring);
  }
  const int64_t groups = c.format == KvFormat::kInt4 ? rows / c.group : 0;
  TensorArg ks = ParseTensorArg(env, o.Get("kScale"), name + ".kScale");
  TensorArg vs = ParseTensorArg(env, o.Get("vScale"), name + ".vScale");
  if (c.format == KvFormat::kInt4) {
    Expect(env, ks, name + ".kScale", DType::kF32, {L, groups, H, D});
  } else {
    Expect(env, ks, name + ".kScale", DType::kF32, {L, rows, H});
  }
  Expect(env, vs, name + ".vScale", DType::kF32, {L, rows, H});
  out.tensors.push_back(ks);
  out.tensors.push_back(vs);
  c.k = k.view.data;
  c.v = v.view.data;
  c.k_scale = static_cast<float*>(ks.view.data);
  c.v_scale = static_cast<float*>(vs.view.data);
  if (c.format == KvFormat::kInt4) {
    TensorArg kz = ParseTensorArg(env, o.Get("kZero"), name + ".kZero");
    TensorArg vz = ParseTensorArg(env, o.Get("vZero"), name + ".vZero");
    Expect(env, kz, name + ".kZero", DType::kF32, {L, groups, H, D});
    Expect(env, vz, name + ".vZero", DType::kF32, {L, rows, H});
    TensorArg rk = ParseTensorArg(env, o.Get("resK"), name + ".resK");
    if (!IsFloatDType(rk.view.dtype)) throw ArgumentError(env, name + ".resK.dtype must be f32, f16 or bf16");
    if (rk.view.ndim != 4) throw ArgumentError(env, name + ".resK must have shape [layers, resRows, numKvHeads, headDim]");
    const int64_t res_rows = rk.view.shape[1];
    Expect(env, rk, name + ".resK", rk.view.dtype, {L, res_rows, H, D});
    TensorArg rv = ParseTensorArg(env, o.Get("resV"), name + ".resV");
    Expect(env, rv, name + ".resV", rk.view.dtype, {L, res_rows, H, D});
    if (res_rows % c.ring != 0) throw ArgumentError(env, name + ".resK rows must be a multiple of the ring " + std::to_string(c.ring));
    c.k_zero = static_cast<float*>(kz.view.data);
    c.v_zero = static_cast<float*>(vz.view.data);
    c.res_k = rk.view.data;
    c.res_v = rv.view.data;
    c.res_dtype = rk.view.dtype;
    c.res_rows = res_rows;
    out.tensors.insert(out.tensors.end(), {kz, vz, rk, rv});
  }
  out.device = k.view.device;
  for (const TensorArg& t : out.tensors) {
    if (t.view.device.kind != out.device.kind || t.view.device.index != out.device.index) {
      throw ArgumentError(env, name + ": every tensor of the cache must be on one device");
    }
  }
  ThrowIfError(env, CheckQuantKvCache(c));
  return out;
}

QuantKvViewArg ParseQuantKvView(Napi::Env env, Napi::Value value, const std::string& name, size_t batch) {
  if (!value.IsObject()) throw ArgumentError(env, name + " must be {cache, layer?, quantLens?, resStart?}");
  Napi::Object o = value.As<Napi::Object>();
  QuantKvViewArg out;
  out.arg = ParseQuantKvArg(env, o.Get("cache"), name + ".cache");
  const double l = ParseNumber(env, o.Get("layer"), name + ".layer", 0);
  if (l < 0 || l >= out.arg.cache.layers || l != std::floor(l)) {
    throw ArgumentError(env, name + ".layer must be an integer in [0, " + std::to_string(out.arg.cache.layers - 1) + "]");
  }
  out.layer = std::make_shared<QuantKvCache>(QuantKvLayer(out.arg.cache, static_cast<int32_t>(l)));
  out.quant_lens = std::make_shared<std::vector<int32_t>>();
  out.res_start = std::make_shared<std::vector<int32_t>>();
  for (auto [key, vec] : {std::make_pair("quantLens", out.quant_lens.get()), std::make_pair("resStart", out.res_start.get())}) {
    Napi::Value a = o.Get(key);
    if (a.IsUndefined() || a.IsNull()) continue;
    *vec = ParseInt32Array(env, a, name + "." + key);
    if (vec->size() != batch) {
      throw ArgumentError(env, name + "." + key + " must have " + std::to_string(batch) + " entries; received " + std::to_string(vec->size()));
    }
  }
  return out;
}

}  // namespace napi
}  // namespace canopy
