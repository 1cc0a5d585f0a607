// CPU Llama forward (csrc/common/llama.h): one call runs every layer; the ops
// are threaded internally.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../common/attention.h"
#include "../common/kv_quant.h"
#include "../common/linear.h"
#include "../common/llama.h"
#include "../common/prefix_attention.h"
#include "thread_pool.h"

namespace canopy {

Status CheckLlamaForward(const LlamaModelDesc& m, const LlamaForwardParams& p) {
  auto bad = [](const std::string& s) { return Status::InvalidArgument("forward: " + s); };
  if (p.n < 0 || p.batch < 0 || p.n_logit_rows < 0) return bad("negative sizes");
  if (m.head_dim <= 0 || m.inv_freq.size() != static_cast<size_t>(m.head_dim / 2)) {
    return bad("the model needs head_dim / 2 RoPE frequencies");
  }
  if (!m.inv_freq_local.empty() && m.inv_freq_local.size() != m.inv_freq.size()) {
    return bad("the local RoPE frequencies must be head_dim / 2 values");
  }
  if (!m.layer_window.empty() && m.layer_window.size() != static_cast<size_t>(m.n_layers)) {
    return bad("layer windows must have one entry per layer");
  }
  for (int32_t win : m.layer_window) {
    if (win < 0) return bad("layer windows must be >= 0");
  }
  if (!(m.attn_softcap >= 0.f) || !(m.final_softcap >= 0.f) || !(m.attn_scale >= 0.f) || !std::isfinite(m.embed_scale)) {
    return bad("softcaps and the attention scale must be >= 0 and the embedding scale finite");
  }
  if (p.qo_indptr == nullptr || p.kv_start == nullptr || p.kv_len_before == nullptr) return bad("missing batch layout");
  if (p.qo_indptr[0] != 0 || p.qo_indptr[p.batch] != p.n) return bad("qoIndptr must run from 0 to the number of tokens");
  for (int b = 0; b < p.batch; ++b) {
    const int64_t q = p.qo_indptr[b + 1] - p.qo_indptr[b];
    if (q < 0) return bad("qoIndptr must be non-decreasing");
    if (p.kv_start[b] < 0 || p.kv_len_before[b] < 0) return bad("kvStart and kvLen must be >= 0");
    if (p.kv_start[b] + p.kv_len_before[b] + q > p.capacity) {
      return bad("sequence " + std::to_string(b) + " needs cache rows up to " +
                 std::to_string(p.kv_start[b] + p.kv_len_before[b] + q) + " but the cache holds " +
                 std::to_string(p.capacity) + " rows");
    }
  }
  for (int64_t i = 0; i < p.n; ++i) {
    if (p.tokens[i] < 0 || p.tokens[i] >= m.vocab) {
      return bad("token " + std::to_string(p.tokens[i]) + " at index " + std::to_string(i) + " is outside the vocabulary [0, " +
                 std::to_string(m.vocab) + ")");
    }
    if (p.positions[i] < 0) return bad("positions must be >= 0");
  }
  for (int64_t r = 0; r < p.n_logit_rows; ++r) {
    if (p.logit_rows[r] < 0 || p.logit_rows[r] >= p.n) return bad("logit row " + std::to_string(p.logit_rows[r]) + " is not a token of this step");
  }
  if (p.mask != MaskMode::kCausal && p.mask != MaskMode::kTree) return bad("mask must be causal or tree");
  CANOPY_RETURN_IF_ERROR(CheckLlamaPrefix(p));
  if (p.mask == MaskMode::kTree && p.tree_parents == nullptr) return bad("tree mask needs parents");
  if (p.kv_quant == nullptr) {
    if (!IsFloatDType(p.cache_dtype)) return bad("cache dtype must be f32, f16 or bf16");
    return Status::Ok();
  }
  const QuantKvCache& c = *p.kv_quant;
  CANOPY_RETURN_IF_ERROR(CheckQuantKvCache(c));
  if (c.layers != m.n_layers || c.num_kv_heads != m.n_kv_heads || c.head_dim != m.head_dim) {
    return bad("the quantized cache must have the model's " + std::to_string(m.n_layers) + " layers of " +
               std::to_string(m.n_kv_heads) + " kv heads of " + std::to_string(m.head_dim) + " dims");
  }
  if (p.capacity != c.rows) return bad("capacity must be the quantized cache's rows");
  QuantKvBatch seqs;
  seqs.batch = p.batch;
  seqs.kv_start = p.kv_start;
  seqs.res_start = p.kv_res_start;
  CANOPY_RETURN_IF_ERROR(CheckQuantKvBatch(c, seqs, "forward"));
  if (p.prefix_len != nullptr) {
    QuantKvBatch pre;
    pre.batch = p.batch;
    pre.kv_start = p.prefix_start;
    pre.res_start = p.prefix_res_start;
    CANOPY_RETURN_IF_ERROR(CheckQuantKvBatch(c, pre, "forward (shared prefixes)"));
    if (c.format == KvFormat::kInt4) {
      if (p.prefix_quant_len == nullptr || p.prefix_res_start == nullptr) return bad("an int4 cache needs prefixQuantLen and prefixResStart");
      for (int b = 0; b < p.batch; ++b) {
        const int64_t ql = p.prefix_quant_len[b], len = p.prefix_len[b];
        if (ql < 0 || ql > len || ql % c.group != 0 || len - ql > c.ring) {
          return bad("sequence " + std::to_string(b) + ": its prefix's quantized length " + std::to_string(ql) + " must be a multiple of " +
                     std::to_string(c.group) + " in [" + std::to_string(std::max<int64_t>(0, len - c.ring)) + ", " + std::to_string(len) + "]");
        }
      }
    }
  }
  if (c.format == KvFormat::kInt4) {
    if (p.quant_len_before == nullptr || p.quant_len_after == nullptr) return bad("an int4 cache needs quantLenBefore and quantLenAfter");
    for (int b = 0; b < p.batch; ++b) {
      const int64_t lo = p.quant_len_before[b], hi = p.quant_len_after[b], len = p.kv_len_before[b];
      const int64_t n = p.qo_indptr[b + 1] - p.qo_indptr[b];
      if (lo < 0 || hi < lo || hi > len || lo % c.group != 0 || hi % c.group != 0) {
        return bad("sequence " + std::to_string(b) + ": quantized lengths " + std::to_string(lo) + " -> " + std::to_string(hi) +
                   " must be multiples of " + std::to_string(c.group) + " within its " + std::to_string(len) + " committed keys");
      }
      if (len + n - hi > c.ring) {
        return bad("sequence " + std::to_string(b) + " would hold " + std::to_string(len + n - hi) +
                   " unquantized keys but its residual ring holds " + std::to_string(c.ring));
      }
    }
  }
  return Status::Ok();
}

Status CheckLlamaPrefix(const LlamaForwardParams& p) {
  auto bad = [](const std::string& s) { return Status::InvalidArgument("forward: " + s); };
  if (p.prefix_len == nullptr) return Status::Ok();
  if (p.prefix_start == nullptr) return bad("shared prefixes need prefixStart");
  for (int b = 0; b < p.batch; ++b) {
    const int64_t ps = p.prefix_start[b], pl = p.prefix_len[b];
    if (pl < 0 || ps < 0 || ps + pl > p.capacity) {
      return bad("sequence " + std::to_string(b) + "'s prefix rows [" + std::to_string(ps) + ", " + std::to_string(ps + pl) +
                 ") must lie within the cache's " + std::to_string(p.capacity) + " rows");
    }
    if (pl == 0) continue;
    // The step writes no prefix row (every sequence's new rows lie outside every prefix).
    for (int c = 0; c < p.batch; ++c) {
      const int64_t w0 = static_cast<int64_t>(p.kv_start[c]) + p.kv_len_before[c];
      const int64_t w1 = w0 + (p.qo_indptr[c + 1] - p.qo_indptr[c]);
      if (w0 < ps + pl && ps < w1) {
        return bad("sequence " + std::to_string(c) + " would write rows [" + std::to_string(w0) + ", " + std::to_string(w1) +
                   ") inside sequence " + std::to_string(b) + "'s shared prefix [" + std::to_string(ps) + ", " + std::to_string(ps + pl) + ")");
      }
    }
  }
  return Status::Ok();
}

namespace cpu {
namespace {

Status Linear(const float* x, const MatrixRef& w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate) {
  LinearParams lp = MakeLinearParams(x, w.data, w.dtype, bias, y, rows, in, out, accumulate);
  lp.w_quant = w.quant;
  return cpu::Linear(lp);
}

// x += y W^T, or with a post-norm (Gemma) x += RmsNorm(y W^T, post_norm); tmp holds [n, dim].
Status ProjectResidual(const float* y, const MatrixRef& w, const void* post_norm, const LlamaModelDesc& m, float* x, float* tmp,
                       int64_t n, int64_t in) {
  if (post_norm == nullptr) return Linear(y, w, nullptr, x, n, in, m.dim, true);
  CANOPY_RETURN_IF_ERROR(Linear(y, w, nullptr, tmp, n, in, m.dim, false));
  CANOPY_RETURN_IF_ERROR(RmsNorm(tmp, post_norm, m.norm_dtype, m.norm_eps, tmp, n, m.dim));
  ParallelFor(n * m.dim, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] += tmp[i];
  });
  return Status::Ok();
}

}  // namespace

