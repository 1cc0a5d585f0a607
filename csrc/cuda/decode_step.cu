// CUDA decode step (csrc/common/decode_step.h): LlamaForward, then the token choice (the argmax
// of each row, the sampler chain, greedy or sampling verification of the drafts), then the KV
// commit of the accepted path, in this one call (one worker-thread call from JavaScript; the
// parts synchronise the device between them). Each part is the existing launcher; only the
// top-k kernel is this file's own. The processed rows and the gathered q rows live in the
// forward scratch (taken after the forward has given it back, before the kernel workspace the
// chain and the verifier take: the documented order).
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

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
// With logprobs: afterwards lp_j = x_j - (m + log(sum exp(x - m))) in double (RowLogSumExp's
// terms; the block sum's order differs from the CPU's, so the values agree to rounding only).
__global__ void TopKKernel(const float* logits, int64_t vocab, int32_t k, int32_t* out, float* logprobs) {
  __shared__ float s_value[kTopKThreads];
  __shared__ int32_t s_index[kTopKThreads];
  __shared__ double s_sum[kTopKThreads];
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
  if (logprobs == nullptr) return;
  ArgmaxCandidate top = ArgmaxNone();
  for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
    ArgmaxCandidate c{ArgmaxKey(row[y]), static_cast<int32_t>(y)};
    if (ArgmaxBetter(c, top)) top = c;
  }
  top = BlockArgmax(top, s_value, s_index);
  const double m = top.index < 0 ? -INFINITY : static_cast<double>(top.value);
  double acc = 0.0;
  if (m > -INFINITY && m < INFINITY) {
    for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
      const double x = row[y];
      if (x > -INFINITY) acc += exp(x - m);
    }
  }
  s_sum[threadIdx.x] = acc;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h) s_sum[threadIdx.x] += s_sum[threadIdx.x + h];
    __syncthreads();
  }
  const double lse = m > -INFINITY && m < INFINITY ? m + log(s_sum[0]) : m;
  for (int32_t j = threadIdx.x; j < k; j += blockDim.x) {
    const int64_t o = static_cast<int64_t>(blockIdx.x) * k + j;
    const int32_t id = out[o];
    logprobs[o] = id < 0 ? -INFINITY : static_cast<float>(static_cast<double>(row[id]) - lse);
  }
}

Status TopKToHost(const float* logits, int64_t rows, int64_t vocab, int32_t k, int32_t* host_out, float* host_logprobs) {
  if (rows == 0) return Status::Ok();
  WorkspaceLease ws;
  const size_t bytes = static_cast<size_t>(rows) * k * sizeof(int32_t);
  const size_t off = ws.Reserve(bytes);
  const size_t off_lp = ws.Reserve(host_logprobs ? static_cast<size_t>(rows) * k * sizeof(float) : 256);
  CANOPY_RETURN_IF_ERROR(ws.Acquire());
  TopKKernel<<<static_cast<unsigned>(rows), kTopKThreads>>>(logits, vocab, k, ws.At<int32_t>(off),
                                                             host_logprobs ? ws.At<float>(off_lp) : nullptr);
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(host_out, ws.At<int32_t>(off), bytes, cudaMemcpyDeviceToHost));
  if (host_logprobs) {
    CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(host_logprobs, ws.At<float>(off_lp), static_cast<size_t>(rows) * k * sizeof(float),
                                           cudaMemcpyDeviceToHost));
  }
  return Status::Ok();
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

// Copies whole vocab rows between device buffers: dst row dst_rows[i] <- src row src_rows[i]
// (either index list null: i itself; a negative index: skipped).
Status CopyRows(float* dst, const int32_t* dst_rows, const float* src, const int32_t* src_rows, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = dst_rows ? dst_rows[i] : i, s = src_rows ? src_rows[i] : i;
    if (d < 0 || s < 0) continue;
    CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst + d * vocab, src + s * vocab, static_cast<size_t>(vocab) * sizeof(float),
                                                cudaMemcpyDeviceToDevice));
  }
  return Status::Ok();
}

// kSample: the chain over the B rows; probs (a draft's q) scattered to their rows.
Status SampleCausal(const LlamaModelDesc& m, const DecodeStepParams& p) {
  const LlamaForwardParams& f = p.forward;
  const DecodeStepSampling& s = p.sampling;
  WorkspaceLease ws(WorkspaceLease::kForward);
  const size_t o_probs = ws.Reserve(s.probs ? static_cast<size_t>(f.batch) * m.vocab * sizeof(float) : 256);
  CANOPY_RETURN_IF_ERROR(ws.Acquire());
  float* probs = s.probs ? ws.At<float>(o_probs) : nullptr;
  CANOPY_RETURN_IF_ERROR(SamplingChain(f.logits, f.batch, m.vocab, s.params, s.bias, s.penalties, s.uniforms,
                                       DecodeStepChainOutput(p.next_token, probs, nullptr)));
  if (probs != nullptr) {
    CANOPY_RETURN_IF_ERROR(CopyRows(s.probs, s.probs_rows, probs, nullptr, f.batch, m.vocab));
    CANOPY_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());  // the scratch is given back below
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
  const bool gather = !greedy && s.draft_probs != nullptr;
  const size_t row_bytes = static_cast<size_t>(f.n) * m.vocab * sizeof(float);
  WorkspaceLease ws(WorkspaceLease::kForward);
  const size_t o_rows = ws.Reserve(row_bytes);
  const size_t o_q = ws.Reserve(gather ? row_bytes : 256);
  CANOPY_RETURN_IF_ERROR(ws.Acquire());
  float* rows = ws.At<float>(o_rows);
  std::vector<int32_t> chain_tokens(static_cast<size_t>(f.n));
  CANOPY_RETURN_IF_ERROR(SamplingChain(f.logits, f.n, m.vocab, s.params, s.bias, s.penalties, nullptr,
                                       DecodeStepChainOutput(chain_tokens.data(), greedy ? nullptr : rows, greedy ? rows : nullptr)));
  if (greedy) return VerifyGreedy(t->view(), rows, DType::kF32, m.vocab, DecodeStepVerifyOutput(p));
  const float* q = nullptr;
  if (gather) {
    // Rows without a q are never read by the verifier (checked: they have no children).
    CANOPY_RETURN_IF_ERROR(CopyRows(ws.At<float>(o_q), nullptr, s.draft_probs, s.draft_rows, f.n, m.vocab));
    q = ws.At<float>(o_q);
  }
  CANOPY_RETURN_IF_ERROR(VerifySampling(t->view(), rows, q, m.vocab, s.uniforms, DecodeStepVerifyOutput(p)));
  CutAtBrokenRows(p, *t, chain_tokens.data());
  return Status::Ok();
}

}  // namespace

Status DecodeStep(const LlamaModelDesc& m, const DecodeStepParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckDecodeStep(m, p));
  const LlamaForwardParams& f = p.forward;
  CANOPY_RETURN_IF_ERROR(LlamaForward(m, f));
  if (p.top_k > 0) CANOPY_RETURN_IF_ERROR(TopKToHost(f.logits, f.n_logit_rows, m.vocab, p.top_k, p.top_k_ids, p.top_k_logprobs));
  switch (p.choice) {
    case DecodeChoice::kArgmax:
      CANOPY_RETURN_IF_ERROR(ArgmaxToHost(f.logits, f.batch, m.vocab, p.next_token));
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

}  // namespace cuda
}  // namespace canopy
