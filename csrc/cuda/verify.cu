// CUDA tree verification (see csrc/common/verify.h). Written for correctness
// first: the results equal the CPU kernels' exactly.
//
// Greedy: one block per row computes the row's argmax (a shared-memory
// reduction under the total order "larger value, then lower index", which is
// associative, so the parallel result is the sequential one); then one thread
// per sequence runs GreedyWalk, the same code the CPU runs.
//
// Sampling: one block per sequence. The current distribution p lives in a
// per-sequence double scratch row in global memory. Element-wise updates are
// parallel (each element's value does not depend on the order); every sum is
// ChunkedSum: thread k sums chunk k left to right, then thread 0 adds the
// partials left to right, exactly as the CPU does with the same helpers. All
// threads read the same values after a barrier and so take the same
// decisions. The final inverse-CDF scan runs on thread 0 (VerifyInverseCdf).
//
// The small host arrays (tree, uniforms) are staged into one device
// allocation; the outputs come back in one copy.
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "../common/verify.h"
#include "block_argmax.cuh"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kArgmaxThreads = 256;
constexpr int kWalkThreads = 128;
constexpr int kSampleThreads = 256;

// ---- greedy -----------------------------------------------------------------

__global__ void RowArgmaxKernel(const void* logits, DType dtype, int64_t vocab, int32_t* out) {
  __shared__ float s_value[kArgmaxThreads];
  __shared__ int32_t s_index[kArgmaxThreads];
  const int64_t off = static_cast<int64_t>(blockIdx.x) * vocab;
  ArgmaxCandidate best = ArgmaxNone();
  for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
    ArgmaxCandidate c{ArgmaxKey(LoadFloat(logits, dtype, off + y)), static_cast<int32_t>(y)};
    if (ArgmaxBetter(c, best)) best = c;
  }
  const ArgmaxCandidate row_best = BlockArgmax(best, s_value, s_index);
  if (threadIdx.x == 0) out[blockIdx.x] = row_best.index;
}

struct RowArgmaxLookup {
  const int32_t* rows;  // the sequence's row 0
  CANOPY_HD int32_t operator()(int32_t local_row) const { return rows[local_row]; }
};

__global__ void GreedyWalkKernel(int32_t batch, const int32_t* indptr, const int32_t* tokens, const int32_t* parents,
                                 const int32_t* row_argmax, int32_t* scratch, int32_t* out_count, int32_t* out_nodes,
                                 int32_t* out_next) {
  const int32_t b = static_cast<int32_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const int32_t start = indptr[b], n = indptr[b + 1] - start;
  RowArgmaxLookup lookup{row_argmax + start + b};
  GreedyWalk(n, tokens + start, parents + start, lookup, scratch + 2 * static_cast<int64_t>(start),
             out_nodes + start, out_count + b, out_next + b);
}

// ---- sampling ---------------------------------------------------------------

struct SampleArgs {
  const int32_t* indptr;
  const int32_t* tokens;
  const int32_t* parents;
  const float* target;
  const float* draft;  // nullable
  int64_t vocab;
  const double* uniforms;
  double* p;         // [B, vocab]
  double* partials;  // [B, chunks]
  int32_t* out_count;
  int32_t* out_nodes;
  int32_t* out_next;
  int32_t* err_code;  // [B]
  int32_t* err_row;   // [B] local row
  double* err_sum;    // [B]
};

// ChunkedSum of r (double or float elements) by the whole block; partials written for the
// inverse CDF. Every thread returns the same total.
template <typename T>
__device__ double BlockChunkedSum(const T* r, int64_t vocab, double* partials, double* s_total) {
  const int64_t chunks = VerifyNumChunks(vocab);
  for (int64_t k = threadIdx.x; k < chunks; k += blockDim.x) {
    const int64_t end = (k + 1) * kVerifySumChunk < vocab ? (k + 1) * kVerifySumChunk : vocab;
    partials[k] = VerifyChunkSum(r, k * kVerifySumChunk, end);
  }
  __syncthreads();
  if (threadIdx.x == 0) *s_total = VerifySumPartials(partials, chunks);
  __syncthreads();
  const double total = *s_total;
  __syncthreads();
  return total;
}

