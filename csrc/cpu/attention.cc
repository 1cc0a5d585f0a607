// CPU flash attention: planning (tiles, split-KV), ISA dispatch, merge.
// The inner loops are in attention_tiles.h (see there for the tile math).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common/attention.h"
#include "../common/merge_states.h"
#include "../common/runtime.h"
#include "attention_cpu.h"
#include "thread_pool.h"

#define CANOPY_TILE_NS tiles_base
#define CANOPY_TILE_VEC_BYTES 32
#include "attention_tiles.h"
#undef CANOPY_TILE_NS
#undef CANOPY_TILE_VEC_BYTES

namespace canopy {
namespace cpu {

void RunAttentionWorkItemBaseline(const AttentionParams& p, const AttentionWorkItem& w, const uint32_t* mask,
                                  int32_t words, const AttentionTileOutput& out, const AttentionScratch& sc) {
  // AVX2: 16 ymm registers; a 4 keys x 2 vectors score tile and a 2 rows x 4 vectors value
  // tile use 8 accumulators each.
  tiles_base::RunWorkItem<2, 2, 4>(p, w, mask, words, out, sc);
}

// AVX-512 when the CPU has it (unless CANOPY_CPU_ISA=avx2 forces the baseline) and head_dim
// is a multiple of its 16 lanes; the AVX2 tiles need a multiple of 8; nullptr otherwise (the
// naive kernel serves odd head sizes, e.g. the 8-dim heads of tiny test models).
// On aarch64: the NEON tiles (head_dim a multiple of 4) unless CANOPY_CPU_ISA=portable asks for
// the generic tiles above (GCC vector extensions: 256-bit vectors lowered to NEON pairs).
RunWorkItemFn SelectAttentionWorkItemFn(int head_dim) {
  const char* isa = std::getenv("CANOPY_CPU_ISA");
#if defined(__aarch64__)
  const bool force_portable = isa != nullptr && std::strcmp(isa, "portable") == 0;
  RunWorkItemFn neon = AttentionWorkItemNeon();
  if (!force_portable && neon && head_dim % 4 == 0) return neon;
  if (head_dim % 8 == 0) return &RunAttentionWorkItemBaseline;
  return nullptr;
#endif
  const bool force_base = isa != nullptr && std::strcmp(isa, "avx2") == 0;
  const CpuFeatures& f = GetCpuFeatures();
  RunWorkItemFn wide = AttentionWorkItemAvx512();
  if (!force_base && wide && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && head_dim % 16 == 0) return wide;
  if (head_dim % 8 == 0) return &RunAttentionWorkItemBaseline;
  return nullptr;
}

void PlanAttentionTiles(const AttentionParams& p, int32_t tile_rows, AttentionTiles* t) {
  const int G = p.num_qo_heads / p.num_kv_heads;
  t->items.clear();
  t->max_kv = 0;
  t->max_tile_tokens = 1;
  t->heads_per_item = 1;
  for (int b = 0; b < p.batch_size; ++b) {
    const int32_t qlen = p.qo_indptr[b + 1] - p.qo_indptr[b];
    const int64_t kv = KvLen(p, b);
    t->max_kv = std::max(t->max_kv, kv);
    const int32_t tq = p.mask == MaskMode::kTree ? std::max(1, std::min(qlen, 256 / G)) : std::max(1, tile_rows / G);
    const bool all_heads = qlen * G <= 16 && p.num_kv_heads <= 64;
    const int32_t hstep = all_heads ? p.num_kv_heads : 1;
    t->heads_per_item = std::max(t->heads_per_item, hstep);
    for (int h = 0; h < p.num_kv_heads; h += hstep) {
      for (int32_t t0 = 0; t0 < qlen; t0 += tq) {
        t->items.push_back({b, h, h + hstep, t0, std::min(qlen, t0 + tq), 0, kv, 0});
        t->max_tile_tokens = std::max(t->max_tile_tokens, std::min(qlen, t0 + tq) - t0);
      }
    }
  }
}

void SplitAttentionTiles(const std::vector<AttentionWorkItem>& tiles, int32_t splits, int32_t slot0,
                         std::vector<AttentionWorkItem>* out) {
  for (const AttentionWorkItem& w : tiles) {
    const int64_t kv = w.k1;
    int64_t chunk = (kv + splits - 1) / splits;
    chunk = (chunk + kAttentionBlockKeys - 1) / kAttentionBlockKeys * kAttentionBlockKeys;
    for (int32_t s = 0; s < splits; ++s) {
      AttentionWorkItem x = w;
      x.k0 = std::min<int64_t>(kv, s * chunk);
      x.k1 = std::min<int64_t>(kv, x.k0 + chunk);
      x.split = slot0 + s;
      out->push_back(x);
    }
  }
}

Status MergeAttentionPartials(const float* part_o, const float* part_lse, int32_t slots, void* o, float* lse, DType dtype,
                              int64_t total_q, int32_t heads, int32_t head_dim) {
  MergeNParams m;
  m.v = part_o;
  m.s = part_lse;
  m.v_out = o;
  m.s_out = lse;
  m.dtype = DType::kF32;  // partials are f32; the output dtype is handled below
  m.tokens = total_q;
  m.num_states = slots;
  m.heads = heads;
  m.head_dim = head_dim;
  if (dtype == DType::kF32) return MergeStatesN(m);
  // Merge into f32, then round once into the storage dtype.
  std::vector<float> merged(static_cast<size_t>(total_q) * heads * head_dim);
  m.v_out = merged.data();
  CANOPY_RETURN_IF_ERROR(MergeStatesN(m));
  ParallelFor(static_cast<int64_t>(merged.size()), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) StoreFromF32(o, dtype, i, merged[i]);
  });
  return Status::Ok();
}

