// Native Llama-family models (csrc/common/llama.h).
//
//   createModel({ config, weights }) -> NativeModel
//     config:  { dim, hiddenDim, vocab, nLayers, nHeads, nKvHeads, headDim, normEps, ropeLayout (0 interleaved,
//                1 half), invFreq: Float32Array [headDim/2], ropeAttentionFactor? (default 1),
//                Gemma / Phi-3 options: embedScale?, activation? (0 silu, 1 gelu tanh), attnScale?, attnSoftcap?,
//                finalSoftcap?, layerWindows?: Int32Array [nLayers], invFreqLocal?: Float32Array [headDim/2] }
//     weights: { embed, norm, output?, layers: [{ attnNorm, wq, wk, wv, wo, bq?, bk?, bv?, qNorm?, kNorm? ([headDim],
//                both or neither), ffnNorm, w1, w2, w3, postAttnNorm?, postFfnNorm? }] }
//              tensor descriptors, all on one device; the model keeps them alive until dispose().
//              Each matrix has its own dtype (f32 / f16 / bf16), or is GGUF blocks: a uint8 descriptor
//              with `quant` (the ggml type id, csrc/common/quant_blocks.h) holding rows * (cols / block)
//              blocks.
//   model.forward({ tokens, positions, qoIndptr, kvStart, kvLenBefore: Int32Array, mask: 1 causal | 2 tree,
//                   parents?, k, v (cache [layers, capacity, nKvHeads, headDim]), logitRows: Int32Array,
//                   logits [rows, vocab] f32, hidden? [rows, dim] f32,
//                   kvQuant?: { cache (kv_quant_arg.h, every layer), resStart?, quantLenBefore?, quantLenAfter? }
//                   (a quantized cache instead of k and v; the arrays are int4's, one entry per sequence),
//                   prefix?: { start, len: Int32Array [B], quantLen?, resStart? (int4) } (shared prefixes: sequence b
//                   first attends to cache rows [start[b], start[b] + len[b]); llama.h) })
//                 -> Promise<void>
//   model.step({ ...forward's options, choice: 1 argmax (causal) | 2 greedy tree | 3 sample (causal) |
//                4 sampled tree | 5 scores (top-k only; a tree stays uncommitted), regionRows (tree steps on a
//                plain cache: rows of each sequence's region), topK? (0 = none),
//                nextToken [B], acceptedCount [B], acceptedNodes [n - B], newLens [B], topKIds? [rows * topK]
//                (int32 host outputs), topKLogprobs? [rows * topK] (f32 host output),
//                sampling? (choices 3, 4): { params (samplingChain's), biasTokens?, biasValues?, penaltyIndptr?,
//                penaltyTokens?, penaltyCounts? (per logits row), uniforms? Float64Array (3: [B]; 4: [n]),
//                draftProbs? f32 [rows, vocab] on the model's device with draftRows Int32Array [n] (4),
//                probs? f32 [rows, vocab] on the model's device with probsRows Int32Array [B] (3) } })
//                -> Promise<void>
//              one decode step: forward, token choice, KV commit (csrc/common/decode_step.h)
//   model.dispose()
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../common/decode_step.h"
#include "../common/linear.h"
#include "../common/llama.h"
#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "host_array.h"
#include "kv_quant_arg.h"
#include "sampling_arg.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {
namespace {

int64_t GetInt(Napi::Env env, Napi::Object o, const char* key, int64_t lo, int64_t hi) {
  const double v = ParseNumber(env, o.Get(key), std::string("config.") + key, std::nan(""));
  if (!(v >= lo && v <= hi) || v != std::floor(v)) {
    throw ArgumentError(env, std::string("config.") + key + " must be an integer in [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(v);
}

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod<&NativeModel::Forward>("forward"), InstanceMethod<&NativeModel::Step>("step"),
                        InstanceMethod<&NativeModel::Dispose>("dispose")});
  }

  ~NativeModel() override {
    for (TensorArg& t : weights_) {
      if (t.device_buffer) t.device_buffer->Release();
    }
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    Napi::Env env = info.Env();
    GuardCall(env, [&] { Build(env, info[0]); });
  }

 private:
  // Parses one weight tensor: checks its shape and device, records it to keep it alive.
  // Matrices go through Matrix(); here norms (one shared float dtype) and biases (f32).
  const void* Weight(Napi::Env env, Napi::Object o, const std::string& key, const std::string& name,
                     std::initializer_list<int64_t> shape, bool optional = false) {
    Napi::Value v = o.Get(key);
    if (optional && (v.IsUndefined() || v.IsNull())) return nullptr;
    TensorArg t = ParseTensorArg(env, v, name);
    CheckTensorShape(env, t, shape, name);
    const bool bias = key.size() == 2 && key[0] == 'b';
    if (bias) {
      if (t.view.dtype != DType::kF32) throw ArgumentError(env, name + " must be f32");
    } else {
      if (!have_norm_dtype_) {
        desc_.norm_dtype = t.view.dtype;
        have_norm_dtype_ = true;
      } else if (t.view.dtype != desc_.norm_dtype) {
        throw ArgumentError(env, name + " must have the dtype of the other norm weights");
      }
    }
    if (!IsFloatDType(t.view.dtype)) throw ArgumentError(env, name + " must be f32, f16 or bf16");
    Keep(env, t, name);
    return t.view.data;
  }

  // A weight matrix [rows, cols]: float elements, or GGUF blocks when the descriptor has `quant`.
  MatrixRef Matrix(Napi::Env env, Napi::Object o, const std::string& key, const std::string& name, int64_t rows, int64_t cols,
                   bool optional = false) {
    MatrixRef ref;
    Napi::Value v = o.Get(key);
    if (optional && (v.IsUndefined() || v.IsNull())) return ref;
    TensorArg t = ParseTensorArg(env, v, name);
    Napi::Value qv = v.IsObject() ? v.As<Napi::Object>().Get("quant") : env.Undefined();
    if (qv.IsUndefined() || qv.IsNull()) {
      CheckTensorShape(env, t, {rows, cols}, name);
      if (!IsFloatDType(t.view.dtype)) throw ArgumentError(env, name + " must be f32, f16 or bf16 (or GGUF blocks with `quant`)");
      ref.dtype = t.view.dtype;
    } else {
      const double id = qv.IsNumber() ? qv.As<Napi::Number>().DoubleValue() : -1;
      if (id != static_cast<int32_t>(id) || !IsValidQuantType(static_cast<int32_t>(id))) {
        throw ArgumentError(env, name + ".quant must be a ggml block type id canopy reads");
      }
      ref.quant = static_cast<QuantType>(static_cast<int32_t>(id));
      const QuantTypeInfo qi = GetQuantTypeInfo(ref.quant);
      if (cols % qi.block != 0) {
        throw ArgumentError(env, name + ": " + qi.name + " needs " + std::to_string(cols) + " columns to be a multiple of " +
                                     std::to_string(qi.block));
      }
      const int64_t want = rows * QuantRowBytes(ref.quant, cols);
      if (t.view.dtype != DType::kU8 || t.view.nbytes() != want) {
        throw ArgumentError(env, name + " must be uint8 blocks of " + std::to_string(want) + " bytes (" + std::to_string(rows) + " rows of " +
                                     std::to_string(cols) + " " + qi.name + " values); received " + DTypeName(t.view.dtype) + " of " +
                                     std::to_string(t.view.nbytes()) + " bytes");
      }
      // CUDA has linear kernels for some block types (linear.h); the embedding lookup reads them all
      // (a tied embedding that is also the output head is checked by the forward pass).
      if (t.view.device.kind == DeviceKind::kCuda && key != "embed" && !CudaHasQuantKernel(ref.quant)) {
        throw ArgumentError(env, name + ": " + qi.name + " weights have no CUDA kernel yet (" + kCudaQuantTypesText +
                                     " do); load this model on the CPU");
      }
    }
    Keep(env, t, name);
    ref.data = t.view.data;
    return ref;
  }

  // Checks the device matches the other weights and keeps the tensor alive.
  void Keep(Napi::Env env, TensorArg& t, const std::string& name) {
    if (weights_.empty()) {
      device_ = t.view.device;
    } else if (t.view.device.kind != device_.kind || t.view.device.index != device_.index) {
      throw ArgumentError(env, name + " is on another device than the other weights");
    }
    weights_.push_back(t);
    if (t.device_buffer) t.device_buffer->Acquire();  // freed only after dispose()
  }

  // The optional Gemma / Phi-3 config fields (csrc/common/llama.h); absent: the Llama forward.
  void ParseGemmaOptions(Napi::Env env, Napi::Object c) {
    LlamaModelDesc& m = desc_;
    auto number = [&](const char* key, double def, double lo) {
      const double v = ParseNumber(env, c.Get(key), std::string("config.") + key, def);
      if (!std::isfinite(v) || v < lo) {
        throw ArgumentError(env, std::string("config.") + key + " must be a finite number >= " + std::to_string(lo) + "; received " +
                                     std::to_string(v));
      }
      return static_cast<float>(v);
    };
    m.embed_scale = number("embedScale", 1.0, 0.0);
    m.attn_scale = number("attnScale", 0.0, 0.0);
    m.attn_softcap = number("attnSoftcap", 0.0, 0.0);
    m.final_softcap = number("finalSoftcap", 0.0, 0.0);
    const double act = ParseNumber(env, c.Get("activation"), "config.activation", 0);
    if (act != 0 && act != 1) throw ArgumentError(env, "config.activation must be 0 (silu) or 1 (gelu, tanh approximation)");
    m.activation = act == 0 ? FfnActivation::kSilu : FfnActivation::kGeluTanh;
    Napi::Value wins = c.Get("layerWindows");
    if (!wins.IsUndefined() && !wins.IsNull()) {
      m.layer_window = ParseInt32Array(env, wins, "config.layerWindows");
      if (m.layer_window.size() != static_cast<size_t>(m.n_layers)) {
        throw ArgumentError(env, "config.layerWindows must have nLayers (" + std::to_string(m.n_layers) + ") entries; received " +
                                     std::to_string(m.layer_window.size()));
      }
      for (int32_t x : m.layer_window) {
        if (x < 0) throw ArgumentError(env, "config.layerWindows entries must be >= 0 (0 = global attention)");
      }
    }
    Napi::Value loc = c.Get("invFreqLocal");
    if (!loc.IsUndefined() && !loc.IsNull()) {
      if (!loc.IsTypedArray() || loc.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
          loc.As<Napi::Float32Array>().ElementLength() != static_cast<size_t>(m.head_dim / 2)) {
        throw ArgumentError(env, "config.invFreqLocal must be a Float32Array of headDim / 2 entries");
      }
      Napi::Float32Array lf = loc.As<Napi::Float32Array>();
      m.inv_freq_local.assign(lf.Data(), lf.Data() + lf.ElementLength());
    }
  }

  void Build(Napi::Env env, Napi::Value arg) {
    if (!arg.IsObject()) throw ArgumentError(env, "createModel: expected {config, weights}");
    Napi::Object root = arg.As<Napi::Object>();
    if (!root.Get("config").IsObject() || !root.Get("weights").IsObject()) throw ArgumentError(env, "createModel: expected {config, weights}");
    Napi::Object c = root.Get("config").As<Napi::Object>();
    Napi::Object w = root.Get("weights").As<Napi::Object>();
    LlamaModelDesc& m = desc_;
    m.dim = GetInt(env, c, "dim", 1, 1 << 16);
    m.hidden_dim = GetInt(env, c, "hiddenDim", 1, 1 << 18);
    m.vocab = GetInt(env, c, "vocab", 1, 1 << 24);
    m.n_layers = static_cast<int32_t>(GetInt(env, c, "nLayers", 1, 1024));
    m.n_heads = static_cast<int32_t>(GetInt(env, c, "nHeads", 1, 1024));
    m.n_kv_heads = static_cast<int32_t>(GetInt(env, c, "nKvHeads", 1, 1024));
    m.head_dim = static_cast<int32_t>(GetInt(env, c, "headDim", 2, 256));
    if (m.n_heads % m.n_kv_heads != 0) throw ArgumentError(env, "config.nHeads must be a multiple of config.nKvHeads");
    if (m.head_dim % 2 != 0) throw ArgumentError(env, "config.headDim must be even (rotary pairs)");
    m.norm_eps = static_cast<float>(ParseNumber(env, c.Get("normEps"), "config.normEps", 1e-5));
    const int64_t layout = GetInt(env, c, "ropeLayout", 0, 1);
    m.rope_layout = layout == 0 ? RopeLayout::kInterleaved : RopeLayout::kHalf;
    Napi::Value inv = c.Get("invFreq");
    if (!inv.IsTypedArray() || inv.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        inv.As<Napi::Float32Array>().ElementLength() != static_cast<size_t>(m.head_dim / 2)) {
      throw ArgumentError(env, "config.invFreq must be a Float32Array of headDim / 2 entries");
    }
    Napi::Float32Array invf = inv.As<Napi::Float32Array>();
    m.inv_freq.assign(invf.Data(), invf.Data() + invf.ElementLength());
    ParseGemmaOptions(env, c);
    for (float f : m.inv_freq) {
      if (!std::isfinite(f)) throw ArgumentError(env, "config.invFreq must hold finite numbers");
    }
    const double af = ParseNumber(env, c.Get("ropeAttentionFactor"), "config.ropeAttentionFactor", 1.0);
    if (!(af > 0 && af < 1e3)) throw ArgumentError(env, "config.ropeAttentionFactor must be a positive number below 1000");
    m.rope_attention_factor = static_cast<float>(af);

    const int64_t qdim = static_cast<int64_t>(m.n_heads) * m.head_dim, kvdim = static_cast<int64_t>(m.n_kv_heads) * m.head_dim;
    m.embed = Matrix(env, w, "embed", "weights.embed", m.vocab, m.dim);
    m.norm = Weight(env, w, "norm", "weights.norm", {m.dim});
    m.output = Matrix(env, w, "output", "weights.output", m.vocab, m.dim, true);
    if (m.output.data == nullptr) m.output = m.embed;  // tied embeddings
    Napi::Value lv = w.Get("layers");
    if (!lv.IsArray() || lv.As<Napi::Array>().Length() != static_cast<uint32_t>(m.n_layers)) {
      throw ArgumentError(env, "weights.layers must be an array of nLayers entries");
    }
    Napi::Array layers = lv.As<Napi::Array>();
    for (int32_t l = 0; l < m.n_layers; ++l) {
      if (!layers.Get(l).IsObject()) throw ArgumentError(env, "weights.layers[" + std::to_string(l) + "] must be an object");
      Napi::Object lo = layers.Get(l).As<Napi::Object>();
      const std::string pre = "weights.layers[" + std::to_string(l) + "].";
      LlamaLayerWeights lw;
      lw.attn_norm = Weight(env, lo, "attnNorm", pre + "attnNorm", {m.dim});
      lw.wq = Matrix(env, lo, "wq", pre + "wq", qdim, m.dim);
      lw.wk = Matrix(env, lo, "wk", pre + "wk", kvdim, m.dim);
      lw.wv = Matrix(env, lo, "wv", pre + "wv", kvdim, m.dim);
      lw.wo = Matrix(env, lo, "wo", pre + "wo", m.dim, qdim);
      lw.bq = static_cast<const float*>(Weight(env, lo, "bq", pre + "bq", {qdim}, true));
      lw.bk = static_cast<const float*>(Weight(env, lo, "bk", pre + "bk", {kvdim}, true));
      lw.bv = static_cast<const float*>(Weight(env, lo, "bv", pre + "bv", {kvdim}, true));
      lw.q_norm = Weight(env, lo, "qNorm", pre + "qNorm", {m.head_dim}, true);
      lw.k_norm = Weight(env, lo, "kNorm", pre + "kNorm", {m.head_dim}, true);
      if ((lw.q_norm == nullptr) != (lw.k_norm == nullptr)) throw ArgumentError(env, pre + "qNorm and kNorm must be given together");
      lw.ffn_norm = Weight(env, lo, "ffnNorm", pre + "ffnNorm", {m.dim});
      lw.w1 = Matrix(env, lo, "w1", pre + "w1", m.hidden_dim, m.dim);
      lw.w2 = Matrix(env, lo, "w2", pre + "w2", m.dim, m.hidden_dim);
      lw.w3 = Matrix(env, lo, "w3", pre + "w3", m.hidden_dim, m.dim);
      lw.post_attn_norm = Weight(env, lo, "postAttnNorm", pre + "postAttnNorm", {m.dim}, true);
      lw.post_ffn_norm = Weight(env, lo, "postFfnNorm", pre + "postFfnNorm", {m.dim}, true);
      m.layers.push_back(lw);
    }
  }

  // The host arrays of one call, owned for the duration of the async work.
  struct ForwardHost {
    std::vector<int32_t> tokens, positions, qo, kv_start, kv_len, parents, rows, res_start, ql_before, ql_after;
    std::vector<int32_t> prefix_start, prefix_len, prefix_quant_len, prefix_res_start;
    QuantKvCache quant;
  };
  struct ParsedForward {
    std::shared_ptr<ForwardHost> h;
    std::shared_ptr<LlamaForwardParams> p;
    std::vector<TensorArg> args;
  };

  // Parses forward()'s options (shared by step()): the arrays, the cache, logits and hidden.
  ParsedForward ParseForward(Napi::Env env, Napi::Object o, const char* op) {
    if (disposed_) throw StatusToError(env, Status::InvalidArgument(std::string(op) + ": the model was disposed"));
    ParsedForward out;
    auto h = std::make_shared<ForwardHost>();
    out.h = h;
    h->tokens = ParseInt32Array(env, o.Get("tokens"), "tokens");
    h->positions = ParseInt32Array(env, o.Get("positions"), "positions");
    h->qo = ParseInt32Array(env, o.Get("qoIndptr"), "qoIndptr");
    h->kv_start = ParseInt32Array(env, o.Get("kvStart"), "kvStart");
    h->kv_len = ParseInt32Array(env, o.Get("kvLenBefore"), "kvLenBefore");
    h->rows = ParseInt32Array(env, o.Get("logitRows"), "logitRows");
    const double mask = ParseNumber(env, o.Get("mask"), "mask", 1);
    if (mask != 1 && mask != 2) throw ArgumentError(env, "mask must be 1 (causal) or 2 (tree)");
    if (mask == 2) h->parents = ParseInt32Array(env, o.Get("parents"), "parents");
    if (h->positions.size() != h->tokens.size()) throw ArgumentError(env, "positions must have one entry per token");
    if (h->qo.empty() || h->kv_start.size() + 1 != h->qo.size() || h->kv_len.size() + 1 != h->qo.size()) {
      throw ArgumentError(env, "qoIndptr must have batch + 1 entries and kvStart, kvLenBefore batch entries");
    }
    if (mask == 2 && h->parents.size() != h->tokens.size()) throw ArgumentError(env, "parents must have one entry per token");
    const LlamaModelDesc& m = desc_;
    const bool quant = !o.Get("kvQuant").IsUndefined() && !o.Get("kvQuant").IsNull();
    std::vector<TensorArg>& args = out.args;
    TensorArg k, v;
    if (quant) {
      if (!o.Get("kvQuant").IsObject()) throw ArgumentError(env, "kvQuant must be {cache, resStart?, quantLenBefore?, quantLenAfter?}");
      Napi::Object qo = o.Get("kvQuant").As<Napi::Object>();
      QuantKvArg qa = ParseQuantKvArg(env, qo.Get("cache"), "kvQuant.cache");
      h->quant = qa.cache;
      args = qa.tensors;
      const size_t batch = h->qo.size() - 1;
      for (auto [key, vec] : {std::make_pair("resStart", &h->res_start), std::make_pair("quantLenBefore", &h->ql_before),
                              std::make_pair("quantLenAfter", &h->ql_after)}) {
        Napi::Value a = qo.Get(key);
        if (a.IsUndefined() || a.IsNull()) {
          if (qa.cache.format == KvFormat::kInt4) throw ArgumentError(env, std::string("kvQuant.") + key + " is required for an int4 cache");
          continue;
        }
        *vec = ParseInt32Array(env, a, std::string("kvQuant.") + key);
        if (vec->size() != batch) throw ArgumentError(env, std::string("kvQuant.") + key + " must have one entry per sequence");
      }
    } else {
      k = ParseTensorArg(env, o.Get("k"), "k");
      v = ParseTensorArg(env, o.Get("v"), "v");
      for (const TensorArg* t : {&k, &v}) {
        const TensorView& c = t->view;
        if (c.ndim != 4 || c.shape[0] != m.n_layers || c.shape[2] != m.n_kv_heads || c.shape[3] != m.head_dim) {
          throw ArgumentError(env, "k and v must have shape [nLayers, capacity, nKvHeads, headDim]");
        }
      }
      if (v.view.shape[1] != k.view.shape[1] || v.view.dtype != k.view.dtype) throw ArgumentError(env, "k and v must match");
      args = {k, v};
    }
    if (!o.Get("prefix").IsUndefined() && !o.Get("prefix").IsNull()) {
      if (!o.Get("prefix").IsObject()) throw ArgumentError(env, "prefix must be {start, len, quantLen?, resStart?}");
      Napi::Object po = o.Get("prefix").As<Napi::Object>();
      const size_t batch = h->qo.size() - 1;
      for (auto [key, vec, required] : {std::make_tuple("start", &h->prefix_start, true), std::make_tuple("len", &h->prefix_len, true),
                                        std::make_tuple("quantLen", &h->prefix_quant_len, false),
                                        std::make_tuple("resStart", &h->prefix_res_start, false)}) {
        Napi::Value a = po.Get(key);
        if (!required && (a.IsUndefined() || a.IsNull())) continue;
        *vec = ParseInt32Array(env, a, std::string("prefix.") + key);
        if (vec->size() != batch) throw ArgumentError(env, std::string("prefix.") + key + " must have one entry per sequence");
      }
    }
    TensorArg logits = ParseTensorArg(env, o.Get("logits"), "logits");
    if (logits.view.dtype != DType::kF32 || logits.view.ndim != 2 || logits.view.shape[0] != static_cast<int64_t>(h->rows.size()) ||
        logits.view.shape[1] != m.vocab) {
      throw ArgumentError(env, "logits must be f32 [logitRows.length, vocab]");
    }
    args.push_back(logits);
    float* hidden = nullptr;
    if (!o.Get("hidden").IsUndefined() && !o.Get("hidden").IsNull()) {
      TensorArg hd = ParseTensorArg(env, o.Get("hidden"), "hidden");
      if (hd.view.dtype != DType::kF32 || hd.view.ndim != 2 || hd.view.shape[0] != static_cast<int64_t>(h->rows.size()) ||
          hd.view.shape[1] != m.dim) {
        throw ArgumentError(env, "hidden must be f32 [logitRows.length, dim]");
      }
      hidden = static_cast<float*>(hd.view.data);
      args.push_back(hd);
    }
    for (const TensorArg& t : args) {
      if (t.view.device.kind != device_.kind || t.view.device.index != device_.index) {
        throw ArgumentError(env, "the cache, logits and hidden tensors must be on the model's device");
      }
    }
    auto p = std::make_shared<LlamaForwardParams>();
    out.p = p;
    p->tokens = h->tokens.data();
    p->positions = h->positions.data();
    p->n = static_cast<int64_t>(h->tokens.size());
    p->batch = static_cast<int32_t>(h->qo.size() - 1);
    p->qo_indptr = h->qo.data();
    p->kv_start = h->kv_start.data();
    p->kv_len_before = h->kv_len.data();
    p->mask = mask == 2 ? MaskMode::kTree : MaskMode::kCausal;
    p->tree_parents = mask == 2 ? h->parents.data() : nullptr;
    if (quant) {
      p->kv_quant = &h->quant;
      p->capacity = h->quant.rows;
      p->kv_res_start = h->res_start.empty() ? nullptr : h->res_start.data();
      p->quant_len_before = h->ql_before.empty() ? nullptr : h->ql_before.data();
      p->quant_len_after = h->ql_after.empty() ? nullptr : h->ql_after.data();
    } else {
      p->k_cache = k.view.data;
      p->v_cache = v.view.data;
      p->cache_dtype = k.view.dtype;
      p->capacity = k.view.shape[1];
    }
    if (!h->prefix_len.empty() || !h->prefix_start.empty()) {
      p->prefix_start = h->prefix_start.data();
      p->prefix_len = h->prefix_len.data();
      p->prefix_quant_len = h->prefix_quant_len.empty() ? nullptr : h->prefix_quant_len.data();
      p->prefix_res_start = h->prefix_res_start.empty() ? nullptr : h->prefix_res_start.data();
    }
    p->logit_rows = h->rows.data();
    p->n_logit_rows = static_cast<int64_t>(h->rows.size());
    p->logits = static_cast<float*>(logits.view.data);
    p->hidden = hidden;
    return out;
  }

  // Runs `work` off the JavaScript thread with the model's weights held alive.
  Napi::Value Launch(Napi::Env env, std::function<Status(const LlamaModelDesc&)> work, std::vector<TensorArg> args) {
    const bool cuda = device_.kind == DeviceKind::kCuda;
    const int dev = device_.index;
    // The model's own weights must outlive the call: hold a reference to this object.
    auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Value()));
    args.push_back(TensorArg{});
    args.back().keep_alive = self;
    const LlamaModelDesc* desc = &desc_;
    ++busy_;
    return RunAsync(env, [desc, work, cuda, dev]() -> Status {
      if (cuda) CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return work(*desc);
    }, std::move(args), [this]() {
      if (--busy_ == 0 && dispose_requested_) ReleaseWeights();
    });
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    return Guard(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      Napi::Env env = info.Env();
      if (!info[0].IsObject()) throw ArgumentError(env, "forward: expected an options object");
      ParsedForward f = ParseForward(env, info[0].As<Napi::Object>(), "forward");
      ThrowIfError(env, CheckLlamaForward(desc_, *f.p));
      const bool cuda = device_.kind == DeviceKind::kCuda;
      auto p = f.p;
      auto h = f.h;
      return Launch(env, [p, h, cuda](const LlamaModelDesc& m) { return cuda ? cuda::LlamaForward(m, *p) : cpu::LlamaForward(m, *p); },
                    std::move(f.args));
    });
  }

  // step(): forward() plus the token choice and the KV commit (csrc/common/decode_step.h).
  Napi::Value Step(const Napi::CallbackInfo& info) {
    return Guard(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      Napi::Env env = info.Env();
      if (!info[0].IsObject()) throw ArgumentError(env, "step: expected an options object");
      Napi::Object o = info[0].As<Napi::Object>();
      ParsedForward f = ParseForward(env, o, "step");
      auto sp = std::make_shared<DecodeStepParams>();
      sp->forward = *f.p;
      const double choice = ParseNumber(env, o.Get("choice"), "choice", 1);
      if (!(choice >= 1 && choice <= 5) || choice != std::floor(choice)) {
        throw ArgumentError(env, "choice must be 1 (argmax), 2 (greedy tree), 3 (sample), 4 (sampled tree) or 5 (scores)");
      }
      sp->choice = static_cast<DecodeChoice>(static_cast<int32_t>(choice));
      const double region = ParseNumber(env, o.Get("regionRows"), "regionRows", 0);
      const double top_k = ParseNumber(env, o.Get("topK"), "topK", 0);
      if (region != std::floor(region) || region < 0 || region > INT32_MAX) throw ArgumentError(env, "regionRows must be an integer >= 0");
      if (top_k != std::floor(top_k) || top_k < 0 || top_k > 1024) throw ArgumentError(env, "topK must be an integer in [0, 1024]");
      sp->region_rows = static_cast<int64_t>(region);
      sp->top_k = static_cast<int32_t>(top_k);
      const int64_t B = sp->forward.batch, n = sp->forward.n;
      auto out = [&](const char* key, int64_t length) {
        TensorArg t = ParseTensorArg(env, o.Get(key), key);
        CheckHostInt32(env, t, key, length);
        f.args.push_back(t);
        return static_cast<int32_t*>(t.view.data);
      };
      sp->next_token = out("nextToken", B);
      sp->accepted_count = out("acceptedCount", B);
      sp->accepted_nodes = out("acceptedNodes", n - B);
      sp->new_lens = out("newLens", B);
      if (sp->top_k > 0) sp->top_k_ids = out("topKIds", sp->forward.n_logit_rows * sp->top_k);
      if (!Absent(o.Get("topKLogprobs"))) {
        TensorArg t = ParseTensorArg(env, o.Get("topKLogprobs"), "topKLogprobs");
        if (t.view.dtype != DType::kF32 || t.view.device.kind != DeviceKind::kCpu || t.view.ndim != 1 ||
            t.view.shape[0] != sp->forward.n_logit_rows * sp->top_k) {
          throw ArgumentError(env, "topKLogprobs must be a host f32 array of logitRows.length * topK = " +
                                       std::to_string(sp->forward.n_logit_rows * sp->top_k) + " elements");
        }
        sp->top_k_logprobs = static_cast<float*>(t.view.data);
        f.args.push_back(t);
      }
      auto chain = std::make_shared<ChainInputs>();
      std::vector<int32_t> draft_rows, probs_rows;
      if (sp->choice == DecodeChoice::kSample || sp->choice == DecodeChoice::kSampleTree) {
        if (!o.Get("sampling").IsObject()) throw ArgumentError(env, "step: sampling must be an object for choices 3 and 4");
        Napi::Object so = o.Get("sampling").As<Napi::Object>();
        const std::string pre = "step: sampling.";
        chain->params = ParseSamplingParams(env, so.Get("params"), pre);
        const int64_t rows = sp->forward.n_logit_rows;
        const int64_t urows = sp->choice == DecodeChoice::kSample ? B : n;
        ParseChainArrays(env, chain.get(), so.Get("biasTokens"), so.Get("biasValues"), so.Get("penaltyIndptr"), so.Get("penaltyTokens"),
                         so.Get("penaltyCounts"), so.Get("uniforms"), rows, urows, pre);
        DecodeStepSampling& ds = sp->sampling;
        ds.params = chain->params;
        ds.bias = chain->bias();
        ds.penalties = chain->penalties();
        ds.uniforms = chain->uniforms_or_null();
        // q rows (tree) and probs rows (causal): device tensors of the model's vocab, with their row maps.
        auto rows_tensor = [&](const char* key, const char* map_key, int64_t map_len, std::vector<int32_t>* map, int64_t* total) {
          TensorArg t = ParseTensorArg(env, so.Get(key), std::string("sampling.") + key);
          if (t.view.dtype != DType::kF32 || t.view.ndim != 2 || t.view.shape[1] != desc_.vocab) {
            throw ArgumentError(env, std::string("step: sampling.") + key + " must be f32 [rows, vocab " + std::to_string(desc_.vocab) +
                                         "]; received " + std::string(DTypeName(t.view.dtype)) + " " + ShapeText(t.view));
          }
          if (t.view.device.kind != device_.kind || t.view.device.index != device_.index) {
            throw ArgumentError(env, std::string("step: sampling.") + key + " must be on the model's device");
          }
          *map = ParseInt32Array(env, so.Get(map_key), std::string("sampling.") + map_key);
          if (static_cast<int64_t>(map->size()) != map_len) {
            throw ArgumentError(env, std::string("step: sampling.") + map_key + " must have " + std::to_string(map_len) +
                                         " entries; received " + std::to_string(map->size()));
          }
          *total = t.view.shape[0];
          f.args.push_back(t);
          return static_cast<float*>(t.view.data);
        };
        if (!Absent(so.Get("draftProbs"))) {
          ds.draft_probs = rows_tensor("draftProbs", "draftRows", n, &draft_rows, &ds.draft_probs_rows);
        }
        if (!Absent(so.Get("probs"))) ds.probs = rows_tensor("probs", "probsRows", B, &probs_rows, &ds.probs_total_rows);
      }
      auto maps = std::make_shared<std::pair<std::vector<int32_t>, std::vector<int32_t>>>(std::move(draft_rows), std::move(probs_rows));
      if (sp->sampling.draft_probs) sp->sampling.draft_rows = maps->first.data();
      if (sp->sampling.probs) sp->sampling.probs_rows = maps->second.data();
      ThrowIfError(env, CheckDecodeStep(desc_, *sp));
      const bool cuda = device_.kind == DeviceKind::kCuda;
      auto h = f.h;
      return Launch(env, [sp, h, cuda, chain, maps](const LlamaModelDesc& m) { return cuda ? cuda::DecodeStep(m, *sp) : cpu::DecodeStep(m, *sp); },
                    std::move(f.args));
    });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    return Guard(info, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      dispose_requested_ = true;
      disposed_ = true;
      if (busy_ == 0) ReleaseWeights();
      return info.Env().Undefined();
    });
  }

  void ReleaseWeights() {
    for (TensorArg& t : weights_) {
      if (t.device_buffer) t.device_buffer->Release();
      t.device_buffer = nullptr;
    }
    weights_.clear();
  }

  LlamaModelDesc desc_;
  Device device_;
  bool have_norm_dtype_ = false;
  std::vector<TensorArg> weights_;
  int busy_ = 0;
  bool disposed_ = false, dispose_requested_ = false;
};

}  // namespace

void RegisterModelBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeModel", NativeModel::Init(env));
}

}  // namespace napi
}  // namespace canopy