// Checks a probability row (finite, >= 0; optionally copied into p) and its sum.
__device__ int32_t BlockLoadRow(const float* row, int64_t vocab, double* p, double* partials, int* s_flag,
                                double* s_total, double* sum, int32_t bad_value, int32_t bad_sum) {
  if (threadIdx.x == 0) *s_flag = 0;
  __syncthreads();
  for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
    const float v = row[y];
    if (!(v >= 0.0f) || isinf(v)) atomicOr(s_flag, 1);
    if (p) p[y] = static_cast<double>(v);
  }
  __syncthreads();
  const bool bad = *s_flag != 0;
  __syncthreads();
  if (bad) return bad_value;
  *sum = p ? BlockChunkedSum(p, vocab, partials, s_total) : BlockChunkedSum(row, vocab, partials, s_total);
  if (!(fabs(*sum - 1.0) <= kVerifyProbSumTolerance)) return bad_sum;
  return kVerifyOk;
}

__global__ void VerifySamplingKernel(SampleArgs a) {
  __shared__ int s_flag;
  __shared__ double s_total;
  const int32_t b = blockIdx.x;
  const int64_t vocab = a.vocab;
  const int32_t start = a.indptr[b], n = a.indptr[b + 1] - start;
  const int64_t base = static_cast<int64_t>(start) + b;
  const int32_t* tok = a.tokens + start;
  const int32_t* par = a.parents + start;
  const float* target = a.target + base * vocab;
  const float* draft = a.draft ? a.draft + base * vocab : nullptr;
  const double* uni = a.uniforms + base;
  double* p = a.p + static_cast<int64_t>(b) * vocab;
  double* partials = a.partials + static_cast<int64_t>(b) * VerifyNumChunks(vocab);
  int32_t* nodes = a.out_nodes + start;

  double sum = 0.0;
  int64_t err_row = 0;
  int32_t code = kVerifyOk;
  int32_t cur = -1, count = 0;
  code = BlockLoadRow(target, vocab, p, partials, &s_flag, &s_total, &sum, kVerifyTargetBadValue, kVerifyTargetBadSum);
  while (code == kVerifyOk) {
    const int64_t row = cur + 1;
    const float* q = draft ? draft + row * vocab : nullptr;
    bool draft_checked = false, accepted = false;
    for (int32_t c = cur + 1; c < n && code == kVerifyOk; ++c) {
      if (par[c] != cur) continue;
      if (q && !draft_checked) {
        code = BlockLoadRow(q, vocab, nullptr, partials, &s_flag, &s_total, &sum, kVerifyDraftBadValue,
                            kVerifyDraftBadSum);
        err_row = row;
        if (code != kVerifyOk) break;
        draft_checked = true;
      }
      const int32_t x = tok[c];
      const double u = uni[1 + c];
      const double px = p[x];
      const bool accept = q ? u * static_cast<double>(q[x]) < px : u < px;
      __syncthreads();  // every thread has read p[x] before p changes
      if (accept) {
        if (threadIdx.x == 0) nodes[count] = c;
        ++count;
        cur = c;
        err_row = 1 + c;
        code = BlockLoadRow(target + (1 + static_cast<int64_t>(c)) * vocab, vocab, p, partials, &s_flag, &s_total,
                            &sum, kVerifyTargetBadValue, kVerifyTargetBadSum);
        accepted = true;
        break;
      }
      if (q) {
        for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) p[y] = fmax(0.0, p[y] - static_cast<double>(q[y]));
      } else if (threadIdx.x == 0) {
        p[x] = 0.0;
      }
      __syncthreads();
      const double z = BlockChunkedSum(p, vocab, partials, &s_total);
      if (z > 0.0) {
        for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) p[y] = p[y] / z;
        __syncthreads();
      } else {
        err_row = row;  // fallback: the draft-free distribution of the current node
        code = BlockLoadRow(target + row * vocab, vocab, p, partials, &s_flag, &s_total, &sum, kVerifyTargetBadValue,
                            kVerifyTargetBadSum);
      }
    }
    if (!accepted) break;
  }
  if (code != kVerifyOk) {
    if (threadIdx.x == 0) {
      a.err_code[b] = code;
      a.err_row[b] = static_cast<int32_t>(err_row);
      a.err_sum[b] = sum;
    }
    return;
  }
  BlockChunkedSum(p, vocab, partials, &s_total);
  if (threadIdx.x == 0) {
    const int32_t next = VerifyInverseCdf(p, vocab, partials, uni[0]);
    if (next < 0) {
      a.err_code[b] = kVerifyNoMass;
      a.err_row[b] = cur + 1;
      a.err_sum[b] = 0.0;
    } else {
      a.err_code[b] = kVerifyOk;
      a.out_count[b] = count;
      a.out_next[b] = next;
    }
  }
  for (int32_t i = count + static_cast<int32_t>(threadIdx.x); i < n; i += blockDim.x) nodes[i] = -1;
}

