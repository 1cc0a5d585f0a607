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
// Quantized caches (kv_quant.h) are dequantized element by element as the key
// block is staged into shared memory (LoadQuantKv; fp8 through the hardware
// e4m3 conversion on sm_89+), so the rest of the kernel is unchanged.
//
// Version 2 (AttentionKernelV2, the default) takes the same work items and
// keeps the same math, but spreads every phase over all 128 threads instead of
// giving each warp 4 query rows (in v1 a decode item with 4 query heads per kv
// head kept 3 of 4 warps idle), and stages K/V with 16-byte loads, several in
// flight per thread, when rows are 16-byte aligned (head_dim a multiple of 8
// for 16-bit K/V, of 4 for f32; quantized caches stage element by element).
// Per block of 32 keys:
//   A  K, V -> shared memory as f32                  (all threads)
//   B  S[r][j] = q_r . k_j for the tile's rows        (thread = (row, key) pairs)
//   C  online softmax per row: m, l, P = exp(S - m)   (warp = row, lane = key)
//   D  acc[r][d] = acc[r][d] * alpha_r + sum_j P[r][j] V[j][d]   (thread = (row, dim))
// CANOPY_CUDA_KERNELS=v1 runs version 1, which the native tests also hold v2 to.
//
// Later versions (tensor cores via mma.sync / wgmma, larger query tiles for
// prefill) replace these kernels behind the same launcher.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "../common/attention.h"
#include "../common/merge_states.h"
#include "attention_internal.cuh"
#include "check.cuh"
#include "kernel_version.cuh"
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
  int32_t num_slots;  // 0: write o / lse; else partial states [row][num_slots][hq] at slot item.split
  float* part_o;
  float* part_lse;
  // Quantized K/V (quant true): a single-layer view with device pointers, and per-sequence
  // quantized lengths / ring starts (device arrays, may be null).
  bool quant;
  QuantKvCache kvq;
  const int32_t* quant_lens;
  const int32_t* res_start;
  // Soft-capping and sliding window (attention.h; 0 = off). q_pos: every query row's position
  // (device, always uploaded); kv_pos: each sequence's key-0 position (device, may be null).
  float softcap;
  int32_t window;
  const int32_t* q_pos;
  const int32_t* kv_pos;
};

// e4m3 -> f32: the hardware conversion where the architecture has it, else the exact software
// decoder (same values).
__device__ __forceinline__ float Fp8ToF32(uint8_t b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E4M3);
  return __half2float(__half(h));
#else
  return E4M3ToF32(b);
#endif
}

__device__ __forceinline__ float LoadKvElement(const KernelArgs& a, bool value, int b, int64_t kv_start, int64_t kv_len,
                                               int64_t j, int h, int d) {
  if (!a.quant) return LoadAsF32(value ? a.v : a.k, a.dtype, ((kv_start + j) * a.hkv + h) * a.head_dim + d);
  if (a.kvq.format == KvFormat::kFp8) {
    const int64_t rh = (kv_start + j) * a.hkv + h;
    const uint8_t code = static_cast<const uint8_t*>(value ? a.kvq.v : a.kvq.k)[rh * a.head_dim + d];
    return Fp8ToF32(code) * (value ? a.kvq.v_scale : a.kvq.k_scale)[rh];
  }
  const int64_t ql = a.quant_lens ? a.quant_lens[b] : kv_len;
  const int64_t rs = a.res_start ? a.res_start[b] : 0;
  return LoadQuantKv(a.kvq, value, kv_start, ql, rs, j, h, d);
}

