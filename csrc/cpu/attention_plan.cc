// Host-side planning shared by the CPU and CUDA attention kernels: argument
// checks, tree ancestor masks, and the split-KV heuristic.
#include <algorithm>
#include <cmath>
#include <string>

#include "../common/attention.h"

namespace canopy {

Status CheckAttentionParams(const AttentionParams& p) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("attention: " + m); };
  if (!IsFloatDType(p.dtype)) return bad(std::string("dtype must be f32, f16 or bf16; received ") + DTypeName(p.dtype));
  if (p.batch_size < 0) return bad("batch size must be >= 0");
  if (p.num_qo_heads <= 0 || p.num_kv_heads <= 0) {
    return bad("numQoHeads and numKvHeads must be positive; received " + std::to_string(p.num_qo_heads) + " and " +
               std::to_string(p.num_kv_heads));
  }
  if (p.num_qo_heads % p.num_kv_heads != 0) {
    return bad("numQoHeads must be a multiple of numKvHeads; received " + std::to_string(p.num_qo_heads) + " and " +
               std::to_string(p.num_kv_heads));
  }
  if (p.head_dim < 1 || p.head_dim > 256) {
    return bad("headDim must be in [1, 256]; received " + std::to_string(p.head_dim));
  }
  if (!std::isfinite(p.scale) || p.scale == 0.f) return bad("scale must be finite and non-zero");
  if (p.qo_indptr == nullptr || p.kv_indptr == nullptr) return bad("qoIndptr and kvIndptr are required");
  if (p.qo_indptr[0] != 0) return bad("qoIndptr[0] must be 0; received " + std::to_string(p.qo_indptr[0]));
  for (int b = 0; b < p.batch_size; ++b) {
    if (p.qo_indptr[b + 1] < p.qo_indptr[b]) return bad("qoIndptr must be non-decreasing (at " + std::to_string(b + 1) + ")");
    if (p.kv_indptr[b] < 0 || p.kv_indptr[b + 1] < p.kv_indptr[b]) {
      return bad("kvIndptr must be non-negative and non-decreasing (at " + std::to_string(b + 1) + ")");
    }
    const int64_t len = KvLen(p, b);
    if (len < 0 || p.kv_indptr[b] + len > p.kv_rows) {
      return bad("sequence " + std::to_string(b) + " reads keys [" + std::to_string(p.kv_indptr[b]) + ", " +
                 std::to_string(p.kv_indptr[b] + len) + ") but k and v hold " + std::to_string(p.kv_rows) + " rows");
    }
    if (p.mask == MaskMode::kTree) {
      const int32_t n = p.qo_indptr[b + 1] - p.qo_indptr[b];
      if (n > len) {
        return bad("sequence " + std::to_string(b) + " has " + std::to_string(n) + " tree nodes but only " +
                   std::to_string(len) + " keys (the tree nodes' keys must follow the prefix)");
      }
    }
  }
  if (p.qo_indptr[p.batch_size] != p.total_q) {
    return bad("qoIndptr[batch] must equal the number of query rows " + std::to_string(p.total_q) + "; received " +
               std::to_string(p.qo_indptr[p.batch_size]));
  }
  if (p.kv_lens == nullptr && p.kv_indptr[p.batch_size] > p.kv_rows) {
    return bad("kvIndptr[batch] must be <= the number of key rows " + std::to_string(p.kv_rows));
  }
  if (p.mask == MaskMode::kTree) {
    if (p.tree_parents == nullptr) return bad("tree attention needs parents");
    for (int b = 0; b < p.batch_size; ++b) {
      const int32_t start = p.qo_indptr[b], n = p.qo_indptr[b + 1] - start;
      for (int32_t t = 0; t < n; ++t) {
        const int32_t par = p.tree_parents[start + t];
        if (par < -1 || par >= t) {
          return bad("parents[" + std::to_string(start + t) + "] must be -1 or the index of an earlier node of its tree (0.." +
                     std::to_string(t - 1) + "); received " + std::to_string(par));
        }
      }
    }
  }
  if (p.num_splits < 0) return bad("numSplits must be >= 0");
  if (!(p.softcap >= 0.f) || !std::isfinite(p.softcap)) {
    return bad("softcap must be finite and >= 0 (0 = off); received " + std::to_string(p.softcap));
  }
  if (p.window < 0) return bad("window must be >= 0 (0 = off); received " + std::to_string(p.window));
  if (p.kv_quant != nullptr) CANOPY_RETURN_IF_ERROR(CheckQuantAttention(p));
  return Status::Ok();
}

