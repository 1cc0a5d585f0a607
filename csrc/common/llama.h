// Op family: the Llama-family forward pass, all layers in one call.
//
// For the N new tokens of a step (a ragged batch: sequence b owns tokens
// [qo_indptr[b], qo_indptr[b+1])):
//   x = embed[tokens]
//   per layer:  h = RmsNorm(x) ; q,k,v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
//               (Qwen3, Gemma 3) q, k = RmsNorm of each head's D values (weights q_norm, k_norm [D])
//               Rope(q, k, positions) ; append k, v to the cache of each sequence
//               x += Attention(q, cache, causal or tree mask) Wo^T
//               h = RmsNorm(x) ; x += (silu(h W1^T) * (h W3^T)) W2^T
//   logits[r] = RmsNorm(x[logit_rows[r]]) Wout^T            (Wout = embed when tied)
//
// Gemma 2 / 3 and Phi-3 options (the defaults give the plain Llama pass above):
//   x = embed[tokens] * embed_scale                          (Gemma: sqrt(dim))
//   attention scale attn_scale (0: 1/sqrt(head_dim)), logit soft-capping attn_softcap, and per
//   layer a sliding window layer_window[l] (0: global) whose layers rotate with inv_freq_local
//   (Gemma 3's local RoPE base) when it is given
//   post_attn_norm / post_ffn_norm (Gemma's "sandwich" norms), when present:
//               x += RmsNorm(Attention(...) Wo^T, post_attn_norm)
//               x += RmsNorm(act(h W1^T) * (h W3^T)) W2^T, post_ffn_norm)
//   act = silu (SwiGLU) or the tanh-approximated gelu (GeGLU, Gemma)
//   logits = final_softcap * tanh(logits / final_softcap) when final_softcap > 0 (Gemma 2)
//
// Each matrix (and the embedding) has its own storage type (MatrixRef): f32 / f16 / bf16 elements,
// or GGUF blocks as stored (quant_blocks.h; files mix types per tensor, as llama.cpp's Q4_K_M
// does). The embedding lookup dequantizes only the rows of the step's tokens. Block-quantized
// matrices run on the CPU in every type; the CUDA forward runs Q8_0, Q4_0, Q4_K and Q6_K matrices
// (linear.h CudaHasQuantKernel; an embedding of any type) and refuses the others, naming the tensor.
//
// KV cache: k_cache, v_cache [n_layers][capacity][n_kv_heads][head_dim] (f32/f16/bf16).
// Sequence b's cache region starts at row kv_start[b] and holds kv_len_before[b] committed
// rows; this step's keys are written at rows kv_start[b] + kv_len_before[b] + t (t-th new
// token). With a tree mask, token t is tree node t (parents local to the sequence) and the
// written rows are the uncommitted tree nodes; commitKv compacts the accepted ones.
// The caller guarantees capacity: kv_len_before[b] + new tokens fits before the next region.
//
// Quantized KV cache (kv_quant.h): with kv_quant set, k_cache / v_cache / cache_dtype are unused
// and every layer of kv_quant is the cache (regions at kv_start, int4 rings at kv_res_start).
// Per layer the step's f32 keys and values are appended (int8 / fp8 quantized per (token, head);
// int4 into the 16-bit rings) and attention reads the cache dequantizing on load (q and the
// attention output stay f32). int4 first quantizes the completed groups: keys
// [quant_len_before[b], quant_len_after[b]) of every layer move from the ring to packed codes
// (the caller computes quant_len_after = max(quant_len_before, CompletedQuantLen(kv_len_before))),
// and attention then reads keys [0, quant_len_after) packed and the rest from the ring, which
// must hold them: kv_len_before + new tokens - quant_len_after <= ring.
//
// Shared prefixes (prefix_attention.h, one level): with prefix_len set, sequence b's keys are
// [prefix | own]: first rows [prefix_start[b], prefix_start[b] + prefix_len[b]) of the same
// cache (every layer; prefix_len[b] = 0: no prefix), then its own kv_len_before[b] + new rows
// from kv_start[b]. Nothing is written to the prefix rows. Positions stay the caller's (a
// sequence with a prefix of P keys numbers its own keys from P). Consecutive sequences with the
// same prefix form one group whose queries are batched against the prefix keys in one pass
// (groups whose rows are out of order go to further levels: MakeLlamaPrefixLayout);
// attention is then the LSE merge of the prefix part and the own part (merge_states.h), which
// equals attention over the concatenated keys up to the summation order. Quantized caches:
// int8 / fp8 read the prefix rows as stored; int4 also takes prefix_quant_len[b] (keys of the
// prefix held packed, a multiple of the group) and prefix_res_start[b] (the ring of the
// prefix's rows: key j >= prefix_quant_len at ring row prefix_res_start + (j mod ring)).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "attention.h"
#include "dtype.h"
#include "prefix_attention.h"
#include "kv_quant.h"
#include "quant_blocks.h"
#include "status.h"
#include "transformer_ops.h"