__device__ __forceinline__ float WarpMax(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float WarpSum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// ---- pieces both kernel versions share ----------------------------------------------------

// Where a work item's rows and keys live. Rows r < R of the tile are (token t0 + r / group,
// query head h * group + r % group).
struct ItemView {
  int64_t qo_start, kv_start, kv_len;
  int64_t prefix;  // keys before the item's sequence's first query token (bottom-right causal / tree)
  int64_t kv_pos0; // the position of the sequence's key 0 (sliding window)
  int R;           // rows of the tile, <= kMaxRows
};

__device__ __forceinline__ ItemView ViewItem(const KernelArgs& a, const Item& it) {
  ItemView v;
  v.qo_start = a.qo_indptr[it.b];
  const int64_t qo_len = a.qo_indptr[it.b + 1] - v.qo_start;
  v.kv_start = a.kv_indptr[it.b];
  v.kv_len = a.kv_lens ? a.kv_lens[it.b] : a.kv_indptr[it.b + 1] - v.kv_start;
  v.prefix = v.kv_len - qo_len;
  v.kv_pos0 = a.kv_pos ? a.kv_pos[it.b] : 0;
  v.R = (it.t1 - it.t0) * a.group;
  return v;
}

// Qs [kMaxRows][D] <- the tile's query rows times the scale (rows past R zero); all threads.
__device__ __forceinline__ void LoadQueryTile(const KernelArgs& a, const Item& it, const ItemView& v, float* Qs) {
  const int D = a.head_dim;
  for (int i = threadIdx.x; i < kMaxRows * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    float x = 0.f;
    if (r < v.R) {
      const int64_t row = v.qo_start + it.t0 + r / a.group;
      const int hq = it.h * a.group + r % a.group;
      x = LoadAsF32(a.q, a.dtype, (row * a.hq + hq) * D + d) * a.scale;
    }
    Qs[i] = x;
  }
}

// Ks [kBlockKeys][D + 1], Vs [kBlockKeys][D] <- keys [j0, j0 + nb) as f32, element by element
// (any dtype, quantized caches too); rows past nb zero. All threads.
__device__ __forceinline__ void StageKvElements(const KernelArgs& a, const Item& it, const ItemView& v, int64_t j0, int nb,
                                                float* Ks, float* Vs) {
  const int D = a.head_dim;
  for (int i = threadIdx.x; i < kBlockKeys * D; i += blockDim.x) {
    const int jj = i / D, d = i % D;
    float kx = 0.f, vx = 0.f;
    if (jj < nb) {
      kx = LoadKvElement(a, false, it.b, v.kv_start, v.kv_len, j0 + jj, it.h, d);
      vx = LoadKvElement(a, true, it.b, v.kv_start, v.kv_len, j0 + jj, it.h, d);
    }
    Ks[jj * (D + 1) + d] = kx;
    Vs[jj * D + d] = vx;
  }
}

// Whether query token t of the item's sequence sees key j (both sequence-relative), by the mask;
// the caller checks j against the key range.
// With a sliding window, also whether pos(t) - pos(j) < window (tree nodes sit at their own
// queries' positions).
__device__ __forceinline__ bool KeyVisible(const KernelArgs& a, const ItemView& v, int64_t t, int64_t j) {
  bool visible = true;
  if (a.mask == MaskMode::kCausal) visible = j <= v.prefix + t;
  if (a.mask == MaskMode::kTree && j >= v.prefix) {
    const int64_t node = j - v.prefix;
    const uint32_t* bits = a.tree_mask + (v.qo_start + t) * a.mask_words;
    visible = (bits[node >> 5] >> (node & 31)) & 1u;
  }
  if (visible && a.window > 0) {
    const int64_t kpos = a.mask == MaskMode::kTree && j >= v.prefix ? a.q_pos[v.qo_start + j - v.prefix] : v.kv_pos0 + j;
    visible = a.q_pos[v.qo_start + t] - kpos < a.window;
  }
  return visible;
}

// A score after the optional soft-capping: cap * tanh(s / cap).
__device__ __forceinline__ float CapScore(const KernelArgs& a, float s) {
  return a.softcap > 0.f ? a.softcap * tanhf(s / a.softcap) : s;
}

// The end of the keys an item reads: its range, cut at the last key its last token sees (causal).
__device__ __forceinline__ int64_t ItemKeyEnd(const KernelArgs& a, const Item& it, const ItemView& v) {
  return a.mask == MaskMode::kCausal ? min(it.k1, v.prefix + it.t1) : it.k1;
}

// The first key an item reads: its range, past the keys older than the window of its earliest
// query (tree nodes are never skipped: they sit at their own positions).
__device__ __forceinline__ int64_t ItemKeyBegin(const KernelArgs& a, const Item& it, const ItemView& v) {
  if (a.window <= 0) return it.k0;
  int64_t min_pos = a.q_pos[v.qo_start + it.t0];
  for (int t = it.t0 + 1; t < it.t1; ++t) min_pos = min(min_pos, static_cast<int64_t>(a.q_pos[v.qo_start + t]));
  int64_t lb = min_pos - a.window + 1 - v.kv_pos0;
  if (a.mask == MaskMode::kTree) lb = min(lb, v.prefix);
  return max(it.k0, lb);
}

// Writes dim d of tile row r: o = acc / l (0 where l = 0), and with write_lse the LSE m + log l
// (-inf where l = 0); into o / lse, or into the item's split slot of the partial states.
__device__ __forceinline__ void StoreRowOutput(const KernelArgs& a, const Item& it, const ItemView& v, int r, int d, float acc,
                                               float m, float l, bool write_lse) {
  const int64_t row = v.qo_start + it.t0 + r / a.group;
  const int hq = it.h * a.group + r % a.group;
  const float out = acc * (l > 0.f ? 1.f / l : 0.f);
  const float lse = l > 0.f ? m + logf(l) : -INFINITY;
  if (a.num_slots == 0) {
    StoreFromF32(a.o, a.dtype, (row * a.hq + hq) * a.head_dim + d, out);
    if (a.lse && write_lse) a.lse[row * a.hq + hq] = lse;
  } else {
    const int64_t idx = (row * a.num_slots + it.split) * a.hq + hq;
    a.part_o[idx * a.head_dim + d] = out;
    if (write_lse) a.part_lse[idx] = lse;
  }
}

// One block per work item, with `smem` bytes of dynamic shared memory (opting in above 48 KiB).
Status LaunchItems(void (*kernel)(KernelArgs), int threads, size_t smem, const KernelArgs& a, int64_t num_items,
                   const char* what) {
  if (smem > 48 * 1024) {
    CANOPY_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  kernel<<<static_cast<unsigned>(num_items), threads, smem>>>(a);
  return FromCudaError(cudaGetLastError(), what);
}

// ---- version 1 -----------------------------------------------------------------------------

template <int kDChunks>  // head_dim <= 32 * kDChunks; lane l owns dims l, l + 32, ...
__global__ void __launch_bounds__(kWarps * 32) AttentionKernelV1(KernelArgs a) {
  const int D = a.head_dim;
  extern __shared__ float smem[];
  float* Qs = smem;                          // [kMaxRows][D]
  float* Ks = Qs + kMaxRows * D;             // [kBlockKeys][D + 1] (padded: lanes read distinct rows)
  float* Vs = Ks + kBlockKeys * (D + 1);     // [kBlockKeys][D]

  const Item it = a.items[blockIdx.x];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const ItemView iv = ViewItem(a, it);
  const int R = iv.R;
  LoadQueryTile(a, it, iv, Qs);

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDChunks];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < kDChunks; ++c) acc[i][c] = 0.f;
  }

  const int64_t k_end = ItemKeyEnd(a, it, iv);
  for (int64_t j0 = ItemKeyBegin(a, it, iv); j0 < k_end; j0 += kBlockKeys) {
    const int nb = static_cast<int>(min(static_cast<int64_t>(kBlockKeys), k_end - j0));
    __syncthreads();  // previous block fully consumed (and Qs written, first time)
    StageKvElements(a, it, iv, j0, nb, Ks, Vs);
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
      const bool visible = lane < nb && KeyVisible(a, iv, t, j0 + lane);
      s = visible ? CapScore(a, s) : -INFINITY;
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
#pragma unroll
    for (int c = 0; c < kDChunks; ++c) {
      if (lane + 32 * c < D) StoreRowOutput(a, it, iv, r, lane + 32 * c, acc[i][c], m[i], l[i], c == 0 && lane == 0);
    }
  }
}