Status CheckQuantAttention(const AttentionParams& p) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("attention: " + m); };
  const QuantKvCache& c = *p.kv_quant;
  CANOPY_RETURN_IF_ERROR(CheckQuantKvCache(c));
  if (c.layers != 1) return bad("the quantized cache view must be a single layer");
  if (c.num_kv_heads != p.num_kv_heads || c.head_dim != p.head_dim) {
    return bad("the quantized cache has " + std::to_string(c.num_kv_heads) + " kv heads of " + std::to_string(c.head_dim) +
               " dims; q expects " + std::to_string(p.num_kv_heads) + " of " + std::to_string(p.head_dim));
  }
  if (p.kv_rows != c.rows) return bad("kv_rows must be the quantized cache's rows " + std::to_string(c.rows));
  if (c.format != KvFormat::kInt4) return Status::Ok();
  for (int b = 0; b < p.batch_size; ++b) {
    const int64_t len = KvLen(p, b);
    if (p.kv_indptr[b] % c.group != 0) {
      return bad("kvIndptr[" + std::to_string(b) + "] must be a multiple of the int4 group " + std::to_string(c.group) +
                 "; received " + std::to_string(p.kv_indptr[b]));
    }
    if (p.kv_quant_lens == nullptr) continue;  // every key quantized
    const int64_t ql = p.kv_quant_lens[b];
    if (ql < 0 || ql > len || ql % c.group != 0) {
      return bad("quantLens[" + std::to_string(b) + "] must be a multiple of " + std::to_string(c.group) + " in [0, " +
                 std::to_string(len) + "]; received " + std::to_string(ql));
    }
    if (len - ql > c.ring) {
      return bad("sequence " + std::to_string(b) + " has " + std::to_string(len - ql) +
                 " unquantized keys but the residual ring holds " + std::to_string(c.ring));
    }
    if (len > ql) {
      if (p.kv_res_start == nullptr) return bad("int4 with residual keys needs resStart");
      if (p.kv_res_start[b] < 0 || p.kv_res_start[b] + static_cast<int64_t>(c.ring) > c.res_rows) {
        return bad("resStart[" + std::to_string(b) + "] must be in [0, " + std::to_string(c.res_rows - c.ring) + "]; received " +
                   std::to_string(p.kv_res_start[b]));
      }
    }
  }
  return Status::Ok();
}

Status BuildTreeMask(const int32_t* qo_indptr, int32_t batch_size, const int32_t* parents, std::vector<uint32_t>* mask,
                     int32_t* words, std::vector<int32_t>* depths) {
  int32_t max_n = 0;
  for (int b = 0; b < batch_size; ++b) max_n = std::max(max_n, qo_indptr[b + 1] - qo_indptr[b]);
  const int32_t w = std::max(1, (max_n + 31) / 32);
  const int64_t total = qo_indptr[batch_size];
  mask->assign(static_cast<size_t>(total) * w, 0u);
  depths->assign(static_cast<size_t>(total), 0);
  for (int b = 0; b < batch_size; ++b) {
    const int32_t start = qo_indptr[b], n = qo_indptr[b + 1] - start;
    for (int32_t t = 0; t < n; ++t) {
      const int32_t par = parents[start + t];
      if (par < -1 || par >= t) return Status::InvalidArgument("tree parents must be topologically ordered");
      uint32_t* row = mask->data() + static_cast<size_t>(start + t) * w;
      if (par >= 0) {
        const uint32_t* prow = mask->data() + static_cast<size_t>(start + par) * w;
        std::copy(prow, prow + w, row);
        (*depths)[start + t] = (*depths)[start + par] + 1;
      }
      row[t / 32] |= 1u << (t % 32);
    }
  }
  *words = w;
  return Status::Ok();
}

void ResolveQueryPositions(const AttentionParams& p, const int32_t* depths, std::vector<int32_t>* out) {
  out->assign(static_cast<size_t>(p.total_q), 0);
  for (int b = 0; b < p.batch_size; ++b) {
    const int32_t start = p.qo_indptr[b], n = p.qo_indptr[b + 1] - start;
    const int64_t base = (p.kv_pos ? p.kv_pos[b] : 0) + KvLen(p, b) - n;  // position of key `prefix`
    for (int32_t t = 0; t < n; ++t) {
      const int32_t r = start + t;
      if (p.q_pos != nullptr) {
        (*out)[r] = p.q_pos[r];
      } else {
        (*out)[r] = static_cast<int32_t>(base + (p.mask == MaskMode::kTree && depths != nullptr ? depths[r] : t));
      }
    }
  }
}

int32_t ChooseNumSplits(int64_t work_items, int64_t max_kv_len, int64_t workers, int64_t min_chunk) {
  if (work_items <= 0 || work_items >= workers) return 1;
  int64_t splits = (workers + work_items - 1) / work_items;
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, max_kv_len / std::max<int64_t>(1, min_chunk)));
  return static_cast<int32_t>(std::clamp<int64_t>(splits, 1, 128));
}

}  // namespace canopy