namespace canopy {

// A weight matrix [rows][cols] as stored: elements of a float dtype (quant == kNone), or rows of
// GGUF blocks of type `quant` (dtype unused).
struct MatrixRef {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  QuantType quant = QuantType::kNone;
};

struct LlamaLayerWeights {
  const void* attn_norm = nullptr;
  MatrixRef wq, wk, wv, wo;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // f32, optional (Qwen2)
  // Per-head RMSNorm of q and k after the projection (and biases), before RoPE: [head_dim] each,
  // in norm_dtype, eps norm_eps; optional (Qwen3, Gemma 3: both or neither).
  const void *q_norm = nullptr, *k_norm = nullptr;
  const void* ffn_norm = nullptr;
  MatrixRef w1, w2, w3;
  const void* post_attn_norm = nullptr;  // optional (Gemma): RMSNorm of the attention output
  const void* post_ffn_norm = nullptr;   // optional (Gemma): RMSNorm of the MLP output
};

enum class FfnActivation : int32_t { kSilu = 0, kGeluTanh = 1 };

struct LlamaModelDesc {
  int64_t dim = 0, hidden_dim = 0, vocab = 0;
  int32_t n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float norm_eps = 1e-5f;
  RopeLayout rope_layout = RopeLayout::kInterleaved;
  std::vector<float> inv_freq;  // [head_dim / 2], host (rope theta and scaling applied)
  float rope_attention_factor = 1.f;  // RopeParams::attention_factor (YaRN), 1 otherwise
  DType norm_dtype = DType::kF32;  // the RMSNorm weights
  MatrixRef embed;                 // [vocab][dim]
  const void* norm = nullptr;
  MatrixRef output;  // [vocab][dim]; == embed when tied
  std::vector<LlamaLayerWeights> layers;
  // Gemma / Phi-3 options (see the header comment); the defaults leave the Llama pass unchanged.
  float embed_scale = 1.f;
  FfnActivation activation = FfnActivation::kSilu;
  float attn_scale = 0.f;     // 0: 1 / sqrt(head_dim)
  float attn_softcap = 0.f;   // 0: off
  float final_softcap = 0.f;  // 0: off
  std::vector<int32_t> layer_window;  // [n_layers] sliding window per layer (0: global), or empty
  std::vector<float> inv_freq_local;  // [head_dim / 2] RoPE of the windowed layers, or empty (inv_freq)
};

// Layer l's sliding window (0: global attention).
inline int32_t LlamaLayerWindow(const LlamaModelDesc& m, int32_t l) {
  return m.layer_window.empty() ? 0 : m.layer_window[l];
}
// Whether layer l rotates with inv_freq_local.
inline bool LlamaLayerLocalRope(const LlamaModelDesc& m, int32_t l) {
  return !m.inv_freq_local.empty() && LlamaLayerWindow(m, l) > 0;
}

struct LlamaForwardParams {
  // Host arrays.
  const int32_t* tokens = nullptr;     // [n]
  const int32_t* positions = nullptr;  // [n]
  int64_t n = 0;
  int32_t batch = 0;
  const int32_t* qo_indptr = nullptr;      // [batch + 1]
  const int32_t* kv_start = nullptr;       // [batch]
  const int32_t* kv_len_before = nullptr;  // [batch]
  MaskMode mask = MaskMode::kCausal;       // kCausal or kTree
  const int32_t* tree_parents = nullptr;   // [n] for kTree
  // Cache (device memory for CUDA).
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  DType cache_dtype = DType::kF32;
  int64_t capacity = 0;  // rows per layer (a quantized cache: its rows)
  // Quantized cache (see above); host pointers to the view and the arrays.
  const QuantKvCache* kv_quant = nullptr;
  const int32_t* kv_res_start = nullptr;      // [batch], int4
  const int32_t* quant_len_before = nullptr;  // [batch], int4
  const int32_t* quant_len_after = nullptr;   // [batch], int4
  // Shared prefixes (see above); host arrays [batch], all null: none.
  const int32_t* prefix_start = nullptr;
  const int32_t* prefix_len = nullptr;
  const int32_t* prefix_quant_len = nullptr;  // int4
  const int32_t* prefix_res_start = nullptr;  // int4
  // Outputs.
  const int32_t* logit_rows = nullptr;  // host [n_logit_rows], indices into the n tokens
  int64_t n_logit_rows = 0;
  float* logits = nullptr;  // [n_logit_rows, vocab] f32 (device memory for CUDA)
  float* hidden = nullptr;  // optional [n_logit_rows, dim] f32: the final-normed hidden states
};

// True when any matrix of the model is block-quantized.
inline bool LlamaHasQuantMatrices(const LlamaModelDesc& m) {
  if (m.embed.quant != QuantType::kNone || m.output.quant != QuantType::kNone) return true;
  for (const LlamaLayerWeights& w : m.layers) {
    for (const MatrixRef* r : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w1, &w.w2, &w.w3}) {
      if (r->quant != QuantType::kNone) return true;
    }
  }
  return false;
}

