// CUDA sampler chain (see csrc/common/sampling.h). One block per row; the tokens equal the CPU
// kernel's exactly:
//   - stage A and w = SamplingExp(...) are element-wise, with the shared helpers (whose
//     products and sums are __dmul_rn / __dadd_rn: never fused);
//   - the max and the counts are order-independent reductions;
//   - K is found as on the CPU, without sorting the vocabulary: the tokens with w above a
//     falling cutoff (a prefix of the order) are gathered and sorted (bitonic, in global
//     memory) until K is settled; the sorted prefix is unique, so the gather order does not
//     matter; the cumulative walk runs on one thread, left to right;
//   - every sum over the vocabulary is verify.h's ChunkedSum (a thread per chunk, then the
//     partials left to right on thread 0), and the draw is VerifyInverseCdf on thread 0.
// Rows are launched in groups so the scratch (w, the candidate list) stays bounded.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "../common/sampling.h"
#include "block_argmax.cuh"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct ChainArgs {
  const float* logits;
  int64_t vocab;
  SamplingParams p;
  int32_t bias_count;
  const int32_t* bias_tokens;
  const double* bias_values;
  const int32_t* pen_indptr;  // null: no penalties
  const int32_t* pen_tokens;
  const int32_t* pen_counts;
  const double* uniforms;  // null: 0
  int64_t row0;            // first row of this launch
  int32_t* tokens;         // [rows] (device)
  float* probs;            // nullable
  float* logits_out;       // nullable
  float* l_scratch;        // [group, vocab] when logits_out is null
  double* w;               // [group, vocab]
  int32_t* idx;            // [group, idx_stride]
  int64_t idx_stride;      // a power of two >= vocab
  double* partials;        // [group, chunks]
};

struct Shared {
  float fvalue[kThreads];
  int32_t index[kThreads];
  double dvalue[kThreads];
  int64_t count[kThreads];
  int flag;
  int counter;
  double total;
  int64_t k;        // K
  int64_t kp;       // the top-p cut found by the walk (vocab + 1: none)
  int64_t sorted;   // idx[0, sorted) is the sorted prefix
};

__device__ bool CandLess(int32_t a, int32_t b, const float* l) {
  if (a < 0) return false;  // padding sorts last
  if (b < 0) return true;
  return SamplingBefore(l[a], a, l[b], b);
}

