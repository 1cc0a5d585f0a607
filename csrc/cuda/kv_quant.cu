// CUDA quantized-KV cache ops (layouts and math in csrc/common/kv_quant.h), version 1: simple
// SIMT kernels, correct first. The host expands each op into a list of per-row or per-group work
// units (the index arrays are host memory), uploads it, and one kernel processes it. The row
// quantizers are the host/device functions of kv_quant.h, so codes equal the CPU kernels' codes.
#include <cuda_runtime.h>

#include <cstring>
#include <mutex>
#include <vector>

#include "../common/kv_quant.h"
#include "../common/runtime.h"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kThreads = 128;

// Device copies of an op's host index arrays, in the kernel workspace (workspace.cuh: no
// cudaMalloc / cudaFree per call) with one copy. Holds WorkspaceMutex() from Put until
// destroyed, which is after the op's Finish has waited for its kernel.
class Uploads {
 public:
  template <typename A>
  Status Put(const std::vector<A>& a, const A** da) {
    const std::vector<char> none;
    const char* unused = nullptr;
    return Put(a, da, none, &unused);
  }
  template <typename A, typename B>
  Status Put(const std::vector<A>& a, const A** da, const std::vector<B>& b, const B** db) {
    const size_t oa = lease_.Reserve(a.size() * sizeof(A));
    const size_t ob = lease_.Reserve(b.size() * sizeof(B));
    CANOPY_RETURN_IF_ERROR(lease_.Acquire());
    std::vector<char> host(lease_.size());
    if (!a.empty()) std::memcpy(host.data() + oa, a.data(), a.size() * sizeof(A));
    if (!b.empty()) std::memcpy(host.data() + ob, b.data(), b.size() * sizeof(B));
    CANOPY_RETURN_IF_ERROR(CopyHostToDevice(lease_.device(), lease_.At<char>(0), host.data(), host.size()));
    *da = lease_.At<const A>(oa);
    *db = lease_.At<const B>(ob);
    return Status::Ok();
  }

 private:
  WorkspaceLease lease_;  // one Put per op (a second Acquire is refused)
};

Status Finish(const char* what) {
  CANOPY_RETURN_IF_ERROR(FromCudaError(cudaGetLastError(), what));
  return FromCudaError(cudaDeviceSynchronize(), what);
}

// One block per new token: dest[t] is its cache row (int8 / fp8) or ring row (int4).
__global__ void AppendKernel(QuantKvCache c, const float* k, const float* v, const int64_t* dest) {
  const int64_t t = blockIdx.x, row = dest[t];
  const int32_t H = c.num_kv_heads, D = c.head_dim;
  if (c.format == KvFormat::kInt4) {
    for (int64_t i = threadIdx.x; i < static_cast<int64_t>(H) * D; i += blockDim.x) {
      StoreFromF32(c.res_k, c.res_dtype, row * H * D + i, k[t * H * D + i]);
      StoreFromF32(c.res_v, c.res_dtype, row * H * D + i, v[t * H * D + i]);
    }
    return;
  }
  for (int32_t h = threadIdx.x; h < H; h += blockDim.x) {
    const int64_t rh = row * H + h;
    const float* kx = k + (t * H + h) * D;
    const float* vx = v + (t * H + h) * D;
    if (c.format == KvFormat::kInt8) {
      c.k_scale[rh] = QuantizeInt8Row(kx, 1, D, static_cast<int8_t*>(c.k) + rh * D);
      c.v_scale[rh] = QuantizeInt8Row(vx, 1, D, static_cast<int8_t*>(c.v) + rh * D);
    } else {
      c.k_scale[rh] = QuantizeFp8Row(kx, 1, D, static_cast<uint8_t*>(c.k) + rh * D);
      c.v_scale[rh] = QuantizeFp8Row(vx, 1, D, static_cast<uint8_t*>(c.v) + rh * D);
    }
  }
}

struct GroupUnit {
  int32_t layer;
  int64_t row0;       // first cache row of the group
  int64_t res_start;  // the sequence's ring
  int64_t first;      // first position of the group
};

__device__ __forceinline__ int64_t RingRow(const QuantKvCache& c, const GroupUnit& u, int32_t t) {
  return u.res_start + (u.first + t) % c.ring;
}

