// CUDA Llama forward (csrc/common/llama.h), version 1: the same sequence as the
// CPU forward with the CUDA ops; activations in the per-device forward scratch
// (workspace.cuh, grow-only: no allocation per step); token ids, positions,
// cache destinations, logit rows and RoPE frequencies uploaded in one copy.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../common/attention.h"
#include "../common/cast.h"
#include "../common/linear.h"
#include "../common/kv_quant.h"
#include "../common/prefix_attention.h"
#include "../common/llama.h"
#include "../common/runtime.h"
#include "../common/transformer_ops.h"
#include "attention_internal.cuh"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {
namespace {

// Writes f32 rows src[t] (width elems) into the cache at row dest[t], in the cache dtype.
__global__ void ScatterRowsKernel(const float* src, const int32_t* dest, int64_t width, void* cache, DType dt) {
  const int64_t t = blockIdx.x;
  const int64_t row = dest[t];
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) StoreFromF32(cache, dt, row * width + i, src[t * width + i]);
}

__global__ void GatherRowsKernel(const float* src, const int32_t* rows, int64_t width, float* dst) {
  const int64_t r = blockIdx.x;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[r * width + i] = src[rows[r] * width + i];
}

// One linear layer over a weight matrix as stored: float elements, or GGUF blocks (linear_quant.cu).
Status Lin(const float* x, const MatrixRef& w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out, bool acc) {
  LinearParams lp = MakeLinearParams(x, w.data, w.dtype, bias, y, rows, in, out, acc);
  lp.w_quant = w.quant;
  return Linear(lp);
}

// Every block-quantized matrix must have a CUDA kernel (CudaHasQuantKernel); names the first that does not.
Status CheckCudaMatrixTypes(const LlamaModelDesc& m) {
  auto check = [](const MatrixRef& r, const std::string& name) {
    if (r.quant == QuantType::kNone || CudaHasQuantKernel(r.quant)) return Status::Ok();
    return Status::InvalidArgument("forward (cuda): " + name + " is " + GetQuantTypeInfo(r.quant).name +
                                   "; CUDA runs the block types " + kCudaQuantTypesText +
                                   " (others on the CPU only for now): load this model on the CPU");
  };
  CANOPY_RETURN_IF_ERROR(check(m.output, "output"));
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LlamaLayerWeights& w = m.layers[l];
    const std::pair<const MatrixRef*, const char*> mats[] = {{&w.wq, "wq"}, {&w.wk, "wk"}, {&w.wv, "wv"}, {&w.wo, "wo"},
                                                             {&w.w1, "w1"}, {&w.w2, "w2"}, {&w.w3, "w3"}};
    for (const auto& [r, name] : mats) CANOPY_RETURN_IF_ERROR(check(*r, "layers." + std::to_string(l) + "." + name));
  }
  return Status::Ok();  // the embedding lookup reads every block type (EmbedQuant)
}

__global__ void AddInPlaceKernel(float* x, const float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

// x += y W^T, or with a post-norm (Gemma) x += RmsNorm(y W^T, post_norm); tmp holds [n, dim].
Status ProjectResidual(const float* y, const MatrixRef& w, const void* post_norm, const LlamaModelDesc& m, float* x, float* tmp,
                       int64_t n, int64_t in) {
  if (post_norm == nullptr) return Lin(y, w, nullptr, x, n, in, m.dim, true);
  CANOPY_RETURN_IF_ERROR(Lin(y, w, nullptr, tmp, n, in, m.dim, false));
  CANOPY_RETURN_IF_ERROR(RmsNorm(tmp, post_norm, m.norm_dtype, m.norm_eps, tmp, n, m.dim));
  const int64_t total = n * m.dim;
  if (total == 0) return Status::Ok();
  AddInPlaceKernel<<<static_cast<unsigned>((total + 255) / 256), 256>>>(x, tmp, total);
  return FromCudaError(cudaGetLastError(), "AddInPlaceKernel launch");
}

}  // namespace