// Checks a forward call against the model (indices, capacity, token ids).
Status CheckLlamaForward(const LlamaModelDesc& m, const LlamaForwardParams& p);
// The shared-prefix part of CheckLlamaForward: prefix rows within the cache, none written by the step.
Status CheckLlamaPrefix(const LlamaForwardParams& p);

// How the step's attention reads the cache (host arrays): sequence b reads rows from
// kv_start[b], kv_len_before[b] + its new tokens of them; dest[t] is the cache row token t
// writes its key and value to.
struct LlamaCacheLayout {
  std::vector<int32_t> kv_indptr, kv_lens, dest;
};

inline LlamaCacheLayout MakeLlamaCacheLayout(const LlamaForwardParams& p) {
  LlamaCacheLayout c;
  c.kv_indptr.assign(p.batch + 1, 0);
  c.kv_lens.assign(p.batch, 0);
  c.dest.assign(p.n, 0);
  for (int b = 0; b < p.batch; ++b) {
    for (int32_t t = p.qo_indptr[b]; t < p.qo_indptr[b + 1]; ++t) c.dest[t] = p.kv_start[b] + p.kv_len_before[b] + (t - p.qo_indptr[b]);
    c.kv_indptr[b] = p.kv_start[b];
    c.kv_lens[b] = p.kv_len_before[b] + (p.qo_indptr[b + 1] - p.qo_indptr[b]);
  }
  c.kv_indptr[p.batch] = p.batch ? c.kv_indptr[p.batch - 1] + c.kv_lens[p.batch - 1] : 0;  // unused with kv_lens
  return c;
}

