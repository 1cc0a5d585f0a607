// Quantized KV cache ops (csrc/common/kv_quant.h), dispatched to the CPU or CUDA kernels by the
// cache's device. `cache` is a quantized cache descriptor (kv_quant_arg.h); index arrays are
// Int32Arrays (copied on the JavaScript thread).
//
//   kvQuantAppend({cache, layer, kvStart, resStart?, qoIndptr, posBefore, quantLen?, k, v}): Promise<void>
//       k, v f32 [n, numKvHeads, headDim] on the cache's device
//   kvQuantizeGroups({cache, kvStart, resStart, from, to}): Promise<void>          (int4, every layer)
//   kvRestoreGroupsSync({cache, kvStart, resStart, from, to}): void              (int4, every layer)
//   kvQuantCommit({cache, kvStart, resStart?, prefixLens, treeIndptr, acceptedCount, acceptedNodes,
//                  newLens (int32 host descriptor, out)}): Promise<void>
//   kvDequantize({cache, layer, kvStart, resStart?, kvLens, quantLens?, kOut, vOut}): Promise<void>
//       kOut, vOut f32 [sum kvLens, numKvHeads, headDim] on the cache's device
#include <napi.h>

#include <cmath>
#include <memory>

#include "../common/kv_quant.h"
#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "host_array.h"
#include "kv_quant_arg.h"

