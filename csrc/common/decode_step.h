// Op family: decode_step (one decode step in one call: the forward pass, the token choice and
// the KV commit of the accepted path).
//
// It composes the existing ops and has no math of its own beyond the layout glue below:
//   forward  LlamaForward (llama.h) over the step's tokens, logits of `forward.logit_rows`
//   choose   kArgmax:      next_token[b] = argmax(logits row b), the argmax of verify.h (ties to
//                          the lowest id, NaN as -inf, -1 for a row with nothing above -inf)
//            kGreedyTree:  VerifyGreedy (verify.h) of each sequence's draft below its pending token
//   commit   kGreedyTree:  CommitKv (kv_commit.h) or CommitQuantKv (kv_quant.h) of the pending
//                          token and the accepted nodes
// Sampled choices (the native sampler chain: sampling.h, verifySampling) plug in as further
// DecodeChoice values: same forward, same commit, another choose.
//
// kArgmax (mask kCausal): sequence b's step tokens are committed by the forward itself;
//   logit_rows has one entry per sequence (typically its last token); accepted_count[b] = 0;
//   new_lens[b] = kv_len_before[b] + its step tokens.
// kGreedyTree (mask kTree): sequence b's step tokens are [pending, d_0, ..., d_{n_b - 1}]: the
//   pending token (the last emitted, not yet cached) is step node 0, parent -1, and draft node i
//   is step node 1 + i with tree_parents[1 + i] = 1 + (its draft parent, -1 for a child of the
//   pending token), i.e. tree_parents[1 + i] >= 0. logit_rows must be every step token in order
//   (0, 1, ..., n - 1). Then the verify tree (verify.h) is
//     indptr[b] = qo_indptr[b] - b, tokens = the draft tokens, parents = tree_parents[1 + i] - 1,
//   and its rows are exactly the logits rows (sequence b's verify row base indptr[b] + b =
//   qo_indptr[b] is its pending token's row). After verification, step nodes
//   [0, 1 + accepted_nodes...] are committed after the kv_len_before[b] committed rows:
//     new_lens[b] = kv_len_before[b] + 1 + accepted_count[b].
//   The commit plan's regions: kv_indptr[b] = kv_start[b], kv_indptr[B] = kv_start[B-1] + rows
//   of the last region (the forward's capacity check already guarantees every row fits).
//
// top_k (optional, 0 = off): top_k_ids[r * top_k + j] = the id of the j-th largest value of
//   logits row r in the argmax order (larger first, ties to the lower id, NaN as -inf); -1
//   past the row's values above -inf. For proposers that learn from the target (token
//   recycling: its adjacency lists; Jacobi: the target's prediction at every node).
// Outputs are host memory. The logits (and hidden rows) stay where the forward wrote them
// (device memory on CUDA); the caller reads them only when it needs them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kv_commit.h"
#include "llama.h"
#include "verify.h"

