// attention(args): Promise<void> and the state-merging ops, dispatching to the
// CPU or CUDA kernels by the tensors' device. See csrc/common/attention.h and
// merge_states.h for shapes and math.
//
// attention({q, k, v, o, lse?, qoIndptr, kvIndptr, kvLens?, mask, scale, parents?, numSplits?, naive?,
//            kvQuant?: {cache, layer?, quantLens?, resStart?}, softcap?, window?, qPos?, kvPos?})
//            (kvQuant replaces k and v; softcap / window 0 = off; qPos [numTokens], kvPos [batch])
// mergeStates({va, sa, vb, sb, vOut, sOut?})      mergeStatesN({v, s, vOut, sOut?})
#include <napi.h>

#include <cmath>
#include <memory>

#include "../common/attention.h"
#include "../common/merge_states.h"
#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "kv_quant_arg.h"

namespace canopy {
namespace napi {
namespace {

void CheckSameDevice(Napi::Env env, const TensorArg& a, const TensorArg& b, const std::string& what) {
  if (a.view.device.kind != b.view.device.kind || a.view.device.index != b.view.device.index) {
    throw ArgumentError(env, what + " must be on the same device as q");
  }
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgumentError(env, "attention: expected an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::vector<TensorArg> args;
  TensorArg q = ParseTensorArg(env, o.Get("q"), "q");
  TensorArg out = ParseTensorArg(env, o.Get("o"), "o");
  if (q.view.ndim != 3) throw ArgumentError(env, "q must have shape [numTokens, numQoHeads, headDim]");
  const int64_t total_q = q.view.shape[0], hq = q.view.shape[1], d = q.view.shape[2];
  CheckTensorShape(env, out, {total_q, hq, d}, "o");
  if (out.view.dtype != q.view.dtype) throw ArgumentError(env, "q and o must have the same dtype");
  CheckSameDevice(env, q, out, "o");
  const bool quant = !o.Get("kvQuant").IsUndefined() && !o.Get("kvQuant").IsNull();
  TensorArg k, v;
  QuantKvViewArg kvq;
  int64_t kv_rows = 0, hkv = 0;
  if (quant) {
    Napi::Value qo_v = o.Get("qoIndptr");
    const size_t batch = qo_v.IsTypedArray() && qo_v.As<Napi::TypedArray>().ElementLength() > 0
                             ? qo_v.As<Napi::TypedArray>().ElementLength() - 1 : 0;
    kvq = ParseQuantKvView(env, o.Get("kvQuant"), "kvQuant", batch);
    const QuantKvCache& c = *kvq.layer;
    if (c.head_dim != d) throw ArgumentError(env, "kvQuant.cache headDim (" + std::to_string(c.head_dim) + ") must equal q's " + std::to_string(d));
    if (kvq.arg.device.kind != q.view.device.kind || kvq.arg.device.index != q.view.device.index) {
      throw ArgumentError(env, "kvQuant.cache must be on the same device as q");
    }
    kv_rows = c.rows;
    hkv = c.num_kv_heads;
  } else {
    k = ParseTensorArg(env, o.Get("k"), "k");
    v = ParseTensorArg(env, o.Get("v"), "v");
    if (k.view.ndim != 3) throw ArgumentError(env, "k must have shape [kvRows, numKvHeads, headDim]");
    kv_rows = k.view.shape[0];
    hkv = k.view.shape[1];
    CheckTensorShape(env, k, {kv_rows, hkv, d}, "k");
    CheckTensorShape(env, v, {kv_rows, hkv, d}, "v");
    for (const TensorArg* t : {&k, &v}) {
      if (t->view.dtype != q.view.dtype) throw ArgumentError(env, "q, k, v and o must have the same dtype");
    }
    CheckSameDevice(env, q, k, "k");
    CheckSameDevice(env, q, v, "v");
  }
  auto holder = std::make_shared<AttentionParams>();
  AttentionParams& p = *holder;
  bool has_lse = !o.Get("lse").IsUndefined() && !o.Get("lse").IsNull();
  TensorArg lse;
  if (has_lse) {
    lse = ParseTensorArg(env, o.Get("lse"), "lse");
    if (lse.view.dtype != DType::kF32) throw ArgumentError(env, "lse must be f32");
    CheckTensorShape(env, lse, {total_q, hq}, "lse");
    CheckSameDevice(env, q, lse, "lse");
    p.lse = static_cast<float*>(lse.view.data);
  }
  auto qo_indptr = std::make_shared<std::vector<int32_t>>(ParseInt32Array(env, o.Get("qoIndptr"), "qoIndptr"));
  auto kv_indptr = std::make_shared<std::vector<int32_t>>(ParseInt32Array(env, o.Get("kvIndptr"), "kvIndptr"));
  if (qo_indptr->empty()) throw ArgumentError(env, "qoIndptr must have batchSize + 1 entries; received 0");
  if (kv_indptr->size() != qo_indptr->size()) {
    throw ArgumentError(env, "kvIndptr must have the same length as qoIndptr (" + std::to_string(qo_indptr->size()) +
                                 "); received " + std::to_string(kv_indptr->size()));
  }
  auto kv_lens = std::make_shared<std::vector<int32_t>>();
  if (!o.Get("kvLens").IsUndefined() && !o.Get("kvLens").IsNull()) {
    *kv_lens = ParseInt32Array(env, o.Get("kvLens"), "kvLens");
    if (kv_lens->size() + 1 != qo_indptr->size()) throw ArgumentError(env, "kvLens must have batchSize entries");
  }
  auto parents = std::make_shared<std::vector<int32_t>>();
  const double mask = ParseNumber(env, o.Get("mask"), "mask", 0);
  if (mask != 0 && mask != 1 && mask != 2) throw ArgumentError(env, "mask must be 0 (none), 1 (causal) or 2 (tree)");
  if (mask == 2) {
    *parents = ParseInt32Array(env, o.Get("parents"), "parents");
    if (static_cast<int64_t>(parents->size()) != total_q) {
      throw ArgumentError(env, "parents must have one entry per query row (" + std::to_string(total_q) + "); received " +
                                   std::to_string(parents->size()));
    }
  }
  p.q = q.view.data;
  p.k = quant ? nullptr : k.view.data;
  p.v = quant ? nullptr : v.view.data;
  p.o = out.view.data;
  if (quant) {
    p.kv_quant = kvq.layer.get();
    p.kv_quant_lens = kvq.quant_lens->empty() ? nullptr : kvq.quant_lens->data();
    p.kv_res_start = kvq.res_start->empty() ? nullptr : kvq.res_start->data();
  }
  p.dtype = q.view.dtype;
  p.batch_size = static_cast<int32_t>(qo_indptr->size() - 1);
  p.num_qo_heads = static_cast<int32_t>(hq);
  p.num_kv_heads = static_cast<int32_t>(hkv);
  p.head_dim = static_cast<int32_t>(d);
  p.total_q = total_q;
  p.kv_rows = kv_rows;
  p.qo_indptr = qo_indptr->data();
  p.kv_indptr = kv_indptr->data();
  p.kv_lens = kv_lens->empty() ? nullptr : kv_lens->data();
  p.mask = static_cast<MaskMode>(static_cast<int>(mask));
  p.scale = static_cast<float>(ParseNumber(env, o.Get("scale"), "scale", 1.0 / std::sqrt(static_cast<double>(d))));
  p.tree_parents = parents->empty() ? nullptr : parents->data();
  const double splits = ParseNumber(env, o.Get("numSplits"), "numSplits", 0);
  if (splits < 0 || splits > 1024 || splits != std::floor(splits)) throw ArgumentError(env, "numSplits must be an integer in [0, 1024]");
  p.num_splits = static_cast<int32_t>(splits);
  p.softcap = static_cast<float>(ParseNumber(env, o.Get("softcap"), "softcap", 0));
  const double window = ParseNumber(env, o.Get("window"), "window", 0);
  if (window < 0 || window > 2147483647.0 || window != std::floor(window)) {
    throw ArgumentError(env, "window must be an integer >= 0 (0 = off); received " + std::to_string(window));
  }
  p.window = static_cast<int32_t>(window);
  auto q_pos = std::make_shared<std::vector<int32_t>>();
  auto kv_pos = std::make_shared<std::vector<int32_t>>();
  if (!o.Get("qPos").IsUndefined() && !o.Get("qPos").IsNull()) {
    *q_pos = ParseInt32Array(env, o.Get("qPos"), "qPos");
    if (static_cast<int64_t>(q_pos->size()) != total_q) {
      throw ArgumentError(env, "qPos must have one entry per query row (" + std::to_string(total_q) + "); received " +
                                   std::to_string(q_pos->size()));
    }
    p.q_pos = q_pos->data();
  }
  if (!o.Get("kvPos").IsUndefined() && !o.Get("kvPos").IsNull()) {
    *kv_pos = ParseInt32Array(env, o.Get("kvPos"), "kvPos");
    if (kv_pos->size() + 1 != qo_indptr->size()) {
      throw ArgumentError(env, "kvPos must have batchSize (" + std::to_string(qo_indptr->size() - 1) + ") entries; received " +
                                   std::to_string(kv_pos->size()));
    }
    p.kv_pos = kv_pos->data();
  }
  const bool naive = o.Get("naive").ToBoolean().Value();
  // Check synchronously so bad arguments throw at the call site.
  ThrowIfError(env, CheckAttentionParams(p));
  const bool on_cuda = q.view.device.kind == DeviceKind::kCuda;
  if (naive && on_cuda) throw ArgumentError(env, "naive: the naive baseline runs on the CPU only");
  const int dev = q.view.device.index;
  args = {q, out};
  if (quant) {
    args.insert(args.end(), kvq.arg.tensors.begin(), kvq.arg.tensors.end());
  } else {
    args.push_back(k);
    args.push_back(v);
  }
  if (has_lse) args.push_back(lse);
  auto quant_hold = std::make_shared<QuantKvViewArg>(kvq);
  return RunAsync(env, [holder, qo_indptr, kv_indptr, kv_lens, parents, q_pos, kv_pos, on_cuda, naive, dev, quant_hold]() -> Status {
    if (on_cuda) {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::Attention(*holder);
    }
    return naive ? cpu::AttentionNaive(*holder) : cpu::Attention(*holder);
  }, std::move(args));
}

Napi::Value MergeStates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgumentError(env, "mergeStates: expected an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  TensorArg va = ParseTensorArg(env, o.Get("va"), "va"), sa = ParseTensorArg(env, o.Get("sa"), "sa");
  TensorArg vb = ParseTensorArg(env, o.Get("vb"), "vb"), sb = ParseTensorArg(env, o.Get("sb"), "sb");
  TensorArg vo = ParseTensorArg(env, o.Get("vOut"), "vOut");
  if (va.view.ndim != 3) throw ArgumentError(env, "va must have shape [tokens, heads, headDim]");
  const int64_t t = va.view.shape[0], h = va.view.shape[1], d = va.view.shape[2];
  CheckTensorShape(env, vb, {t, h, d}, "vb");
  CheckTensorShape(env, vo, {t, h, d}, "vOut");
  CheckTensorShape(env, sa, {t, h}, "sa");
  CheckTensorShape(env, sb, {t, h}, "sb");
  if (vb.view.dtype != va.view.dtype || vo.view.dtype != va.view.dtype) throw ArgumentError(env, "va, vb and vOut must have the same dtype");
  if (sa.view.dtype != DType::kF32 || sb.view.dtype != DType::kF32) throw ArgumentError(env, "sa and sb must be f32");
  std::vector<TensorArg> args = {va, sa, vb, sb, vo};
  for (const TensorArg& a : args) CheckSameDevice(env, va, a, "every state");
  MergeParams p;
  p.v_a = va.view.data;
  p.s_a = static_cast<const float*>(sa.view.data);
  p.v_b = vb.view.data;
  p.s_b = static_cast<const float*>(sb.view.data);
  p.v_out = vo.view.data;
  if (!o.Get("sOut").IsUndefined() && !o.Get("sOut").IsNull()) {
    TensorArg so = ParseTensorArg(env, o.Get("sOut"), "sOut");
    CheckTensorShape(env, so, {t, h}, "sOut");
    if (so.view.dtype != DType::kF32) throw ArgumentError(env, "sOut must be f32");
    CheckSameDevice(env, va, so, "sOut");
    p.s_out = static_cast<float*>(so.view.data);
    args.push_back(so);
  }
  p.dtype = va.view.dtype;
  p.tokens = t;
  p.heads = static_cast<int32_t>(h);
  p.head_dim = static_cast<int32_t>(d);
  const bool on_cuda = va.view.device.kind == DeviceKind::kCuda;
  const int dev = va.view.device.index;
  return RunAsync(env, [p, on_cuda, dev]() -> Status {
    if (on_cuda) {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::MergeStates(p);
    }
    return cpu::MergeStates(p);
  }, std::move(args));
}

Napi::Value MergeStatesN(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgumentError(env, "mergeStatesN: expected an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  TensorArg v = ParseTensorArg(env, o.Get("v"), "v"), s = ParseTensorArg(env, o.Get("s"), "s");
  TensorArg vo = ParseTensorArg(env, o.Get("vOut"), "vOut");
  if (v.view.ndim != 4) throw ArgumentError(env, "v must have shape [tokens, numStates, heads, headDim]");
  const int64_t t = v.view.shape[0], n = v.view.shape[1], h = v.view.shape[2], d = v.view.shape[3];
  CheckTensorShape(env, s, {t, n, h}, "s");
  CheckTensorShape(env, vo, {t, h, d}, "vOut");
  if (vo.view.dtype != v.view.dtype) throw ArgumentError(env, "v and vOut must have the same dtype");
  if (s.view.dtype != DType::kF32) throw ArgumentError(env, "s must be f32");
  if (n < 1) throw ArgumentError(env, "v must hold at least one state");
  std::vector<TensorArg> args = {v, s, vo};
  for (const TensorArg& a : args) CheckSameDevice(env, v, a, "every state");
  MergeNParams p;
  p.v = v.view.data;
  p.s = static_cast<const float*>(s.view.data);
  p.v_out = vo.view.data;
  if (!o.Get("sOut").IsUndefined() && !o.Get("sOut").IsNull()) {
    TensorArg so = ParseTensorArg(env, o.Get("sOut"), "sOut");
    CheckTensorShape(env, so, {t, h}, "sOut");
    if (so.view.dtype != DType::kF32) throw ArgumentError(env, "sOut must be f32");
    CheckSameDevice(env, v, so, "sOut");
    p.s_out = static_cast<float*>(so.view.data);
    args.push_back(so);
  }
  p.dtype = v.view.dtype;
  p.tokens = t;
  p.num_states = static_cast<int32_t>(n);
  p.heads = static_cast<int32_t>(h);
  p.head_dim = static_cast<int32_t>(d);
  const bool on_cuda = v.view.device.kind == DeviceKind::kCuda;
  const int dev = v.view.device.index;
  return RunAsync(env, [p, on_cuda, dev]() -> Status {
    if (on_cuda) {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::MergeStatesN(p);
    }
    return cpu::MergeStatesN(p);
  }, std::move(args));
}

}  // namespace

void RegisterAttentionBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("attention", Napi::Function::New(env, CANOPY_GUARDED(Attention), "attention"));
  exports.Set("mergeStates", Napi::Function::New(env, CANOPY_GUARDED(MergeStates), "mergeStates"));
  exports.Set("mergeStatesN", Napi::Function::New(env, CANOPY_GUARDED(MergeStatesN), "mergeStatesN"));
}

}  // namespace napi
}  // namespace canopy