__device__ void BitonicSort(int32_t* idx, int64_t n, const float* l) {
  int64_t P = 1;
  while (P < n) P <<= 1;
  for (int64_t i = n + threadIdx.x; i < P; i += blockDim.x) idx[i] = -1;
  __syncthreads();
  for (int64_t k = 2; k <= P; k <<= 1) {
    for (int64_t j = k >> 1; j > 0; j >>= 1) {
      for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
        const int64_t ixj = i ^ j;
        if (ixj > i) {
          const int32_t a = idx[i], b = idx[ixj];
          const bool up = (i & k) == 0;
          if (up ? CandLess(b, a, l) : CandLess(a, b, l)) {
            idx[i] = b;
            idx[ixj] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// ChunkedSum of w, restricted (when tk >= 0) to tokens at or before (lt, tk) in the order.
__device__ double BlockChunkedSum(const double* w, const float* l, int64_t vocab, int32_t tk, float lt, double* partials,
                                  Shared& s) {
  const int64_t chunks = VerifyNumChunks(vocab);
  for (int64_t k = threadIdx.x; k < chunks; k += blockDim.x) {
    const int64_t end = (k + 1) * kVerifySumChunk < vocab ? (k + 1) * kVerifySumChunk : vocab;
    double acc = 0.0;
    for (int64_t y = k * kVerifySumChunk; y < end; ++y) {
      if (tk < 0 || l[y] > lt || (l[y] == lt && y <= tk)) acc = acc + w[y];
    }
    partials[k] = acc;
  }
  __syncthreads();
  if (threadIdx.x == 0) s.total = VerifySumPartials(partials, chunks);
  __syncthreads();
  const double t = s.total;
  __syncthreads();
  return t;
}

// Gathers {y : w[y] >= c} into idx (any order); returns the count and (heuristic) their mass.
__device__ int64_t Gather(const double* w, int64_t vocab, double c, int32_t* idx, Shared& s) {
  if (threadIdx.x == 0) s.counter = 0;
  __syncthreads();
  for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
    if (w[y] >= c) idx[atomicAdd(&s.counter, 1)] = static_cast<int32_t>(y);
  }
  __syncthreads();
  const int64_t n = s.counter;
  __syncthreads();
  return n;
}

// Count of {w >= c} and their mass (any order: only used to skip hopeless rungs).
__device__ void CountAbove(const double* w, int64_t vocab, double c, Shared& s, int64_t* n, double* mass) {
  int64_t cnt = 0;
  double m = 0.0;
  for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
    if (w[y] >= c) {
      ++cnt;
      m += w[y];
    }
  }
  s.count[threadIdx.x] = cnt;
  s.dvalue[threadIdx.x] = m;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h) {
      s.count[threadIdx.x] += s.count[threadIdx.x + h];
      s.dvalue[threadIdx.x] += s.dvalue[threadIdx.x + h];
    }
    __syncthreads();
  }
  *n = s.count[0];
  *mass = s.dvalue[0];
  __syncthreads();
}

// Thread 0: the least j + 1 (j < limit) with the ordered cumulative >= target, or vocab + 1.
__device__ int64_t WalkTopP(const double* w, const int32_t* idx, int64_t limit, double target, int64_t vocab) {
  double cum = 0.0;
  for (int64_t j = 0; j < limit; ++j) {
    cum = SAdd(cum, w[idx[j]]);
    if (cum >= target) return j + 1;
  }
  return vocab + 1;
}

__global__ void SamplingChainKernel(ChainArgs a) {
  __shared__ Shared s;
  const int64_t vocab = a.vocab;
  const int64_t slot = blockIdx.x, r = a.row0 + slot;
  const float* x = a.logits + r * vocab;
  float* l = a.logits_out ? a.logits_out + r * vocab : a.l_scratch + slot * vocab;
  double* w = a.w + slot * vocab;
  int32_t* idx = a.idx + slot * a.idx_stride;
  double* partials = a.partials + slot * VerifyNumChunks(vocab);
  float* probs = a.probs ? a.probs + r * vocab : nullptr;
  const SamplingParams& p = a.p;

  // Stage A.
  for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) l[y] = x[y];
  __syncthreads();
  for (int32_t i = threadIdx.x; i < a.bias_count; i += blockDim.x) {
    l[a.bias_tokens[i]] = SamplingBiasLogit(l[a.bias_tokens[i]], a.bias_values[i]);
  }
  __syncthreads();
  if (a.pen_indptr && SamplingHasPenalties(p)) {
    for (int32_t j = a.pen_indptr[r] + threadIdx.x; j < a.pen_indptr[r + 1]; j += blockDim.x) {
      l[a.pen_tokens[j]] = SamplingPenalizeLogit(l[a.pen_tokens[j]], a.pen_counts[j], p);
    }
  }
  __syncthreads();

  if (p.temperature == 0.0) {
    ArgmaxCandidate best = ArgmaxNone();
    for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
      ArgmaxCandidate c{ArgmaxKey(l[y]), static_cast<int32_t>(y)};
      if (ArgmaxBetter(c, best)) best = c;
    }
    const int32_t token = BlockArgmax(best, s.fvalue, s.index).index;
    if (threadIdx.x == 0) a.tokens[r] = token;
    if (probs) {
      for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
        probs[y] = token < 0 ? 1.0f / static_cast<float>(vocab) : (y == token ? 1.0f : 0.0f);
      }
    }
    return;
  }

  // The max and the broken-row check.
  if (threadIdx.x == 0) s.flag = 0;
  __syncthreads();
  float m = -INFINITY;
  for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
    const float v = l[y];
    if (v != v || v == INFINITY) atomicOr(&s.flag, 1);
    if (v > m) m = v;
  }
  s.fvalue[threadIdx.x] = m;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h) s.fvalue[threadIdx.x] = fmaxf(s.fvalue[threadIdx.x], s.fvalue[threadIdx.x + h]);
    __syncthreads();
  }
  m = s.fvalue[0];
  if (s.flag != 0 || m == -INFINITY) {
    if (threadIdx.x == 0) a.tokens[r] = -1;
    if (probs) {
      for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) probs[y] = 1.0f / static_cast<float>(vocab);
    }
    return;
  }
  const double md = static_cast<double>(m);
  for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
    w[y] = SamplingExp(SDiv(SSub(static_cast<double>(l[y]), md), p.temperature));
  }
  __syncthreads();

  // K (see sampling.h), as the CPU kernel finds it.
  const int64_t kk = p.top_k >= 1 && p.top_k < vocab ? p.top_k : vocab;
  const bool want_p = p.top_p < 1.0, want_m = p.min_p > 0.0;
  if (threadIdx.x == 0) {
    s.k = vocab;
    s.sorted = 0;
  }
  __syncthreads();
  if (kk < vocab) {
    for (int rung = 0; rung < kSamplingRungs; ++rung) {
      int64_t n;
      double mass;
      CountAbove(w, vocab, SamplingRung(rung), s, &n, &mass);
      if (n < kk) continue;
      Gather(w, vocab, SamplingRung(rung), idx, s);
      BitonicSort(idx, n, l);
      if (threadIdx.x == 0) {
        s.sorted = n;
        s.k = kk;
      }
      __syncthreads();
      break;
    }
    if (want_p) {
      const int32_t tk = idx[kk - 1];
      const double z = BlockChunkedSum(w, l, vocab, tk, l[tk], partials, s);
      if (threadIdx.x == 0) {
        const int64_t kp = WalkTopP(w, idx, kk, SMul(p.top_p, z), vocab);
        if (kp < s.k) s.k = kp;
      }
      __syncthreads();
    }
  } else if (want_p || want_m) {
    const double z = want_p ? BlockChunkedSum(w, l, vocab, -1, 0.0f, partials, s) : 0.0;
    const double target = SMul(p.top_p, z);
    for (int rung = 0; rung < kSamplingRungs; ++rung) {
      const double c = SamplingRung(rung);
      int64_t n;
      double mass;
      CountAbove(w, vocab, c, s, &n, &mass);
      const bool last = n == vocab;
      const bool by_m = want_m && p.min_p >= c;
      const bool maybe_p = want_p && mass >= target * (1.0 - 1e-9);
      if (!last && !by_m && !maybe_p) continue;
      Gather(w, vocab, c, idx, s);
      BitonicSort(idx, n, l);
      if (threadIdx.x == 0) {
        s.sorted = n;
        s.kp = want_p ? WalkTopP(w, idx, n, target, vocab) : vocab + 1;
      }
      __syncthreads();
      const int64_t kp = s.kp;
      if (kp <= vocab || by_m || last) {
        if (threadIdx.x == 0) s.k = kp < vocab ? kp : vocab;
        __syncthreads();
        break;
      }
      __syncthreads();
    }
  }
  if (want_m && threadIdx.x == 0) {
    int64_t km = 0;
    while (km < s.sorted && w[idx[km]] >= p.min_p) ++km;
    if (km < s.k) s.k = km;
  }
  __syncthreads();
  const int64_t K = s.k;
  if (K < vocab) {
    const int32_t tk = idx[K - 1];
    const float lt = l[tk];
    __syncthreads();
    for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) {
      if (!(l[y] > lt || (l[y] == lt && y <= tk))) w[y] = 0.0;
    }
  }
  __syncthreads();
  const double total = BlockChunkedSum(w, l, vocab, -1, 0.0f, partials, s);
  if (threadIdx.x == 0) a.tokens[r] = VerifyInverseCdf(w, vocab, partials, a.uniforms ? a.uniforms[r] : 0.0);
  if (probs) {
    for (int64_t y = threadIdx.x; y < vocab; y += blockDim.x) probs[y] = static_cast<float>(SDiv(w[y], total));
  }
}

}  // namespace

