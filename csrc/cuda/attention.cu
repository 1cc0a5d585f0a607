// CUDA flash attention, version 1: SIMT fp32 math, correct first.
//
// One thread block (4 warps) per work item: up to 16 query rows (tokens x the
// qo heads of one kv head) against a range of keys. Keys stream through shared
// memory in blocks of 32: lane j scores key j for each of the warp's rows, the
// online softmax runs with warp shuffles, and each lane accumulates head_dim/32
// output dims. Split-KV work items write fp32 partial states that a merge kernel
// combines (merge_states.cu). Planning (tiles, splits, tree masks) happens on
// the host (attention_plan.cc) and is uploaded with the work list.
//
// Later versions (tensor cores via mma.sync / wgmma, larger query tiles for
// prefill) replace this kernel behind the same launcher; this one is the
// reference the native tests hold them to.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "../common/attention.h"
#include "../common/merge_states.h"
#include "check.cuh"
#include "merge_states.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kMaxRows = kWarps * kRowsPerWarp;  // query rows per block
constexpr int kBlockKeys = 32;

struct Item {
  int32_t b, h, t0, t1;
  int64_t k0, k1;
  int32_t split;
};

struct KernelArgs {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse;
  DType dtype;
  int32_t hq, hkv, group, head_dim;
  MaskMode mask;
  float scale;
  const Item* items;
  const int32_t* qo_indptr;
  const int32_t* kv_indptr;
  const int32_t* kv_lens;  // may be null
  const uint32_t* tree_mask;
  int32_t mask_words;
  int32_t splits;
  float* part_o;
  float* part_lse;
};

__device__ __forceinline__ float WarpMax(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float WarpSum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <int kDChunks>  // head_dim <= 32 * kDChunks; lane l owns dims l, l + 32, ...
__global__ void __launch_bounds__(kWarps * 32) AttentionKernelV1(KernelArgs a) {
  const int D = a.head_dim;
  extern __shared__ float smem[];
  float* Qs = smem;                          // [kMaxRows][D]
  float* Ks = Qs + kMaxRows * D;             // [kBlockKeys][D + 1] (padded: lanes read distinct rows)
  float* Vs = Ks + kBlockKeys * (D + 1);     // [kBlockKeys][D]

  const Item it = a.items[blockIdx.x];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t qo_start = a.qo_indptr[it.b];
  const int64_t qo_len = a.qo_indptr[it.b + 1] - qo_start;
  const int64_t kv_start = a.kv_indptr[it.b];
  const int64_t kv_len = a.kv_lens ? a.kv_lens[it.b] : a.kv_indptr[it.b + 1] - kv_start;
  const int64_t prefix = kv_len - qo_len;
  const int R = (it.t1 - it.t0) * a.group;

  for (int i = threadIdx.x; i < kMaxRows * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    float x = 0.f;
    if (r < R) {
      const int64_t row = qo_start + it.t0 + r / a.group;
      const int hq = it.h * a.group + r % a.group;
      x = LoadAsF32(a.q, a.dtype, (row * a.hq + hq) * D + d) * a.scale;
    }
    Qs[i] = x;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDChunks];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < kDChunks; ++c) acc[i][c] = 0.f;
  }

  int64_t k_end = it.k1;
  if (a.mask == MaskMode::kCausal) k_end = min(k_end, prefix + it.t1);
  for (int64_t j0 = it.k0; j0 < k_end; j0 += kBlockKeys) {
    const int nb = static_cast<int>(min(static_cast<int64_t>(kBlockKeys), k_end - j0));
    __syncthreads();  // previous block fully consumed (and Qs written, first time)
    for (int i = threadIdx.x; i < kBlockKeys * D; i += blockDim.x) {
      const int jj = i / D, d = i % D;
      float kx = 0.f, vx = 0.f;
      if (jj < nb) {
        const int64_t idx = ((kv_start + j0 + jj) * a.hkv + it.h) * D + d;
        kx = LoadAsF32(a.k, a.dtype, idx);
        vx = LoadAsF32(a.v, a.dtype, idx);
      }
      Ks[jj * (D + 1) + d] = kx;
      Vs[jj * D + d] = vx;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = warp * kRowsPerWarp + i;
      if (r >= R) continue;  // warp-uniform
      const int64_t t = it.t0 + r / a.group;
      float s = 0.f;
      const float* qr = Qs + r * D;
      const float* kr = Ks + lane * (D + 1);
#pragma unroll 8
      for (int d = 0; d < D; ++d) s += qr[d] * kr[d];
      const int64_t j = j0 + lane;
      bool visible = lane < nb;
      if (a.mask == MaskMode::kCausal) {
        visible = visible && j <= prefix + t;
      } else if (a.mask == MaskMode::kTree && j >= prefix) {
        const int64_t node = j - prefix;
        const uint32_t* bits = a.tree_mask + (qo_start + t) * a.mask_words;
        visible = visible && ((bits[node >> 5] >> (node & 31)) & 1u);
      }
      s = visible ? s : -INFINITY;
      const float m_new = fmaxf(m[i], WarpMax(s));
      if (m_new == -INFINITY) continue;  // nothing visible yet for this row
      const float p = visible ? __expf(s - m_new) : 0.f;
      const float alpha = m[i] == -INFINITY ? 0.f : __expf(m[i] - m_new);
      l[i] = l[i] * alpha + WarpSum(p);
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < kDChunks; ++c) acc[i][c] *= alpha;
      for (int jj = 0; jj < nb; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
        if (pj == 0.f) continue;  // warp-uniform; also keeps masked values out entirely
#pragma unroll
        for (int c = 0; c < kDChunks; ++c)
          if (lane + 32 * c < D) acc[i][c] += pj * Vs[jj * D + lane + 32 * c];
      }
    }
  }

