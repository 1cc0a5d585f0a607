// Op family: sampling (the native sampler chain: logit bias, penalties, temperature, top-k,
// top-p, min-p, and a draw with a passed-in uniform). One definition, two kernels (CPU, CUDA)
// that pick the same token for the same inputs, and a float64 TypeScript reference
// (test/helpers/sampling-reference.ts) that picks it too.
//
// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------
//   logits    [rows, vocab] f32 (host for the CPU kernel, device for the CUDA kernel).
//   params    one SamplingParams for every row.
//   bias      a sparse logit bias shared by every row: (token, value) pairs, tokens unique,
//             values finite or -inf (-inf bans the token).
//   penalties per row, the (token, count) pairs of its penalty window (the last penaltyLastN
//             tokens of that row's own context: prompt, committed tokens and, for a draft-tree
//             row, the node's draft ancestors), CSR by indptr [rows+1]; tokens unique within a
//             row, counts >= 1. Null: no penalties.
//   uniforms  [rows] f64 in [0, 1) (host), or null (then u = 0 for every row).
//
// ---------------------------------------------------------------------------
// Stage A, processed logits (f32). For each row and token y, x = logits[y]:
//   bias:        x1 = f32(double(x) + bias[y])                         (only for biased y)
//   penalties:   with c = count of y in the row's window, only when c > 0:
//                  d = double(x1)
//                  repetition (llama.cpp): d = d > 0 ? d / repeat : d * repeat   (skipped if repeat == 1)
//                  d = d - double(c) * frequency        (the product, then the difference)
//                  d = d - presence
//                x2 = f32(d)
//   l[y] = x2 (x itself for a token with no bias and c = 0). Written to out.logits if asked.
//
// ---------------------------------------------------------------------------
// Stage B, the token (and the processed distribution).
//   temperature == 0 (greedy): token = argmax l, ties to the lowest id, NaN counts as -inf;
//     -1 (no token) when no l is above -inf. probs (if asked): a one-hot row at the token.
//   temperature > 0: a row holding NaN or +inf, or nothing above -inf, has no finite
//     distribution: token -1, probs (if asked) the uniform stand-in 1/vocab (verify.h's
//     convention: the decode loop ends the sequence where a path reaches such a row).
//     Otherwise, in double:
//       m      = max l
//       w[y]   = SamplingExp((l[y] - m) / T)       (w = 0 for l = -inf; the max token has w = 1)
//       order  y before y'  iff  l[y] > l[y'], or l[y] == l[y'] and y < y'   (s_1, s_2, ... in order)
//       K_k    = top_k if 1 <= top_k < vocab, else vocab
//       Z_k    = ChunkedSum(w restricted to s_1..s_{K_k})                   (verify.h's sum, id order)
//       K_p    = if top_p < 1: the least j <= K_k with C_j >= top_p * Z_k, where
//                C_j = (((0 + w[s_1]) + w[s_2]) + ... + w[s_j]) (left to right in the order);
//                K_k when no j qualifies or top_p == 1
//       K_m    = if min_p > 0: the number of y with w[y] >= min_p (the probability relative to
//                the largest one: p(y) / p_max = w[y]); vocab otherwise
//       K      = min(K_k, K_p, K_m);  r[y] = w[y] for y in {s_1..s_K}, 0 elsewhere
//       token  = Sample(r, u) of verify.h (inverse CDF over ids in increasing order, chunked sums)
//       probs  = f32(r[y] / ChunkedSum(r))
//     Every filter keeps a prefix of the order and each renormalises over what the previous
//     kept (top-p's mass is relative to the top-k set), so the kept set is that prefix of
//     length K. The kernels never sort the vocabulary: top-k is a partial selection, top-p and
//     min-p look at the tokens with w above a falling cutoff (a prefix of the order) until K
//     is settled; the result is the full-sort definition's.
//
// SamplingExp(x), x <= 0: 0 for x < -708 (and -inf); else k = rint(x * log2(e)),
//   r = (x - k * ln2_hi) - k * ln2_lo, e^r by a degree-13 Taylor polynomial (Horner), times 2^k
//   (one rounded product).
//   Written with explicit single roundings (SMul, SAdd, ...; CUDA: __dmul_rn / __dadd_rn, never
//   fused; the CPU file is compiled without floating-point contraction), so both devices compute
//   the same bits. It differs from a libm exp by a few ulps at most, which moves a token only
//   when a uniform falls within ~1e-15 of a boundary.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "dtype.h"
#include "status.h"
#include "verify.h"