template <int kDChunks>
Status Launch(const KernelArgs& a, int64_t num_items) {
  const int D = a.head_dim;
  const size_t smem = sizeof(float) * (kMaxRows * D + kBlockKeys * (D + 1) + kBlockKeys * D);
  return LaunchItems(AttentionKernelV1<kDChunks>, kWarps * 32, smem, a, num_items, "AttentionKernelV1 launch");
}

// ---- version 2 -------------------------------------------------------------

constexpr int kThreadsV2 = 128;

// f16 bits (in the low 16 bits) -> f32 through the hardware conversion (exact).
__device__ __forceinline__ float HalfBitsToF32(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

// Stages keys [j0, j0 + nb) of item `it` into Ks [kBlockKeys][D + 1] and Vs [kBlockKeys][D] as
// f32 (rows past nb are zero). kVec: 16-byte loads (the launcher checked alignment), four K and
// four V vectors loaded per thread before any is converted, so eight loads are in flight.
template <bool kVec>
__device__ __forceinline__ void StageKvV2(const KernelArgs& a, const Item& it, const ItemView& iv, int64_t j0, int nb, float* Ks,
                                          float* Vs) {
  const int D = a.head_dim;
  if constexpr (kVec) {
    const int E = a.dtype == DType::kF32 ? 4 : 8;  // elements per 16 bytes
    const int vpr = D / E;                         // vectors per key row
    const int total = kBlockKeys * vpr;
    const int esize = a.dtype == DType::kF32 ? 4 : 2;
    for (int base = 0; base < total; base += 4 * kThreadsV2) {
      uint4 kr[4], vr[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int vi = base + u * kThreadsV2 + threadIdx.x;
        const int jj = vi / vpr, c = vi % vpr;
        kr[u] = vr[u] = make_uint4(0u, 0u, 0u, 0u);
        if (vi < total && jj < nb) {
          const int64_t off = (((iv.kv_start + j0 + jj) * a.hkv + it.h) * D + static_cast<int64_t>(c) * E) * esize;
          kr[u] = __ldg(reinterpret_cast<const uint4*>(static_cast<const char*>(a.k) + off));
          vr[u] = __ldg(reinterpret_cast<const uint4*>(static_cast<const char*>(a.v) + off));
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int vi = base + u * kThreadsV2 + threadIdx.x;
        if (vi >= total) break;
        const int jj = vi / vpr, d0 = (vi % vpr) * E;
        const uint32_t kw[4] = {kr[u].x, kr[u].y, kr[u].z, kr[u].w};
        const uint32_t vw[4] = {vr[u].x, vr[u].y, vr[u].z, vr[u].w};
        float* kd = Ks + jj * (D + 1) + d0;
        float* vd = Vs + jj * D + d0;
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          if (a.dtype == DType::kF32) {
            kd[w] = __uint_as_float(kw[w]);
            vd[w] = __uint_as_float(vw[w]);
          } else if (a.dtype == DType::kF16) {  // element 2w is the low half of word w
            kd[2 * w] = HalfBitsToF32(kw[w] & 0xffffu);
            kd[2 * w + 1] = HalfBitsToF32(kw[w] >> 16);
            vd[2 * w] = HalfBitsToF32(vw[w] & 0xffffu);
            vd[2 * w + 1] = HalfBitsToF32(vw[w] >> 16);
          } else {  // bf16: the top half of an f32
            kd[2 * w] = __uint_as_float(kw[w] << 16);
            kd[2 * w + 1] = __uint_as_float(kw[w] & 0xffff0000u);
            vd[2 * w] = __uint_as_float(vw[w] << 16);
            vd[2 * w + 1] = __uint_as_float(vw[w] & 0xffff0000u);
          }
        }
      }
    }
  } else {
    StageKvElements(a, it, iv, j0, nb, Ks, Vs);
  }
}

// Shared memory of version 2, in floats: Q [kMaxRows][D], K [kBlockKeys][D + 1],
// V [kBlockKeys][D], S/P [kMaxRows][kBlockKeys + 1], alpha, m, l [kMaxRows].
inline size_t SmemFloatsV2(int D) {
  return static_cast<size_t>(kMaxRows) * D + kBlockKeys * (D + 1) + kBlockKeys * D + kMaxRows * (kBlockKeys + 1) + 3 * kMaxRows;
}

template <int kDChunks, bool kVec>  // head_dim <= 32 * kDChunks
__global__ void __launch_bounds__(kThreadsV2) AttentionKernelV2(KernelArgs a) {
  constexpr int kAcc = kMaxRows * 32 * kDChunks / kThreadsV2;  // (row, dim) pairs per thread
  constexpr int kSP = kBlockKeys + 1;                             // S/P row stride
  const int D = a.head_dim;
  extern __shared__ float smem[];
  float* Qs = smem;                           // [kMaxRows][D], pre-scaled
  float* Ks = Qs + kMaxRows * D;              // [kBlockKeys][D + 1]
  float* Vs = Ks + kBlockKeys * (D + 1);      // [kBlockKeys][D]
  float* Ps = Vs + kBlockKeys * D;            // [kMaxRows][kSP]: scores, then probabilities
  float* alpha_s = Ps + kMaxRows * kSP;       // [kMaxRows] rescale of the running output
  float* m_s = alpha_s + kMaxRows;            // [kMaxRows] final running max
  float* l_s = m_s + kMaxRows;                // [kMaxRows] final running sum

  const Item it = a.items[blockIdx.x];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const ItemView iv = ViewItem(a, it);
  const int R = iv.R;
  LoadQueryTile(a, it, iv, Qs);

  // Phase C state: warp w owns rows w, w + 4, w + 8, w + 12 (every lane holds the same m, l).
  constexpr int kRowsPerWarpV2 = kMaxRows / (kThreadsV2 / 32);
  float m[kRowsPerWarpV2], l[kRowsPerWarpV2];
#pragma unroll
  for (int i = 0; i < kRowsPerWarpV2; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
  }
  // Phase D state: thread t owns (row, dim) pairs e = t + kThreadsV2 * i, row e / D, dim e % D.
  float acc[kAcc];
#pragma unroll
  for (int i = 0; i < kAcc; ++i) acc[i] = 0.f;

  const int64_t k_end = ItemKeyEnd(a, it, iv);
  for (int64_t j0 = ItemKeyBegin(a, it, iv); j0 < k_end; j0 += kBlockKeys) {
    const int nb = static_cast<int>(min(static_cast<int64_t>(kBlockKeys), k_end - j0));
    __syncthreads();  // A: the previous block's V and P fully consumed (and Qs written, first time)
    StageKvV2<kVec>(a, it, iv, j0, nb, Ks, Vs);
    __syncthreads();
    // B: scores of (row, key) pairs; a warp shares its row (Q read broadcast) and lanes read
    // distinct K rows (padded stride D + 1: no bank conflicts).
    for (int e = threadIdx.x; e < R * kBlockKeys; e += kThreadsV2) {
      const int r = e / kBlockKeys, jj = e % kBlockKeys;
      float s = 0.f;
      if (jj < nb) {
        const float* qr = Qs + r * D;
        const float* kr = Ks + jj * (D + 1);
#pragma unroll 8
        for (int d = 0; d < D; ++d) s += qr[d] * kr[d];
        s = CapScore(a, s);
      }
      Ps[r * kSP + jj] = s;
    }
    __syncthreads();
    // C: online softmax, one warp per row, lane = key. Masked keys get p = 0; a row with nothing
    // visible so far keeps m = -inf, l = 0 and alpha = 1 (its output is still all zeros).
#pragma unroll
    for (int i = 0; i < kRowsPerWarpV2; ++i) {
      const int r = warp + i * (kThreadsV2 / 32);
      if (r >= R) break;  // warp-uniform
      const int64_t t = it.t0 + r / a.group;
      const bool visible = lane < nb && KeyVisible(a, iv, t, j0 + lane);
      const float s = visible ? Ps[r * kSP + lane] : -INFINITY;
      const float m_new = fmaxf(m[i], WarpMax(s));
      float p = 0.f, alpha = 1.f;
      if (m_new != -INFINITY) {
        p = visible ? __expf(s - m_new) : 0.f;
        alpha = m[i] == -INFINITY ? 0.f : __expf(m[i] - m_new);
        l[i] = l[i] * alpha + WarpSum(p);
        m[i] = m_new;
      }
      Ps[r * kSP + lane] = p;
      if (lane == 0) alpha_s[r] = alpha;
    }
    __syncthreads();
    // D: rescale and accumulate P V; a warp's pairs share a row (P read broadcast) over
    // consecutive dims (V read conflict-free).
#pragma unroll
    for (int i = 0; i < kAcc; ++i) {
      const int e = threadIdx.x + kThreadsV2 * i;
      if (e >= R * D) break;
      const int r = e / D, d = e % D;
      const float* pr = Ps + r * kSP;
      float x = acc[i] * alpha_s[r];
      for (int jj = 0; jj < nb; ++jj) {
        const float pj = pr[jj];
        if (pj != 0.f) x += pj * Vs[jj * D + d];  // as v1: masked keys add nothing, even Inf/NaN values
      }
      acc[i] = x;
    }
  }

  // Hand each row's m, l from its warp to the threads that own its outputs.
#pragma unroll
  for (int i = 0; i < kRowsPerWarpV2; ++i) {
    const int r = warp + i * (kThreadsV2 / 32);
    if (r < R && lane == 0) {
      m_s[r] = m[i];
      l_s[r] = l[i];
    }
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kAcc; ++i) {
    const int e = threadIdx.x + kThreadsV2 * i;
    if (e >= R * D) break;
    const int r = e / D, d = e % D;
    StoreRowOutput(a, it, iv, r, d, acc[i], m_s[r], l_s[r], d == 0);
  }
}

template <int kDChunks, bool kVec>
Status LaunchV2(const KernelArgs& a, int64_t num_items) {
  const size_t smem = sizeof(float) * SmemFloatsV2(a.head_dim);
  return LaunchItems(AttentionKernelV2<kDChunks, kVec>, kThreadsV2, smem, a, num_items, "AttentionKernelV2 launch");
}

// Version 1 or 2 for this call; 16-byte staging when K / V rows start on 16 bytes.
template <int kDChunks>
Status LaunchVersion(const KernelArgs& a, int64_t num_items) {
  if (ForceV1Kernels()) return Launch<kDChunks>(a, num_items);
  const int E = a.dtype == DType::kF32 ? 4 : 8;
  const bool vec = !a.quant && a.head_dim % E == 0 && (reinterpret_cast<uintptr_t>(a.k) & 15u) == 0 &&
                   (reinterpret_cast<uintptr_t>(a.v) & 15u) == 0;
  return vec ? LaunchV2<kDChunks, true>(a, num_items) : LaunchV2<kDChunks, false>(a, num_items);
}

int NumSMs(int device) {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  return sms > 0 ? sms : 80;
}

}  // namespace

