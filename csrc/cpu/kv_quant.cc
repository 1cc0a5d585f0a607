// CPU quantized-KV cache ops (layouts and math in csrc/common/kv_quant.h): append (quantize
// int8/fp8 rows, or write the int4 residual ring), quantize completed int4 groups, restore
// groups into the ring, tree commit, and the reference dequantization.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../common/kv_quant.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {
namespace {

// Writes the int4 codes of `D` channels into a packed row (channel 2i low nibble, 2i+1 high).
void PackInt4Row(const uint8_t* codes, int32_t D, uint8_t* out) {
  for (int32_t d = 0; d < D; d += 2) out[d / 2] = static_cast<uint8_t>(codes[d] | (codes[d + 1] << 4));
}

// Quantizes one value row (D channels of a head) to int4: codes, scale, zero.
void QuantizeInt4ValueRow(const float* x, int32_t D, uint8_t* packed, float* scale, float* zero) {
  uint8_t codes[256];
  float z;
  const float s = Int4Params(x, 1, D, &z);
  for (int32_t d = 0; d < D; ++d) codes[d] = Int4Code(x[d], s, z);
  PackInt4Row(codes, D, packed);
  *scale = s;
  *zero = z;
}

}  // namespace

Status AppendQuantKv(const QuantKvCache& c, const QuantAppendParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckQuantAppend(c, p));
  const int32_t H = c.num_kv_heads, D = c.head_dim;
  std::vector<int32_t> seq_of(static_cast<size_t>(p.n));
  for (int32_t b = 0; b < p.seqs.batch; ++b)
    for (int32_t t = p.qo_indptr[b]; t < p.qo_indptr[b + 1]; ++t) seq_of[t] = b;
  ParallelFor(p.n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int32_t b = seq_of[t];
      const int64_t j = p.pos_before[b] + (t - p.qo_indptr[b]);
      for (int32_t h = 0; h < H; ++h) {
        const float* kx = p.k + (t * H + h) * D;
        const float* vx = p.v + (t * H + h) * D;
        if (c.format == KvFormat::kInt4) {
          const int64_t row = p.seqs.res_start[b] + j % c.ring;
          for (int32_t d = 0; d < D; ++d) {
            StoreFromF32(c.res_k, c.res_dtype, (row * H + h) * D + d, kx[d]);
            StoreFromF32(c.res_v, c.res_dtype, (row * H + h) * D + d, vx[d]);
          }
          continue;
        }
        const int64_t row = p.seqs.kv_start[b] + j;
        const int64_t at = (row * H + h) * D;
        if (c.format == KvFormat::kInt8) {
          c.k_scale[row * H + h] = QuantizeInt8Row(kx, 1, D, static_cast<int8_t*>(c.k) + at);
          c.v_scale[row * H + h] = QuantizeInt8Row(vx, 1, D, static_cast<int8_t*>(c.v) + at);
        } else {
          c.k_scale[row * H + h] = QuantizeFp8Row(kx, 1, D, static_cast<uint8_t*>(c.k) + at);
          c.v_scale[row * H + h] = QuantizeFp8Row(vx, 1, D, static_cast<uint8_t*>(c.v) + at);
        }
      }
    }
  });
  return Status::Ok();
}

Status QuantizeKvGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to) {
  CANOPY_RETURN_IF_ERROR(CheckQuantGroups(c, b, from, to, false));
  const int32_t H = c.num_kv_heads, D = c.head_dim, G = c.group;
  // Work units: (layer, sequence, group).
  struct Unit {
    int32_t layer, seq;
    int64_t first;  // first position of the group
  };
  std::vector<Unit> units;
  for (int32_t l = 0; l < c.layers; ++l)
    for (int32_t s = 0; s < b.batch; ++s)
      for (int64_t j = from[s]; j < to[s]; j += G) units.push_back({l, s, j});
  ParallelFor(static_cast<int64_t>(units.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kx(static_cast<size_t>(G) * H * D), vx(static_cast<size_t>(G) * H * D);
    std::vector<uint8_t> codes(static_cast<size_t>(G) * D);
    for (int64_t u = begin; u < end; ++u) {
      const Unit& w = units[u];
      const QuantKvCache L = QuantKvLayer(c, w.layer);
      // Gather the group's keys and values from the ring (they may wrap around it).
      for (int32_t t = 0; t < G; ++t) {
        const int64_t ring_row = b.res_start[w.seq] + (w.first + t) % c.ring;
        for (int64_t i = 0; i < static_cast<int64_t>(H) * D; ++i) {
          kx[t * H * D + i] = LoadAsF32(L.res_k, c.res_dtype, ring_row * H * D + i);
          vx[t * H * D + i] = LoadAsF32(L.res_v, c.res_dtype, ring_row * H * D + i);
        }
      }
      const int64_t row0 = b.kv_start[w.seq] + w.first;  // first cache row of the group
      const int64_t grp = row0 / G;
      uint8_t* kcodes = static_cast<uint8_t*>(L.k);
      uint8_t* vcodes = static_cast<uint8_t*>(L.v);
      for (int32_t h = 0; h < H; ++h) {
        // Keys: per channel over the G tokens.
        for (int32_t d = 0; d < D; ++d) {
          float z;
          const float* col = kx.data() + h * D + d;
          const float s = Int4Params(col, static_cast<int64_t>(H) * D, G, &z);
          L.k_scale[(grp * H + h) * D + d] = s;
          L.k_zero[(grp * H + h) * D + d] = z;
          for (int32_t t = 0; t < G; ++t) codes[t * D + d] = Int4Code(col[t * H * D], s, z);
        }
        for (int32_t t = 0; t < G; ++t) PackInt4Row(codes.data() + t * D, D, kcodes + ((row0 + t) * H + h) * (D / 2));
        // Values: per token over the head's D channels.
        for (int32_t t = 0; t < G; ++t) {
          const int64_t row = row0 + t;
          QuantizeInt4ValueRow(vx.data() + (t * H + h) * D, D, vcodes + (row * H + h) * (D / 2), &L.v_scale[row * H + h],
                               &L.v_zero[row * H + h]);
        }
      }
    }
  });
  return Status::Ok();
}