namespace canopy {

struct SamplingParams {
  double temperature = 0.0;      // 0: greedy
  int32_t top_k = 0;             // 0 (or >= vocab): off
  double top_p = 1.0;            // (0, 1]; 1: off
  double min_p = 0.0;            // [0, 1]; 0: off
  double repeat_penalty = 1.0;   // > 0; 1: off
  double frequency_penalty = 0.0;
  double presence_penalty = 0.0;
};

// Sparse logit bias shared by all rows (host memory).
struct SamplingBias {
  int32_t count = 0;
  const int32_t* tokens = nullptr;  // [count], unique
  const double* values = nullptr;   // [count], finite or -inf
};

// Per-row penalty windows as (token, count) pairs, CSR (host memory). indptr null: none.
struct SamplingPenalties {
  const int32_t* indptr = nullptr;  // [rows+1]
  const int32_t* tokens = nullptr;  // [indptr[rows]]
  const int32_t* counts = nullptr;  // [indptr[rows]]
};

struct SamplingOutput {
  int32_t* tokens = nullptr;  // [rows] host, required
  float* probs = nullptr;     // [rows, vocab] on the logits' device, or null
  float* logits = nullptr;    // [rows, vocab] processed logits (stage A) on the logits' device, or null
};

// ---- single-rounding arithmetic (no fused multiply-add on either device) ----------------

// The per-element helpers are always inlined (the CPU row loops vectorise only then).
#if defined(__CUDACC__)
#define CANOPY_SAMPLING_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define CANOPY_SAMPLING_HD inline __attribute__((always_inline))
#else
#define CANOPY_SAMPLING_HD inline
#endif

#if defined(__CUDA_ARCH__)
CANOPY_SAMPLING_HD double SMul(double a, double b) { return __dmul_rn(a, b); }
CANOPY_SAMPLING_HD double SAdd(double a, double b) { return __dadd_rn(a, b); }
CANOPY_SAMPLING_HD double SSub(double a, double b) { return __dsub_rn(a, b); }
CANOPY_SAMPLING_HD double SDiv(double a, double b) { return __ddiv_rn(a, b); }
#else
CANOPY_SAMPLING_HD double SMul(double a, double b) { return a * b; }
CANOPY_SAMPLING_HD double SAdd(double a, double b) { return a + b; }
CANOPY_SAMPLING_HD double SSub(double a, double b) { return a - b; }
CANOPY_SAMPLING_HD double SDiv(double a, double b) { return a / b; }
#endif

CANOPY_SAMPLING_HD uint64_t SamplingF64Bits(double d) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
#endif
}

CANOPY_SAMPLING_HD double SamplingF64FromBits(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
#endif
}

// e^x for x <= 0 (see the header comment). Branch-free, so the CPU loop over a row vectorises:
// k = rint(x * log2(e)) by the 1.5 * 2^52 shifter (round to nearest even, as rint), 2^k built
// from its exponent bits (k >= -1021 here, a normal number), and the product rounds once.
CANOPY_SAMPLING_HD double SamplingExp(double x) {
  const bool under = !(x >= -708.0);
  const double xc = under ? -708.0 : x;
  const double kLog2e = 1.4426950408889634;
  const double kShifter = 6755399441055744.0;          // 1.5 * 2^52
  const double kLn2Hi = 6.93147180369123816490e-01;  // 32 significant bits: k * kLn2Hi is exact
  const double kLn2Lo = 1.90821492927058770002e-10;
  const double t = SAdd(SMul(xc, kLog2e), kShifter);
  const double k = SSub(t, kShifter);
  double r = SSub(xc, SMul(k, kLn2Hi));
  r = SSub(r, SMul(k, kLn2Lo));
  // Taylor coefficients 1/n!, n = 13 .. 2, then 1 and 1 (Horner).
  double p = 1.0 / 6227020800.0;
  p = SAdd(SMul(p, r), 1.0 / 479001600.0);
  p = SAdd(SMul(p, r), 1.0 / 39916800.0);
  p = SAdd(SMul(p, r), 1.0 / 3628800.0);
  p = SAdd(SMul(p, r), 1.0 / 362880.0);
  p = SAdd(SMul(p, r), 1.0 / 40320.0);
  p = SAdd(SMul(p, r), 1.0 / 5040.0);
  p = SAdd(SMul(p, r), 1.0 / 720.0);
  p = SAdd(SMul(p, r), 1.0 / 120.0);
  p = SAdd(SMul(p, r), 1.0 / 24.0);
  p = SAdd(SMul(p, r), 1.0 / 6.0);
  p = SAdd(SMul(p, r), 0.5);
  p = SAdd(SMul(p, r), 1.0);
  p = SAdd(SMul(p, r), 1.0);
  // The low 32 bits of t hold k (two's complement); 2^k has exponent field k + 1023.
  const int64_t ki = static_cast<int32_t>(static_cast<uint32_t>(SamplingF64Bits(t)));
  const double pow2 = SamplingF64FromBits(static_cast<uint64_t>(ki + 1023) << 52);
  const double e = SMul(p, pow2);
  return under ? 0.0 : e;
}