// One block per (layer, sequence, group): keys per channel pair, values per (token, head).
__global__ void QuantizeGroupsKernel(QuantKvCache c, const GroupUnit* units) {
  const GroupUnit u = units[blockIdx.x];
  const QuantKvCache L = QuantKvLayer(c, u.layer);
  const int32_t H = c.num_kv_heads, D = c.head_dim, G = c.group;
  const int64_t grp = u.row0 / G;
  for (int32_t i = threadIdx.x; i < H * (D / 2); i += blockDim.x) {
    const int32_t h = i / (D / 2), d = 2 * (i % (D / 2));
    float s[2], z[2];
    for (int e = 0; e < 2; ++e) {
      float lo = INFINITY, hi = -INFINITY;
      for (int32_t t = 0; t < G; ++t) {
        const float x = LoadAsF32(L.res_k, c.res_dtype, (RingRow(c, u, t) * H + h) * D + d + e);
        lo = fminf(lo, x);
        hi = fmaxf(hi, x);
      }
      z[e] = lo;
      s[e] = (hi - lo) / 15.f;
      L.k_scale[(grp * H + h) * D + d + e] = s[e];
      L.k_zero[(grp * H + h) * D + d + e] = z[e];
    }
    for (int32_t t = 0; t < G; ++t) {
      const int64_t src = (RingRow(c, u, t) * H + h) * D + d;
      const uint8_t c0 = Int4Code(LoadAsF32(L.res_k, c.res_dtype, src), s[0], z[0]);
      const uint8_t c1 = Int4Code(LoadAsF32(L.res_k, c.res_dtype, src + 1), s[1], z[1]);
      static_cast<uint8_t*>(L.k)[((u.row0 + t) * H + h) * (D / 2) + d / 2] = static_cast<uint8_t>(c0 | (c1 << 4));
    }
  }
  for (int32_t i = threadIdx.x; i < G * H; i += blockDim.x) {
    const int32_t t = i / H, h = i % H;
    const int64_t src = (RingRow(c, u, t) * H + h) * D, rh = (u.row0 + t) * H + h;
    float lo = INFINITY, hi = -INFINITY;
    for (int32_t d = 0; d < D; ++d) {
      const float x = LoadAsF32(L.res_v, c.res_dtype, src + d);
      lo = fminf(lo, x);
      hi = fmaxf(hi, x);
    }
    const float s = (hi - lo) / 15.f;
    L.v_scale[rh] = s;
    L.v_zero[rh] = lo;
    uint8_t* out = static_cast<uint8_t*>(L.v) + rh * (D / 2);
    for (int32_t d = 0; d < D; d += 2) {
      const uint8_t c0 = Int4Code(LoadAsF32(L.res_v, c.res_dtype, src + d), s, lo);
      const uint8_t c1 = Int4Code(LoadAsF32(L.res_v, c.res_dtype, src + d + 1), s, lo);
      out[d / 2] = static_cast<uint8_t>(c0 | (c1 << 4));
    }
  }
}

// One block per (layer, position) to restore: dequantized key/value into the ring row.
struct RestoreUnit {
  int32_t layer;
  int64_t start, quant_len, res_start, pos;
};

__global__ void RestoreKernel(QuantKvCache c, const RestoreUnit* units) {
  const RestoreUnit u = units[blockIdx.x];
  const QuantKvCache L = QuantKvLayer(c, u.layer);
  const int32_t H = c.num_kv_heads, D = c.head_dim;
  const int64_t ring_row = u.res_start + u.pos % c.ring;
  for (int32_t i = threadIdx.x; i < H * D; i += blockDim.x) {
    const int32_t h = i / D, d = i % D;
    StoreFromF32(L.res_k, c.res_dtype, ring_row * H * D + i, LoadQuantKv(L, false, u.start, u.quant_len, u.res_start, u.pos, h, d));
    StoreFromF32(L.res_v, c.res_dtype, ring_row * H * D + i, LoadQuantKv(L, true, u.start, u.quant_len, u.res_start, u.pos, h, d));
  }
}