Status Attention(const AttentionParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckAttentionParams(p));
  const RunWorkItemFn run = SelectAttentionWorkItemFn(p.head_dim);
  if (run == nullptr) return AttentionNaive(p);
  const int G = p.num_qo_heads / p.num_kv_heads;
  const int D = p.head_dim;

  std::vector<uint32_t> tree_mask;
  std::vector<int32_t> depths;
  int32_t words = 0;
  if (p.mask == MaskMode::kTree) {
    CANOPY_RETURN_IF_ERROR(BuildTreeMask(p.qo_indptr, p.batch_size, p.tree_parents, &tree_mask, &words, &depths));
  }
  // A sliding window reads every query's position from q_pos: resolve the defaults once.
  std::vector<int32_t> q_pos;
  AttentionParams pw = p;
  if (p.window > 0) {
    ResolveQueryPositions(p, depths.empty() ? nullptr : depths.data(), &q_pos);
    pw.q_pos = q_pos.data();
  }

  // Query tiles: about 64 rows (tokens x heads of one kv group). A tree is one tile when it
  // fits, so the prefix K/V is read once for all its nodes. Small tiles (decode: one or a
  // few tokens) take all kv heads in one item, so each key block is one contiguous read;
  // split-KV then provides the parallelism.
  AttentionTiles tiles;
  PlanAttentionTiles(p, 64, &tiles);
  if (tiles.items.empty()) return Status::Ok();

  const int32_t splits = p.num_splits > 0 ? p.num_splits
                                          : ChooseNumSplits(static_cast<int64_t>(tiles.items.size()), tiles.max_kv, NumThreads() * 2, 512);
  std::vector<AttentionWorkItem> items;
  if (splits == 1) {
    items = std::move(tiles.items);
  } else {
    items.reserve(tiles.items.size() * splits);
    SplitAttentionTiles(tiles.items, splits, 0, &items);
  }

  std::vector<float> part_o, part_lse;
  AttentionTileOutput out{splits, nullptr, nullptr};
  if (splits > 1) {
    part_o.resize(static_cast<size_t>(p.total_q) * splits * p.num_qo_heads * D);
    part_lse.resize(static_cast<size_t>(p.total_q) * splits * p.num_qo_heads);
    out.part_o = part_o.data();
    out.part_lse = part_lse.data();
  }

  const int64_t rows = (static_cast<int64_t>(tiles.max_tile_tokens) * G + kAttentionRowPad - 1) / kAttentionRowPad * kAttentionRowPad;
  const int64_t scratch_floats = AttentionScratchFloats(rows, tiles.heads_per_item, D);
  const int32_t heads_per_item = tiles.heads_per_item;
  ParallelFor(static_cast<int64_t>(items.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(scratch_floats));
    const AttentionScratch sc = CarveAttentionScratch(buf.data(), rows, heads_per_item, D);
    for (int64_t i = begin; i < end; ++i) run(pw, items[i], tree_mask.data(), words, out, sc);
  });

  if (splits > 1) {
    return MergeAttentionPartials(part_o.data(), part_lse.data(), splits, p.o, p.lse, p.dtype, p.total_q, p.num_qo_heads, D);
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