// Stage A for one value: the bias step (has_bias) then the penalty step (count > 0).
CANOPY_HD float SamplingBiasLogit(float x, double bias) { return static_cast<float>(SAdd(static_cast<double>(x), bias)); }

CANOPY_HD float SamplingPenalizeLogit(float x, int32_t count, const SamplingParams& p) {
  double d = static_cast<double>(x);
  if (p.repeat_penalty != 1.0) d = d > 0.0 ? SDiv(d, p.repeat_penalty) : SMul(d, p.repeat_penalty);
  d = SSub(d, SMul(static_cast<double>(count), p.frequency_penalty));
  d = SSub(d, p.presence_penalty);
  return static_cast<float>(d);
}

// The order of stage B: a before b (larger logit, then lower id). Inputs are never NaN here.
CANOPY_HD bool SamplingBefore(float la, int32_t a, float lb, int32_t b) { return la > lb || (la == lb && a < b); }

CANOPY_HD bool SamplingHasPenalties(const SamplingParams& p) {
  return p.repeat_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0;
}

// The falling cutoffs on w at which the kernels look for K (any ladder gives the same K; the
// last rung, 0, takes every token).
constexpr int kSamplingRungs = 9;
CANOPY_HD double SamplingRung(int i) {
  const double r[kSamplingRungs] = {0.0625, 1.0 / 256, 1.0 / 4096, 1.0 / 65536, 1.0 / 16777216.0,
                                    2.3283064365386963e-10, 3.552713678800501e-15, 1e-100, 0.0};
  return r[i];
}