Status LlamaForward(const LlamaModelDesc& m, const LlamaForwardParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckCudaMatrixTypes(m));
  CANOPY_RETURN_IF_ERROR(CheckLlamaForward(m, p));
  const int64_t n = p.n, dim = m.dim, D = m.head_dim;
  const int64_t qdim = static_cast<int64_t>(m.n_heads) * D, kvdim = static_cast<int64_t>(m.n_kv_heads) * D;
  const bool cast_q = p.kv_quant == nullptr && p.cache_dtype != DType::kF32;
  const int64_t r = p.n_logit_rows;
  const LlamaCacheLayout layout = MakeLlamaCacheLayout(p);
  const LlamaPrefixLayout prefix = MakeLlamaPrefixLayout(p);

  const int64_t layer_elems = p.capacity * kvdim;
  const int esize = DTypeSize(p.cache_dtype);
  const bool int4 = p.kv_quant != nullptr && p.kv_quant->format == KvFormat::kInt4;

  // Layer l's attention: q (cast to the cache dtype for 16-bit caches) against its cache layer.
  // Every layer has the same batch shapes, so one plan and one uploaded work list serve them all.
  auto layer_attention = [&](int32_t l, void* q_in, void* o_out, QuantKvCache* layer_view) {
    const char* kc = p.kv_quant ? nullptr : static_cast<const char*>(p.k_cache) + l * layer_elems * esize;
    const char* vc = p.kv_quant ? nullptr : static_cast<const char*>(p.v_cache) + l * layer_elems * esize;
    AttentionParams ap = MakeLlamaAttentionParams(m, p, layout, q_in, o_out, kc, vc);
    if (p.kv_quant != nullptr) {
      *layer_view = QuantKvLayer(*p.kv_quant, l);
      ap.dtype = DType::kF32;
      ap.kv_quant = layer_view;
      ap.kv_quant_lens = int4 ? p.quant_len_after : nullptr;
      ap.kv_res_start = int4 ? p.kv_res_start : nullptr;
    }
    return ap;
  };
  AttentionPlan plan;
  AttentionUpload att_up;
  if (n > 0 && m.n_layers > 0) {
    // Shapes only: the checks, the plan and the work list read no tensor (q / o are not known yet).
    QuantKvCache view0;
    const AttentionParams ap0 = layer_attention(0, nullptr, nullptr, &view0);
    CANOPY_RETURN_IF_ERROR(CheckAttentionParams(ap0));
    CANOPY_RETURN_IF_ERROR(PlanAttention(ap0, &plan));
    CANOPY_RETURN_IF_ERROR(BuildAttentionUpload(ap0, plan, 0, &att_up));
  }
  const int32_t att_slots = plan.splits > 1 ? plan.splits : 0;

  // Every temporary of the pass in one grow-only scratch buffer (no cudaMalloc / cudaFree per
  // step): first the inputs uploaded in one copy (token ids, positions, cache rows, logit rows,
  // RoPE frequencies, the attention work list), then the activations.
  WorkspaceLease s(WorkspaceLease::kForward);  // held until the pass has finished (the sync at the end)
  const size_t o_tokens = s.Reserve(n * sizeof(int32_t)), o_positions = s.Reserve(n * sizeof(int32_t));
  const size_t o_dest = s.Reserve(n * sizeof(int32_t)), o_rows = s.Reserve(r * sizeof(int32_t));
  const size_t o_inv_freq = s.Reserve((D / 2) * sizeof(float));
  const size_t o_inv_freq_local = s.Reserve(m.inv_freq_local.size() * sizeof(float));
  const size_t o_att_up = s.Reserve(att_up.bytes.size());
  const size_t upload_bytes = s.size();
  const size_t part_rows = static_cast<size_t>(n) * att_slots * m.n_heads;
  const size_t o_part_o = s.Reserve(part_rows * D * sizeof(float)), o_part_lse = s.Reserve(part_rows * sizeof(float));
  const size_t o_x = s.Reserve(n * dim * sizeof(float)), o_h = s.Reserve(n * dim * sizeof(float));
  const size_t o_q = s.Reserve(n * qdim * sizeof(float)), o_att = s.Reserve(n * qdim * sizeof(float));
  const size_t o_k = s.Reserve(n * kvdim * sizeof(float)), o_v = s.Reserve(n * kvdim * sizeof(float));
  const size_t o_g = s.Reserve(n * m.hidden_dim * sizeof(float)), o_u = s.Reserve(n * m.hidden_dim * sizeof(float));
  const size_t o_q_cast = s.Reserve(cast_q ? n * qdim * sizeof(uint16_t) : 0);
  const size_t o_o_cast = s.Reserve(cast_q ? n * qdim * sizeof(uint16_t) : 0);
  const size_t o_sel = s.Reserve(r * dim * sizeof(float)), o_normed = s.Reserve(r * dim * sizeof(float));

  CANOPY_RETURN_IF_ERROR(s.Acquire());
  int32_t* tokens = s.At<int32_t>(o_tokens);
  int32_t* positions = s.At<int32_t>(o_positions);
  int32_t* dest = s.At<int32_t>(o_dest);
  int32_t* rows = s.At<int32_t>(o_rows);
  float* inv_freq = s.At<float>(o_inv_freq);
  float* inv_freq_local = s.At<float>(o_inv_freq_local);
  float* x = s.At<float>(o_x);
  float* h = s.At<float>(o_h);
  float* q = s.At<float>(o_q);
  float* att = s.At<float>(o_att);
  float* k = s.At<float>(o_k);
  float* v = s.At<float>(o_v);
  float* g = s.At<float>(o_g);
  float* u = s.At<float>(o_u);
  void* q_cast = cast_q ? s.At<void>(o_q_cast) : nullptr;
  void* o_cast = cast_q ? s.At<void>(o_o_cast) : nullptr;
  float* sel = s.At<float>(o_sel);
  float* normed = s.At<float>(o_normed);

  std::vector<char> upload(upload_bytes);
  if (n > 0) {
    std::memcpy(upload.data() + o_tokens, p.tokens, n * sizeof(int32_t));
    std::memcpy(upload.data() + o_positions, p.positions, n * sizeof(int32_t));
    std::memcpy(upload.data() + o_dest, layout.dest.data(), n * sizeof(int32_t));
  }
  if (r > 0) std::memcpy(upload.data() + o_rows, p.logit_rows, r * sizeof(int32_t));
  std::memcpy(upload.data() + o_inv_freq, m.inv_freq.data(), (D / 2) * sizeof(float));
  if (!m.inv_freq_local.empty()) {
    std::memcpy(upload.data() + o_inv_freq_local, m.inv_freq_local.data(), m.inv_freq_local.size() * sizeof(float));
  }
  if (!att_up.bytes.empty()) std::memcpy(upload.data() + o_att_up, att_up.bytes.data(), att_up.bytes.size());
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<char>(0), upload.data(), upload_bytes, cudaMemcpyHostToDevice));
  float* part_o = s.At<float>(o_part_o);
  float* part_lse = s.At<float>(o_part_lse);
  if (m.embed.quant != QuantType::kNone) {
    CANOPY_RETURN_IF_ERROR(EmbedQuant(tokens, n, m.embed.data, m.embed.quant, m.vocab, dim, x));
  } else {
    CANOPY_RETURN_IF_ERROR(Embed(tokens, n, m.embed.data, m.embed.dtype, m.vocab, dim, x));
  }
  if (m.embed_scale != 1.f) CANOPY_RETURN_IF_ERROR(Scale(x, n * dim, m.embed_scale));
  QuantKvBatch seqs;
  seqs.batch = p.batch;
  seqs.kv_start = p.kv_start;
  seqs.res_start = p.kv_res_start;
  if (int4 && n > 0) CANOPY_RETURN_IF_ERROR(QuantizeKvGroups(*p.kv_quant, seqs, p.quant_len_before, p.quant_len_after));
  for (int32_t l = 0; l < m.n_layers && n > 0; ++l) {
    const LlamaLayerWeights& w = m.layers[l];
    CANOPY_RETURN_IF_ERROR(RmsNorm(x, w.attn_norm, m.norm_dtype, m.norm_eps, h, n, dim));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.wq, w.bq, q, n, dim, qdim, false));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.wk, w.bk, k, n, dim, kvdim, false));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.wv, w.bv, v, n, dim, kvdim, false));
    if (w.q_norm != nullptr) CANOPY_RETURN_IF_ERROR(RmsNorm(q, w.q_norm, m.norm_dtype, m.norm_eps, q, n * m.n_heads, D));
    if (w.k_norm != nullptr) CANOPY_RETURN_IF_ERROR(RmsNorm(k, w.k_norm, m.norm_dtype, m.norm_eps, k, n * m.n_kv_heads, D));
    const RopeParams rp = MakeLlamaRopeParams(m, q, k, positions, LlamaLayerLocalRope(m, l) ? inv_freq_local : inv_freq, n);
    CANOPY_RETURN_IF_ERROR(Rope(rp));
    QuantKvCache layer_view;
    AttentionParams ap = layer_attention(l, cast_q ? q_cast : q, cast_q ? o_cast : att, &layer_view);
    ap.window = LlamaLayerWindow(m, l);  // the plan does not depend on it (positions are uploaded always)
    if (p.kv_quant != nullptr) {
      // Quantized cache: append (quantizing, or into the int4 rings), attend with f32 q.
      CANOPY_RETURN_IF_ERROR(AppendQuantKv(layer_view, MakeLlamaQuantAppend(p, seqs, k, v)));
    } else {
      ScatterRowsKernel<<<static_cast<unsigned>(n), 128>>>(k, dest, kvdim, const_cast<void*>(ap.k), p.cache_dtype);
      ScatterRowsKernel<<<static_cast<unsigned>(n), 128>>>(v, dest, kvdim, const_cast<void*>(ap.v), p.cache_dtype);
      CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
      if (cast_q) CANOPY_RETURN_IF_ERROR(CastAsync(q, DType::kF32, q_cast, p.cache_dtype, n * qdim));
    }
    // No upload and no synchronisation per layer: the work list is on the device already, and
    // the split partials are reused layer after layer in stream order.
    if (prefix.any) {
      // Shared prefixes: the prefix part and each sequence's own part, merged by LSE
      // (prefix_attention.cu: its own plan, upload and synchronisation per layer, version 1).
      std::vector<PrefixLevel> levels;
      CANOPY_RETURN_IF_ERROR(PrefixAttention(MakeLlamaPrefixAttentionParams(ap, prefix, &levels)));
    } else {
      CANOPY_RETURN_IF_ERROR(LaunchAttentionUploaded(ap, plan, att_up, s.At<const char>(o_att_up), att_slots, part_o, part_lse, true));
    }
    if (cast_q) CANOPY_RETURN_IF_ERROR(CastAsync(o_cast, p.cache_dtype, att, DType::kF32, n * qdim));
    CANOPY_RETURN_IF_ERROR(ProjectResidual(att, w.wo, w.post_attn_norm, m, x, h, n, qdim));
    CANOPY_RETURN_IF_ERROR(RmsNorm(x, w.ffn_norm, m.norm_dtype, m.norm_eps, h, n, dim));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.w1, nullptr, g, n, dim, m.hidden_dim, false));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.w3, nullptr, u, n, dim, m.hidden_dim, false));
    if (m.activation == FfnActivation::kGeluTanh) {
      CANOPY_RETURN_IF_ERROR(GeGlu(g, u, g, n * m.hidden_dim));
    } else {
      CANOPY_RETURN_IF_ERROR(SwiGlu(g, u, g, n * m.hidden_dim));
    }
    CANOPY_RETURN_IF_ERROR(ProjectResidual(g, w.w2, w.post_ffn_norm, m, x, h, n, m.hidden_dim));
  }
  if (r > 0) {
    GatherRowsKernel<<<static_cast<unsigned>(r), 128>>>(x, rows, dim, sel);
    CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    CANOPY_RETURN_IF_ERROR(RmsNorm(sel, m.norm, m.norm_dtype, m.norm_eps, normed, r, dim));
    if (p.hidden) CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(p.hidden, normed, r * dim * sizeof(float), cudaMemcpyDeviceToDevice));
    CANOPY_RETURN_IF_ERROR(Lin(normed, m.output, nullptr, p.logits, r, dim, m.vocab, false));
    if (m.final_softcap > 0.f) CANOPY_RETURN_IF_ERROR(Softcap(p.logits, r * m.vocab, m.final_softcap));
  }
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  // A long prefill grows the scratch; give most of it back once steps are much smaller again.
  return TrimForwardScratch(s.device(), s.size());
}

}  // namespace cuda
}  // namespace canopy