Status SamplingChain(const float* logits, int64_t rows, int64_t vocab, const SamplingParams& params,
                     const SamplingBias& bias, const SamplingPenalties& penalties, const double* uniforms,
                     const SamplingOutput& out) {
  CANOPY_RETURN_IF_ERROR(CheckSamplingArgs(rows, vocab, params, bias, penalties, uniforms));
  if (!out.tokens) return Status::InvalidArgument("samplingChain: tokens output is required");
  if (rows == 0) return Status::Ok();
  const int64_t chunks = VerifyNumChunks(vocab);
  int64_t stride = 1;
  while (stride < vocab) stride <<= 1;
  // Rows per launch: scratch of about 256 MiB at most (at least one row).
  const int64_t per_row = vocab * (8 + (out.logits ? 0 : 4)) + stride * 4 + chunks * 8;
  const int64_t group = std::max<int64_t>(1, std::min<int64_t>(rows, (int64_t{256} << 20) / per_row));
  const int64_t pen_total = penalties.indptr ? penalties.indptr[rows] : 0;

  WorkspaceLease s;  // the kernel workspace: no cudaMalloc / cudaFree per call
  const size_t o_bias_t = s.Reserve(std::max<int64_t>(1, bias.count) * 4);
  const size_t o_bias_v = s.Reserve(std::max<int64_t>(1, bias.count) * 8);
  const size_t o_pen_i = s.Reserve((rows + 1) * 4);
  const size_t o_pen_t = s.Reserve(std::max<int64_t>(1, pen_total) * 4);
  const size_t o_pen_c = s.Reserve(std::max<int64_t>(1, pen_total) * 4);
  const size_t o_uni = s.Reserve(rows * 8);
  const size_t o_tok = s.Reserve(rows * 4);
  const size_t o_l = s.Reserve(out.logits ? 256 : group * vocab * 4);
  const size_t o_w = s.Reserve(group * vocab * 8);
  const size_t o_idx = s.Reserve(group * stride * 4);
  const size_t o_part = s.Reserve(group * chunks * 8);
  CANOPY_RETURN_IF_ERROR(s.Acquire());
  ChainArgs a;
  a.logits = logits;
  a.vocab = vocab;
  a.p = params;
  a.bias_count = bias.count;
  a.bias_tokens = s.At<int32_t>(o_bias_t);
  a.bias_values = s.At<double>(o_bias_v);
  if (bias.count > 0) {
    CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_bias_t), bias.tokens, bias.count * 4, cudaMemcpyHostToDevice));
    CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_bias_v), bias.values, bias.count * 8, cudaMemcpyHostToDevice));
  }
  a.pen_indptr = a.pen_tokens = a.pen_counts = nullptr;
  if (penalties.indptr) {
    CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_pen_i), penalties.indptr, (rows + 1) * 4, cudaMemcpyHostToDevice));
    if (pen_total > 0) {
      CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_pen_t), penalties.tokens, pen_total * 4, cudaMemcpyHostToDevice));
      CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_pen_c), penalties.counts, pen_total * 4, cudaMemcpyHostToDevice));
    }
    a.pen_indptr = s.At<int32_t>(o_pen_i);
    a.pen_tokens = s.At<int32_t>(o_pen_t);
    a.pen_counts = s.At<int32_t>(o_pen_c);
  }
  a.uniforms = nullptr;
  if (uniforms) {
    CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(s.At<void>(o_uni), uniforms, rows * 8, cudaMemcpyHostToDevice));
    a.uniforms = s.At<double>(o_uni);
  }
  a.tokens = s.At<int32_t>(o_tok);
  a.probs = out.probs;
  a.logits_out = out.logits;
  a.l_scratch = s.At<float>(o_l);
  a.w = s.At<double>(o_w);
  a.idx = s.At<int32_t>(o_idx);
  a.idx_stride = stride;
  a.partials = s.At<double>(o_part);
  for (int64_t row0 = 0; row0 < rows; row0 += group) {
    a.row0 = row0;
    const int64_t n = std::min(group, rows - row0);
    SamplingChainKernel<<<static_cast<unsigned>(n), kThreads>>>(a);
    CANOPY_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(out.tokens, a.tokens, rows * 4, cudaMemcpyDeviceToHost));
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
