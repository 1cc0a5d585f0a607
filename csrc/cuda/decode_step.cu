// CUDA decode step (csrc/common/decode_step.h): LlamaForward, then the argmax of each row or the
// greedy verification of the drafts, then the KV commit of the accepted path, in this one call
// (one worker-thread call from JavaScript; the parts synchronise the device between them). Each
// part is the existing launcher; only the top-k ids kernel is this file's own.
#include <cuda_runtime.h>

#include "../common/decode_step.h"
#include "../common/kv_quant.h"
#include "../common/transformer_ops.h"
#include "block_argmax.cuh"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kTopKThreads = 256;

// One block per row: k rounds, round j picks the best candidate strictly after round j-1's in
// the argmax order (TopKRow's result: larger value first, ties to the lower id, NaN as -inf, -1
// once nothing above -inf is left).
__global__ void TopKKernel(const float* logits, int64_t vocab, int32_t k, int32_t* out) {
  __shared__ float s_value[kTopKThreads];
  __shared__ int32_t s_index[kTopKThreads];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  ArgmaxCandidate prev{F32FromBits(0x7f800000u), -1};  // better than every candidate
  for (int32_t j = 0; j < k; ++j) {
    ArgmaxCandidate best = ArgmaxNone();
    for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
      ArgmaxCandidate c{ArgmaxKey(row[y]), static_cast<int32_t>(y)};
      if (ArgmaxBetter(prev, c) && ArgmaxBetter(c, best)) best = c;
    }
    prev = BlockArgmax(best, s_value, s_index);
    if (threadIdx.x == 0) out[static_cast<int64_t>(blockIdx.x) * k + j] = prev.index;
    __syncthreads();  // everyone has read slot 0 before the next round writes it
  }
}

Status TopKToHost(const float* logits, int64_t rows, int64_t vocab, int32_t k, int32_t* host_out) {
  if (rows == 0) return Status::Ok();
  WorkspaceLease ws;
  const size_t bytes = static_cast<size_t>(rows) * k * sizeof(int32_t);
  const size_t off = ws.Reserve(bytes);
  CANOPY_RETURN_IF_ERROR(ws.Acquire());
  TopKKernel<<<static_cast<unsigned>(rows), kTopKThreads>>>(logits, vocab, k, ws.At<int32_t>(off));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(host_out, ws.At<int32_t>(off), bytes, cudaMemcpyDeviceToHost));
  return Status::Ok();
}

}  // namespace

Status DecodeStep(const LlamaModelDesc& m, const DecodeStepParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckDecodeStep(m, p));
  const LlamaForwardParams& f = p.forward;
  CANOPY_RETURN_IF_ERROR(LlamaForward(m, f));
  if (p.top_k > 0) CANOPY_RETURN_IF_ERROR(TopKToHost(f.logits, f.n_logit_rows, m.vocab, p.top_k, p.top_k_ids));
  if (p.choice == DecodeChoice::kArgmax) {
    CANOPY_RETURN_IF_ERROR(ArgmaxToHost(f.logits, f.batch, m.vocab, p.next_token));
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

}  // namespace cuda
}  // namespace canopy
