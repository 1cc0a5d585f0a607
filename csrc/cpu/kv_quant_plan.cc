// Host-side checks shared by the CPU and CUDA quantized-KV kernels (csrc/common/kv_quant.h).
#include <string>

#include "../common/kv_quant.h"

namespace canopy {
namespace {

std::string S(int64_t v) { return std::to_string(v); }

}  // namespace

Status CheckQuantKvCache(const QuantKvCache& c) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("quantized KV cache: " + m); };
  if (c.format != KvFormat::kInt8 && c.format != KvFormat::kInt4 && c.format != KvFormat::kFp8) {
    return bad("format must be int8, int4 or fp8; received code " + S(static_cast<int32_t>(c.format)));
  }
  if (c.layers < 1) return bad("layers must be >= 1; received " + S(c.layers));
  if (c.num_kv_heads < 1) return bad("numKvHeads must be >= 1; received " + S(c.num_kv_heads));
  if (c.head_dim < 1 || c.head_dim > 256) return bad("headDim must be in [1, 256]; received " + S(c.head_dim));
  if (c.rows < 0) return bad("rows must be >= 0; received " + S(c.rows));
  if (c.k == nullptr || c.v == nullptr || c.k_scale == nullptr || c.v_scale == nullptr) {
    if (c.rows > 0) return bad("k, v, kScale and vScale are required");
  }
  if (c.format == KvFormat::kInt4) {
    if (c.head_dim % 2 != 0) return bad("int4 needs an even headDim (two codes per byte); received " + S(c.head_dim));
    if (c.group != 32 && c.group != 64 && c.group != 128) return bad("int4 group must be 32, 64 or 128; received " + S(c.group));
    if (c.rows % c.group != 0) return bad("int4 rows must be a multiple of the group " + S(c.group) + "; received " + S(c.rows));
    if (!IsFloatDType(c.res_dtype)) return bad(std::string("residualDtype must be f32, f16 or bf16; received ") + DTypeName(c.res_dtype));
    if (c.ring < c.group) return bad("the residual ring must hold at least one group (" + S(c.group) + " rows); received " + S(c.ring));
    if (c.res_rows < 0 || c.res_rows % c.ring != 0) {
      return bad("residual rows must be a multiple of the ring (" + S(c.ring) + "); received " + S(c.res_rows));
    }
    if (c.rows > 0 && (c.k_zero == nullptr || c.v_zero == nullptr)) return bad("int4 needs kZero and vZero");
    if (c.res_rows > 0 && (c.res_k == nullptr || c.res_v == nullptr)) return bad("int4 needs the residual rings");
  }
  return Status::Ok();
}

Status CheckQuantKvBatch(const QuantKvCache& c, const QuantKvBatch& b, const char* op) {
  const std::string pre = std::string(op) + ": ";
  if (b.batch < 0) return Status::InvalidArgument(pre + "batch must be >= 0");
  if (b.batch > 0 && b.kv_start == nullptr) return Status::InvalidArgument(pre + "kvStart is required");
  for (int32_t i = 0; i < b.batch; ++i) {
    if (b.kv_start[i] < 0 || b.kv_start[i] > c.rows) {
      return Status::InvalidArgument(pre + "kvStart[" + S(i) + "] must be in [0, " + S(c.rows) + "]; received " + S(b.kv_start[i]));
    }
    if (c.format == KvFormat::kInt4) {
      if (b.kv_start[i] % c.group != 0) {
        return Status::InvalidArgument(pre + "kvStart[" + S(i) + "] must be a multiple of the int4 group " + S(c.group) +
                                       "; received " + S(b.kv_start[i]));
      }
      if (b.res_start == nullptr) return Status::InvalidArgument(pre + "int4 needs resStart (each sequence's ring)");
      if (b.res_start[i] < 0 || b.res_start[i] + static_cast<int64_t>(c.ring) > c.res_rows) {
        return Status::InvalidArgument(pre + "resStart[" + S(i) + "] must be in [0, " + S(c.res_rows - c.ring) +
                                       "] (a ring of " + S(c.ring) + " rows); received " + S(b.res_start[i]));
      }
    }
  }
  return Status::Ok();
}

Status CheckQuantAppend(const QuantKvCache& c, const QuantAppendParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckQuantKvCache(c));
  CANOPY_RETURN_IF_ERROR(CheckQuantKvBatch(c, p.seqs, "appendKv"));
  const std::string pre = "appendKv: ";
  if (p.qo_indptr == nullptr || p.pos_before == nullptr) return Status::InvalidArgument(pre + "qoIndptr and posBefore are required");
  if (p.qo_indptr[0] != 0 || p.qo_indptr[p.seqs.batch] != p.n) {
    return Status::InvalidArgument(pre + "qoIndptr must run from 0 to the number of new tokens " + S(p.n));
  }
  for (int32_t b = 0; b < p.seqs.batch; ++b) {
    const int64_t n = p.qo_indptr[b + 1] - p.qo_indptr[b];
    if (n < 0) return Status::InvalidArgument(pre + "qoIndptr must be non-decreasing (at " + S(b + 1) + ")");
    const int64_t end = static_cast<int64_t>(p.pos_before[b]) + n;
    if (p.pos_before[b] < 0 || p.seqs.kv_start[b] + end > c.rows) {
      return Status::InvalidArgument(pre + "sequence " + S(b) + " writes positions [" + S(p.pos_before[b]) + ", " + S(end) +
                                     ") from row " + S(p.seqs.kv_start[b]) + " but the cache holds " + S(c.rows) + " rows");
    }
    if (c.format == KvFormat::kInt4) {
      const int64_t ql = p.quant_len ? p.quant_len[b] : 0;
      if (ql < 0 || ql > p.pos_before[b] || ql % c.group != 0) {
        return Status::InvalidArgument(pre + "quantLen[" + S(b) + "] must be a multiple of " + S(c.group) + " in [0, " +
                                       S(p.pos_before[b]) + "]; received " + S(ql));
      }
      if (end - ql > c.ring) {
        return Status::InvalidArgument(pre + "sequence " + S(b) + " would hold " + S(end - ql) +
                                       " unquantized keys but its residual ring holds " + S(c.ring) +
                                       " (quantize completed groups first, or append fewer tokens)");
      }
    }
  }
  return Status::Ok();
}

