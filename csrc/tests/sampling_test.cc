// The sampler chain (csrc/common/sampling.h): SamplingExp against libm, the CPU kernel
// independent of the thread count, and the CUDA kernel equal to the CPU kernel (tokens, the
// processed logits and the processed distribution bit for bit) on random rows with every option.
// The CPU kernel against the float64 reference lives in test/kernels/sampling.test.ts.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/runtime.h"
#include "../common/sampling.h"
#include "../cpu/thread_pool.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

double U01() { return std::uniform_real_distribution<double>(0.0, 1.0)(Rng()); }

bool SamplingExpMatchesLibm() {
  double worst = 0.0;
  for (int i = 0; i <= 200000; ++i) {
    const double x = -708.0 * i / 200000.0;
    const double e = SamplingExp(x), ref = std::exp(x);
    worst = std::max(worst, std::fabs(e - ref) / ref);
  }
  CANOPY_CHECK(worst < 1e-14, "SamplingExp relative error %g", worst);
  CANOPY_CHECK(SamplingExp(0.0) == 1.0 && SamplingExp(-709.0) == 0.0 && SamplingExp(-INFINITY) == 0.0, "SamplingExp edges");
  return true;
}

struct Rows {
  int64_t rows = 0, vocab = 0;
  std::vector<float> logits;
  std::vector<int32_t> pen_indptr{0}, pen_tokens, pen_counts;
  std::vector<double> uniforms;
  std::vector<int32_t> bias_tokens;
  std::vector<double> bias_values;
};

Rows RandomRows(int64_t rows, int64_t vocab) {
  Rows r;
  r.rows = rows;
  r.vocab = vocab;
  r.logits.resize(rows * vocab);
  for (int64_t i = 0; i < rows; ++i) {
    const double scale = 0.5 + 6 * U01();
    const int kind = static_cast<int>(i % 6);
    for (int64_t y = 0; y < vocab; ++y) {
      float v = static_cast<float>((U01() + U01() + U01() - 1.5) * 2 * scale);
      if (kind == 1) v = std::round(v) / 2;                     // ties
      if (kind == 2 && U01() < 0.3) v = -INFINITY;              // sparse
      r.logits[i * vocab + y] = v;
    }
    if (kind == 3) r.logits[i * vocab + static_cast<int64_t>(U01() * vocab)] = NAN;
    if (kind == 4) r.logits[i * vocab + static_cast<int64_t>(U01() * vocab)] = INFINITY;
    // A penalty window: a few tokens with counts.
    std::vector<int32_t> seen;
    for (int k = 0; k < 6; ++k) {
      const int32_t t = static_cast<int32_t>(U01() * vocab);
      if (std::find(seen.begin(), seen.end(), t) != seen.end()) continue;
      seen.push_back(t);
      r.pen_tokens.push_back(t);
      r.pen_counts.push_back(1 + static_cast<int32_t>(U01() * 4));
    }
    r.pen_indptr.push_back(static_cast<int32_t>(r.pen_tokens.size()));
    r.uniforms.push_back(U01());
  }
  r.bias_tokens = {0};
  r.bias_values = {1.5};
  if (vocab > 2) {
    r.bias_tokens.push_back(static_cast<int32_t>(vocab - 1));
    r.bias_values.push_back(-INFINITY);
  }
  return r;
}

std::vector<SamplingParams> Settings(int64_t vocab) {
  std::vector<SamplingParams> s;
  auto add = [&](double t, int32_t k, double p, double m, double rep, double f, double pres) {
    SamplingParams q;
    q.temperature = t;
    q.top_k = k;
    q.top_p = p;
    q.min_p = m;
    q.repeat_penalty = rep;
    q.frequency_penalty = f;
    q.presence_penalty = pres;
    s.push_back(q);
  };
  add(1, 0, 1, 0, 1, 0, 0);
  add(0.7, 40, 1, 0, 1, 0, 0);
  add(0.7, 0, 0.9, 0, 1, 0, 0);
  add(1.3, 0, 1, 0.05, 1, 0, 0);
  add(0.8, 20, 0.8, 0.02, 1.2, 0.1, 0.3);
  add(1, static_cast<int32_t>(vocab), 0.5, 0, 1, 0, 0);
  add(0, 0, 1, 0, 1.4, 0.2, 0.1);
  return s;
}

struct Out {
  std::vector<int32_t> tokens;
  std::vector<float> probs, logits;
};

