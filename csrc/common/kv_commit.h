// Op family: kv_commit (keep the KV rows of the accepted draft nodes, drop the rest).
//
// Buffers: k and v, each [layers, capacity, row_elems] in f32 / f16 / bf16 (row_elems =
// num_kv_heads * head_dim; a single-layer cache [capacity, num_kv_heads, head_dim] has
// layers = 1). k and v have the same shape and dtype. Every layer is committed identically.
//
// Batch layout (host memory, int32), B sequences:
//   kv_indptr      [B+1]  sequence b owns rows [kv_indptr[b], kv_indptr[b+1]) of every layer
//                         (its region); non-decreasing, kv_indptr[0] >= 0,
//                         kv_indptr[B] <= capacity.
//   prefix_lens    [B]    rows [0, prefix_len) of the region hold the committed prefix; the
//                         tree nodes' K/V were written at region rows [prefix_len, prefix_len + n_b).
//   tree_indptr    [B+1]  as in verify.h: n_b = tree_indptr[b+1] - tree_indptr[b] nodes;
//                         prefix_len + n_b must fit in the region.
//   accepted_count [B]    exactly the verifiers' outputs (verify.h): sequence b's accepted LOCAL
//   accepted_nodes [N]    node indices at [tree_indptr[b], tree_indptr[b] + accepted_count[b]),
//                         strictly increasing (a root-to-node path is); slots past the count
//                         are ignored.
//
// Effect, per sequence and layer, for j = 0 .. count-1 in order:
//   row[prefix_len + j] <- row[prefix_len + accepted_nodes[j]]
// new_lens[b] = prefix_len + count. Because the node indices are strictly increasing,
// accepted_nodes[j] >= j, so a source row is never overwritten before it is read when the copies
// run in increasing j (the kernels do exactly that; rows with accepted_nodes[j] == j are left
// as they are). Only rows [prefix_len, new_len) of each region are written; rows past the
// accepted nodes (rejected nodes, padding) are never read.
#pragma once

#include <cstdint>
#include <string>

#include "dtype.h"
#include "status.h"