// Plans the work items of p (tiles of up to kMaxRows rows, split-KV) on the host.
Status PlanAttention(const AttentionParams& p, AttentionPlan* plan) {
  const int G = p.num_qo_heads / p.num_kv_heads;
  if (G > kMaxRows) {
    return Status::InvalidArgument("attention (cuda): numQoHeads / numKvHeads must be <= " + std::to_string(kMaxRows) +
                                   "; received " + std::to_string(G));
  }
  plan->words = 0;
  plan->tree_mask.clear();
  std::vector<int32_t> depths;
  if (p.mask == MaskMode::kTree) {
    CANOPY_RETURN_IF_ERROR(BuildTreeMask(p.qo_indptr, p.batch_size, p.tree_parents, &plan->tree_mask, &plan->words, &depths));
  }
  // Positions depend only on the batch's shapes: resolved always (a forward pass plans once
  // for layers with and without a window).
  ResolveQueryPositions(p, depths.empty() ? nullptr : depths.data(), &plan->q_pos);
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
  int device = 0;
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  plan->splits = p.num_splits > 0 ? p.num_splits
                                  : (base.empty() ? 1 : ChooseNumSplits(static_cast<int64_t>(base.size()), max_kv, NumSMs(device) * 4, 256));
  plan->items.clear();
  if (plan->splits == 1) {
    for (const Item& w : base) plan->items.push_back({w.b, w.h, w.t0, w.t1, w.k0, w.k1, w.split});
  } else {
    for (const Item& w : base) {
      int64_t chunk = (w.k1 + plan->splits - 1) / plan->splits;
      chunk = (chunk + kBlockKeys - 1) / kBlockKeys * kBlockKeys;
      for (int32_t s = 0; s < plan->splits; ++s) {
        const int64_t k0 = std::min<int64_t>(w.k1, s * chunk);
        plan->items.push_back({w.b, w.h, w.t0, w.t1, k0, std::min<int64_t>(w.k1, k0 + chunk), s});
      }
    }
  }
  if (plan->items.size() > 0x7fffffffu) return Status::InvalidArgument("attention: too many work items");
  return Status::Ok();
}

