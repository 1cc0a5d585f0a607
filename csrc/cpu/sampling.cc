// CPU sampler chain (see csrc/common/sampling.h for the math). Rows run in parallel on the
// thread pool, each row sequentially with its own scratch. No full sort: top-k is a partial
// selection (nth_element, then a sort of the k kept), top-p and min-p sort only the tokens
// above a falling cutoff on w until K is settled.
//
// Floating-point contraction is off in this file (and CMake passes -ffp-contract=off): the
// shared helpers round every product and sum once, as the CUDA kernel's intrinsics do.
// -fno-trapping-math (no result changes) lets the branch-free exp loop vectorise.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/sampling.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {
namespace {

struct RowScratch {
  std::vector<double> w;
  std::vector<int32_t> idx;
  std::vector<double> partials;
  std::vector<float> l;  // processed logits when out.logits is null
};

double ChunkedSumOf(const double* r, int64_t vocab, double* partials) {
  const int64_t chunks = VerifyNumChunks(vocab);
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t end = (k + 1) * kVerifySumChunk < vocab ? (k + 1) * kVerifySumChunk : vocab;
    partials[k] = VerifyChunkSum(r, k * kVerifySumChunk, end);
  }
  return VerifySumPartials(partials, chunks);
}

// w[y] = SamplingExp((l[y] - m) / T) over a row (a separate loop so it vectorises).
void ExpRow(const float* __restrict l, double md, double temperature, double* __restrict w, int64_t n) {
  for (int64_t y = 0; y < n; ++y) w[y] = SamplingExp(SDiv(SSub(static_cast<double>(l[y]), md), temperature));
}

// Stage A into l.
void ProcessRow(const float* x, int64_t vocab, int64_t row, const SamplingParams& p, const SamplingBias& bias,
                const SamplingPenalties& pen, float* l) {
  std::copy(x, x + vocab, l);
  for (int32_t i = 0; i < bias.count; ++i) l[bias.tokens[i]] = SamplingBiasLogit(l[bias.tokens[i]], bias.values[i]);
  if (pen.indptr && SamplingHasPenalties(p)) {
    for (int32_t j = pen.indptr[row]; j < pen.indptr[row + 1]; ++j) {
      l[pen.tokens[j]] = SamplingPenalizeLogit(l[pen.tokens[j]], pen.counts[j], p);
    }
  }
}