// One block per (sequence, layer): its moves (dst, src rows: cache rows for int8 / fp8, ring
// rows for int4) in order, a barrier after each (a later move may overwrite a row read earlier).
__global__ void CommitKernel(QuantKvCache c, const int64_t* move_indptr, const int64_t* moves) {
  const QuantKvCache L = QuantKvLayer(c, blockIdx.y);
  const int64_t H = c.num_kv_heads, D = c.head_dim;
  for (int64_t m = move_indptr[blockIdx.x]; m < move_indptr[blockIdx.x + 1]; ++m) {
    const int64_t dst = moves[2 * m], src = moves[2 * m + 1];
    if (c.format == KvFormat::kInt4) {
      const int64_t bytes = H * D * ResElemBytes(c.res_dtype);
      char* rk = static_cast<char*>(L.res_k);
      char* rv = static_cast<char*>(L.res_v);
      for (int64_t i = threadIdx.x; i < bytes; i += blockDim.x) {
        rk[dst * bytes + i] = rk[src * bytes + i];
        rv[dst * bytes + i] = rv[src * bytes + i];
      }
    } else {
      char* k = static_cast<char*>(L.k);
      char* v = static_cast<char*>(L.v);
      for (int64_t i = threadIdx.x; i < H * D; i += blockDim.x) {
        k[dst * H * D + i] = k[src * H * D + i];
        v[dst * H * D + i] = v[src * H * D + i];
      }
      for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
        L.k_scale[dst * H + i] = L.k_scale[src * H + i];
        L.v_scale[dst * H + i] = L.v_scale[src * H + i];
      }
    }
    __syncthreads();
  }
}

struct DequantRow {
  int64_t start, quant_len, res_start, pos;
};

__global__ void DequantizeKernel(QuantKvCache c, const DequantRow* rows, float* k_out, float* v_out) {
  const int64_t r = blockIdx.x;
  const DequantRow u = rows[r];
  const int32_t H = c.num_kv_heads, D = c.head_dim;
  for (int32_t i = threadIdx.x; i < H * D; i += blockDim.x) {
    const int32_t h = i / D, d = i % D;
    k_out[r * H * D + i] = LoadQuantKv(c, false, u.start, u.quant_len, u.res_start, u.pos, h, d);
    v_out[r * H * D + i] = LoadQuantKv(c, true, u.start, u.quant_len, u.res_start, u.pos, h, d);
  }
}

Status CheckGrid(int64_t blocks, const char* op) {
  if (blocks > 0x7fffffff) return Status::InvalidArgument(std::string(op) + ": too many rows for one launch");
  return Status::Ok();
}

}  // namespace

Status AppendQuantKv(const QuantKvCache& c, const QuantAppendParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckQuantAppend(c, p));
  if (p.n == 0) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckGrid(p.n, "appendKv"));
  std::vector<int64_t> dest(static_cast<size_t>(p.n));
  for (int32_t b = 0; b < p.seqs.batch; ++b) {
    for (int32_t t = p.qo_indptr[b]; t < p.qo_indptr[b + 1]; ++t) {
      const int64_t j = p.pos_before[b] + (t - p.qo_indptr[b]);
      dest[t] = c.format == KvFormat::kInt4 ? p.seqs.res_start[b] + j % c.ring : p.seqs.kv_start[b] + j;
    }
  }
  Uploads up;
  const int64_t* d_dest = nullptr;
  CANOPY_RETURN_IF_ERROR(up.Put(dest, &d_dest));
  AppendKernel<<<static_cast<unsigned>(p.n), kThreads>>>(c, p.k, p.v, d_dest);
  return Finish("appendKv kernel");
}

Status QuantizeKvGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to) {
  CANOPY_RETURN_IF_ERROR(CheckQuantGroups(c, b, from, to, false));
  std::vector<GroupUnit> units;
  for (int32_t l = 0; l < c.layers; ++l)
    for (int32_t s = 0; s < b.batch; ++s)
      for (int64_t j = from[s]; j < to[s]; j += c.group) units.push_back({l, b.kv_start[s] + j, b.res_start[s], j});
  if (units.empty()) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckGrid(static_cast<int64_t>(units.size()), "quantizeKvGroups"));
  Uploads up;
  const GroupUnit* d_units = nullptr;
  CANOPY_RETURN_IF_ERROR(up.Put(units, &d_units));
  QuantizeGroupsKernel<<<static_cast<unsigned>(units.size()), kThreads>>>(c, d_units);
  return Finish("quantizeKvGroups kernel");
}