namespace {

// fp8 (e4m3) caches need the hardware conversion of compute capability 8.9+.
Status CheckFp8Device(const AttentionParams& p) {
  if (p.kv_quant == nullptr || p.kv_quant->format != KvFormat::kFp8) return Status::Ok();
  int device = 0, major = 0, minor = 0;
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major * 10 + minor < 89) {
    return Status::CudaUnavailable("attention: fp8 (e4m3) KV caches need compute capability 8.9 or newer; device " +
                                   std::to_string(device) + " has " + std::to_string(major) + "." + std::to_string(minor));
  }
  return Status::Ok();
}

}  // namespace

Status BuildAttentionUpload(const AttentionParams& p, const AttentionPlan& plan, int32_t slot0, AttentionUpload* up) {
  std::vector<Item> items(plan.items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const AttentionPlanItem& w = plan.items[i];
    items[i] = {w.b, w.h, w.t0, w.t1, w.k0, w.k1, slot0 + w.split};
  }
  const bool quant_arrays = p.kv_quant != nullptr && p.kv_quant->format == KvFormat::kInt4;
  const size_t b1 = p.batch_size + 1;
  up->has_lens = p.kv_lens != nullptr;
  up->has_mask = !plan.tree_mask.empty();
  up->has_quant_lens = quant_arrays && p.kv_quant_lens != nullptr;
  up->has_res_start = quant_arrays && p.kv_res_start != nullptr;
  WorkspaceLayout layout;
  up->off_items = layout.Add(items.size() * sizeof(Item));
  up->off_qo = layout.Add(b1 * sizeof(int32_t));
  up->off_kv = layout.Add(b1 * sizeof(int32_t));
  up->off_lens = layout.Add(up->has_lens ? p.batch_size * sizeof(int32_t) : 0);
  up->off_mask = layout.Add(plan.tree_mask.size() * sizeof(uint32_t));
  up->off_quant_lens = layout.Add(up->has_quant_lens ? p.batch_size * sizeof(int32_t) : 0);
  up->off_res_start = layout.Add(up->has_res_start ? p.batch_size * sizeof(int32_t) : 0);
  up->has_kv_pos = p.kv_pos != nullptr;
  up->off_q_pos = layout.Add(plan.q_pos.size() * sizeof(int32_t));
  up->off_kv_pos = layout.Add(up->has_kv_pos ? p.batch_size * sizeof(int32_t) : 0);
  up->bytes.assign(layout.size(), 0);
  char* h = up->bytes.data();
  std::memcpy(h + up->off_items, items.data(), items.size() * sizeof(Item));
  std::memcpy(h + up->off_qo, p.qo_indptr, b1 * sizeof(int32_t));
  std::memcpy(h + up->off_kv, p.kv_indptr, b1 * sizeof(int32_t));
  if (up->has_lens) std::memcpy(h + up->off_lens, p.kv_lens, p.batch_size * sizeof(int32_t));
  if (up->has_mask) std::memcpy(h + up->off_mask, plan.tree_mask.data(), plan.tree_mask.size() * sizeof(uint32_t));
  if (up->has_quant_lens) std::memcpy(h + up->off_quant_lens, p.kv_quant_lens, p.batch_size * sizeof(int32_t));
  if (up->has_res_start) std::memcpy(h + up->off_res_start, p.kv_res_start, p.batch_size * sizeof(int32_t));
  if (!plan.q_pos.empty()) std::memcpy(h + up->off_q_pos, plan.q_pos.data(), plan.q_pos.size() * sizeof(int32_t));
  if (up->has_kv_pos) std::memcpy(h + up->off_kv_pos, p.kv_pos, p.batch_size * sizeof(int32_t));
  up->num_items = static_cast<int64_t>(items.size());
  return Status::Ok();
}