Status RestoreKvGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to) {
  CANOPY_RETURN_IF_ERROR(CheckQuantGroups(c, b, from, to, true));
  const int32_t H = c.num_kv_heads, D = c.head_dim;
  ParallelFor(static_cast<int64_t>(c.layers) * b.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int32_t l = static_cast<int32_t>(u / b.batch), s = static_cast<int32_t>(u % b.batch);
      const QuantKvCache L = QuantKvLayer(c, l);
      for (int64_t j = from[s]; j < to[s]; ++j) {
        const int64_t ring_row = b.res_start[s] + j % c.ring;
        for (int32_t h = 0; h < H; ++h) {
          for (int32_t d = 0; d < D; ++d) {
            // quant_len = to[s]: position j reads its packed codes.
            const float kx = LoadQuantKv(L, false, b.kv_start[s], to[s], b.res_start[s], j, h, d);
            const float vx = LoadQuantKv(L, true, b.kv_start[s], to[s], b.res_start[s], j, h, d);
            StoreFromF32(L.res_k, c.res_dtype, (ring_row * H + h) * D + d, kx);
            StoreFromF32(L.res_v, c.res_dtype, (ring_row * H + h) * D + d, vx);
          }
        }
      }
    }
  });
  return Status::Ok();
}

Status CommitQuantKv(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* prefix_lens, const int32_t* tree_indptr,
                     const int32_t* accepted_count, const int32_t* accepted_nodes, int64_t num_nodes, int32_t* new_lens) {
  CANOPY_RETURN_IF_ERROR(CheckQuantCommit(c, b, prefix_lens, tree_indptr, accepted_count, accepted_nodes, num_nodes));
  const int32_t H = c.num_kv_heads, D = c.head_dim;
  ParallelFor(static_cast<int64_t>(c.layers) * b.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int32_t l = static_cast<int32_t>(u / b.batch), s = static_cast<int32_t>(u % b.batch);
      const QuantKvCache L = QuantKvLayer(c, l);
      const int32_t* nodes = accepted_nodes + tree_indptr[s];
      for (int32_t j = 0; j < accepted_count[s]; ++j) {
        if (nodes[j] == j) continue;  // increasing j never overwrites a source not yet read
        const int64_t dst = prefix_lens[s] + j, src = prefix_lens[s] + nodes[j];
        if (c.format == KvFormat::kInt4) {
          const int64_t bytes = static_cast<int64_t>(H) * D * DTypeSize(c.res_dtype);
          const int64_t rd = b.res_start[s] + dst % c.ring, rs = b.res_start[s] + src % c.ring;
          std::memcpy(static_cast<char*>(L.res_k) + rd * bytes, static_cast<char*>(L.res_k) + rs * bytes, bytes);
          std::memcpy(static_cast<char*>(L.res_v) + rd * bytes, static_cast<char*>(L.res_v) + rs * bytes, bytes);
        } else {
          const int64_t rd = b.kv_start[s] + dst, rs = b.kv_start[s] + src;
          const int64_t bytes = static_cast<int64_t>(H) * D;
          std::memcpy(static_cast<char*>(L.k) + rd * bytes, static_cast<char*>(L.k) + rs * bytes, bytes);
          std::memcpy(static_cast<char*>(L.v) + rd * bytes, static_cast<char*>(L.v) + rs * bytes, bytes);
          std::memcpy(L.k_scale + rd * H, L.k_scale + rs * H, H * sizeof(float));
          std::memcpy(L.v_scale + rd * H, L.v_scale + rs * H, H * sizeof(float));
        }
      }
    }
  });
  for (int32_t s = 0; s < b.batch; ++s) new_lens[s] = prefix_lens[s] + accepted_count[s];
  return Status::Ok();
}

Status DequantizeKv(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* kv_lens, const int32_t* quant_lens, float* k_out,
                    float* v_out) {
  CANOPY_RETURN_IF_ERROR(CheckQuantKvCache(c));
  CANOPY_RETURN_IF_ERROR(CheckQuantKvBatch(c, b, "dequantizeKv"));
  const int32_t H = c.num_kv_heads, D = c.head_dim;
  CANOPY_RETURN_IF_ERROR(CheckDequantizeKv(c, b, kv_lens, quant_lens));
  std::vector<int64_t> out_start(static_cast<size_t>(b.batch) + 1, 0);
  for (int32_t s = 0; s < b.batch; ++s) out_start[s + 1] = out_start[s] + kv_lens[s];
  ParallelFor(out_start[b.batch], 64, [&](int64_t begin, int64_t end) {
    int32_t s = 0;
    for (int64_t r = begin; r < end; ++r) {
      while (r >= out_start[s + 1]) ++s;
      const int64_t j = r - out_start[s];
      const int64_t ql = quant_lens ? quant_lens[s] : kv_lens[s];
      const int64_t rs = c.format == KvFormat::kInt4 ? b.res_start[s] : 0;
      for (int32_t h = 0; h < H; ++h) {
        for (int32_t d = 0; d < D; ++d) {
          k_out[(r * H + h) * D + d] = LoadQuantKv(c, false, b.kv_start[s], ql, rs, j, h, d);
          v_out[(r * H + h) * D + d] = LoadQuantKv(c, true, b.kv_start[s], ql, rs, j, h, d);
        }
      }
    }
  });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
