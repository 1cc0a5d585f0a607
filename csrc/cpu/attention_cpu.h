// Private to the CPU attention kernel: the unit of work, scratch space, and
// the per-ISA entry points (attention.cc baseline, attention_avx512.cc).
#pragma once

#include <cstdint>

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
// work item and head_dim D: per head, q (transposed queries) and o [rows][D], m and l
// [rows]; shared, kt and v (widened key / value rows of one block) [kAttentionBlockKeys][D],
// s (scores) [kAttentionBlockKeys][rows], tmp [rows].
struct AttentionScratch {
  float *q, *kt, *s, *v, *o, *m, *l, *tmp;
};
constexpr int kAttentionBlockKeys = 32;  // keys per block
// Rows are padded to a multiple of this (the widest score tile).
constexpr int kAttentionRowPad = 64;
inline int64_t AttentionScratchFloats(int64_t rows, int64_t heads, int64_t D) {
  return heads * (rows * D * 2 + rows * 2) + D * kAttentionBlockKeys * 2 + rows * kAttentionBlockKeys + rows;
}
inline AttentionScratch CarveAttentionScratch(float* base, int64_t rows, int64_t heads, int64_t D) {
  AttentionScratch s;
  s.q = base;
  s.o = s.q + heads * rows * D;
  s.m = s.o + heads * rows * D;
  s.l = s.m + heads * rows;
  s.kt = s.l + heads * rows;
  s.v = s.kt + D * kAttentionBlockKeys;
  s.s = s.v + D * kAttentionBlockKeys;
  s.tmp = s.s + rows * kAttentionBlockKeys;
  return s;
}

using RunWorkItemFn = void (*)(const AttentionParams&, const AttentionWorkItem&, const uint32_t*, int32_t,
                               const AttentionTileOutput&, const AttentionScratch&);
void RunAttentionWorkItemBaseline(const AttentionParams&, const AttentionWorkItem&, const uint32_t*, int32_t,
                                  const AttentionTileOutput&, const AttentionScratch&);
// nullptr when the build has no AVX-512 path.
RunWorkItemFn AttentionWorkItemAvx512();

}  // namespace cpu
}  // namespace canopy
