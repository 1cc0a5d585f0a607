// CPU decode step (csrc/common/decode_step.h): LlamaForward, then the argmax of each row or the
// greedy verification of the drafts, then the KV commit of the accepted path, all in this one
// call. Each part is the existing op; this file only wires them.
#include "../common/decode_step.h"
#include "../common/transformer_ops.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {

Status DecodeStep(const LlamaModelDesc& m, const DecodeStepParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckDecodeStep(m, p));
  const LlamaForwardParams& f = p.forward;
  CANOPY_RETURN_IF_ERROR(LlamaForward(m, f));
  if (p.top_k > 0) {
    ParallelFor(f.n_logit_rows, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) TopKRow(f.logits + r * m.vocab, m.vocab, p.top_k, p.top_k_ids + r * p.top_k);
    });
  }
  if (p.choice == DecodeChoice::kArgmax) {
    CANOPY_RETURN_IF_ERROR(Argmax(f.logits, f.batch, m.vocab, p.next_token));
    SetArgmaxStepLengths(p);
    return Status::Ok();
  }
  DecodeStepTree t = MakeDecodeStepTree(p);
  CANOPY_RETURN_IF_ERROR(VerifyGreedy(t.view(), f.logits, DType::kF32, m.vocab, DecodeStepVerifyOutput(p)));
  const KvCommitPlan plan = MakeDecodeStepCommit(p, &t);
  if (f.kv_quant != nullptr) {
    return CommitQuantKv(*f.kv_quant, MakeDecodeStepQuantBatch(f), plan.prefix_lens, plan.tree_indptr, plan.accepted_count,
                         plan.accepted_nodes, f.n, p.new_lens);
  }
  return CommitKv(f.k_cache, f.v_cache, f.cache_dtype, m.n_layers, f.capacity, static_cast<int64_t>(m.n_kv_heads) * m.head_dim,
                  plan, f.n, p.new_lens);
}

}  // namespace cpu
}  // namespace canopy