Status LaunchAttentionUploaded(const AttentionParams& p, const AttentionPlan& plan, const AttentionUpload& up,
                               const char* dev, int32_t num_slots, float* part_o, float* part_lse, bool merge) {
  if (up.num_items == 0) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckFp8Device(p));
  KernelArgs a;
  a.q = p.q;
  a.k = p.k;
  a.v = p.v;
  a.o = p.o;
  a.lse = p.lse;
  a.dtype = p.dtype;
  a.hq = p.num_qo_heads;
  a.hkv = p.num_kv_heads;
  a.group = p.num_qo_heads / p.num_kv_heads;
  a.head_dim = p.head_dim;
  a.mask = p.mask;
  a.scale = p.scale;
  a.items = reinterpret_cast<const Item*>(dev + up.off_items);
  a.qo_indptr = reinterpret_cast<const int32_t*>(dev + up.off_qo);
  a.kv_indptr = reinterpret_cast<const int32_t*>(dev + up.off_kv);
  a.kv_lens = up.has_lens ? reinterpret_cast<const int32_t*>(dev + up.off_lens) : nullptr;
  a.tree_mask = up.has_mask ? reinterpret_cast<const uint32_t*>(dev + up.off_mask) : nullptr;
  a.mask_words = plan.words;
  a.num_slots = num_slots;
  a.part_o = part_o;
  a.part_lse = part_lse;
  a.quant = p.kv_quant != nullptr;
  if (a.quant) a.kvq = *p.kv_quant;
  a.quant_lens = up.has_quant_lens ? reinterpret_cast<const int32_t*>(dev + up.off_quant_lens) : nullptr;
  a.res_start = up.has_res_start ? reinterpret_cast<const int32_t*>(dev + up.off_res_start) : nullptr;
  a.softcap = p.softcap;
  a.window = p.window;
  a.q_pos = reinterpret_cast<const int32_t*>(dev + up.off_q_pos);
  a.kv_pos = up.has_kv_pos ? reinterpret_cast<const int32_t*>(dev + up.off_kv_pos) : nullptr;

  const int64_t n = up.num_items;
  Status st;
  switch ((p.head_dim + 31) / 32) {
    case 1: st = LaunchVersion<1>(a, n); break;
    case 2: st = LaunchVersion<2>(a, n); break;
    case 3: st = LaunchVersion<3>(a, n); break;
    case 4: st = LaunchVersion<4>(a, n); break;
    case 5: st = LaunchVersion<5>(a, n); break;
    case 6: st = LaunchVersion<6>(a, n); break;
    case 7: st = LaunchVersion<7>(a, n); break;
    case 8: st = LaunchVersion<8>(a, n); break;
    default: return Status::InvalidArgument("attention: unsupported headDim");
  }
  CANOPY_RETURN_IF_ERROR(st);
  if (merge && num_slots > 0) {
    CANOPY_RETURN_IF_ERROR(MergePartials(part_o, part_lse, p.o, p.lse, p.dtype, p.total_q, num_slots, p.num_qo_heads, p.head_dim));
  }
  return Status::Ok();
}

