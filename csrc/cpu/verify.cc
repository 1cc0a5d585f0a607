// CPU tree verification: greedy and sampling (see csrc/common/verify.h for the
// layout, the rules and the uniforms convention). Sequences run in parallel on
// the thread pool; each sequence is sequential. The sampling verifier uses the
// shared helpers of verify.h (chunked sums, inverse CDF) so that the CUDA
// kernel, which calls the same helpers, rounds identically.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/verify.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {
namespace {

int32_t ArgmaxRow(const void* row_base, DType dtype, int64_t row, int64_t vocab) {
  ArgmaxCandidate best = ArgmaxNone();
  const int64_t off = row * vocab;
  for (int64_t y = 0; y < vocab; ++y) {
    ArgmaxCandidate c{ArgmaxKey(LoadFloat(row_base, dtype, off + y)), static_cast<int32_t>(y)};
    if (ArgmaxBetter(c, best)) best = c;
  }
  return best.index;
}

// Lazily computed argmax of one sequence's rows (row 0 = root, 1 + i = node i).
struct LazyArgmax {
  const void* logits;
  DType dtype;
  int64_t vocab;
  int64_t base;    // global row of the sequence's row 0
  int32_t* cache;  // the sequence's rows; -1 = not computed yet
  int32_t operator()(int32_t local_row) {
    int32_t& c = cache[local_row];
    if (c < 0) c = ArgmaxRow(logits, dtype, base + local_row, vocab);
    return c;
  }
};

// ---- sampling --------------------------------------------------------------

struct SampleError {
  int32_t code = kVerifyOk;
  int64_t local_row = 0;
  double sum = 0;
};

// ChunkedSum of p (fills partials).
double ChunkedSum(const double* p, int64_t vocab, double* partials) {
  const int64_t chunks = VerifyNumChunks(vocab);
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t end = (k + 1) * kVerifySumChunk < vocab ? (k + 1) * kVerifySumChunk : vocab;
    partials[k] = VerifyChunkSum(p, k * kVerifySumChunk, end);
  }
  return VerifySumPartials(partials, chunks);
}

// Loads a target row into p and checks it. Returns an error code.
int32_t LoadTargetRow(const float* row, int64_t vocab, double* p, double* partials, double* sum) {
  bool bad = false;
  for (int64_t y = 0; y < vocab; ++y) {
    const float v = row[y];
    if (!(v >= 0.0f) || std::isinf(v)) bad = true;
    p[y] = static_cast<double>(v);
  }
  if (bad) return kVerifyTargetBadValue;
  *sum = ChunkedSum(p, vocab, partials);
  if (!(std::fabs(*sum - 1.0) <= kVerifyProbSumTolerance)) return kVerifyTargetBadSum;
  return kVerifyOk;
}

int32_t CheckDraftRow(const float* row, int64_t vocab, double* partials, double* sum) {
  for (int64_t y = 0; y < vocab; ++y) {
    const float v = row[y];
    if (!(v >= 0.0f) || std::isinf(v)) return kVerifyDraftBadValue;
  }
  const int64_t chunks = VerifyNumChunks(vocab);
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t end = (k + 1) * kVerifySumChunk < vocab ? (k + 1) * kVerifySumChunk : vocab;
    partials[k] = VerifyChunkSum(row, k * kVerifySumChunk, end);
  }
  *sum = VerifySumPartials(partials, chunks);
  if (!(std::fabs(*sum - 1.0) <= kVerifyProbSumTolerance)) return kVerifyDraftBadSum;
  return kVerifyOk;
}