// Host staging of the tree: indptr | tokens | parents as one int32 block.
std::vector<int32_t> PackTree(const VerifyTree& tree, int64_t num_nodes) {
  std::vector<int32_t> packed(static_cast<size_t>(tree.batch + 1 + 2 * num_nodes));
  std::copy(tree.indptr, tree.indptr + tree.batch + 1, packed.begin());
  std::copy(tree.tokens, tree.tokens + num_nodes, packed.begin() + tree.batch + 1);
  std::copy(tree.parents, tree.parents + num_nodes, packed.begin() + tree.batch + 1 + num_nodes);
  return packed;
}

}  // namespace

Status VerifyGreedy(const VerifyTree& tree, const void* logits, DType dtype, int64_t vocab, const VerifyOutput& out) {
  const int64_t num_nodes = VerifyNumNodes(tree);
  CANOPY_RETURN_IF_ERROR(CheckVerifyGreedyArgs(tree, num_nodes, dtype, vocab));
  if (tree.batch == 0) return Status::Ok();
  const int64_t B = tree.batch, N = num_nodes, rows = N + B;
  // Layout (int32): tree [B+1+2N] | argmax [rows] | walk scratch [2N] | outputs count [B], nodes [N], next [B].
  const std::vector<int32_t> packed = PackTree(tree, N);
  WorkspaceLease s;  // the kernel workspace: no cudaMalloc / cudaFree per call
  const size_t o_tree = s.Reserve(packed.size() * 4);
  const size_t o_argmax = s.Reserve(rows * 4);
  const size_t o_walk = s.Reserve((2 * N + 1) * 4);
  const size_t o_out = s.Reserve((B + N + B) * 4);
  CANOPY_RETURN_IF_ERROR(s.Acquire());
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_tree), packed.data(), packed.size() * 4, cudaMemcpyHostToDevice));
  const int32_t* d_indptr = s.At<int32_t>(o_tree);
  int32_t* d_out = s.At<int32_t>(o_out);
  RowArgmaxKernel<<<static_cast<unsigned>(rows), kArgmaxThreads>>>(logits, dtype, vocab, s.At<int32_t>(o_argmax));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  GreedyWalkKernel<<<static_cast<unsigned>((B + kWalkThreads - 1) / kWalkThreads), kWalkThreads>>>(
      tree.batch, d_indptr, d_indptr + B + 1, d_indptr + B + 1 + N, s.At<int32_t>(o_argmax), s.At<int32_t>(o_walk),
      d_out, d_out + B, d_out + B + N);
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  std::vector<int32_t> host(static_cast<size_t>(B + N + B));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(host.data(), d_out, host.size() * 4, cudaMemcpyDeviceToHost));
  std::copy(host.begin(), host.begin() + B, out.accepted_count);
  std::copy(host.begin() + B, host.begin() + B + N, out.accepted_nodes);
  std::copy(host.begin() + B + N, host.end(), out.next_token);
  return Status::Ok();
}