Status RunCpu(const Rows& r, const SamplingParams& p, Out* o) {
  o->tokens.assign(r.rows, 0);
  o->probs.assign(r.rows * r.vocab, 0.f);
  o->logits.assign(r.rows * r.vocab, 0.f);
  SamplingBias b{static_cast<int32_t>(r.bias_tokens.size()), r.bias_tokens.data(), r.bias_values.data()};
  SamplingPenalties pen{r.pen_indptr.data(), r.pen_tokens.data(), r.pen_counts.data()};
  return cpu::SamplingChain(r.logits.data(), r.rows, r.vocab, p, b, pen, r.uniforms.data(),
                            {o->tokens.data(), o->probs.data(), o->logits.data()});
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], 4) != 0) return false;
  }
  return true;
}

bool CpuIndependentOfThreads() {
  const int before = cpu::NumThreads();
  for (int64_t vocab : {7, 1000}) {
    Rows r = RandomRows(37, vocab);
    for (const SamplingParams& p : Settings(vocab)) {
      Out a, b;
      cpu::SetNumThreads(1);
      CANOPY_CHECK_OK(RunCpu(r, p, &a));
      cpu::SetNumThreads(3);
      CANOPY_CHECK_OK(RunCpu(r, p, &b));
      CANOPY_CHECK(a.tokens == b.tokens && SameBits(a.probs, b.probs) && SameBits(a.logits, b.logits),
                   "sampling chain differs across thread counts (vocab %lld)", static_cast<long long>(vocab));
    }
  }
  cpu::SetNumThreads(before);
  return true;
}

struct DeviceBuf {
  void* ptr = nullptr;
  ~DeviceBuf() {
    if (ptr) cuda::Free(0, ptr);
  }
};

bool CudaMatchesCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  for (int64_t vocab : {1, 7, 257, 32000, 128256}) {
    Rows r = RandomRows(vocab > 32000 ? 6 : 24, vocab);
    const size_t bytes = r.logits.size() * 4;
    DeviceBuf dl, dp, dx;
    CANOPY_CHECK_OK(cuda::Malloc(0, bytes, &dl.ptr));
    CANOPY_CHECK_OK(cuda::Malloc(0, bytes, &dp.ptr));
    CANOPY_CHECK_OK(cuda::Malloc(0, bytes, &dx.ptr));
    CANOPY_CHECK_OK(cuda::CopyHostToDevice(0, dl.ptr, r.logits.data(), bytes));
    for (const SamplingParams& p : Settings(vocab)) {
      Out a, b;
      CANOPY_CHECK_OK(RunCpu(r, p, &a));
      b.tokens.assign(r.rows, 0);
      b.probs.assign(r.rows * vocab, 0.f);
      b.logits.assign(r.rows * vocab, 0.f);
      SamplingBias bias{static_cast<int32_t>(r.bias_tokens.size()), r.bias_tokens.data(), r.bias_values.data()};
      SamplingPenalties pen{r.pen_indptr.data(), r.pen_tokens.data(), r.pen_counts.data()};
      CANOPY_CHECK_OK(cuda::SamplingChain(static_cast<const float*>(dl.ptr), r.rows, vocab, p, bias, pen, r.uniforms.data(),
                                          {b.tokens.data(), static_cast<float*>(dp.ptr), static_cast<float*>(dx.ptr)}));
      CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, b.probs.data(), dp.ptr, bytes));
      CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, b.logits.data(), dx.ptr, bytes));
      CANOPY_CHECK(a.tokens == b.tokens, "cuda sampling tokens differ (vocab %lld, T %g, k %d, p %g, min-p %g)",
                   static_cast<long long>(vocab), p.temperature, p.top_k, p.top_p, p.min_p);
      CANOPY_CHECK(SameBits(a.logits, b.logits), "cuda processed logits differ (vocab %lld)", static_cast<long long>(vocab));
      CANOPY_CHECK(SameBits(a.probs, b.probs), "cuda probs differ (vocab %lld)", static_cast<long long>(vocab));
    }
  }
  return true;
}

Register r1("sampling: SamplingExp within 1e-14 of libm exp on [-708, 0]", false, SamplingExpMatchesLibm);
Register r2("sampling: cpu chain independent of the thread count", false, CpuIndependentOfThreads);
Register r3("sampling: cuda chain equals cpu (tokens, processed logits, probs bitwise)", true, CudaMatchesCpu);

}  // namespace
}  // namespace tests
}  // namespace canopy
