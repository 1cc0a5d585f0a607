// CUDA-internal: the attention launcher in two steps (plan, launch) so other op families
// (shared-prefix attention) can run several attentions into slots of one set of partial states
// and merge them once.
#pragma once

#include <cstdint>
#include <vector>

#include "../common/attention.h"
#include "../common/status.h"

namespace canopy {
namespace cuda {

struct AttentionPlanItem {
  int32_t b, h, t0, t1;
  int64_t k0, k1;
  int32_t split;  // 0 .. splits-1
};

struct AttentionPlan {
  std::vector<AttentionPlanItem> items;
  int32_t splits = 1;  // key ranges per (sequence, kv head, query tile)
  std::vector<uint32_t> tree_mask;
  int32_t words = 0;
  std::vector<int32_t> q_pos;  // every query row's position (attention.h), for sliding windows
};

// Tiles, split-KV choice (p.num_splits or the heuristic) and the tree mask. p must be checked.
Status PlanAttention(const AttentionParams& p, AttentionPlan* plan);

// The device-side image of a planned attention: the work items, indptrs, kv lengths, tree mask,
// int4 quantized lengths / ring starts and the positions a sliding window reads, at 256-byte-aligned offsets of one host buffer, to be
// copied to the device in one piece. Plans and images depend on the batch's shapes, not on the
// K/V pointers, so a forward pass builds one and launches every layer from it.
struct AttentionUpload {
  std::vector<char> bytes;
  size_t off_items = 0, off_qo = 0, off_kv = 0, off_lens = 0, off_mask = 0, off_quant_lens = 0, off_res_start = 0,
         off_q_pos = 0, off_kv_pos = 0;
  bool has_lens = false, has_mask = false, has_quant_lens = false, has_res_start = false, has_kv_pos = false;
  int64_t num_items = 0;
};

// Builds the image of p's plan; split s of each item writes slot slot0 + s.
Status BuildAttentionUpload(const AttentionParams& p, const AttentionPlan& plan, int32_t slot0, AttentionUpload* up);

// Launches from an image already copied to the device at `dev` (256-byte aligned), on the
// default stream, without synchronising. num_slots == 0: writes p.o / p.lse. Else split
// partials go to part_o [total_q][num_slots][Hq][D] / part_lse, merged into p.o / p.lse when
// `merge` is true. The caller keeps `dev` and the partials untouched until the kernels are done
// (stream order suffices for later launches on the default stream).
Status LaunchAttentionUploaded(const AttentionParams& p, const AttentionPlan& plan, const AttentionUpload& up,
                               const char* dev, int32_t num_slots, float* part_o, float* part_lse, bool merge);

// num_slots == 0: writes p.o / p.lse (plan.splits must be 1). Otherwise split s writes its f32
// partial state into slot slot0 + s of part_o [total_q][num_slots][Hq][D] and
// part_lse [total_q][num_slots][Hq] (device memory); with part_o null the partials live in the
// workspace and are merged into p.o / p.lse. Synchronous on return.
Status LaunchAttention(const AttentionParams& p, const AttentionPlan& plan, int32_t slot0, int32_t num_slots, float* part_o,
                       float* part_lse);

}  // namespace cuda
}  // namespace canopy