Status CheckQuantGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to, bool restore) {
  const char* op = restore ? "restoreKvGroups" : "quantizeKvGroups";
  CANOPY_RETURN_IF_ERROR(CheckQuantKvCache(c));
  CANOPY_RETURN_IF_ERROR(CheckQuantKvBatch(c, b, op));
  const std::string pre = std::string(op) + ": ";
  if (c.format != KvFormat::kInt4) return Status::InvalidArgument(pre + "only int4 caches have groups to quantize");
  for (int32_t i = 0; i < b.batch; ++i) {
    const int64_t f = from[i], t = to[i];
    if (f < 0 || t < f || b.kv_start[i] + t > c.rows) {
      return Status::InvalidArgument(pre + "sequence " + S(i) + ": [from, to) = [" + S(f) + ", " + S(t) +
                                     ") must be a range inside its region");
    }
    if (f % c.group != 0 || (!restore && t % c.group != 0)) {
      return Status::InvalidArgument(pre + "sequence " + S(i) + ": from" + (restore ? "" : " and to") + " must be multiples of " +
                                     S(c.group) + "; received [" + S(f) + ", " + S(t) + ")");
    }
    if (t - f > c.ring) {
      return Status::InvalidArgument(pre + "sequence " + S(i) + ": " + S(t - f) + " keys exceed the ring of " + S(c.ring));
    }
  }
  return Status::Ok();
}

Status CheckQuantCommit(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* prefix_lens, const int32_t* tree_indptr,
                        const int32_t* accepted_count, const int32_t* accepted_nodes, int64_t num_nodes) {
  CANOPY_RETURN_IF_ERROR(CheckQuantKvCache(c));
  CANOPY_RETURN_IF_ERROR(CheckQuantKvBatch(c, b, "commitKv"));
  const std::string pre = "commitKv: ";
  if (b.batch > 0 && tree_indptr[0] != 0) return Status::InvalidArgument(pre + "treeIndptr[0] must be 0");
  if (tree_indptr[b.batch] != num_nodes) {
    return Status::InvalidArgument(pre + "treeIndptr[" + S(b.batch) + "] must equal the number of nodes " + S(num_nodes));
  }
  for (int32_t s = 0; s < b.batch; ++s) {
    const int64_t n = tree_indptr[s + 1] - tree_indptr[s];
    if (n < 0) return Status::InvalidArgument(pre + "treeIndptr must be non-decreasing");
    if (prefix_lens[s] < 0 || b.kv_start[s] + prefix_lens[s] + n > c.rows) {
      return Status::InvalidArgument(pre + "prefixLens[" + S(s) + "] + the tree's " + S(n) + " nodes must fit in the cache; received " +
                                     S(prefix_lens[s]));
    }
    if (c.format == KvFormat::kInt4 && n > c.ring) {
      return Status::InvalidArgument(pre + "sequence " + S(s) + " has " + S(n) + " nodes but the residual ring holds " + S(c.ring));
    }
    const int64_t count = accepted_count[s];
    if (count < 0 || count > n) return Status::InvalidArgument(pre + "acceptedCount[" + S(s) + "] must be in [0, " + S(n) + "]");
    const int32_t* nodes = accepted_nodes + tree_indptr[s];
    for (int64_t j = 0; j < count; ++j) {
      const int32_t lo = j == 0 ? 0 : nodes[j - 1] + 1;
      if (nodes[j] < lo || nodes[j] >= n) {
        return Status::InvalidArgument(pre + "acceptedNodes[" + S(tree_indptr[s] + j) + "] must be a node index in [" + S(lo) + ", " +
                                       S(n) + ") (strictly increasing); received " + S(nodes[j]));
      }
    }
  }
  return Status::Ok();
}

Status CheckDequantizeKv(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* kv_lens, const int32_t* quant_lens) {
  CANOPY_RETURN_IF_ERROR(CheckQuantKvCache(c));
  CANOPY_RETURN_IF_ERROR(CheckQuantKvBatch(c, b, "dequantizeKv"));
  for (int32_t s = 0; s < b.batch; ++s) {
    const int64_t len = kv_lens[s];
    const int64_t ql = quant_lens ? quant_lens[s] : len;
    if (len < 0 || b.kv_start[s] + len > c.rows) {
      return Status::InvalidArgument("dequantizeKv: kvLens[" + S(s) + "] must fit in the cache; received " + S(len));
    }
    if (c.format == KvFormat::kInt4 && (ql < 0 || ql > len || ql % c.group != 0 || len - ql > c.ring)) {
      return Status::InvalidArgument("dequantizeKv: quantLens[" + S(s) + "] must be a multiple of " + S(c.group) +
                                     " in [kvLen - ring, kvLen]; received " + S(ql));
    }
  }
  return Status::Ok();
}

}  // namespace canopy
