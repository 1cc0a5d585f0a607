// Private to the CPU attention kernel: the unit of work, scratch space, and
// the per-ISA entry points (attention.cc baseline, attention_avx512.cc).
#pragma once

#include <cstdint>
#include <vector>

#include "../common/attention.h"

namespace canopy {
namespace cpu {

// The queries [t0, t1) of sequence b (all qo heads of kv heads [h0, h1)) against keys [k0, k1).
struct AttentionWorkItem {
  int32_t b, h0, h1, t0, t1;
  int64_t k0, k1;
  int32_t split;
};

// Where results go: the final output (num_splits == 1) or the split partials.
struct AttentionTileOutput {
  int32_t num_splits;
  float* part_o;    // [total_q][num_splits][Hq][D] f32, when num_splits > 1
  float* part_lse;  // [total_q][num_splits][Hq]
};

// Raw scratch for one worker, sized for `rows` padded rows per head, `heads` kv heads per
// work item and head_dim D:
//   q, o    [heads][rows][D]          queries (transposed for wide tiles) and running outputs
//   m, l    [heads][rows]             running max and sum
//   s       [heads][kBlock][rows]     scores / probabilities of one key block
//   kt, v   [kBlock][heads * D]       widened f16/bf16 keys and values of one block
//   vpack   [kBlock][D]               packed f32 values of one head (wide tiles)
//   tmp     [rows]
struct AttentionScratch {
  float *q, *o, *m, *l, *s, *kt, *v, *vpack, *tmp;
};
constexpr int kAttentionBlockKeys = 32;  // keys per block
// Rows are padded to a multiple of this (the widest score tile).
constexpr int kAttentionRowPad = 64;
inline int64_t AttentionScratchFloats(int64_t rows, int64_t heads, int64_t D) {
  const int64_t kb = kAttentionBlockKeys;
  return heads * (rows * D * 2 + rows * 2 + kb * rows) + 2 * kb * heads * D + kb * D + rows;
}
inline AttentionScratch CarveAttentionScratch(float* base, int64_t rows, int64_t heads, int64_t D) {
  const int64_t kb = kAttentionBlockKeys;
  AttentionScratch s;
  s.q = base;
  s.o = s.q + heads * rows * D;
  s.m = s.o + heads * rows * D;
  s.l = s.m + heads * rows;
  s.s = s.l + heads * rows;
  s.kt = s.s + heads * kb * rows;
  s.v = s.kt + kb * heads * D;
  s.vpack = s.v + kb * heads * D;
  s.tmp = s.vpack + kb * D;
  return s;
}

using RunWorkItemFn = void (*)(const AttentionParams&, const AttentionWorkItem&, const uint32_t*, int32_t,
                               const AttentionTileOutput&, const AttentionScratch&);
void RunAttentionWorkItemBaseline(const AttentionParams&, const AttentionWorkItem&, const uint32_t*, int32_t,
                                  const AttentionTileOutput&, const AttentionScratch&);
// nullptr when the build has no AVX-512 path.
RunWorkItemFn AttentionWorkItemAvx512();
// aarch64 NEON tiles (attention_neon.cc, head_dim a multiple of 4); nullptr on other builds.
RunWorkItemFn AttentionWorkItemNeon();

// The tile kernel for head_dim on this CPU (AVX-512 or AVX2; CANOPY_CPU_ISA=avx2 forces the
// baseline; on aarch64 NEON, CANOPY_CPU_ISA=portable forcing the generic tiles), or nullptr
// when none handles head_dim (the naive kernel then serves).
RunWorkItemFn SelectAttentionWorkItemFn(int head_dim);

// The query tiles of p before splitting: rows of up to `tile_rows` (tokens x the qo heads of a
// kv head; trees: up to 256 so a tree is one tile); tiles of <= 16 rows (decode) take every kv
// head, so a key block is one contiguous read.
struct AttentionTiles {
  std::vector<AttentionWorkItem> items;
  int64_t max_kv = 0;
  int32_t max_tile_tokens = 1;
  int32_t heads_per_item = 1;
};
void PlanAttentionTiles(const AttentionParams& p, int32_t tile_rows, AttentionTiles* t);
// Appends each tile split into `splits` key ranges (multiples of the key block), split s
// tagged with slot slot0 + s.
void SplitAttentionTiles(const std::vector<AttentionWorkItem>& tiles, int32_t splits, int32_t slot0,
                         std::vector<AttentionWorkItem>* out);
// Merges f32 partial states [total_q][slots][Hq][D] (+ lse) into o (dtype, rounded once) and lse.
Status MergeAttentionPartials(const float* part_o, const float* part_lse, int32_t slots, void* o, float* lse, DType dtype,
                              int64_t total_q, int32_t heads, int32_t head_dim);

}  // namespace cpu
}  // namespace canopy