// The prefix levels of a step (host arrays). Consecutive sequences with the same prefix form a
// group. Attention needs each level's group starts non-decreasing, so groups whose rows come
// in another order go to further levels (a sequence has keys in at most one level; its group in
// the others is empty, which contributes nothing to the merge: the state (0, -inf)).
struct LlamaPrefixLevelLayout {
  std::vector<int32_t> seq_indptr, kv_indptr, kv_lens, quant_lens, res_start;
};
struct LlamaPrefixLayout {
  std::vector<LlamaPrefixLevelLayout> levels;
  bool any = false;  // some sequence has a non-empty prefix
};

inline LlamaPrefixLayout MakeLlamaPrefixLayout(const LlamaForwardParams& p) {
  LlamaPrefixLayout c;
  if (p.prefix_len == nullptr) return c;
  const bool int4 = p.prefix_quant_len != nullptr;
  // Level of each sequence's prefix (-1: none): the first whose last start is <= its start.
  std::vector<int32_t> level(p.batch, -1), last;
  for (int32_t b = 0; b < p.batch; ++b) {
    if (p.prefix_len[b] <= 0) continue;
    int32_t l = 0;
    while (l < static_cast<int32_t>(last.size()) && last[l] > p.prefix_start[b]) ++l;
    if (l == static_cast<int32_t>(last.size())) last.push_back(0);
    last[l] = p.prefix_start[b];
    level[b] = l;
  }
  c.any = !last.empty();
  c.levels.resize(last.size());
  for (int32_t l = 0; l < static_cast<int32_t>(last.size()); ++l) {
    LlamaPrefixLevelLayout& L = c.levels[l];
    L.seq_indptr.push_back(0);
    int32_t carry = 0;  // empty groups start where the level's last group did
    for (int32_t b = 0; b < p.batch; ++b) {
      const bool own = level[b] == l;
      const int32_t start = own ? p.prefix_start[b] : carry, len = own ? p.prefix_len[b] : 0;
      const int32_t ql = own && int4 ? p.prefix_quant_len[b] : 0, rs = own && int4 ? p.prefix_res_start[b] : 0;
      const size_t g = L.kv_lens.size();
      if (g > 0 && L.kv_indptr[g - 1] == start && L.kv_lens[g - 1] == len && (!int4 || (L.quant_lens[g - 1] == ql && L.res_start[g - 1] == rs))) {
        L.seq_indptr.back() = b + 1;  // same prefix as the sequence before: its group grows
        continue;
      }
      L.seq_indptr.push_back(b + 1);
      L.kv_indptr.push_back(start);
      L.kv_lens.push_back(len);
      if (int4) {
        L.quant_lens.push_back(ql);
        L.res_start.push_back(rs);
      }
      carry = start;
    }
    L.kv_indptr.push_back(carry);  // unused with kv_lens (kept non-decreasing)
  }
  return c;
}

// The attention call of one layer over the cache (q and o in the cache dtype).
inline AttentionParams MakeLlamaAttentionParams(const LlamaModelDesc& m, const LlamaForwardParams& p, const LlamaCacheLayout& c,
                                                const void* q, void* o, const void* k_layer, const void* v_layer) {
  AttentionParams ap;
  ap.q = q;
  ap.o = o;
  ap.k = k_layer;
  ap.v = v_layer;
  ap.dtype = p.cache_dtype;
  ap.batch_size = p.batch;
  ap.num_qo_heads = m.n_heads;
  ap.num_kv_heads = m.n_kv_heads;
  ap.head_dim = m.head_dim;
  ap.total_q = p.n;
  ap.kv_rows = p.capacity;
  ap.qo_indptr = p.qo_indptr;
  ap.kv_indptr = c.kv_indptr.data();
  ap.kv_lens = c.kv_lens.data();
  ap.mask = p.mask;
  ap.scale = m.attn_scale > 0.f ? m.attn_scale : 1.f / std::sqrt(static_cast<float>(m.head_dim));
  ap.softcap = m.attn_softcap;
  ap.tree_parents = p.tree_parents;
  return ap;
}

