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
};

// Tiles, split-KV choice (p.num_splits or the heuristic) and the tree mask. p must be checked.
Status PlanAttention(const AttentionParams& p, AttentionPlan* plan);

// num_slots == 0: writes p.o / p.lse (plan.splits must be 1). Otherwise split s writes its f32
// partial state into slot slot0 + s of part_o [total_q][num_slots][Hq][D] and
// part_lse [total_q][num_slots][Hq] (device memory); with part_o null the partials live in the
// workspace and are merged into p.o / p.lse. Synchronous on return.
Status LaunchAttention(const AttentionParams& p, const AttentionPlan& plan, int32_t slot0, int32_t num_slots, float* part_o,
                       float* part_lse);

}  // namespace cuda
}  // namespace canopy