Status RestoreKvGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to) {
  CANOPY_RETURN_IF_ERROR(CheckQuantGroups(c, b, from, to, true));
  std::vector<RestoreUnit> units;
  for (int32_t l = 0; l < c.layers; ++l)
    for (int32_t s = 0; s < b.batch; ++s)
      for (int64_t j = from[s]; j < to[s]; ++j) units.push_back({l, b.kv_start[s], to[s], b.res_start[s], j});
  if (units.empty()) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckGrid(static_cast<int64_t>(units.size()), "restoreKvGroups"));
  Uploads up;
  const RestoreUnit* d_units = nullptr;
  CANOPY_RETURN_IF_ERROR(up.Put(units, &d_units));
  RestoreKernel<<<static_cast<unsigned>(units.size()), kThreads>>>(c, d_units);
  return Finish("restoreKvGroups kernel");
}

Status CommitQuantKv(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* prefix_lens, const int32_t* tree_indptr,
                     const int32_t* accepted_count, const int32_t* accepted_nodes, int64_t num_nodes, int32_t* new_lens) {
  CANOPY_RETURN_IF_ERROR(CheckQuantCommit(c, b, prefix_lens, tree_indptr, accepted_count, accepted_nodes, num_nodes));
  if (c.layers > 65535) return Status::InvalidArgument("commitKv: at most 65535 layers");
  // move_indptr [B+1], then (dst, src) pairs.
  std::vector<int64_t> indptr(static_cast<size_t>(b.batch) + 1, 0), moves;
  for (int32_t s = 0; s < b.batch; ++s) {
    const int32_t* nodes = accepted_nodes + tree_indptr[s];
    for (int32_t j = 0; j < accepted_count[s]; ++j) {
      if (nodes[j] == j) continue;
      const int64_t dst = prefix_lens[s] + j, src = prefix_lens[s] + nodes[j];
      if (c.format == KvFormat::kInt4) {
        moves.push_back(b.res_start[s] + dst % c.ring);
        moves.push_back(b.res_start[s] + src % c.ring);
      } else {
        moves.push_back(b.kv_start[s] + dst);
        moves.push_back(b.kv_start[s] + src);
      }
    }
    indptr[s + 1] = static_cast<int64_t>(moves.size() / 2);
  }
  if (!moves.empty()) {
    Uploads up;
    const int64_t *d_indptr = nullptr, *d_moves = nullptr;
    CANOPY_RETURN_IF_ERROR(up.Put(indptr, &d_indptr, moves, &d_moves));
    CommitKernel<<<dim3(static_cast<unsigned>(b.batch), static_cast<unsigned>(c.layers)), 256>>>(c, d_indptr, d_moves);
    CANOPY_RETURN_IF_ERROR(Finish("commitKv kernel"));
  }
  for (int32_t s = 0; s < b.batch; ++s) new_lens[s] = prefix_lens[s] + accepted_count[s];
  return Status::Ok();
}

Status DequantizeKv(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* kv_lens, const int32_t* quant_lens, float* k_out,
                    float* v_out) {
  CANOPY_RETURN_IF_ERROR(CheckDequantizeKv(c, b, kv_lens, quant_lens));
  std::vector<DequantRow> rows;
  for (int32_t s = 0; s < b.batch; ++s) {
    const int64_t ql = quant_lens ? quant_lens[s] : kv_lens[s];
    const int64_t rs = c.format == KvFormat::kInt4 ? b.res_start[s] : 0;
    for (int64_t j = 0; j < kv_lens[s]; ++j) rows.push_back({b.kv_start[s], ql, rs, j});
  }
  if (rows.empty()) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(CheckGrid(static_cast<int64_t>(rows.size()), "dequantizeKv"));
  Uploads up;
  const DequantRow* d_rows = nullptr;
  CANOPY_RETURN_IF_ERROR(up.Put(rows, &d_rows));
  DequantizeKernel<<<static_cast<unsigned>(rows.size()), kThreads>>>(c, d_rows, k_out, v_out);
  return Finish("dequantizeKv kernel");
}

}  // namespace cuda
}  // namespace canopy
