// Op family: shared-prefix attention (Hydragen-style, several levels).
//
// A batch of B sequences whose keys are a chain of shared prefixes followed by each sequence's
// own suffix: level 0 (say a system prompt) shared by all, level 1 (a few-shot block) shared by
// subsets, ..., then the suffix (the sequence's own tokens, the decode cache). Sequences are
// ordered so that every prefix is shared by a CONTIGUOUS range of them (a depth-first order of
// the prefix tree always is), which makes each level a ragged batch of groups:
//
//   q   [total_q, num_qo_heads, head_dim]   queries of all sequences, CSR by qo_indptr [B+1]
//   level l (l = 0 .. num_levels-1):
//     seq_indptr [G_l + 1]   group g is the prefix of sequences [seq_indptr[g], seq_indptr[g+1]);
//                            seq_indptr[0] = 0, seq_indptr[G_l] = B, non-decreasing (a group may
//                            hold no sequence; a sequence with no prefix at this level gets a
//                            group with no keys)
//     keys/values of group g: rows [kv_indptr[g], kv_indptr[g] + kv_len(g)) of the level's
//                            k, v [kv_rows, num_kv_heads, head_dim] (same dtype as q), or of a
//                            quantized cache (kv_quant.h)
//   suffix: sequence b's own keys, exactly as AttentionParams (kv_indptr/kv_lens over k, v or a
//           quantized cache), with its mask: kNone, kCausal (bottom-right over the suffix) or
//           kTree (the last qo_len suffix keys are the tree nodes).
//   o, lse  like attention().
//
// Math: the queries of all sequences of group g, (rows qo_indptr[seq_indptr[g]] ..
// qo_indptr[seq_indptr[g+1]]) are batched against the group's keys in ONE pass, with every key
// visible (prefix keys precede every query): this is ordinary attention over a ragged batch whose
// "sequences" are the groups, so the flash tiles put up to 256 query rows of a group in one tile
// and the prefix K/V is read once per tile instead of once per sequence. Each level and the
// suffix give a state (o_part, lse_part); the result is their merge (merge_states.h):
//   o = sum_parts exp(lse_part - lse) o_part,   lse = log sum_parts exp(lse_part)
// which equals attention over each sequence's concatenated keys [level 0 | level 1 | ... |
// suffix] with the suffix mask (for kCausal when qo_len <= suffix kv_len + 1, i.e. every query
// sits after the whole prefix, as in decode and chunked prefill after the prefix).
// States are kept in f32 until the final merge, which rounds once to the dtype of q.
#pragma once

#include <cstdint>
#include <vector>

#include "attention.h"
#include "kv_quant.h"
#include "status.h"

namespace canopy {

// Where a batch's keys and values live (plain rows, or a quantized single-layer cache view).
struct KvSource {
  const void* k = nullptr;  // plain: [kv_rows, num_kv_heads, head_dim], dtype of q
  const void* v = nullptr;
  int64_t kv_rows = 0;
  const int32_t* kv_indptr = nullptr;  // host, [n + 1] (first rows; lengths when kv_lens is null)
  const int32_t* kv_lens = nullptr;    // host, [n], optional
  const QuantKvCache* quant = nullptr;  // quantized instead of k / v (then kv_rows = its rows)
  const int32_t* quant_lens = nullptr;  // int4 [n]
  const int32_t* res_start = nullptr;   // int4 [n]
};

struct PrefixLevel {
  int32_t num_groups = 0;
  const int32_t* seq_indptr = nullptr;  // host [num_groups + 1]
  KvSource kv;
};

struct PrefixAttentionParams {
  const void* q = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // optional
  DType dtype = DType::kF32;
  int32_t batch_size = 0;
  int32_t num_qo_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int64_t total_q = 0;
  const int32_t* qo_indptr = nullptr;  // host [batch + 1]
  float scale = 0.f;
  const PrefixLevel* levels = nullptr;
  int32_t num_levels = 0;
  KvSource suffix;
  MaskMode mask = MaskMode::kCausal;   // of the suffix
  const int32_t* tree_parents = nullptr;
  int32_t num_splits = 0;  // per part: 0 = heuristic, >= 1 forced (testing)
  // Soft-capping and sliding window, as attention.h (0 = off). Positions are absolute over the
  // concatenated keys [level 0 | level 1 | ... | suffix] of each sequence: the suffix's queries
  // sit after them as attention() places them over the suffix (bottom-right, tree depth).
  float softcap = 0.f;
  int32_t window = 0;
};

// Arrays a part's AttentionParams points into.
struct PrefixPartStorage {
  std::vector<int32_t> qo;      // a level's query indptr
  std::vector<int32_t> q_pos;   // window: absolute query positions [total_q]
  std::vector<int32_t> kv_pos;  // window: absolute position of each group's / sequence's key 0
};

// The attention problem of level l (groups as sequences, mask none) or of the suffix
// (level == -1), with the arrays it needs in `storage`. The result points into p and storage.
AttentionParams PrefixPartParams(const PrefixAttentionParams& p, int32_t level, PrefixPartStorage* storage);

// Checks the levels (seq_indptr covers [0, B]), then each part as an attention problem.
Status CheckPrefixAttentionParams(const PrefixAttentionParams& p);

namespace cpu {
Status PrefixAttention(const PrefixAttentionParams& p);
}
namespace cuda {
// q, o, lse and every K/V buffer are device pointers; index arrays are host pointers.
Status PrefixAttention(const PrefixAttentionParams& p);
}

}  // namespace canopy
