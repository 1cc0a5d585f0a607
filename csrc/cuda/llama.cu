// CUDA Llama forward (csrc/common/llama.h), version 1: the same sequence as the
// CPU forward with the CUDA ops; activations in a per-call device allocation;
// token ids, positions, cache destinations and logit rows uploaded once.
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "../common/attention.h"
#include "../common/cast.h"
#include "../common/linear.h"
#include "../common/kv_quant.h"
#include "../common/llama.h"
#include "../common/runtime.h"
#include "check.cuh"

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

// Frees its allocations however the function returns.
struct DeviceScratch {
  int device = 0;
  std::vector<void*> ptrs;
  ~DeviceScratch() {
    for (void* p : ptrs) Free(device, p);
  }
  template <typename T>
  Status Alloc(int64_t count, T** out) {
    void* p = nullptr;
    CANOPY_RETURN_IF_ERROR(Malloc(device, static_cast<size_t>(count > 0 ? count : 1) * sizeof(T), &p));
    ptrs.push_back(p);
    *out = static_cast<T*>(p);
    return Status::Ok();
  }
};

Status Lin(const float* x, const void* w, DType dt, const float* bias, float* y, int64_t rows, int64_t in, int64_t out,
           bool acc) {
  return Linear(MakeLinearParams(x, w, dt, bias, y, rows, in, out, acc));
}

}  // namespace

