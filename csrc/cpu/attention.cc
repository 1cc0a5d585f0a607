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

namespace {

// AVX-512 when the CPU has it (unless CANOPY_CPU_ISA=avx2 forces the baseline) and head_dim
// is a multiple of its 16 lanes; the AVX2 tiles need a multiple of 8; nullptr otherwise (the
// naive kernel serves odd head sizes, e.g. the 8-dim heads of tiny test models).
RunWorkItemFn SelectWorkItemFn(int head_dim) {
  const char* isa = std::getenv("CANOPY_CPU_ISA");
  const bool force_base = isa != nullptr && std::strcmp(isa, "avx2") == 0;
  const CpuFeatures& f = GetCpuFeatures();
  RunWorkItemFn wide = AttentionWorkItemAvx512();
  if (!force_base && wide && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && head_dim % 16 == 0) return wide;
  if (head_dim % 8 == 0) return &RunAttentionWorkItemBaseline;
  return nullptr;
}

}  // namespace

Status Attention(const AttentionParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckAttentionParams(p));
  const RunWorkItemFn run = SelectWorkItemFn(p.head_dim);
  if (run == nullptr) return AttentionNaive(p);
  const int G = p.num_qo_heads / p.num_kv_heads;
  const int D = p.head_dim;

  std::vector<uint32_t> tree_mask;
  std::vector<int32_t> depths;
  int32_t words = 0;
  if (p.mask == MaskMode::kTree) {
    CANOPY_RETURN_IF_ERROR(BuildTreeMask(p.qo_indptr, p.batch_size, p.tree_parents, &tree_mask, &words, &depths));
  }

  // Query tiles: about 64 rows (tokens x heads of one kv group). A tree is one tile when it
  // fits, so the prefix K/V is read once for all its nodes. Small tiles (decode: one or a
  // few tokens) take all kv heads in one item, so each key block is one contiguous read;
  // split-KV then provides the parallelism.
  std::vector<AttentionWorkItem> base;
  int64_t max_kv = 0;
  int32_t max_tile_tokens = 1;
  int32_t heads_per_item = 1;
  for (int b = 0; b < p.batch_size; ++b) {
    const int32_t qlen = p.qo_indptr[b + 1] - p.qo_indptr[b];
    const int64_t kv = KvLen(p, b);
    max_kv = std::max(max_kv, kv);
    const int32_t tq = p.mask == MaskMode::kTree ? std::max(1, std::min(qlen, 256 / G)) : std::max(1, 64 / G);
    const bool all_heads = qlen * G <= 16 && p.num_kv_heads <= 64;
    const int32_t hstep = all_heads ? p.num_kv_heads : 1;
    heads_per_item = std::max(heads_per_item, hstep);
    for (int h = 0; h < p.num_kv_heads; h += hstep) {
      for (int32_t t0 = 0; t0 < qlen; t0 += tq) {
        base.push_back({b, h, h + hstep, t0, std::min(qlen, t0 + tq), 0, kv, 0});
        max_tile_tokens = std::max(max_tile_tokens, std::min(qlen, t0 + tq) - t0);
      }
    }
  }
  if (base.empty()) return Status::Ok();

  const int32_t splits = p.num_splits > 0 ? p.num_splits
                                          : ChooseNumSplits(static_cast<int64_t>(base.size()), max_kv, NumThreads() * 2, 512);
  std::vector<AttentionWorkItem> items;
  if (splits == 1) {
    items = std::move(base);
  } else {
    items.reserve(base.size() * splits);
    for (const AttentionWorkItem& w : base) {
      const int64_t kv = w.k1;
      int64_t chunk = (kv + splits - 1) / splits;
      chunk = (chunk + kAttentionBlockKeys - 1) / kAttentionBlockKeys * kAttentionBlockKeys;
      for (int32_t s = 0; s < splits; ++s) {
        AttentionWorkItem x = w;
        x.k0 = std::min<int64_t>(kv, s * chunk);
        x.k1 = std::min<int64_t>(kv, x.k0 + chunk);
        x.split = s;
        items.push_back(x);
      }
    }
  }

  std::vector<float> part_o, part_lse;
  AttentionTileOutput out{splits, nullptr, nullptr};
  if (splits > 1) {
    part_o.resize(static_cast<size_t>(p.total_q) * splits * p.num_qo_heads * D);
    part_lse.resize(static_cast<size_t>(p.total_q) * splits * p.num_qo_heads);
    out.part_o = part_o.data();
    out.part_lse = part_lse.data();
  }

  const int64_t rows = (static_cast<int64_t>(max_tile_tokens) * G + kAttentionRowPad - 1) / kAttentionRowPad * kAttentionRowPad;
  const int64_t scratch_floats = AttentionScratchFloats(rows, heads_per_item, D);
  ParallelFor(static_cast<int64_t>(items.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(scratch_floats));
    const AttentionScratch sc = CarveAttentionScratch(buf.data(), rows, heads_per_item, D);
    for (int64_t i = begin; i < end; ++i) run(p, items[i], tree_mask.data(), words, out, sc);
  });

  if (splits > 1) {
    MergeNParams m;
    m.v = part_o.data();
    m.s = part_lse.data();
    m.v_out = p.o;
    m.s_out = p.lse;
    m.dtype = DType::kF32;  // partials are f32; the output dtype is handled below
    m.tokens = p.total_q;
    m.num_states = splits;
    m.heads = p.num_qo_heads;
    m.head_dim = D;
    if (p.dtype == DType::kF32) return MergeStatesN(m);
    // Merge into f32, then round once into the storage dtype.
    std::vector<float> merged(static_cast<size_t>(p.total_q) * p.num_qo_heads * D);
    m.v_out = merged.data();
    CANOPY_RETURN_IF_ERROR(MergeStatesN(m));
    ParallelFor(static_cast<int64_t>(merged.size()), 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) StoreFromF32(p.o, p.dtype, i, merged[i]);
    });
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
