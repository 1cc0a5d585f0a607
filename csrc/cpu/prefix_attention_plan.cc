// Host-side planning shared by the CPU and CUDA shared-prefix attention kernels
// (csrc/common/prefix_attention.h): each level and the suffix as an attention problem, checks.
#include <string>
#include <vector>

#include "../common/prefix_attention.h"

namespace canopy {

namespace {

int64_t SourceLen(const KvSource& kv, int32_t i) {
  if (kv.kv_indptr == nullptr) return 0;
  return kv.kv_lens ? kv.kv_lens[i] : static_cast<int64_t>(kv.kv_indptr[i + 1]) - kv.kv_indptr[i];
}

// Window positions: every query row's absolute position, and the absolute position of key 0 of
// each group of `level` (or of each sequence's suffix, level -1).
void PrefixPositions(const PrefixAttentionParams& p, int32_t level, PrefixPartStorage* st) {
  const int32_t B = p.batch_size;
  std::vector<int64_t> off(static_cast<size_t>(B), 0);  // keys of the levels so far, per sequence
  st->kv_pos.clear();
  for (int32_t l = 0; l < p.num_levels; ++l) {
    const PrefixLevel& L = p.levels[l];
    if (l == level) {  // a group's key 0 follows the levels before it (shared by its sequences)
      st->kv_pos.assign(static_cast<size_t>(L.num_groups), 0);
      for (int32_t g = 0; g < L.num_groups; ++g) {
        if (L.seq_indptr[g] < L.seq_indptr[g + 1]) st->kv_pos[g] = static_cast<int32_t>(off[L.seq_indptr[g]]);
      }
    }
    for (int32_t g = 0; g < L.num_groups; ++g) {
      for (int32_t b = L.seq_indptr[g]; b < L.seq_indptr[g + 1] && b < B; ++b) off[b] += SourceLen(L.kv, g);
    }
  }
  if (level < 0) {  // the suffix follows every level
    st->kv_pos.assign(static_cast<size_t>(B), 0);
    for (int32_t b = 0; b < B; ++b) st->kv_pos[b] = static_cast<int32_t>(off[b]);
  }
  const std::vector<int64_t>& total = off;
  std::vector<uint32_t> mask;
  std::vector<int32_t> depths;
  int32_t words = 0;
  const bool tree = p.mask == MaskMode::kTree && p.tree_parents != nullptr &&
                    BuildTreeMask(p.qo_indptr, B, p.tree_parents, &mask, &words, &depths).ok();
  st->q_pos.assign(static_cast<size_t>(p.total_q), 0);
  for (int32_t b = 0; b < B; ++b) {
    const int32_t start = p.qo_indptr[b], n = p.qo_indptr[b + 1] - start;
    const int64_t base = total[b] + SourceLen(p.suffix, b) - n;
    for (int32_t t = 0; start >= 0 && t < n && start + t < p.total_q; ++t) {
      st->q_pos[start + t] = static_cast<int32_t>(base + (tree ? depths[start + t] : t));
    }
  }
}

}  // namespace

AttentionParams PrefixPartParams(const PrefixAttentionParams& p, int32_t level, PrefixPartStorage* storage) {
  std::vector<int32_t>* qo_storage = &storage->qo;
  AttentionParams a;
  a.q = p.q;
  a.o = p.o;
  a.lse = p.lse;
  a.dtype = p.dtype;
  a.num_qo_heads = p.num_qo_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.head_dim = p.head_dim;
  a.total_q = p.total_q;
  a.scale = p.scale;
  a.num_splits = p.num_splits;
  const KvSource* kv;
  if (level < 0) {
    kv = &p.suffix;
    a.batch_size = p.batch_size;
    a.qo_indptr = p.qo_indptr;
    a.mask = p.mask;
    a.tree_parents = p.tree_parents;
  } else {
    const PrefixLevel& L = p.levels[level];
    kv = &L.kv;
    // Group g's queries are the rows of its sequences: contiguous because its sequences are.
    qo_storage->resize(static_cast<size_t>(L.num_groups) + 1);
    for (int32_t g = 0; g <= L.num_groups; ++g) (*qo_storage)[g] = p.qo_indptr[L.seq_indptr[g]];
    a.batch_size = L.num_groups;
    a.qo_indptr = qo_storage->data();
    a.mask = MaskMode::kNone;
  }
  a.k = kv->k;
  a.v = kv->v;
  a.kv_rows = kv->kv_rows;
  a.kv_indptr = kv->kv_indptr;
  a.kv_lens = kv->kv_lens;
  a.kv_quant = kv->quant;
  a.kv_quant_lens = kv->quant_lens;
  a.kv_res_start = kv->res_start;
  a.softcap = p.softcap;
  a.window = p.window;
  if (p.window > 0) {
    PrefixPositions(p, level, storage);
    a.q_pos = storage->q_pos.data();
    a.kv_pos = storage->kv_pos.data();
  }
  return a;
}

Status CheckPrefixAttentionParams(const PrefixAttentionParams& p) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("prefixAttention: " + m); };
  if (p.batch_size < 0) return bad("batch size must be >= 0");
  if (p.qo_indptr == nullptr) return bad("qoIndptr is required");
  if (p.num_levels < 0 || (p.num_levels > 0 && p.levels == nullptr)) return bad("levels are missing");
  for (int32_t l = 0; l < p.num_levels; ++l) {
    const PrefixLevel& L = p.levels[l];
    const std::string name = "levels[" + std::to_string(l) + "].seqIndptr";
    if (L.num_groups < 0 || L.seq_indptr == nullptr) return bad(name + " is required");
    if (L.seq_indptr[0] != 0) return bad(name + "[0] must be 0; received " + std::to_string(L.seq_indptr[0]));
    for (int32_t g = 0; g < L.num_groups; ++g) {
      if (L.seq_indptr[g + 1] < L.seq_indptr[g]) return bad(name + " must be non-decreasing (at " + std::to_string(g + 1) + ")");
    }
    if (L.seq_indptr[L.num_groups] != p.batch_size) {
      return bad(name + "[" + std::to_string(L.num_groups) + "] must be the number of sequences " + std::to_string(p.batch_size) +
                 "; received " + std::to_string(L.seq_indptr[L.num_groups]));
    }
  }
  // Every part as an attention problem (qo_indptr, heads, dtype, K/V ranges, tree parents).
  for (int32_t l = -1; l < p.num_levels; ++l) {
    PrefixPartStorage qo;
    const AttentionParams a = PrefixPartParams(p, l, &qo);
    Status s = CheckAttentionParams(a);
    if (!s.ok()) {
      const std::string where = l < 0 ? "suffix" : "levels[" + std::to_string(l) + "]";
      return Status::InvalidArgument("prefixAttention " + where + ": " + s.message());
    }
  }
  return Status::Ok();
}

}  // namespace canopy
