// Op family: decode_step (one decode step in one call: the forward pass, the token choice and
// the KV commit of the accepted path).
//
// It composes the existing ops and has no math of its own beyond the layout glue below:
//   forward  LlamaForward (llama.h) over the step's tokens, logits of `forward.logit_rows`
//   choose   kArgmax:      next_token[b] = argmax(logits row b), the argmax of verify.h (ties to
//                          the lowest id, NaN as -inf, -1 for a row with nothing above -inf)
//            kGreedyTree:  VerifyGreedy (verify.h) of each sequence's draft below its pending token
//            kSample:      next_token[b] = the sampler chain (sampling.h) of logits row b with
//                          uniforms[b] and row b's penalty window (temperature 0: the argmax of
//                          the biased, penalised logits)
//            kSampleTree:  the sampler chain over every step row (row r penalised from its own
//                          window: the sequence's tokens, then the node's ancestors and the node),
//                          then temperature > 0: VerifySampling (verify.h) of the processed p rows
//                          against the draft's q rows (or point masses), uniforms per verify row;
//                          temperature 0: VerifyGreedy of the processed logits. A path that reaches
//                          a row with no finite distribution (chain token -1) is cut there: the
//                          nodes accepted before it stay, next_token = -1.
//            kScores:      nothing chosen: only top_k ids (and their log-probabilities); a tree
//                          step's tokens stay uncommitted (draft trees grow over several calls),
//                          a causal step's are committed by the forward. next_token = -1.
//   commit   kGreedyTree, kSampleTree: CommitKv (kv_commit.h) or CommitQuantKv (kv_quant.h) of
//                          the pending token and the accepted nodes
//
// kArgmax (mask kCausal): sequence b's step tokens are committed by the forward itself;
//   logit_rows has one entry per sequence (typically its last token); accepted_count[b] = 0;
//   new_lens[b] = kv_len_before[b] + its step tokens.
// kSample has kArgmax's layout, kSampleTree kGreedyTree's (the verify rows are the step rows).
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
//   top_k_logprobs (optional, f32 host): the log-softmax of row r at those ids, in double:
//   lp = x - (m + log(sum_y exp(x_y - m))), m the row's largest value, NaN and -inf rows terms
//   skipped; -inf where the id is -1 (draft trees score their nodes with it).
//
// The sampled choices' draft q (kSampleTree, temperature > 0, optional): draft_probs holds q rows
//   [draft_probs_rows, vocab] on the logits' device (a draft model's processed distributions,
//   written there by its own kSample steps through probs / probs_rows) and draft_rows[r] names
//   the q row of step row r (-1: none). Every row the verifier may read, i.e. each sequence's
//   pending row when it has drafts and every draft node with children, must name one.
// kSample's probs (optional): the processed distribution of logits row r is written to row
//   probs_rows[r] of probs [probs_total_rows, vocab] (on the logits' device; -1: not written), so a
//   draft model's q rows for several positions gather in one buffer the target's step reads.
// Outputs are host memory. The logits (and hidden rows) stay where the forward wrote them
// (device memory on CUDA); the caller reads them only when it needs them.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kv_commit.h"
#include "llama.h"
#include "sampling.h"
#include "verify.h"