namespace canopy {
namespace napi {
namespace {

struct Seqs {
  std::vector<int32_t> kv_start, res_start;
  QuantKvBatch view() const {
    QuantKvBatch b;
    b.batch = static_cast<int32_t>(kv_start.size());
    b.kv_start = kv_start.data();
    b.res_start = res_start.empty() ? nullptr : res_start.data();
    return b;
  }
};

Napi::Object Options(const Napi::CallbackInfo& info, const char* op) {
  if (!info[0].IsObject()) throw ArgumentError(info.Env(), std::string(op) + ": expected an options object");
  return info[0].As<Napi::Object>();
}

std::vector<int32_t> Ints(Napi::Env env, Napi::Object o, const char* key, size_t length, bool optional = false) {
  Napi::Value v = o.Get(key);
  if (optional && (v.IsUndefined() || v.IsNull())) return {};
  std::vector<int32_t> a = ParseInt32Array(env, v, key);
  if (length != static_cast<size_t>(-1) && a.size() != length) {
    throw ArgumentError(env, std::string(key) + " must have " + std::to_string(length) + " entries; received " + std::to_string(a.size()));
  }
  return a;
}

std::shared_ptr<Seqs> ParseSeqs(Napi::Env env, Napi::Object o, const QuantKvCache& c) {
  auto s = std::make_shared<Seqs>();
  s->kv_start = Ints(env, o, "kvStart", static_cast<size_t>(-1));
  s->res_start = Ints(env, o, "resStart", s->kv_start.size(), c.format != KvFormat::kInt4);
  return s;
}

int32_t ParseLayer(Napi::Env env, Napi::Object o, const QuantKvCache& c) {
  const double l = ParseNumber(env, o.Get("layer"), "layer", 0);
  if (l < 0 || l >= c.layers || l != std::floor(l)) {
    throw ArgumentError(env, "layer must be an integer in [0, " + std::to_string(c.layers - 1) + "]; received " + std::to_string(l));
  }
  return static_cast<int32_t>(l);
}

TensorArg F32Rows(Napi::Env env, Napi::Object o, const char* key, int64_t n, const QuantKvArg& q) {
  TensorArg t = ParseTensorArg(env, o.Get(key), key);
  const QuantKvCache& c = q.cache;
  if (t.view.dtype != DType::kF32 || t.view.ndim != 3 || t.view.shape[0] != n || t.view.shape[1] != c.num_kv_heads ||
      t.view.shape[2] != c.head_dim) {
    throw ArgumentError(env, std::string(key) + " must be f32 [" + std::to_string(n) + ", " + std::to_string(c.num_kv_heads) + ", " +
                                 std::to_string(c.head_dim) + "]");
  }
  if (t.view.device.kind != q.device.kind || t.view.device.index != q.device.index) {
    throw ArgumentError(env, std::string(key) + " must be on the cache's device");
  }
  return t;
}

Napi::Value Run(Napi::Env env, const QuantKvArg& q, std::vector<TensorArg> extra, std::function<Status()> cpu_fn,
                std::function<Status()> cuda_fn) {
  std::vector<TensorArg> args = q.tensors;
  args.insert(args.end(), extra.begin(), extra.end());
  const bool on_cuda = q.device.kind == DeviceKind::kCuda;
  const int dev = q.device.index;
  return RunAsync(env, [=]() -> Status {
    if (on_cuda) {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda_fn();
    }
    return cpu_fn();
  }, std::move(args));
}

Napi::Value Append(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Options(info, "kvQuantAppend");
  QuantKvArg q = ParseQuantKvArg(env, o.Get("cache"), "cache");
  const int32_t layer = ParseLayer(env, o, q.cache);
  auto seqs = ParseSeqs(env, o, q.cache);
  const size_t B = seqs->kv_start.size();
  auto qo = std::make_shared<std::vector<int32_t>>(Ints(env, o, "qoIndptr", B + 1));
  auto pos = std::make_shared<std::vector<int32_t>>(Ints(env, o, "posBefore", B));
  auto ql = std::make_shared<std::vector<int32_t>>(Ints(env, o, "quantLen", B, true));
  const int64_t n = qo->back();
  TensorArg k = F32Rows(env, o, "k", n, q), v = F32Rows(env, o, "v", n, q);
  auto layer_view = std::make_shared<QuantKvCache>(QuantKvLayer(q.cache, layer));
  auto p = std::make_shared<QuantAppendParams>();
  p->seqs = seqs->view();
  p->qo_indptr = qo->data();
  p->pos_before = pos->data();
  p->quant_len = ql->empty() ? nullptr : ql->data();
  p->k = static_cast<const float*>(k.view.data);
  p->v = static_cast<const float*>(v.view.data);
  p->n = n;
  ThrowIfError(env, CheckQuantAppend(*layer_view, *p));
  return Run(env, q, {k, v}, [=] { (void)seqs, (void)qo, (void)pos, (void)ql; return cpu::AppendQuantKv(*layer_view, *p); },
             [=] { (void)seqs, (void)qo, (void)pos, (void)ql; return cuda::AppendQuantKv(*layer_view, *p); });
}

struct Groups {
  std::shared_ptr<Seqs> seqs;
  std::vector<int32_t> from, to;
};

Groups ParseGroups(Napi::Env env, Napi::Object o, const QuantKvArg& q, bool restore) {
  Groups g;
  g.seqs = ParseSeqs(env, o, q.cache);
  const size_t B = g.seqs->kv_start.size();
  g.from = Ints(env, o, "from", B);
  g.to = Ints(env, o, "to", B);
  ThrowIfError(env, CheckQuantGroups(q.cache, g.seqs->view(), g.from.data(), g.to.data(), restore));
  return g;
}

Napi::Value QuantizeGroups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Options(info, "kvQuantizeGroups");
  QuantKvArg q = ParseQuantKvArg(env, o.Get("cache"), "cache");
  auto g = std::make_shared<Groups>(ParseGroups(env, o, q, false));
  const QuantKvCache c = q.cache;
  return Run(env, q, {}, [=] { return cpu::QuantizeKvGroups(c, g->seqs->view(), g->from.data(), g->to.data()); },
             [=] { return cuda::QuantizeKvGroups(c, g->seqs->view(), g->from.data(), g->to.data()); });
}

Napi::Value RestoreGroupsSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Options(info, "kvRestoreGroupsSync");
  QuantKvArg q = ParseQuantKvArg(env, o.Get("cache"), "cache");
  for (const TensorArg& t : q.tensors) {
    if (t.device_buffer && t.device_buffer->freed()) throw ArgumentError(env, "cache: a device buffer was disposed");
  }
  Groups g = ParseGroups(env, o, q, true);
  Status s;
  if (q.device.kind == DeviceKind::kCuda) {
    s = cuda::SetDevice(q.device.index);
    if (s.ok()) s = cuda::RestoreKvGroups(q.cache, g.seqs->view(), g.from.data(), g.to.data());
  } else {
    s = cpu::RestoreKvGroups(q.cache, g.seqs->view(), g.from.data(), g.to.data());
  }
  ThrowIfError(env, s);
  return env.Undefined();
}

Napi::Value Commit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Options(info, "kvQuantCommit");
  QuantKvArg q = ParseQuantKvArg(env, o.Get("cache"), "cache");
  auto seqs = ParseSeqs(env, o, q.cache);
  const size_t B = seqs->kv_start.size();
  struct Plan {
    std::vector<int32_t> prefix, tree, count, nodes;
  };
  auto plan = std::make_shared<Plan>();
  plan->prefix = Ints(env, o, "prefixLens", B);
  plan->tree = Ints(env, o, "treeIndptr", B + 1);
  plan->count = Ints(env, o, "acceptedCount", B);
  plan->nodes = Ints(env, o, "acceptedNodes", static_cast<size_t>(-1));
  TensorArg new_lens = ParseTensorArg(env, o.Get("newLens"), "newLens");
  CheckHostInt32(env, new_lens, "newLens", static_cast<int64_t>(B));
  int32_t* out = static_cast<int32_t*>(new_lens.view.data);
  const int64_t num_nodes = static_cast<int64_t>(plan->nodes.size());
  const QuantKvCache c = q.cache;
  ThrowIfError(env, CheckQuantCommit(c, seqs->view(), plan->prefix.data(), plan->tree.data(), plan->count.data(), plan->nodes.data(), num_nodes));
  return Run(env, q, {new_lens},
             [=] { return cpu::CommitQuantKv(c, seqs->view(), plan->prefix.data(), plan->tree.data(), plan->count.data(), plan->nodes.data(), num_nodes, out); },
             [=] { return cuda::CommitQuantKv(c, seqs->view(), plan->prefix.data(), plan->tree.data(), plan->count.data(), plan->nodes.data(), num_nodes, out); });
}

Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Options(info, "kvDequantize");
  QuantKvArg q = ParseQuantKvArg(env, o.Get("cache"), "cache");
  const int32_t layer = ParseLayer(env, o, q.cache);
  auto seqs = ParseSeqs(env, o, q.cache);
  const size_t B = seqs->kv_start.size();
  auto lens = std::make_shared<std::vector<int32_t>>(Ints(env, o, "kvLens", B));
  auto ql = std::make_shared<std::vector<int32_t>>(Ints(env, o, "quantLens", B, true));
  int64_t total = 0;
  for (int32_t l : *lens) total += l;
  TensorArg ko = F32Rows(env, o, "kOut", total, q), vo = F32Rows(env, o, "vOut", total, q);
  const QuantKvCache c = QuantKvLayer(q.cache, layer);
  const int32_t* qlp = ql->empty() ? nullptr : ql->data();
  ThrowIfError(env, CheckDequantizeKv(c, seqs->view(), lens->data(), qlp));
  float* kp = static_cast<float*>(ko.view.data);
  float* vp = static_cast<float*>(vo.view.data);
  return Run(env, q, {ko, vo}, [=] { (void)ql; return cpu::DequantizeKv(c, seqs->view(), lens->data(), qlp, kp, vp); },
             [=] { (void)ql; return cuda::DequantizeKv(c, seqs->view(), lens->data(), qlp, kp, vp); });
}

}  // namespace

void RegisterKvQuantBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("kvQuantAppend", Napi::Function::New(env, CANOPY_GUARDED(Append), "kvQuantAppend"));
  exports.Set("kvQuantizeGroups", Napi::Function::New(env, CANOPY_GUARDED(QuantizeGroups), "kvQuantizeGroups"));
  exports.Set("kvRestoreGroupsSync", Napi::Function::New(env, CANOPY_GUARDED(RestoreGroupsSync), "kvRestoreGroupsSync"));
  exports.Set("kvQuantCommit", Napi::Function::New(env, CANOPY_GUARDED(Commit), "kvQuantCommit"));
  exports.Set("kvDequantize", Napi::Function::New(env, CANOPY_GUARDED(Dequantize), "kvDequantize"));
}

}  // namespace napi
}  // namespace canopy