Status LlamaForward(const LlamaModelDesc& m, const LlamaForwardParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckLlamaForward(m, p));
  const int64_t n = p.n, dim = m.dim, D = m.head_dim;
  const int64_t qdim = static_cast<int64_t>(m.n_heads) * D, kvdim = static_cast<int64_t>(m.n_kv_heads) * D;
  std::vector<float> x(n * dim), h(n * dim), q(n * qdim), k(n * kvdim), v(n * kvdim), att(n * qdim),
      g(n * m.hidden_dim), u(n * m.hidden_dim);
  if (m.embed.quant != QuantType::kNone) {
    CANOPY_RETURN_IF_ERROR(EmbedQuant(p.tokens, n, m.embed.data, m.embed.quant, m.vocab, dim, x.data()));
  } else {
    CANOPY_RETURN_IF_ERROR(Embed(p.tokens, n, m.embed.data, m.embed.dtype, m.vocab, dim, x.data()));
  }
  if (m.embed_scale != 1.f) CANOPY_RETURN_IF_ERROR(Scale(x.data(), n * dim, m.embed_scale));

  const LlamaCacheLayout layout = MakeLlamaCacheLayout(p);
  const LlamaPrefixLayout prefix = MakeLlamaPrefixLayout(p);
  const int64_t layer_elems = p.capacity * kvdim;
  const int esize = DTypeSize(p.cache_dtype);
  QuantKvBatch seqs;
  seqs.batch = p.batch;
  seqs.kv_start = p.kv_start;
  seqs.res_start = p.kv_res_start;
  const bool int4 = p.kv_quant != nullptr && p.kv_quant->format == KvFormat::kInt4;
  if (int4 && n > 0) CANOPY_RETURN_IF_ERROR(QuantizeKvGroups(*p.kv_quant, seqs, p.quant_len_before, p.quant_len_after));

  for (int32_t l = 0; l < m.n_layers && n > 0; ++l) {
    const LlamaLayerWeights& w = m.layers[l];
    CANOPY_RETURN_IF_ERROR(RmsNorm(x.data(), w.attn_norm, m.norm_dtype, m.norm_eps, h.data(), n, dim));
    CANOPY_RETURN_IF_ERROR(Linear(h.data(), w.wq, w.bq, q.data(), n, dim, qdim, false));
    CANOPY_RETURN_IF_ERROR(Linear(h.data(), w.wk, w.bk, k.data(), n, dim, kvdim, false));
    CANOPY_RETURN_IF_ERROR(Linear(h.data(), w.wv, w.bv, v.data(), n, dim, kvdim, false));
    if (w.q_norm != nullptr) CANOPY_RETURN_IF_ERROR(RmsNorm(q.data(), w.q_norm, m.norm_dtype, m.norm_eps, q.data(), n * m.n_heads, D));
    if (w.k_norm != nullptr) CANOPY_RETURN_IF_ERROR(RmsNorm(k.data(), w.k_norm, m.norm_dtype, m.norm_eps, k.data(), n * m.n_kv_heads, D));
    const float* inv_freq = LlamaLayerLocalRope(m, l) ? m.inv_freq_local.data() : m.inv_freq.data();
    const RopeParams rp = MakeLlamaRopeParams(m, q.data(), k.data(), p.positions, inv_freq, n);
    CANOPY_RETURN_IF_ERROR(Rope(rp));
    // Append this step's keys and values (quantized caches quantize on append), then attend.
    char* kc = p.kv_quant ? nullptr : static_cast<char*>(p.k_cache) + l * layer_elems * esize;
    char* vc = p.kv_quant ? nullptr : static_cast<char*>(p.v_cache) + l * layer_elems * esize;
    QuantKvCache layer_view;
    if (p.kv_quant != nullptr) {
      layer_view = QuantKvLayer(*p.kv_quant, l);
      CANOPY_RETURN_IF_ERROR(AppendQuantKv(layer_view, MakeLlamaQuantAppend(p, seqs, k.data(), v.data())));
    } else {
      for (int64_t t = 0; t < n; ++t) {
        const int64_t row = layout.dest[t];
        for (int64_t i = 0; i < kvdim; ++i) {
          StoreFromF32(kc, p.cache_dtype, row * kvdim + i, k[t * kvdim + i]);
          StoreFromF32(vc, p.cache_dtype, row * kvdim + i, v[t * kvdim + i]);
        }
      }
    }
    // q is f32; a 16-bit cache takes q in its own dtype (the attention kernels widen back and
    // accumulate in f32); quantized caches are read with f32 q.
    const bool cast_q = p.kv_quant == nullptr && p.cache_dtype != DType::kF32;
    std::vector<uint16_t> q16, o16;
    if (cast_q) {
      q16.resize(q.size());
      o16.resize(q.size());
      for (size_t i = 0; i < q.size(); ++i) StoreFromF32(q16.data(), p.cache_dtype, static_cast<int64_t>(i), q[i]);
    }
    AttentionParams ap = MakeLlamaAttentionParams(m, p, layout, cast_q ? static_cast<const void*>(q16.data()) : q.data(),
                                                  cast_q ? static_cast<void*>(o16.data()) : att.data(), kc, vc);
    if (p.kv_quant != nullptr) {
      ap.dtype = DType::kF32;
      ap.kv_quant = &layer_view;
      ap.kv_quant_lens = int4 ? p.quant_len_after : nullptr;
      ap.kv_res_start = int4 ? p.kv_res_start : nullptr;
    }
    ap.window = LlamaLayerWindow(m, l);
    if (prefix.any) {
      std::vector<PrefixLevel> levels;
      CANOPY_RETURN_IF_ERROR(PrefixAttention(MakeLlamaPrefixAttentionParams(ap, prefix, &levels)));
    } else {
      CANOPY_RETURN_IF_ERROR(Attention(ap));
    }
    if (cast_q) {
      for (size_t i = 0; i < att.size(); ++i) att[i] = LoadAsF32(o16.data(), p.cache_dtype, static_cast<int64_t>(i));
    }
    CANOPY_RETURN_IF_ERROR(ProjectResidual(att.data(), w.wo, w.post_attn_norm, m, x.data(), h.data(), n, qdim));
    CANOPY_RETURN_IF_ERROR(RmsNorm(x.data(), w.ffn_norm, m.norm_dtype, m.norm_eps, h.data(), n, dim));
    CANOPY_RETURN_IF_ERROR(Linear(h.data(), w.w1, nullptr, g.data(), n, dim, m.hidden_dim, false));
    CANOPY_RETURN_IF_ERROR(Linear(h.data(), w.w3, nullptr, u.data(), n, dim, m.hidden_dim, false));
    if (m.activation == FfnActivation::kGeluTanh) {
      CANOPY_RETURN_IF_ERROR(GeGlu(g.data(), u.data(), g.data(), n * m.hidden_dim));
    } else {
      CANOPY_RETURN_IF_ERROR(SwiGlu(g.data(), u.data(), g.data(), n * m.hidden_dim));
    }
    CANOPY_RETURN_IF_ERROR(ProjectResidual(g.data(), w.w2, w.post_ffn_norm, m, x.data(), h.data(), n, m.hidden_dim));
  }

  // Final norm and the output head on the requested rows only.
  const int64_t r = p.n_logit_rows;
  if (r == 0) return Status::Ok();
  std::vector<float> sel(r * dim), normed(r * dim);
  for (int64_t i = 0; i < r; ++i) std::copy_n(x.data() + p.logit_rows[i] * dim, dim, sel.data() + i * dim);
  CANOPY_RETURN_IF_ERROR(RmsNorm(sel.data(), m.norm, m.norm_dtype, m.norm_eps, normed.data(), r, dim));
  if (p.hidden) std::copy(normed.begin(), normed.end(), p.hidden);
  CANOPY_RETURN_IF_ERROR(Linear(normed.data(), m.output, nullptr, p.logits, r, dim, m.vocab, false));
  if (m.final_softcap > 0.f) CANOPY_RETURN_IF_ERROR(Softcap(p.logits, r * m.vocab, m.final_softcap));
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