// One sequence. target/draft/uniforms point at the sequence's row 0.
SampleError SampleOne(int32_t n, const int32_t* tok, const int32_t* par, const float* target, const float* draft,
                      int64_t vocab, const double* uniforms, double* p, double* partials, int32_t* out_nodes,
                      int32_t* out_count, int32_t* out_next) {
  SampleError err;
  auto fail = [&](int32_t code, int64_t row, double sum) {
    err.code = code;
    err.local_row = row;
    err.sum = sum;
    return err;
  };
  double sum = 0;
  int32_t cur = -1, count = 0;
  if (int32_t e = LoadTargetRow(target, vocab, p, partials, &sum)) return fail(e, 0, sum);
  for (;;) {
    const int64_t row = cur + 1;  // local row of the current node
    const float* q = draft ? draft + row * vocab : nullptr;
    bool draft_checked = false, accepted = false;
    for (int32_t c = cur + 1; c < n; ++c) {
      if (par[c] != cur) continue;
      if (q && !draft_checked) {
        if (int32_t e = CheckDraftRow(q, vocab, partials, &sum)) return fail(e, row, sum);
        draft_checked = true;
      }
      const int32_t x = tok[c];
      const double u = uniforms[1 + c];
      const bool accept = q ? u * static_cast<double>(q[x]) < p[x] : u < p[x];
      if (accept) {
        out_nodes[count++] = c;
        cur = c;
        if (int32_t e = LoadTargetRow(target + (1 + static_cast<int64_t>(c)) * vocab, vocab, p, partials, &sum)) {
          return fail(e, 1 + c, sum);
        }
        accepted = true;
        break;
      }
      // Rejected: p <- norm(max(0, p - q)), or with a point-mass q: p(x) <- 0, p <- norm(p).
      if (q) {
        for (int64_t y = 0; y < vocab; ++y) p[y] = std::max(0.0, p[y] - static_cast<double>(q[y]));
      } else {
        p[x] = 0.0;
      }
      const double z = ChunkedSum(p, vocab, partials);
      if (z > 0.0) {
        for (int64_t y = 0; y < vocab; ++y) p[y] = p[y] / z;
      } else if (int32_t e = LoadTargetRow(target + row * vocab, vocab, p, partials, &sum)) {
        return fail(e, row, sum);  // fallback to the draft-free distribution of the current node
      }
    }
    if (!accepted) break;
  }
  ChunkedSum(p, vocab, partials);
  const int32_t next = VerifyInverseCdf(p, vocab, partials, uniforms[0]);
  if (next < 0) return fail(kVerifyNoMass, cur + 1, 0.0);
  for (int32_t i = count; i < n; ++i) out_nodes[i] = -1;
  *out_count = count;
  *out_next = next;
  return err;
}

}  // namespace

Status VerifyGreedy(const VerifyTree& tree, const void* logits, DType dtype, int64_t vocab, const VerifyOutput& out) {
  const int64_t num_nodes = VerifyNumNodes(tree);
  CANOPY_RETURN_IF_ERROR(CheckVerifyGreedyArgs(tree, num_nodes, dtype, vocab));
  // All scratch is allocated here, on the calling thread, where an allocation failure becomes a
  // Status; the pool's workers must not throw.
  std::vector<int32_t> cache(static_cast<size_t>(num_nodes + tree.batch), -1);
  std::vector<int32_t> scratch(static_cast<size_t>(2 * num_nodes));
  ParallelFor(tree.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int32_t start = tree.indptr[b], n = tree.indptr[b + 1] - start;
      LazyArgmax argmax{logits, dtype, vocab, start + b, cache.data() + start + b};
      GreedyWalk(n, tree.tokens + start, tree.parents + start, argmax, scratch.data() + 2 * static_cast<int64_t>(start),
                 out.accepted_nodes + start, out.accepted_count + b, out.next_token + b);
    }
  });
  return Status::Ok();
}

Status VerifySampling(const VerifyTree& tree, const float* target, const float* draft, int64_t vocab,
                      const double* uniforms, const VerifyOutput& out) {
  const int64_t num_nodes = VerifyNumNodes(tree);
  CANOPY_RETURN_IF_ERROR(CheckVerifyTree("verifySampling", tree, num_nodes, vocab));
  CANOPY_RETURN_IF_ERROR(CheckVerifyUniforms(uniforms, num_nodes + tree.batch));
  std::vector<SampleError> errors(static_cast<size_t>(tree.batch));
  // One scratch row per slot; slot s runs sequences s, s + slots, ... All allocation happens here,
  // on the calling thread (a failure becomes a Status); the pool's workers must not throw.
  const int64_t slots = std::min<int64_t>(tree.batch, NumThreads());
  const int64_t chunks = VerifyNumChunks(vocab);
  std::vector<double> p(static_cast<size_t>(slots * vocab)), partials(static_cast<size_t>(slots * chunks));
  ParallelFor(slots, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t slot = s0; slot < s1; ++slot) {
      for (int64_t b = slot; b < tree.batch; b += slots) {
        const int32_t start = tree.indptr[b], n = tree.indptr[b + 1] - start;
        const int64_t base = start + b;
        errors[b] = SampleOne(n, tree.tokens + start, tree.parents + start, target + base * vocab,
                              draft ? draft + base * vocab : nullptr, vocab, uniforms + base, p.data() + slot * vocab,
                              partials.data() + slot * chunks, out.accepted_nodes + start, out.accepted_count + b,
                              out.next_token + b);
      }
    }
  });
  for (int32_t b = 0; b < tree.batch; ++b) {
    const SampleError& e = errors[b];
    if (e.code != kVerifyOk) {
      return VerifySampleErrorStatus(e.code, b, tree.indptr[b] + b + e.local_row, e.sum);
    }
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
