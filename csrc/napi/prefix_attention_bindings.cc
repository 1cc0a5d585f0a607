// prefixAttention(args): Promise<void> — shared-prefix (Hydragen) attention over levels of shared
// prefixes and each sequence's suffix (csrc/common/prefix_attention.h).
//
//   prefixAttention({ q, o, lse?, qoIndptr, scale, mask (0 none, 1 causal, 2 tree), parents?, numSplits?, softcap?, window?,
//                     levels: [{ seqIndptr, kv }], suffix: kv })
//   kv: { k?, v?, kvIndptr, kvLens?, kvQuant?: {cache, layer?, quantLens?, resStart?} }
//       (plain k, v [kvRows, numKvHeads, headDim] in q's dtype, or a quantized cache)
#include <napi.h>

#include <cmath>
#include <deque>
#include <memory>

#include "../common/prefix_attention.h"
#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "kv_quant_arg.h"

namespace canopy {
namespace napi {
namespace {

// Everything a call's pointers refer to, kept alive until the async work ends.
struct Holder {
  PrefixAttentionParams p;
  std::vector<PrefixLevel> levels;
  std::deque<std::vector<int32_t>> ints;  // a deque: pointers to its elements stay valid
  std::deque<QuantKvViewArg> quant;
  std::vector<int32_t>* Keep(std::vector<int32_t> v) {
    ints.push_back(std::move(v));
    return &ints.back();
  }
};

void ParseKv(Napi::Env env, Napi::Value value, const std::string& name, const TensorArg& q, size_t batch, Holder* h,
             KvSource* src, std::vector<TensorArg>* args) {
  if (!value.IsObject()) throw ArgumentError(env, name + " must be {k, v, kvIndptr, kvLens?} or {kvQuant, kvIndptr, kvLens?}");
  Napi::Object o = value.As<Napi::Object>();
  std::vector<int32_t>* indptr = h->Keep(ParseInt32Array(env, o.Get("kvIndptr"), name + ".kvIndptr"));
  if (indptr->size() != batch + 1) {
    throw ArgumentError(env, name + ".kvIndptr must have " + std::to_string(batch + 1) + " entries; received " + std::to_string(indptr->size()));
  }
  src->kv_indptr = indptr->data();
  if (!o.Get("kvLens").IsUndefined() && !o.Get("kvLens").IsNull()) {
    std::vector<int32_t>* lens = h->Keep(ParseInt32Array(env, o.Get("kvLens"), name + ".kvLens"));
    if (lens->size() != batch) throw ArgumentError(env, name + ".kvLens must have " + std::to_string(batch) + " entries");
    src->kv_lens = lens->data();
  }
  const int64_t d = q.view.shape[2];
  if (!o.Get("kvQuant").IsUndefined() && !o.Get("kvQuant").IsNull()) {
    h->quant.push_back(ParseQuantKvView(env, o.Get("kvQuant"), name + ".kvQuant", batch));
    const QuantKvViewArg& qv = h->quant.back();
    if (qv.arg.device.kind != q.view.device.kind || qv.arg.device.index != q.view.device.index) {
      throw ArgumentError(env, name + ".kvQuant.cache must be on the device of q");
    }
    if (qv.layer->head_dim != d) throw ArgumentError(env, name + ".kvQuant.cache headDim must equal q's " + std::to_string(d));
    src->quant = qv.layer.get();
    src->kv_rows = qv.layer->rows;
    src->quant_lens = qv.quant_lens->empty() ? nullptr : qv.quant_lens->data();
    src->res_start = qv.res_start->empty() ? nullptr : qv.res_start->data();
    args->insert(args->end(), qv.arg.tensors.begin(), qv.arg.tensors.end());
    return;
  }
  TensorArg k = ParseTensorArg(env, o.Get("k"), name + ".k");
  TensorArg v = ParseTensorArg(env, o.Get("v"), name + ".v");
  for (const auto* t : {&k, &v}) {
    const std::string tn = name + (t == &k ? ".k" : ".v");
    if (t->view.ndim != 3 || t->view.shape[2] != d || t->view.shape[1] != k.view.shape[1] || t->view.shape[0] != k.view.shape[0]) {
      throw ArgumentError(env, tn + " must have shape [kvRows, numKvHeads, " + std::to_string(d) + "] (like " + name + ".k)");
    }
    if (t->view.dtype != q.view.dtype) throw ArgumentError(env, tn + " must have the dtype of q");
    if (t->view.device.kind != q.view.device.kind || t->view.device.index != q.view.device.index) {
      throw ArgumentError(env, tn + " must be on the device of q");
    }
  }
  src->k = k.view.data;
  src->v = v.view.data;
  src->kv_rows = k.view.shape[0];
  args->push_back(k);
  args->push_back(v);
}

int64_t KvHeads(const KvSource& s, const TensorArg* plain_k) {
  return s.quant ? s.quant->num_kv_heads : plain_k->view.shape[1];
}

Napi::Value PrefixAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgumentError(env, "prefixAttention: expected an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  TensorArg q = ParseTensorArg(env, o.Get("q"), "q");
  TensorArg out = ParseTensorArg(env, o.Get("o"), "o");
  if (q.view.ndim != 3) throw ArgumentError(env, "q must have shape [numTokens, numQoHeads, headDim]");
  if (!IsFloatDType(q.view.dtype)) throw ArgumentError(env, "q must be f32, f16 or bf16");
  const int64_t total_q = q.view.shape[0], hq = q.view.shape[1], d = q.view.shape[2];
  if (out.view.ndim != 3 || out.view.shape[0] != total_q || out.view.shape[1] != hq || out.view.shape[2] != d ||
      out.view.dtype != q.view.dtype || out.view.device.kind != q.view.device.kind || out.view.device.index != q.view.device.index) {
    throw ArgumentError(env, "o must have the shape, dtype and device of q");
  }
  auto h = std::make_shared<Holder>();
  std::vector<TensorArg> args = {q, out};
  PrefixAttentionParams& p = h->p;
  if (!o.Get("lse").IsUndefined() && !o.Get("lse").IsNull()) {
    TensorArg lse = ParseTensorArg(env, o.Get("lse"), "lse");
    if (lse.view.dtype != DType::kF32 || lse.view.ndim != 2 || lse.view.shape[0] != total_q || lse.view.shape[1] != hq ||
        lse.view.device.kind != q.view.device.kind || lse.view.device.index != q.view.device.index) {
      throw ArgumentError(env, "lse must be f32 [numTokens, numQoHeads] on the device of q");
    }
    p.lse = static_cast<float*>(lse.view.data);
    args.push_back(lse);
  }
  std::vector<int32_t>* qo = h->Keep(ParseInt32Array(env, o.Get("qoIndptr"), "qoIndptr"));
  if (qo->empty()) throw ArgumentError(env, "qoIndptr must have batchSize + 1 entries; received 0");
  const size_t batch = qo->size() - 1;
  Napi::Value lv = o.Get("levels");
  if (!lv.IsArray()) throw ArgumentError(env, "levels must be an array");
  Napi::Array levels = lv.As<Napi::Array>();
  if (levels.Length() > 30) throw ArgumentError(env, "levels: at most 30 levels");
  h->levels.resize(levels.Length());  // sized once: p.levels points into it
  int64_t hkv = -1;
  for (uint32_t l = 0; l < levels.Length(); ++l) {
    const std::string name = "levels[" + std::to_string(l) + "]";
    if (!levels.Get(l).IsObject()) throw ArgumentError(env, name + " must be {seqIndptr, kv}");
    Napi::Object lo = levels.Get(l).As<Napi::Object>();
    std::vector<int32_t>* seq = h->Keep(ParseInt32Array(env, lo.Get("seqIndptr"), name + ".seqIndptr"));
    if (seq->empty()) throw ArgumentError(env, name + ".seqIndptr must have numGroups + 1 entries; received 0");
    PrefixLevel& L = h->levels[l];
    L.num_groups = static_cast<int32_t>(seq->size() - 1);
    L.seq_indptr = seq->data();
    const size_t before = args.size();
    ParseKv(env, lo.Get("kv"), name + ".kv", q, seq->size() - 1, h.get(), &L.kv, &args);
    const int64_t heads = KvHeads(L.kv, L.kv.quant ? nullptr : &args[before]);
    if (hkv >= 0 && heads != hkv) throw ArgumentError(env, name + ".kv must have the kv heads of the other levels");
    hkv = heads;
  }
  {
    const size_t before = args.size();
    ParseKv(env, o.Get("suffix"), "suffix", q, batch, h.get(), &p.suffix, &args);
    const int64_t heads = KvHeads(p.suffix, p.suffix.quant ? nullptr : &args[before]);
    if (hkv >= 0 && heads != hkv) throw ArgumentError(env, "suffix must have the kv heads of the levels");
    hkv = heads;
  }
  const double mask = ParseNumber(env, o.Get("mask"), "mask", 0);
  if (mask != 0 && mask != 1 && mask != 2) throw ArgumentError(env, "mask must be 0 (none), 1 (causal) or 2 (tree)");
  if (mask == 2) {
    std::vector<int32_t>* par = h->Keep(ParseInt32Array(env, o.Get("parents"), "parents"));
    if (static_cast<int64_t>(par->size()) != total_q) throw ArgumentError(env, "parents must have one entry per query row");
    p.tree_parents = par->data();
  }
  const double splits = ParseNumber(env, o.Get("numSplits"), "numSplits", 0);
  if (splits < 0 || splits > 1024 || splits != std::floor(splits)) throw ArgumentError(env, "numSplits must be an integer in [0, 1024]");
  p.q = q.view.data;
  p.o = out.view.data;
  p.dtype = q.view.dtype;
  p.batch_size = static_cast<int32_t>(batch);
  p.num_qo_heads = static_cast<int32_t>(hq);
  p.num_kv_heads = static_cast<int32_t>(hkv);
  p.head_dim = static_cast<int32_t>(d);
  p.total_q = total_q;
  p.qo_indptr = qo->data();
  p.scale = static_cast<float>(ParseNumber(env, o.Get("scale"), "scale", 1.0 / std::sqrt(static_cast<double>(d))));
  p.levels = h->levels.data();
  p.num_levels = static_cast<int32_t>(h->levels.size());
  p.mask = static_cast<MaskMode>(static_cast<int>(mask));
  p.num_splits = static_cast<int32_t>(splits);
  p.softcap = static_cast<float>(ParseNumber(env, o.Get("softcap"), "softcap", 0));
  const double window = ParseNumber(env, o.Get("window"), "window", 0);
  if (window < 0 || window > 2147483647.0 || window != std::floor(window)) {
    throw ArgumentError(env, "window must be an integer >= 0 (0 = off); received " + std::to_string(window));
  }
  p.window = static_cast<int32_t>(window);
  ThrowIfError(env, CheckPrefixAttentionParams(p));
  const bool on_cuda = q.view.device.kind == DeviceKind::kCuda;
  const int dev = q.view.device.index;
  return RunAsync(env, [h, on_cuda, dev]() -> Status {
    if (on_cuda) {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::PrefixAttention(h->p);
    }
    return cpu::PrefixAttention(h->p);
  }, std::move(args));
}

}  // namespace

void RegisterPrefixAttentionBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("prefixAttention", Napi::Function::New(env, CANOPY_GUARDED(PrefixAttention), "prefixAttention"));
}

}  // namespace napi
}  // namespace canopy