namespace canopy {

enum class DecodeChoice : int32_t {
  kArgmax = 1,      // causal step, argmax of each logits row
  kGreedyTree = 2,  // tree step, greedy verification and commit
};

struct DecodeStepParams {
  LlamaForwardParams forward;  // forward.logits: [n_logit_rows, vocab] f32, required
  DecodeChoice choice = DecodeChoice::kArgmax;
  int64_t region_rows = 0;  // rows of each sequence's cache region (kGreedyTree, plain caches)
  int32_t top_k = 0;
  // Outputs (host).
  int32_t* next_token = nullptr;      // [B]
  int32_t* accepted_count = nullptr;  // [B]
  int32_t* accepted_nodes = nullptr;  // [n - B] draft nodes, CSR by the verify indptr (kGreedyTree)
  int32_t* new_lens = nullptr;        // [B]
  int32_t* top_k_ids = nullptr;       // [n_logit_rows * top_k] when top_k > 0
};

// The verify tree and commit plan of a kGreedyTree step (host vectors).
struct DecodeStepTree {
  std::vector<int32_t> indptr, tokens, parents;  // verify.h layout of the drafts
  std::vector<int32_t> kv_indptr, commit_count, commit_nodes;  // kv_commit.h plan: step nodes [0, 1 + accepted...]
  VerifyTree view() const {
    VerifyTree t;
    t.batch = static_cast<int32_t>(indptr.size()) - 1;
    t.indptr = indptr.data();
    t.tokens = tokens.data();
    t.parents = parents.data();
    return t;
  }
};

inline int64_t DecodeStepNumDrafts(const DecodeStepParams& p) { return p.forward.n - p.forward.batch; }

// Checks what the step adds to CheckLlamaForward.
inline Status CheckDecodeStep(const LlamaModelDesc& m, const DecodeStepParams& p) {
  const LlamaForwardParams& f = p.forward;
  CANOPY_RETURN_IF_ERROR(CheckLlamaForward(m, f));
  if (f.logits == nullptr) return Status::InvalidArgument("step: logits are required");
  if (p.next_token == nullptr || p.accepted_count == nullptr || p.new_lens == nullptr) {
    return Status::InvalidArgument("step: nextToken, acceptedCount and newLens are required");
  }
  if (p.top_k < 0 || p.top_k > m.vocab) {
    return Status::InvalidArgument("step: topK must be in [0, " + std::to_string(m.vocab) + "]; received " + std::to_string(p.top_k));
  }
  if (p.top_k > 0 && p.top_k_ids == nullptr) return Status::InvalidArgument("step: topKIds is required with topK");
  if (p.choice == DecodeChoice::kArgmax) {
    if (f.mask != MaskMode::kCausal) return Status::InvalidArgument("step: choice argmax needs the causal mask");
    if (f.n_logit_rows != f.batch) {
      return Status::InvalidArgument("step: choice argmax needs one logits row per sequence (" + std::to_string(f.batch) +
                                     "); received " + std::to_string(f.n_logit_rows));
    }
    return Status::Ok();
  }
  if (p.choice != DecodeChoice::kGreedyTree) return Status::InvalidArgument("step: choice must be 1 (argmax) or 2 (greedy tree)");
  if (f.mask != MaskMode::kTree) return Status::InvalidArgument("step: choice greedy tree needs the tree mask");
  if (f.n_logit_rows != f.n) return Status::InvalidArgument("step: choice greedy tree needs a logits row for every step token");
  for (int64_t r = 0; r < f.n; ++r) {
    if (f.logit_rows[r] != r) {
      return Status::InvalidArgument("step: logitRows[" + std::to_string(r) + "] must be " + std::to_string(r) + " (every step token, in order)");
    }
  }
  if (DecodeStepNumDrafts(p) > 0 && p.accepted_nodes == nullptr) return Status::InvalidArgument("step: acceptedNodes is required");
  for (int32_t b = 0; b < f.batch; ++b) {
    const int32_t first = f.qo_indptr[b], end = f.qo_indptr[b + 1];
    if (end <= first) return Status::InvalidArgument("step: sequence " + std::to_string(b) + " has no pending token");
    if (f.tree_parents[first] != -1) {
      return Status::InvalidArgument("step: parents[" + std::to_string(first) + "] (sequence " + std::to_string(b) +
                                     "'s pending token) must be -1");
    }
    for (int32_t t = first + 1; t < end; ++t) {
      if (f.tree_parents[t] < 0) {
        return Status::InvalidArgument("step: parents[" + std::to_string(t) + "] must be >= 0 (every draft node hangs below the pending token); received " +
                                       std::to_string(f.tree_parents[t]));
      }
    }
  }
  if (f.kv_quant == nullptr && (p.region_rows < 1 || f.kv_start[f.batch - 1] + p.region_rows > f.capacity)) {
    return Status::InvalidArgument("step: regionRows must be in [1, " + std::to_string(f.capacity - f.kv_start[f.batch - 1]) +
                                   "]; received " + std::to_string(p.region_rows));
  }
  return Status::Ok();
}

// A kArgmax step's outputs besides its tokens: nothing accepted, every fed token committed.
inline void SetArgmaxStepLengths(const DecodeStepParams& p) {
  const LlamaForwardParams& f = p.forward;
  for (int32_t b = 0; b < f.batch; ++b) {
    p.accepted_count[b] = 0;
    p.new_lens[b] = f.kv_len_before[b] + (f.qo_indptr[b + 1] - f.qo_indptr[b]);
  }
}

// Where greedy verification of a kGreedyTree step writes: the step's own outputs.
inline VerifyOutput DecodeStepVerifyOutput(const DecodeStepParams& p) {
  VerifyOutput vo;
  vo.accepted_count = p.accepted_count;
  vo.accepted_nodes = p.accepted_nodes;
  vo.next_token = p.next_token;
  return vo;
}

// The verify tree of a kGreedyTree step (see above).
inline DecodeStepTree MakeDecodeStepTree(const DecodeStepParams& p) {
  const LlamaForwardParams& f = p.forward;
  DecodeStepTree t;
  t.indptr.assign(f.batch + 1, 0);
  for (int32_t b = 0; b < f.batch; ++b) {
    t.indptr[b + 1] = f.qo_indptr[b + 1] - (b + 1);
    for (int32_t s = f.qo_indptr[b] + 1; s < f.qo_indptr[b + 1]; ++s) {
      t.tokens.push_back(f.tokens[s]);
      t.parents.push_back(f.tree_parents[s] - 1);
    }
  }
  return t;
}

// The commit plan of a verified kGreedyTree step: step nodes [0, 1 + accepted...] per sequence
// (the pending token, then the accepted path), tree_indptr = qo_indptr.
inline KvCommitPlan MakeDecodeStepCommit(const DecodeStepParams& p, DecodeStepTree* t) {
  const LlamaForwardParams& f = p.forward;
  t->kv_indptr.assign(f.batch + 1, 0);
  t->commit_count.assign(f.batch, 0);
  t->commit_nodes.assign(f.n, -1);
  for (int32_t b = 0; b < f.batch; ++b) {
    t->kv_indptr[b] = f.kv_start[b];
    t->commit_count[b] = 1 + p.accepted_count[b];
    int32_t* nodes = t->commit_nodes.data() + f.qo_indptr[b];
    nodes[0] = 0;
    for (int32_t j = 0; j < p.accepted_count[b]; ++j) nodes[1 + j] = 1 + p.accepted_nodes[t->indptr[b] + j];
  }
  t->kv_indptr[f.batch] = static_cast<int32_t>(f.kv_start[f.batch - 1] + p.region_rows);
  KvCommitPlan plan;
  plan.batch = f.batch;
  plan.kv_indptr = t->kv_indptr.data();
  plan.prefix_lens = f.kv_len_before;
  plan.tree_indptr = f.qo_indptr;
  plan.accepted_count = t->commit_count.data();
  plan.accepted_nodes = t->commit_nodes.data();
  return plan;
}

// The quantized cache's batch of a step (kv_quant.h).
inline QuantKvBatch MakeDecodeStepQuantBatch(const LlamaForwardParams& f) {
  QuantKvBatch qb;
  qb.batch = f.batch;
  qb.kv_start = f.kv_start;
  qb.res_start = f.kv_res_start;
  return qb;
}

// The top-k of one row (host), in the argmax order; -1 past the values above -inf. `ids`: k slots.
inline void TopKRow(const float* row, int64_t vocab, int32_t k, int32_t* ids) {
  for (int32_t j = 0; j < k; ++j) ids[j] = -1;
  std::vector<float> vals(static_cast<size_t>(k), F32FromBits(0xff800000u));
  for (int64_t y = 0; y < vocab; ++y) {
    const float x = ArgmaxKey(row[y]);
    if (!(x > vals[k - 1])) continue;  // not above the k-th (ties keep the lower id already kept)
    int32_t pos = k - 1;
    while (pos > 0 && x > vals[pos - 1]) {
      vals[pos] = vals[pos - 1];
      ids[pos] = ids[pos - 1];
      --pos;
    }
    vals[pos] = x;
    ids[pos] = static_cast<int32_t>(y);
  }
}

namespace cpu {
// Every pointer of the model, the cache and the logits / hidden buffers is host memory.
Status DecodeStep(const LlamaModelDesc& m, const DecodeStepParams& p);
}  // namespace cpu
namespace cuda {
// The model, cache, logits and hidden buffers are device memory on the current device; the
// index arrays and outputs host memory. Synchronous on return; the outputs equal the CPU's for
// the same logits (the same argmax order and tree walk).
Status DecodeStep(const LlamaModelDesc& m, const DecodeStepParams& p);
}  // namespace cuda

}  // namespace canopy
