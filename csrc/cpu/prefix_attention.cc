// CPU shared-prefix attention (csrc/common/prefix_attention.h): every level and the suffix are
// planned as flash-attention work items (attention_tiles.h) over their own "batch" (a level's
// groups, or the sequences), all run in one parallel pass writing f32 partial states into their
// own slots, then merged once. A level's tiles hold up to 256 query rows of one group, so the
// group's prefix K/V is read once per 256 query rows rather than once per sequence.
#include <algorithm>
#include <vector>

#include "../common/attention.h"
#include "../common/merge_states.h"
#include "../common/prefix_attention.h"
#include "attention_cpu.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {
namespace {

// Odd head sizes (no tile kernel): each part with the naive kernel into its own output, then one
// merge. Parts are rounded to the dtype of q before merging (only f32 is exact here).
Status PrefixAttentionNaive(const PrefixAttentionParams& p) {
  const int64_t n = p.total_q * p.num_qo_heads;
  const int32_t P = p.num_levels + 1, D = p.head_dim;
  const int esize = DTypeSize(p.dtype);
  std::vector<char> parts(static_cast<size_t>(n) * P * D * esize);
  std::vector<float> lses(static_cast<size_t>(n) * P);
  std::vector<char> one(static_cast<size_t>(n) * D * esize);
  std::vector<float> one_lse(static_cast<size_t>(n));
  for (int32_t part = 0; part < P; ++part) {
    PrefixPartStorage qo;
    AttentionParams a = PrefixPartParams(p, part - 1, &qo);
    a.o = one.data();
    a.lse = one_lse.data();
    CANOPY_RETURN_IF_ERROR(AttentionNaive(a));
    // Stack as [tokens][parts][heads][D].
    for (int64_t t = 0; t < p.total_q; ++t) {
      const size_t row = static_cast<size_t>(p.num_qo_heads) * D * esize;
      std::copy_n(one.data() + t * row, row, parts.data() + (t * P + part) * row);
      std::copy_n(one_lse.data() + t * p.num_qo_heads, p.num_qo_heads, lses.data() + (t * P + part) * p.num_qo_heads);
    }
  }
  MergeNParams m;
  m.v = parts.data();
  m.s = lses.data();
  m.v_out = p.o;
  m.s_out = p.lse;
  m.dtype = p.dtype;
  m.tokens = p.total_q;
  m.num_states = P;
  m.heads = p.num_qo_heads;
  m.head_dim = D;
  return MergeStatesN(m);
}

}  // namespace

Status PrefixAttention(const PrefixAttentionParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckPrefixAttentionParams(p));
  if (p.num_levels == 0) {  // no shared prefix: plain attention over the suffix
    PrefixPartStorage qo;
    return Attention(PrefixPartParams(p, -1, &qo));
  }
  if (p.total_q == 0) return Status::Ok();
  const RunWorkItemFn run = SelectAttentionWorkItemFn(p.head_dim);
  if (run == nullptr) return PrefixAttentionNaive(p);
  const int G = p.num_qo_heads / p.num_kv_heads;
  const int D = p.head_dim;
  const int32_t P = p.num_levels + 1;  // parts: levels 0 .. L-1, then the suffix

  std::vector<PrefixPartStorage> qo_storage(P);
  std::vector<AttentionParams> parts(P);
  std::vector<AttentionTiles> tiles(P);
  int64_t total_tiles = 0;
  for (int32_t i = 0; i < P; ++i) {
    const int32_t level = i < p.num_levels ? i : -1;
    parts[i] = PrefixPartParams(p, level, &qo_storage[i]);
    // Level tiles: up to 256 query rows of one group against its prefix.
    PlanAttentionTiles(parts[i], level >= 0 ? 256 : 64, &tiles[i]);
    total_tiles += static_cast<int64_t>(tiles[i].items.size());
  }
  std::vector<uint32_t> tree_mask;
  std::vector<int32_t> depths;
  int32_t words = 0;
  if (p.mask == MaskMode::kTree) {
    CANOPY_RETURN_IF_ERROR(BuildTreeMask(p.qo_indptr, p.batch_size, p.tree_parents, &tree_mask, &words, &depths));
  }

  // Slots: part i owns [slot0[i], slot0[i] + splits[i]). Splits only when all parts together
  // have too few tiles to keep the threads busy.
  struct Tagged {
    int32_t part;
    AttentionWorkItem item;
  };
  std::vector<Tagged> items;
  int32_t slots = 0;
  int64_t rows = 0;
  int32_t heads_per_item = 1;
  for (int32_t i = 0; i < P; ++i) {
    const int32_t splits = p.num_splits > 0 ? p.num_splits : ChooseNumSplits(total_tiles, tiles[i].max_kv, NumThreads() * 2, 512);
    std::vector<AttentionWorkItem> split;
    SplitAttentionTiles(tiles[i].items, splits, slots, &split);
    for (const AttentionWorkItem& w : split) items.push_back({i, w});
    slots += splits;
    rows = std::max<int64_t>(rows, static_cast<int64_t>(tiles[i].max_tile_tokens) * G);
    heads_per_item = std::max(heads_per_item, tiles[i].heads_per_item);
  }
  rows = (rows + kAttentionRowPad - 1) / kAttentionRowPad * kAttentionRowPad;

  // Every (row, slot) is written: each level's groups cover every sequence, and an empty key
  // range writes the empty state (0, -inf).
  std::vector<float> part_o(static_cast<size_t>(p.total_q) * slots * p.num_qo_heads * D);
  std::vector<float> part_lse(static_cast<size_t>(p.total_q) * slots * p.num_qo_heads);
  const AttentionTileOutput out{slots, part_o.data(), part_lse.data()};
  const int64_t scratch_floats = AttentionScratchFloats(rows, heads_per_item, D);
  ParallelFor(static_cast<int64_t>(items.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(scratch_floats));
    const AttentionScratch sc = CarveAttentionScratch(buf.data(), rows, heads_per_item, D);
    for (int64_t i = begin; i < end; ++i) {
      const Tagged& t = items[i];
      const bool suffix = t.part == P - 1;
      run(parts[t.part], t.item, suffix ? tree_mask.data() : nullptr, suffix ? words : 0, out, sc);
    }
  });
  return MergeAttentionPartials(part_o.data(), part_lse.data(), slots, p.o, p.lse, p.dtype, p.total_q, p.num_qo_heads, D);
}

}  // namespace cpu
}  // namespace canopy