// Launches a planned attention. num_slots == 0: writes p.o / p.lse (plan.splits must be 1).
// Else writes the f32 partial state of split s into slot slot0 + s of part_o / part_lse; when
// part_o is null the partials live in the workspace and are merged into p.o / p.lse here.
Status LaunchAttention(const AttentionParams& p, const AttentionPlan& plan, int32_t slot0, int32_t num_slots, float* part_o,
                       float* part_lse) {
  if (plan.items.empty()) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckFp8Device(p));
  AttentionUpload up;
  CANOPY_RETURN_IF_ERROR(BuildAttentionUpload(p, plan, slot0, &up));
  // One workspace: the upload image, then (when this call owns them) the split partials.
  WorkspaceLease ws;
  const size_t off_up = ws.Reserve(up.bytes.size());
  const bool own_partials = num_slots > 0 && part_o == nullptr;
  const size_t part_rows = own_partials ? static_cast<size_t>(p.total_q) * num_slots * p.num_qo_heads : 0;
  const size_t off_part_o = ws.Reserve(part_rows * p.head_dim * sizeof(float));
  const size_t off_part_lse = ws.Reserve(part_rows * sizeof(float));
  CANOPY_RETURN_IF_ERROR(ws.Acquire());
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(ws.At<char>(off_up), up.bytes.data(), up.bytes.size(), cudaMemcpyHostToDevice));
  float* po = own_partials ? ws.At<float>(off_part_o) : part_o;
  float* pl = own_partials ? ws.At<float>(off_part_lse) : part_lse;
  CANOPY_RETURN_IF_ERROR(LaunchAttentionUploaded(p, plan, up, ws.At<const char>(off_up), num_slots, po, pl, own_partials));
  // The workspace is reused by the next call: wait for the kernels before releasing it.
  CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return Status::Ok();
}

Status Attention(const AttentionParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckAttentionParams(p));
  AttentionPlan plan;
  CANOPY_RETURN_IF_ERROR(PlanAttention(p, &plan));
  if (plan.items.empty()) return Status::Ok();
  // Split-KV: f32 partials in the workspace, merged into o / lse by the launcher.
  return LaunchAttention(p, plan, 0, plan.splits == 1 ? 0 : plan.splits, nullptr, nullptr);
}

}  // namespace cuda
}  // namespace canopy