namespace canopy {

enum class DecodeChoice : int32_t {
  kArgmax = 1,      // causal step, argmax of each logits row
  kGreedyTree = 2,  // tree step, greedy verification and commit
  kSample = 3,      // causal step, the sampler chain of each logits row
  kSampleTree = 4,  // tree step, the sampler chain of every row, sampling (or greedy) verification and commit
  kScores = 5,      // any step, top-k ids and log-probabilities only (a tree step stays uncommitted)
};

// The sampler chain of kSample / kSampleTree (host memory unless stated).
struct DecodeStepSampling {
  SamplingParams params;
  SamplingBias bias;
  SamplingPenalties penalties;      // CSR over the logits rows, or indptr null
  const double* uniforms = nullptr;  // kSample: [B] (null: 0); kSampleTree, temperature > 0: [n], verify.h's convention
  const float* draft_probs = nullptr;  // kSampleTree: q rows on the logits' device, or null (point masses)
  int64_t draft_probs_rows = 0;
  const int32_t* draft_rows = nullptr;  // [n] with draft_probs
  float* probs = nullptr;               // kSample: processed distributions on the logits' device, or null
  int64_t probs_total_rows = 0;
  const int32_t* probs_rows = nullptr;  // [B] with probs
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
  float* top_k_logprobs = nullptr;    // [n_logit_rows * top_k], optional with top_k
  DecodeStepSampling sampling;        // kSample, kSampleTree
};

inline bool DecodeChoiceIsTree(DecodeChoice c) { return c == DecodeChoice::kGreedyTree || c == DecodeChoice::kSampleTree; }

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

// Checks the sampled choices' inputs (the chain's own arguments, the q rows and the probs rows).
inline Status CheckDecodeStepSampling(const LlamaModelDesc& m, const DecodeStepParams& p) {
  const LlamaForwardParams& f = p.forward;
  const DecodeStepSampling& s = p.sampling;
  const bool tree = p.choice == DecodeChoice::kSampleTree;
  const double* u = tree ? nullptr : s.uniforms;  // a tree's uniforms are verify.h's, checked below
  CANOPY_RETURN_IF_ERROR(CheckSamplingArgs(f.n_logit_rows, m.vocab, s.params, s.bias, s.penalties, u));
  if (tree && s.params.temperature > 0.0) {
    if (s.uniforms == nullptr) return Status::InvalidArgument("step: sampling.uniforms is required for a sampled tree step");
    CANOPY_RETURN_IF_ERROR(CheckVerifyUniforms(s.uniforms, f.n));
  }
  if (s.draft_probs != nullptr) {
    if (!tree) return Status::InvalidArgument("step: sampling.draftProbs belongs to a tree step");
    if (s.draft_rows == nullptr) return Status::InvalidArgument("step: sampling.draftRows is required with draftProbs");
    std::vector<char> has_children(static_cast<size_t>(f.n), 0);
    for (int32_t b = 0; b < f.batch; ++b) {
      for (int32_t t = f.qo_indptr[b] + 1; t < f.qo_indptr[b + 1]; ++t) has_children[f.qo_indptr[b] + f.tree_parents[t]] = 1;
    }
    for (int64_t r = 0; r < f.n; ++r) {
      const int32_t q = s.draft_rows[r];
      if (q < -1 || q >= s.draft_probs_rows || (has_children[r] && q < 0)) {
        return Status::InvalidArgument("step: sampling.draftRows[" + std::to_string(r) + "] must be " +
                                       (has_children[r] ? "a row" : "-1 or a row") + " of draftProbs in [0, " +
                                       std::to_string(s.draft_probs_rows) + "); received " + std::to_string(q));
      }
    }
  }
  if (s.probs != nullptr) {
    if (tree) return Status::InvalidArgument("step: sampling.probs belongs to a causal sampled step");
    if (s.probs_rows == nullptr) return Status::InvalidArgument("step: sampling.probsRows is required with probs");
    for (int64_t r = 0; r < f.n_logit_rows; ++r) {
      if (s.probs_rows[r] < -1 || s.probs_rows[r] >= s.probs_total_rows) {
        return Status::InvalidArgument("step: sampling.probsRows[" + std::to_string(r) + "] must be -1 or a row of probs in [0, " +
                                       std::to_string(s.probs_total_rows) + "); received " + std::to_string(s.probs_rows[r]));
      }
    }
  }
  return Status::Ok();
}

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
  if (p.top_k_logprobs != nullptr && p.top_k == 0) return Status::InvalidArgument("step: topKLogprobs needs topK > 0");
  const int32_t c = static_cast<int32_t>(p.choice);
  if (c < 1 || c > 5) {
    return Status::InvalidArgument("step: choice must be 1 (argmax), 2 (greedy tree), 3 (sample), 4 (sampled tree) or 5 (scores); received " +
                                   std::to_string(c));
  }
  if (p.choice == DecodeChoice::kScores) {
    if (p.top_k == 0) return Status::InvalidArgument("step: choice scores needs topK > 0");
    return Status::Ok();
  }
  if (!DecodeChoiceIsTree(p.choice)) {
    if (f.mask != MaskMode::kCausal) return Status::InvalidArgument("step: choices argmax and sample need the causal mask");
    if (f.n_logit_rows != f.batch) {
      return Status::InvalidArgument("step: choices argmax and sample need one logits row per sequence (" + std::to_string(f.batch) +
                                     "); received " + std::to_string(f.n_logit_rows));
    }
    return p.choice == DecodeChoice::kSample ? CheckDecodeStepSampling(m, p) : Status::Ok();
  }
  if (f.mask != MaskMode::kTree) return Status::InvalidArgument("step: tree choices need the tree mask");
  if (f.n_logit_rows != f.n) return Status::InvalidArgument("step: tree choices need a logits row for every step token");
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
  return p.choice == DecodeChoice::kSampleTree ? CheckDecodeStepSampling(m, p) : Status::Ok();
}

