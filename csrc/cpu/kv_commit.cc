// CPU KV commit (see csrc/common/kv_commit.h): per (sequence, layer), the
// accepted rows are copied down in increasing order, which never overwrites a
// source row before it is read. (Sequence, layer) pairs run in parallel; they
// touch disjoint rows.
#include <cstring>

#include "../common/kv_commit.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {

Status CommitKv(void* k, void* v, DType dtype, int64_t layers, int64_t capacity, int64_t row_elems,
                const KvCommitPlan& plan, int64_t num_nodes, int32_t* new_lens) {
  CANOPY_RETURN_IF_ERROR(CheckKvCommitArgs(dtype, layers, capacity, row_elems, plan, num_nodes));
  const int64_t row_bytes = row_elems * DTypeSize(dtype);
  const int64_t layer_bytes = capacity * row_bytes;
  ParallelFor(static_cast<int64_t>(plan.batch) * layers, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t b = w / layers, layer = w % layers;
      const int64_t first = static_cast<int64_t>(plan.kv_indptr[b]) + plan.prefix_lens[b];  // row of local position 0
      const int32_t* nodes = plan.accepted_nodes + plan.tree_indptr[b];
      for (int32_t j = 0; j < plan.accepted_count[b]; ++j) {
        if (nodes[j] == j) continue;
        const int64_t dst = layer * layer_bytes + (first + j) * row_bytes;
        const int64_t src = layer * layer_bytes + (first + nodes[j]) * row_bytes;
        std::memcpy(static_cast<char*>(k) + dst, static_cast<const char*>(k) + src, static_cast<size_t>(row_bytes));
        std::memcpy(static_cast<char*>(v) + dst, static_cast<const char*>(v) + src, static_cast<size_t>(row_bytes));
      }
    }
  });
  for (int32_t b = 0; b < plan.batch; ++b) new_lens[b] = plan.prefix_lens[b] + plan.accepted_count[b];
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