Status VerifySampling(const VerifyTree& tree, const float* target, const float* draft, int64_t vocab,
                      const double* uniforms, const VerifyOutput& out) {
  const int64_t num_nodes = VerifyNumNodes(tree);
  CANOPY_RETURN_IF_ERROR(CheckVerifyTree("verifySampling", tree, num_nodes, vocab));
  CANOPY_RETURN_IF_ERROR(CheckVerifyUniforms(uniforms, num_nodes + tree.batch));
  if (tree.batch == 0) return Status::Ok();
  const int64_t B = tree.batch, N = num_nodes, rows = N + B, chunks = VerifyNumChunks(vocab);
  const std::vector<int32_t> packed = PackTree(tree, N);
  WorkspaceLease s;  // the kernel workspace: no cudaMalloc / cudaFree per call
  const size_t o_tree = s.Reserve(packed.size() * 4);
  const size_t o_uni = s.Reserve(rows * 8);
  const size_t o_p = s.Reserve(B * vocab * 8);
  const size_t o_partials = s.Reserve(B * chunks * 8);
  const size_t o_out = s.Reserve((B + N + B + B + B) * 4);  // count, nodes, next, err_code, err_row
  const size_t o_err_sum = s.Reserve(B * 8);
  CANOPY_RETURN_IF_ERROR(s.Acquire());
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_tree), packed.data(), packed.size() * 4, cudaMemcpyHostToDevice));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_uni), uniforms, rows * 8, cudaMemcpyHostToDevice));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemset(s.At<void>(o_out), 0, (B + N + B + B + B) * 4));
  const int32_t* d_indptr = s.At<int32_t>(o_tree);
  int32_t* d_out = s.At<int32_t>(o_out);
  SampleArgs a;
  a.indptr = d_indptr;
  a.tokens = d_indptr + B + 1;
  a.parents = d_indptr + B + 1 + N;
  a.target = target;
  a.draft = draft;
  a.vocab = vocab;
  a.uniforms = s.At<double>(o_uni);
  a.p = s.At<double>(o_p);
  a.partials = s.At<double>(o_partials);
  a.out_count = d_out;
  a.out_nodes = d_out + B;
  a.out_next = d_out + B + N;
  a.err_code = d_out + B + N + B;
  a.err_row = d_out + B + N + 2 * B;
  a.err_sum = s.At<double>(o_err_sum);
  VerifySamplingKernel<<<static_cast<unsigned>(B), kSampleThreads>>>(a);
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  std::vector<int32_t> host(static_cast<size_t>(B + N + B + B + B));
  std::vector<double> err_sum(static_cast<size_t>(B));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(host.data(), d_out, host.size() * 4, cudaMemcpyDeviceToHost));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(err_sum.data(), a.err_sum, B * 8, cudaMemcpyDeviceToHost));
  for (int64_t b = 0; b < B; ++b) {
    const int32_t code = host[B + N + B + b];
    if (code != kVerifyOk) {
      const int32_t local_row = host[B + N + 2 * B + b];
      return VerifySampleErrorStatus(code, static_cast<int32_t>(b), tree.indptr[b] + b + local_row, err_sum[b]);
    }
  }
  std::copy(host.begin(), host.begin() + B, out.accepted_count);
  std::copy(host.begin() + B, host.begin() + B + N, out.accepted_nodes);
  std::copy(host.begin() + B + N, host.begin() + B + N + B, out.next_token);
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