// A causal step's outputs besides its tokens (kArgmax, kSample, kScores): nothing accepted,
// every fed token committed; a kScores tree step commits nothing and chooses nothing.
inline void SetArgmaxStepLengths(const DecodeStepParams& p) {
  const LlamaForwardParams& f = p.forward;
  const bool tree = f.mask == MaskMode::kTree;
  for (int32_t b = 0; b < f.batch; ++b) {
    p.accepted_count[b] = 0;
    p.new_lens[b] = f.kv_len_before[b] + (tree ? 0 : f.qo_indptr[b + 1] - f.qo_indptr[b]);
    if (p.choice == DecodeChoice::kScores) p.next_token[b] = -1;
  }
  if (p.accepted_nodes != nullptr) {
    for (int64_t i = 0; i < DecodeStepNumDrafts(p); ++i) p.accepted_nodes[i] = -1;
  }
}

// kSampleTree: cuts each sequence's accepted path at the first row the chain found no finite
// distribution in (chain_tokens[r] < 0): the nodes before it stay, next_token = -1.
inline void CutAtBrokenRows(const DecodeStepParams& p, const DecodeStepTree& t, const int32_t* chain_tokens) {
  const LlamaForwardParams& f = p.forward;
  for (int32_t b = 0; b < f.batch; ++b) {
    const int32_t base = f.qo_indptr[b];
    int32_t* nodes = p.accepted_nodes + t.indptr[b];
    int32_t keep = -1;  // path position of the first broken row
    for (int32_t j = 0; j <= p.accepted_count[b]; ++j) {
      const int32_t row = j == 0 ? 0 : 1 + nodes[j - 1];
      if (chain_tokens[base + row] < 0) {
        keep = j;
        break;
      }
    }
    if (keep < 0) continue;
    for (int32_t j = keep; j < p.accepted_count[b]; ++j) nodes[j] = -1;
    p.accepted_count[b] = keep;
    p.next_token[b] = -1;
  }
}

// The chain's outputs of a sampled step: probs rows go through probs_rows (kSample) afterwards.
inline SamplingOutput DecodeStepChainOutput(int32_t* tokens, float* probs, float* logits) {
  SamplingOutput o;
  o.tokens = tokens;
  o.probs = probs;
  o.logits = logits;
  return o;
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

// log(sum_y exp(x_y - m)) + m over a row (host, double; NaN and -inf terms skipped), the
// log-softmax normaliser of top_k_logprobs. -inf for a row with nothing above -inf.
inline double RowLogSumExp(const float* row, int64_t vocab) {
  double m = -INFINITY;
  for (int64_t y = 0; y < vocab; ++y) {
    const double x = row[y];
    if (x > m) m = x;
  }
  if (m == -INFINITY || m == INFINITY) return m;
  double s = 0.0;
  for (int64_t y = 0; y < vocab; ++y) {
    const double x = row[y];
    if (x > -INFINITY) s += std::exp(x - m);
  }
  return m + std::log(s);
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