// The shared-prefix attention of one layer (`ap`: its attention over the sequences' own rows;
// `levels`: filled with the prefix levels, pointing into `c`).
inline PrefixAttentionParams MakeLlamaPrefixAttentionParams(const AttentionParams& ap, const LlamaPrefixLayout& c,
                                                            std::vector<PrefixLevel>* levels) {
  levels->assign(c.levels.size(), PrefixLevel{});
  for (size_t l = 0; l < c.levels.size(); ++l) {
    const LlamaPrefixLevelLayout& L = c.levels[l];
    PrefixLevel& level = (*levels)[l];
    level.num_groups = static_cast<int32_t>(L.kv_lens.size());
    level.seq_indptr = L.seq_indptr.data();
    KvSource& pk = level.kv;
    pk.k = ap.k;
    pk.v = ap.v;
    pk.kv_rows = ap.kv_rows;
    pk.kv_indptr = L.kv_indptr.data();
    pk.kv_lens = L.kv_lens.data();
    pk.quant = ap.kv_quant;
    pk.quant_lens = L.quant_lens.empty() ? nullptr : L.quant_lens.data();
    pk.res_start = L.res_start.empty() ? nullptr : L.res_start.data();
  }
  PrefixAttentionParams pp;
  pp.q = ap.q;
  pp.o = ap.o;
  pp.lse = ap.lse;
  pp.dtype = ap.dtype;
  pp.batch_size = ap.batch_size;
  pp.num_qo_heads = ap.num_qo_heads;
  pp.num_kv_heads = ap.num_kv_heads;
  pp.head_dim = ap.head_dim;
  pp.total_q = ap.total_q;
  pp.qo_indptr = ap.qo_indptr;
  pp.scale = ap.scale;
  pp.levels = levels->data();
  pp.num_levels = static_cast<int32_t>(levels->size());
  KvSource& sk = pp.suffix;
  sk.k = ap.k;
  sk.v = ap.v;
  sk.kv_rows = ap.kv_rows;
  sk.kv_indptr = ap.kv_indptr;
  sk.kv_lens = ap.kv_lens;
  sk.quant = ap.kv_quant;
  sk.quant_lens = ap.kv_quant_lens;
  sk.res_start = ap.kv_res_start;
  pp.mask = ap.mask;
  pp.tree_parents = ap.tree_parents;
  pp.softcap = ap.softcap;
  pp.window = ap.window;
  return pp;
}

// Appending a step's f32 keys and values (n rows) to a quantized cache layer.
inline QuantAppendParams MakeLlamaQuantAppend(const LlamaForwardParams& p, const QuantKvBatch& seqs, const float* k,
                                              const float* v) {
  QuantAppendParams qa;
  qa.seqs = seqs;
  qa.qo_indptr = p.qo_indptr;
  qa.pos_before = p.kv_len_before;
  qa.quant_len = p.quant_len_after;
  qa.k = k;
  qa.v = v;
  qa.n = p.n;
  return qa;
}

inline RopeParams MakeLlamaRopeParams(const LlamaModelDesc& m, float* q, float* k, const int32_t* positions,
                                      const float* inv_freq, int64_t rows) {
  RopeParams rp;
  rp.q = q;
  rp.k = k;
  rp.positions = positions;
  rp.inv_freq = inv_freq;
  rp.rows = rows;
  rp.nq = m.n_heads;
  rp.nk = m.n_kv_heads;
  rp.head_dim = m.head_dim;
  rp.layout = m.rope_layout;
  rp.attention_factor = m.rope_attention_factor;
  return rp;
}

namespace cpu {
Status LlamaForward(const LlamaModelDesc& m, const LlamaForwardParams& p);
}  // namespace cpu
namespace cuda {
Status LlamaForward(const LlamaModelDesc& m, const LlamaForwardParams& p);
}  // namespace cuda

}  // namespace canopy