#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int r = warp * kRowsPerWarp + i;
    if (r >= R) continue;
    const int64_t row = qo_start + it.t0 + r / a.group;
    const int hq = it.h * a.group + r % a.group;
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
    const float lse = l[i] > 0.f ? m[i] + logf(l[i]) : -INFINITY;
    if (a.splits == 1) {
#pragma unroll
      for (int c = 0; c < kDChunks; ++c)
        if (lane + 32 * c < D) StoreFromF32(a.o, a.dtype, (row * a.hq + hq) * D + lane + 32 * c, acc[i][c] * inv);
      if (a.lse && lane == 0) a.lse[row * a.hq + hq] = lse;
    } else {
      const int64_t idx = (row * a.splits + it.split) * a.hq + hq;
#pragma unroll
      for (int c = 0; c < kDChunks; ++c)
        if (lane + 32 * c < D) a.part_o[idx * D + lane + 32 * c] = acc[i][c] * inv;
      if (lane == 0) a.part_lse[idx] = lse;
    }
  }
}

template <int kDChunks>
Status Launch(const KernelArgs& a, int64_t num_items) {
  const int D = a.head_dim;
  const size_t smem = sizeof(float) * (kMaxRows * D + kBlockKeys * (D + 1) + kBlockKeys * D);
  if (smem > 48 * 1024) {
    CANOPY_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(AttentionKernelV1<kDChunks>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  AttentionKernelV1<kDChunks><<<static_cast<unsigned>(num_items), kWarps * 32, smem>>>(a);
  return FromCudaError(cudaGetLastError(), "AttentionKernelV1 launch");
}

int NumSMs(int device) {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  return sms > 0 ? sms : 80;
}

}  // namespace

Status Attention(const AttentionParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckAttentionParams(p));
  const int G = p.num_qo_heads / p.num_kv_heads;
  if (G > kMaxRows) {
    return Status::InvalidArgument("attention (cuda v1): numQoHeads / numKvHeads must be <= " + std::to_string(kMaxRows) +
                                   "; received " + std::to_string(G));
  }
  std::vector<uint32_t> tree_mask;
  std::vector<int32_t> depths;
  int32_t words = 0;
  if (p.mask == MaskMode::kTree) {
    CANOPY_RETURN_IF_ERROR(BuildTreeMask(p.qo_indptr, p.batch_size, p.tree_parents, &tree_mask, &words, &depths));
  }
  const int32_t tq = std::max(1, kMaxRows / G);
  std::vector<Item> base;
  int64_t max_kv = 0;
  for (int b = 0; b < p.batch_size; ++b) {
    const int32_t qlen = p.qo_indptr[b + 1] - p.qo_indptr[b];
    const int64_t kv = KvLen(p, b);
    max_kv = std::max(max_kv, kv);
    for (int h = 0; h < p.num_kv_heads; ++h)
      for (int32_t t0 = 0; t0 < qlen; t0 += tq) base.push_back({b, h, t0, std::min(qlen, t0 + tq), 0, kv, 0});
  }
  if (base.empty()) return Status::Ok();
  int device = 0;
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  const int32_t splits = p.num_splits > 0 ? p.num_splits
                                          : ChooseNumSplits(static_cast<int64_t>(base.size()), max_kv, NumSMs(device) * 4, 256);
  std::vector<Item> items;
  if (splits == 1) {
    items = std::move(base);
  } else {
    for (const Item& w : base) {
      int64_t chunk = (w.k1 + splits - 1) / splits;
      chunk = (chunk + kBlockKeys - 1) / kBlockKeys * kBlockKeys;
      for (int32_t s = 0; s < splits; ++s) {
        Item x = w;
        x.k0 = std::min<int64_t>(w.k1, s * chunk);
        x.k1 = std::min<int64_t>(w.k1, x.k0 + chunk);
        x.split = s;
        items.push_back(x);
      }
    }
  }
  if (items.size() > 0x7fffffffu) return Status::InvalidArgument("attention: too many work items");

  // One workspace upload: items, indptrs, kv lens, tree mask, then the split partials.
  const size_t b1 = p.batch_size + 1;
  WorkspaceLayout layout;
  const size_t off_items = layout.Add(items.size() * sizeof(Item));
  const size_t off_qo = layout.Add(b1 * sizeof(int32_t));
  const size_t off_kv = layout.Add(b1 * sizeof(int32_t));
  const size_t off_lens = layout.Add(p.kv_lens ? p.batch_size * sizeof(int32_t) : 0);
  const size_t off_mask = layout.Add(tree_mask.size() * sizeof(uint32_t));
  const size_t host_bytes = layout.size();
  const size_t off_part_o = layout.Add(splits > 1 ? static_cast<size_t>(p.total_q) * splits * p.num_qo_heads * p.head_dim * sizeof(float) : 0);
  const size_t off_part_lse = layout.Add(splits > 1 ? static_cast<size_t>(p.total_q) * splits * p.num_qo_heads * sizeof(float) : 0);

  std::lock_guard<std::mutex> lock(WorkspaceMutex());
  char* ws = nullptr;
  CANOPY_RETURN_IF_ERROR(AcquireWorkspace(device, layout.size(), reinterpret_cast<void**>(&ws)));
  std::vector<char> host(host_bytes);
  std::memcpy(host.data() + off_items, items.data(), items.size() * sizeof(Item));
  std::memcpy(host.data() + off_qo, p.qo_indptr, b1 * sizeof(int32_t));
  std::memcpy(host.data() + off_kv, p.kv_indptr, b1 * sizeof(int32_t));
  if (p.kv_lens) std::memcpy(host.data() + off_lens, p.kv_lens, p.batch_size * sizeof(int32_t));
  if (!tree_mask.empty()) std::memcpy(host.data() + off_mask, tree_mask.data(), tree_mask.size() * sizeof(uint32_t));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(ws, host.data(), host_bytes, cudaMemcpyHostToDevice));

  KernelArgs a;
  a.q = p.q;
  a.k = p.k;
  a.v = p.v;
  a.o = p.o;
  a.lse = p.lse;
  a.dtype = p.dtype;
  a.hq = p.num_qo_heads;
  a.hkv = p.num_kv_heads;
  a.group = G;
  a.head_dim = p.head_dim;
  a.mask = p.mask;
  a.scale = p.scale;
  a.items = reinterpret_cast<const Item*>(ws + off_items);
  a.qo_indptr = reinterpret_cast<const int32_t*>(ws + off_qo);
  a.kv_indptr = reinterpret_cast<const int32_t*>(ws + off_kv);
  a.kv_lens = p.kv_lens ? reinterpret_cast<const int32_t*>(ws + off_lens) : nullptr;
  a.tree_mask = tree_mask.empty() ? nullptr : reinterpret_cast<const uint32_t*>(ws + off_mask);
  a.mask_words = words;
  a.splits = splits;
  a.part_o = splits > 1 ? reinterpret_cast<float*>(ws + off_part_o) : nullptr;
  a.part_lse = splits > 1 ? reinterpret_cast<float*>(ws + off_part_lse) : nullptr;

  const int64_t n = static_cast<int64_t>(items.size());
  Status st;
  switch ((p.head_dim + 31) / 32) {
    case 1: st = Launch<1>(a, n); break;
    case 2: st = Launch<2>(a, n); break;
    case 3: st = Launch<3>(a, n); break;
    case 4: st = Launch<4>(a, n); break;
    case 5: st = Launch<5>(a, n); break;
    case 6: st = Launch<6>(a, n); break;
    case 7: st = Launch<7>(a, n); break;
    case 8: st = Launch<8>(a, n); break;
    default: return Status::InvalidArgument("attention: unsupported headDim");
  }
  CANOPY_RETURN_IF_ERROR(st);
  if (splits > 1) {
    CANOPY_RETURN_IF_ERROR(MergePartials(a.part_o, a.part_lse, p.o, p.lse, p.dtype, p.total_q, splits, p.num_qo_heads, p.head_dim));
  }
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