// Stage B. Returns the token (-1: no finite distribution) and fills probs if non-null.
int32_t SampleRow(const float* l, int64_t vocab, const SamplingParams& p, double u, RowScratch& s, float* probs) {
  if (p.temperature == 0.0) {
    ArgmaxCandidate best = ArgmaxNone();
    for (int64_t y = 0; y < vocab; ++y) {
      ArgmaxCandidate c{ArgmaxKey(l[y]), static_cast<int32_t>(y)};
      if (ArgmaxBetter(c, best)) best = c;
    }
    if (probs) {
      for (int64_t y = 0; y < vocab; ++y) probs[y] = best.index < 0 ? 1.0f / static_cast<float>(vocab) : 0.0f;
      if (best.index >= 0) probs[best.index] = 1.0f;
    }
    return best.index;
  }
  float m = -INFINITY;
  bool broken = false;
  for (int64_t y = 0; y < vocab; ++y) {
    const float v = l[y];
    if (v != v || v == INFINITY) broken = true;
    if (v > m) m = v;
  }
  if (broken || m == -INFINITY) {
    if (probs) std::fill(probs, probs + vocab, 1.0f / static_cast<float>(vocab));
    return -1;
  }
  double* w = s.w.data();
  const double md = static_cast<double>(m);
  ExpRow(l, md, p.temperature, w, vocab);

  auto before = [l](int32_t a, int32_t b) { return SamplingBefore(l[a], a, l[b], b); };
  int32_t* idx = s.idx.data();
  const int64_t kk = p.top_k >= 1 && p.top_k < vocab ? p.top_k : vocab;
  const bool want_p = p.top_p < 1.0, want_m = p.min_p > 0.0;
  int64_t K = vocab;
  int64_t sorted = 0;  // idx[0, sorted) holds s_1..s_sorted
  double z = 0.0;      // Z_k
  if (kk < vocab) {
    // Partial selection: the tokens above the first cutoff that holds at least k of them (a
    // prefix of the order), then the k-th of those and a sort of the k kept.
    int64_t n = 0;
    for (int rung = 0; rung < kSamplingRungs; ++rung) {
      const double c = SamplingRung(rung);
      n = 0;
      for (int64_t y = 0; y < vocab; ++y) n += w[y] >= c ? 1 : 0;
      if (n < kk) continue;
      n = 0;
      for (int64_t y = 0; y < vocab; ++y) {
        if (w[y] >= c) idx[n++] = static_cast<int32_t>(y);
      }
      break;
    }
    std::nth_element(idx, idx + kk - 1, idx + n, before);
    std::sort(idx, idx + kk, before);
    sorted = kk;
    K = kk;
    if (want_p) {
      // Z_k: w restricted to the top-k set, summed in id order (ChunkedSum of the masked row).
      const int32_t tk = idx[kk - 1];
      const float lt = l[tk];
      const int64_t chunks = VerifyNumChunks(vocab);
      for (int64_t k = 0; k < chunks; ++k) {
        const int64_t end = (k + 1) * kVerifySumChunk < vocab ? (k + 1) * kVerifySumChunk : vocab;
        double acc = 0.0;
        for (int64_t y = k * kVerifySumChunk; y < end; ++y) {
          if (l[y] > lt || (l[y] == lt && y <= tk)) acc = acc + w[y];
        }
        s.partials[k] = acc;
      }
      z = VerifySumPartials(s.partials.data(), chunks);
    }
  } else if (want_p || want_m) {
    if (want_p) z = ChunkedSumOf(w, vocab, s.partials.data());
    const double target = SMul(p.top_p, z);
    for (int rung = 0; rung < kSamplingRungs; ++rung) {
      const double c = SamplingRung(rung);
      int64_t n = 0;
      double mass = 0.0;
      for (int64_t y = 0; y < vocab; ++y) {
        if (w[y] >= c) {
          idx[n++] = static_cast<int32_t>(y);
          mass += w[y];
        }
      }
      const bool last = n == vocab;
      const bool by_m = want_m && p.min_p >= c;
      // The ordered sum differs from `mass` by rounding only: skip the sort when top-p
      // cannot be reached inside this prefix by a wide margin.
      const bool maybe_p = want_p && mass >= target * (1.0 - 1e-9);
      if (!last && !by_m && !maybe_p) continue;
      std::sort(idx, idx + n, before);
      sorted = n;
      int64_t kp = vocab + 1;
      if (want_p) {
        double cum = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          cum = cum + w[idx[j]];
          if (cum >= target) {
            kp = j + 1;
            break;
          }
        }
      }
      if (kp <= vocab || by_m || last) {
        K = std::min<int64_t>(kp, vocab);
        break;
      }
    }
  }
  if (want_p && kk < vocab) {
    const double target = SMul(p.top_p, z);
    double cum = 0.0;
    for (int64_t j = 0; j < kk; ++j) {
      cum = cum + w[idx[j]];
      if (cum >= target) {
        K = std::min<int64_t>(K, j + 1);
        break;
      }
    }
  }
  if (want_m) {
    // min-p keeps a prefix: count it inside the sorted prefix (every token with w >= min_p is there).
    int64_t km = 0;
    while (km < sorted && w[idx[km]] >= p.min_p) ++km;
    K = std::min(K, km);
  }
  if (K < vocab) {
    const int32_t tk = idx[K - 1];
    const float lt = l[tk];
    for (int64_t y = 0; y < vocab; ++y) {
      if (!(l[y] > lt || (l[y] == lt && y <= tk))) w[y] = 0.0;
    }
  }
  const double total = ChunkedSumOf(w, vocab, s.partials.data());
  const int32_t token = VerifyInverseCdf(w, vocab, s.partials.data(), u);
  if (probs) {
    for (int64_t y = 0; y < vocab; ++y) probs[y] = static_cast<float>(SDiv(w[y], total));
  }
  return token;
}

}  // namespace

Status SamplingChain(const float* logits, int64_t rows, int64_t vocab, const SamplingParams& params,
                     const SamplingBias& bias, const SamplingPenalties& penalties, const double* uniforms,
                     const SamplingOutput& out) {
  CANOPY_RETURN_IF_ERROR(CheckSamplingArgs(rows, vocab, params, bias, penalties, uniforms));
  if (!out.tokens) return Status::InvalidArgument("samplingChain: tokens output is required");
  if (rows == 0) return Status::Ok();
  // Scratch: grow-only, per calling thread (no allocation or page faults per call once warm).
  // Allocated here, on the calling thread (a failure becomes a Status); workers never allocate.
  const int64_t slots = std::min<int64_t>(rows, NumThreads());
  thread_local std::vector<RowScratch> per_thread;
  std::vector<RowScratch>& scratch = per_thread;  // the caller's: the workers index it through this reference
  if (static_cast<int64_t>(scratch.size()) < slots) scratch.resize(static_cast<size_t>(slots));
  for (int64_t i = 0; i < slots; ++i) {
    RowScratch& s = scratch[i];
    if (static_cast<int64_t>(s.w.size()) < vocab) {
      s.w.resize(static_cast<size_t>(vocab));
      s.idx.resize(static_cast<size_t>(vocab));
      s.partials.resize(static_cast<size_t>(VerifyNumChunks(vocab)));
    }
    if (!out.logits && static_cast<int64_t>(s.l.size()) < vocab) s.l.resize(static_cast<size_t>(vocab));
  }
  ParallelFor(slots, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t slot = s0; slot < s1; ++slot) {
      RowScratch& s = scratch[slot];
      for (int64_t r = slot; r < rows; r += slots) {
        float* l = out.logits ? out.logits + r * vocab : s.l.data();
        ProcessRow(logits + r * vocab, vocab, r, params, bias, penalties, l);
        out.tokens[r] = SampleRow(l, vocab, params, uniforms ? uniforms[r] : 0.0, s, out.probs ? out.probs + r * vocab : nullptr);
      }
    }
  });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