// Checks everything both kernels (CPU, CUDA) need before they run. `rows`, `vocab`: the logits' shape.
inline Status CheckSamplingArgs(int64_t rows, int64_t vocab, const SamplingParams& p, const SamplingBias& bias,
                                const SamplingPenalties& pen, const double* uniforms) {
  const std::string pre = "samplingChain: ";
  if (rows < 0) return Status::InvalidArgument(pre + "rows must be >= 0; received " + std::to_string(rows));
  if (vocab < 1 || vocab > INT32_MAX) {
    return Status::InvalidArgument(pre + "vocab must be in [1, 2^31); received " + std::to_string(vocab));
  }
  if (!(p.temperature >= 0.0) || std::isinf(p.temperature)) {
    return Status::InvalidArgument(pre + "temperature must be a finite number >= 0; received " + std::to_string(p.temperature));
  }
  if (p.top_k < 0) return Status::InvalidArgument(pre + "topK must be >= 0; received " + std::to_string(p.top_k));
  if (!(p.top_p > 0.0 && p.top_p <= 1.0)) {
    return Status::InvalidArgument(pre + "topP must be in (0, 1]; received " + std::to_string(p.top_p));
  }
  if (!(p.min_p >= 0.0 && p.min_p <= 1.0)) {
    return Status::InvalidArgument(pre + "minP must be in [0, 1]; received " + std::to_string(p.min_p));
  }
  if (!(p.repeat_penalty > 0.0) || std::isinf(p.repeat_penalty)) {
    return Status::InvalidArgument(pre + "repeatPenalty must be a finite number > 0; received " + std::to_string(p.repeat_penalty));
  }
  if (!std::isfinite(p.frequency_penalty)) {
    return Status::InvalidArgument(pre + "frequencyPenalty must be finite; received " + std::to_string(p.frequency_penalty));
  }
  if (!std::isfinite(p.presence_penalty)) {
    return Status::InvalidArgument(pre + "presencePenalty must be finite; received " + std::to_string(p.presence_penalty));
  }
  // Uniqueness by sorting small copies (no vocab-sized scratch per call).
  std::vector<int32_t> sorted;
  for (int32_t i = 0; i < bias.count; ++i) {
    const int32_t t = bias.tokens[i];
    if (t < 0 || t >= vocab) {
      return Status::InvalidArgument(pre + "logitBias token " + std::to_string(t) + " must be in [0, " + std::to_string(vocab) + ")");
    }
    const double v = bias.values[i];
    if (std::isnan(v) || v == INFINITY) {
      return Status::InvalidArgument(pre + "logitBias[" + std::to_string(t) + "] must be finite or -Infinity; received " +
                                     std::to_string(v));
    }
  }
  sorted.assign(bias.tokens, bias.tokens + bias.count);
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i] == sorted[i - 1]) return Status::InvalidArgument(pre + "logitBias token " + std::to_string(sorted[i]) + " appears twice");
  }
  if (pen.indptr) {
    if (pen.indptr[0] != 0) return Status::InvalidArgument(pre + "penaltyIndptr[0] must be 0; received " + std::to_string(pen.indptr[0]));
    for (int64_t r = 0; r < rows; ++r) {
      if (pen.indptr[r + 1] < pen.indptr[r]) {
        return Status::InvalidArgument(pre + "penaltyIndptr must be non-decreasing at " + std::to_string(r + 1));
      }
      for (int32_t j = pen.indptr[r]; j < pen.indptr[r + 1]; ++j) {
        const int32_t t = pen.tokens[j];
        if (t < 0 || t >= vocab) {
          return Status::InvalidArgument(pre + "penaltyTokens[" + std::to_string(j) + "] must be a token id in [0, " +
                                         std::to_string(vocab) + "); received " + std::to_string(t));
        }
        if (pen.counts[j] < 1) {
          return Status::InvalidArgument(pre + "penaltyCounts[" + std::to_string(j) + "] must be >= 1; received " +
                                         std::to_string(pen.counts[j]));
        }
      }
      sorted.assign(pen.tokens + pen.indptr[r], pen.tokens + pen.indptr[r + 1]);
      std::sort(sorted.begin(), sorted.end());
      for (size_t i = 1; i < sorted.size(); ++i) {
        if (sorted[i] == sorted[i - 1]) {
          return Status::InvalidArgument(pre + "penaltyTokens of row " + std::to_string(r) + " repeat token " + std::to_string(sorted[i]));
        }
      }
    }
  }
  if (uniforms) {
    for (int64_t i = 0; i < rows; ++i) {
      if (!(uniforms[i] >= 0.0 && uniforms[i] < 1.0)) {
        return Status::InvalidArgument(pre + "uniforms[" + std::to_string(i) + "] must be in [0, 1); received " +
                                       std::to_string(uniforms[i]));
      }
    }
  }
  return Status::Ok();
}

namespace cpu {
// logits and every output host memory; rows run in parallel on the thread pool.
Status SamplingChain(const float* logits, int64_t rows, int64_t vocab, const SamplingParams& params,
                     const SamplingBias& bias, const SamplingPenalties& penalties, const double* uniforms,
                     const SamplingOutput& out);
}  // namespace cpu

namespace cuda {
// Same contract; logits, out.probs and out.logits are DEVICE pointers on the current device;
// bias, penalties, uniforms and out.tokens host memory (staged by the launcher). Synchronous on
// return; tokens equal the CPU kernel's exactly.
Status SamplingChain(const float* logits, int64_t rows, int64_t vocab, const SamplingParams& params,
                     const SamplingBias& bias, const SamplingPenalties& penalties, const double* uniforms,
                     const SamplingOutput& out);
}  // namespace cuda

}  // namespace canopy
