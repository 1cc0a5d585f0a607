// CPU decode step (csrc/common/decode_step.h): LlamaForward, then the token choice (the argmax of
// each row, the sampler chain, greedy or sampling verification of the drafts), then the KV
// commit of the accepted path, all in this one call. Each part is the existing op; this file
// only wires them.
#include <cstring>
#include <vector>

#include "../common/decode_step.h"
#include "../common/transformer_ops.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {
namespace {

// Grow-only scratch of the calling thread: no allocation per step once warm.
struct StepScratch {
  std::vector<float> rows;   // processed p rows or logits [n, vocab]
  std::vector<float> q;      // gathered draft q rows [n, vocab]
  std::vector<int32_t> chain_tokens;
};

StepScratch& Scratch() {
  thread_local StepScratch s;
  return s;
}

Status Commit(const LlamaModelDesc& m, const DecodeStepParams& p, DecodeStepTree* t) {
  const LlamaForwardParams& f = p.forward;
  const KvCommitPlan plan = MakeDecodeStepCommit(p, t);
  if (f.kv_quant != nullptr) {
    return CommitQuantKv(*f.kv_quant, MakeDecodeStepQuantBatch(f), plan.prefix_lens, plan.tree_indptr, plan.accepted_count,
                         plan.accepted_nodes, f.n, p.new_lens);
  }
  return CommitKv(f.k_cache, f.v_cache, f.cache_dtype, m.n_layers, f.capacity, static_cast<int64_t>(m.n_kv_heads) * m.head_dim,
                  plan, f.n, p.new_lens);
}

// kSample: the chain over the B rows; probs (a draft's q) scattered to their rows.
Status SampleCausal(const LlamaModelDesc& m, const DecodeStepParams& p) {
  const LlamaForwardParams& f = p.forward;
  const DecodeStepSampling& s = p.sampling;
  StepScratch& sc = Scratch();
  float* probs = nullptr;
  if (s.probs != nullptr) {
    sc.rows.resize(static_cast<size_t>(f.batch * m.vocab));
    probs = sc.rows.data();
  }
  CANOPY_RETURN_IF_ERROR(SamplingChain(f.logits, f.batch, m.vocab, s.params, s.bias, s.penalties, s.uniforms,
                                       DecodeStepChainOutput(p.next_token, probs, nullptr)));
  if (probs != nullptr) {
    for (int32_t b = 0; b < f.batch; ++b) {
      if (s.probs_rows[b] < 0) continue;
      std::memcpy(s.probs + s.probs_rows[b] * m.vocab, probs + b * m.vocab, static_cast<size_t>(m.vocab) * sizeof(float));
    }
  }
  SetArgmaxStepLengths(p);
  return Status::Ok();
}

// kSampleTree: the chain over every row (each penalised from its own window), then sampling
// verification of p against the gathered q (or greedy verification of the processed logits).
Status SampleTree(const LlamaModelDesc& m, const DecodeStepParams& p, DecodeStepTree* t) {
  const LlamaForwardParams& f = p.forward;
  const DecodeStepSampling& s = p.sampling;
  const bool greedy = s.params.temperature == 0.0;
  StepScratch& sc = Scratch();
  sc.rows.resize(static_cast<size_t>(f.n * m.vocab));
  sc.chain_tokens.resize(static_cast<size_t>(f.n));
  CANOPY_RETURN_IF_ERROR(SamplingChain(f.logits, f.n, m.vocab, s.params, s.bias, s.penalties, nullptr,
                                       DecodeStepChainOutput(sc.chain_tokens.data(), greedy ? nullptr : sc.rows.data(),
                                                             greedy ? sc.rows.data() : nullptr)));
  if (greedy) return VerifyGreedy(t->view(), sc.rows.data(), DType::kF32, m.vocab, DecodeStepVerifyOutput(p));
  const float* q = nullptr;
  if (s.draft_probs != nullptr) {
    sc.q.resize(static_cast<size_t>(f.n * m.vocab));
    for (int64_t r = 0; r < f.n; ++r) {
      // Rows without a q are never read by the verifier (checked: they have no children).
      if (s.draft_rows[r] >= 0) {
        std::memcpy(sc.q.data() + r * m.vocab, s.draft_probs + s.draft_rows[r] * m.vocab, static_cast<size_t>(m.vocab) * sizeof(float));
      }
    }
    q = sc.q.data();
  }
  CANOPY_RETURN_IF_ERROR(VerifySampling(t->view(), sc.rows.data(), q, m.vocab, s.uniforms, DecodeStepVerifyOutput(p)));
  CutAtBrokenRows(p, *t, sc.chain_tokens.data());
  return Status::Ok();
}

void TopK(const LlamaModelDesc& m, const DecodeStepParams& p) {
  const LlamaForwardParams& f = p.forward;
  ParallelFor(f.n_logit_rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = f.logits + r * m.vocab;
      int32_t* ids = p.top_k_ids + r * p.top_k;
      TopKRow(row, m.vocab, p.top_k, ids);
      if (p.top_k_logprobs == nullptr) continue;
      const double lse = RowLogSumExp(row, m.vocab);
      for (int32_t j = 0; j < p.top_k; ++j) {
        p.top_k_logprobs[r * p.top_k + j] = ids[j] < 0 ? -INFINITY : static_cast<float>(static_cast<double>(row[ids[j]]) - lse);
      }
    }
  });
}

}  // namespace

Status DecodeStep(const LlamaModelDesc& m, const DecodeStepParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckDecodeStep(m, p));
  const LlamaForwardParams& f = p.forward;
  CANOPY_RETURN_IF_ERROR(LlamaForward(m, f));
  if (p.top_k > 0) TopK(m, p);
  switch (p.choice) {
    case DecodeChoice::kArgmax:
      CANOPY_RETURN_IF_ERROR(Argmax(f.logits, f.batch, m.vocab, p.next_token));
      SetArgmaxStepLengths(p);
      return Status::Ok();
    case DecodeChoice::kScores:
      SetArgmaxStepLengths(p);
      return Status::Ok();
    case DecodeChoice::kSample:
      return SampleCausal(m, p);
    default:
      break;
  }
  DecodeStepTree t = MakeDecodeStepTree(p);
  if (p.choice == DecodeChoice::kSampleTree) {
    CANOPY_RETURN_IF_ERROR(SampleTree(m, p, &t));
  } else {
    CANOPY_RETURN_IF_ERROR(VerifyGreedy(t.view(), f.logits, DType::kF32, m.vocab, DecodeStepVerifyOutput(p)));
  }
  return Commit(m, p, &t);
}

}  // namespace cpu
}  // namespace canopy