Status LlamaForward(const LlamaModelDesc& m, const LlamaForwardParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckLlamaForward(m, p));
  const int64_t n = p.n, dim = m.dim, D = m.head_dim;
  const int64_t qdim = static_cast<int64_t>(m.n_heads) * D, kvdim = static_cast<int64_t>(m.n_kv_heads) * D;
  DeviceScratch s;
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetDevice(&s.device));
  float *x, *h, *q, *k, *v, *att, *g, *u, *inv_freq;
  int32_t *tokens, *positions, *dest, *rows;
  void *q_cast = nullptr, *o_cast = nullptr;
  CANOPY_RETURN_IF_ERROR(s.Alloc(n * dim, &x));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n * dim, &h));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n * qdim, &q));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n * kvdim, &k));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n * kvdim, &v));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n * qdim, &att));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n * m.hidden_dim, &g));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n * m.hidden_dim, &u));
  CANOPY_RETURN_IF_ERROR(s.Alloc(D / 2, &inv_freq));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n, &tokens));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n, &positions));
  CANOPY_RETURN_IF_ERROR(s.Alloc(n, &dest));
  CANOPY_RETURN_IF_ERROR(s.Alloc(p.n_logit_rows, &rows));
  const bool cast_q = p.kv_quant == nullptr && p.cache_dtype != DType::kF32;
  if (cast_q) {
    uint16_t *qc, *oc;
    CANOPY_RETURN_IF_ERROR(s.Alloc(n * qdim, &qc));
    CANOPY_RETURN_IF_ERROR(s.Alloc(n * qdim, &oc));
    q_cast = qc;
    o_cast = oc;
  }
  const LlamaCacheLayout layout = MakeLlamaCacheLayout(p);
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(tokens, p.tokens, n * sizeof(int32_t), cudaMemcpyHostToDevice));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(positions, p.positions, n * sizeof(int32_t), cudaMemcpyHostToDevice));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(dest, layout.dest.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(inv_freq, m.inv_freq.data(), (D / 2) * sizeof(float), cudaMemcpyHostToDevice));
  if (p.n_logit_rows > 0) {
    CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(rows, p.logit_rows, p.n_logit_rows * sizeof(int32_t), cudaMemcpyHostToDevice));
  }
  CANOPY_RETURN_IF_ERROR(Embed(tokens, n, m.embed, m.weight_dtype, m.vocab, dim, x));
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
    CANOPY_RETURN_IF_ERROR(RmsNorm(x, w.attn_norm, m.norm_dtype, m.norm_eps, h, n, dim));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.wq, m.weight_dtype, w.bq, q, n, dim, qdim, false));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.wk, m.weight_dtype, w.bk, k, n, dim, kvdim, false));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.wv, m.weight_dtype, w.bv, v, n, dim, kvdim, false));
    const RopeParams rp = MakeLlamaRopeParams(m, q, k, positions, inv_freq, n);
    CANOPY_RETURN_IF_ERROR(Rope(rp));
    char* kc = p.kv_quant ? nullptr : static_cast<char*>(p.k_cache) + l * layer_elems * esize;
    char* vc = p.kv_quant ? nullptr : static_cast<char*>(p.v_cache) + l * layer_elems * esize;
    QuantKvCache layer_view;
    if (p.kv_quant != nullptr) {
      // Quantized cache: append (quantizing, or into the int4 rings), attend with f32 q.
      layer_view = QuantKvLayer(*p.kv_quant, l);
      CANOPY_RETURN_IF_ERROR(AppendQuantKv(layer_view, MakeLlamaQuantAppend(p, seqs, k, v)));
    } else {
      ScatterRowsKernel<<<static_cast<unsigned>(n), 128>>>(k, dest, kvdim, kc, p.cache_dtype);
      ScatterRowsKernel<<<static_cast<unsigned>(n), 128>>>(v, dest, kvdim, vc, p.cache_dtype);
      CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
      if (cast_q) CANOPY_RETURN_IF_ERROR(Cast(q, DType::kF32, q_cast, p.cache_dtype, n * qdim));
    }
    AttentionParams ap = MakeLlamaAttentionParams(m, p, layout, cast_q ? static_cast<const void*>(q_cast) : q,
                                                  cast_q ? static_cast<void*>(o_cast) : att, kc, vc);
    if (p.kv_quant != nullptr) {
      ap.dtype = DType::kF32;
      ap.kv_quant = &layer_view;
      ap.kv_quant_lens = int4 ? p.quant_len_after : nullptr;
      ap.kv_res_start = int4 ? p.kv_res_start : nullptr;
    }
    CANOPY_RETURN_IF_ERROR(Attention(ap));
    if (cast_q) CANOPY_RETURN_IF_ERROR(Cast(o_cast, p.cache_dtype, att, DType::kF32, n * qdim));
    CANOPY_RETURN_IF_ERROR(Lin(att, w.wo, m.weight_dtype, nullptr, x, n, qdim, dim, true));
    CANOPY_RETURN_IF_ERROR(RmsNorm(x, w.ffn_norm, m.norm_dtype, m.norm_eps, h, n, dim));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.w1, m.weight_dtype, nullptr, g, n, dim, m.hidden_dim, false));
    CANOPY_RETURN_IF_ERROR(Lin(h, w.w3, m.weight_dtype, nullptr, u, n, dim, m.hidden_dim, false));
    CANOPY_RETURN_IF_ERROR(SwiGlu(g, u, g, n * m.hidden_dim));
    CANOPY_RETURN_IF_ERROR(Lin(g, w.w2, m.weight_dtype, nullptr, x, n, m.hidden_dim, dim, true));
  }
  const int64_t r = p.n_logit_rows;
  if (r > 0) {
    float *sel, *normed;
    CANOPY_RETURN_IF_ERROR(s.Alloc(r * dim, &sel));
    CANOPY_RETURN_IF_ERROR(s.Alloc(r * dim, &normed));
    GatherRowsKernel<<<static_cast<unsigned>(r), 128>>>(x, rows, dim, sel);
    CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    CANOPY_RETURN_IF_ERROR(RmsNorm(sel, m.norm, m.norm_dtype, m.norm_eps, normed, r, dim));
    if (p.hidden) CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(p.hidden, normed, r * dim * sizeof(float), cudaMemcpyDeviceToDevice));
    CANOPY_RETURN_IF_ERROR(Lin(normed, m.output, m.weight_dtype, nullptr, p.logits, r, dim, m.vocab, false));
  }
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