namespace canopy {

struct KvCommitPlan {
  int32_t batch = 0;
  const int32_t* kv_indptr = nullptr;       // [B+1]
  const int32_t* prefix_lens = nullptr;     // [B]
  const int32_t* tree_indptr = nullptr;     // [B+1]
  const int32_t* accepted_count = nullptr;  // [B]
  const int32_t* accepted_nodes = nullptr;  // [N]
};

// Validates the plan against a cache of `capacity` rows and `num_nodes` (= the length of
// accepted_nodes) tree nodes.
inline Status CheckKvCommitPlan(const KvCommitPlan& p, int64_t capacity, int64_t num_nodes) {
  const std::string pre = "commitKv: ";
  auto str = [](int64_t v) { return std::to_string(v); };
  if (p.batch < 0) return Status::InvalidArgument(pre + "batch must be >= 0; received " + str(p.batch));
  if (p.batch == 0) {
    if (num_nodes != 0) return Status::InvalidArgument(pre + "treeIndptr describes 0 sequences but there are " + str(num_nodes) + " nodes");
    return Status::Ok();
  }
  if (p.kv_indptr[0] < 0) return Status::InvalidArgument(pre + "kvIndptr[0] must be >= 0; received " + str(p.kv_indptr[0]));
  if (p.tree_indptr[0] != 0) {
    return Status::InvalidArgument(pre + "treeIndptr[0] must be 0; received " + str(p.tree_indptr[0]));
  }
  for (int32_t b = 0; b < p.batch; ++b) {
    if (p.kv_indptr[b + 1] < p.kv_indptr[b]) {
      return Status::InvalidArgument(pre + "kvIndptr must be non-decreasing: kvIndptr[" + str(b + 1) + "] = " +
                                     str(p.kv_indptr[b + 1]) + " < kvIndptr[" + str(b) + "] = " + str(p.kv_indptr[b]));
    }
    if (p.tree_indptr[b + 1] < p.tree_indptr[b]) {
      return Status::InvalidArgument(pre + "treeIndptr must be non-decreasing: treeIndptr[" + str(b + 1) + "] = " +
                                     str(p.tree_indptr[b + 1]) + " < treeIndptr[" + str(b) + "] = " +
                                     str(p.tree_indptr[b]));
    }
  }
  if (p.kv_indptr[p.batch] > capacity) {
    return Status::InvalidArgument(pre + "kvIndptr[" + str(p.batch) + "] must be <= the cache capacity " + str(capacity) +
                                   "; received " + str(p.kv_indptr[p.batch]));
  }
  if (p.tree_indptr[p.batch] != num_nodes) {
    return Status::InvalidArgument(pre + "treeIndptr[" + str(p.batch) + "] must equal the number of nodes " +
                                   str(num_nodes) + "; received " + str(p.tree_indptr[p.batch]));
  }
  for (int32_t b = 0; b < p.batch; ++b) {
    const int64_t region = p.kv_indptr[b + 1] - p.kv_indptr[b];
    const int64_t n = p.tree_indptr[b + 1] - p.tree_indptr[b];
    const int64_t prefix = p.prefix_lens[b];
    if (prefix < 0 || prefix + n > region) {
      return Status::InvalidArgument(pre + "prefixLens[" + str(b) + "] must be in [0, " + str(region - n) +
                                     "] (the region holds " + str(region) + " rows and the tree " + str(n) +
                                     " nodes); received " + str(prefix));
    }
    const int64_t count = p.accepted_count[b];
    if (count < 0 || count > n) {
      return Status::InvalidArgument(pre + "acceptedCount[" + str(b) + "] must be in [0, " + str(n) +
                                     "]; received " + str(count));
    }
    const int32_t* nodes = p.accepted_nodes + p.tree_indptr[b];
    for (int64_t j = 0; j < count; ++j) {
      const int32_t lo = j == 0 ? 0 : nodes[j - 1] + 1;
      if (nodes[j] < lo || nodes[j] >= n) {
        return Status::InvalidArgument(pre + "acceptedNodes[" + str(p.tree_indptr[b] + j) + "] must be a node index in [" +
                                       str(lo) + ", " + str(n) + ") (strictly increasing, local to sequence " + str(b) +
                                       "); received " + str(nodes[j]));
      }
    }
  }
  return Status::Ok();
}

// The checks both CommitKv kernels (CPU, CUDA) run first.
inline Status CheckKvCommitArgs(DType dtype, int64_t layers, int64_t capacity, int64_t row_elems, const KvCommitPlan& plan,
                                int64_t num_nodes) {
  if (!IsFloatDType(dtype)) {
    return Status::InvalidArgument(std::string("commitKv: k dtype must be one of f32, f16, bf16; received ") +
                                   DTypeName(dtype));
  }
  if (layers < 0 || capacity < 0 || row_elems < 0) {
    return Status::InvalidArgument("commitKv: layers, capacity and row size must be >= 0");
  }
  return CheckKvCommitPlan(plan, capacity, num_nodes);
}

namespace cpu {
// k, v host buffers [layers, capacity, row_elems]; new_lens [B] host.
Status CommitKv(void* k, void* v, DType dtype, int64_t layers, int64_t capacity, int64_t row_elems,
                const KvCommitPlan& plan, int64_t num_nodes, int32_t* new_lens);
}  // namespace cpu

namespace cuda {
// k, v DEVICE buffers on the current device; the plan and new_lens are host memory (staged by
// the launcher). Synchronous on return.
Status CommitKv(void* k, void* v, DType dtype, int64_t layers, int64_t capacity, int64_t row_elems,
                const KvCommitPlan& plan, int64_t num_nodes, int32_t* new_lens);
}  // namespace cuda

}  // namespace canopy
