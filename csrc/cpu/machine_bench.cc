// CPU machine limits (see csrc/common/machine_bench.h).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "../common/machine_bench.h"
#include "../common/runtime.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

typedef float V8 __attribute__((vector_size(32)));
typedef float V16 __attribute__((vector_size(64)));

// 12 independent chains of vector FMAs: enough to cover FMA latency (4 cycles) x 2 ports.
// Written out per width (not as a template): a template instantiation would not inherit
// the AVX-512 target attribute of its caller.
#define CANOPY_FMA_CHAINS(V)                                        \
  V a[12];                                                          \
  const V x = V{} + 0.999999f, y = V{} + 1e-7f;                     \
  for (int i = 0; i < 12; ++i) a[i] = V{} + (seed + i);             \
  for (int64_t n = 0; n < iters; ++n) {                             \
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) a[i] = a[i] * x + y; \
  }                                                                 \
  V s = V{};                                                        \
  for (int i = 0; i < 12; ++i) s += a[i];                           \
  return s[0];

float FmaAvx2(int64_t iters, float seed) { CANOPY_FMA_CHAINS(V8) }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,fma"))) float FmaAvx512(int64_t iters, float seed) { CANOPY_FMA_CHAINS(V16) }
#define CANOPY_HAVE_FMA512 1
#endif

}  // namespace

Status MeasureMachine(int64_t bytes, int32_t repeats, MachineBenchResult* out) {
  if (bytes < (1 << 20) || repeats < 1) return Status::InvalidArgument("measureMachine: bytes >= 1 MiB and repeats >= 1");
  const int threads = NumThreads();
  out->threads = threads;
  const size_t n = static_cast<size_t>(bytes) / sizeof(float);
  std::unique_ptr<float[]> src(new float[n]), dst(new float[n]);
  ParallelFor(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      src[i] = static_cast<float>(i & 1023);
      dst[i] = 0.f;
    }
  });
  double best_copy = 0, best_read = 0;
  std::atomic<uint64_t> sink{0};
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    ParallelFor(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
      std::memcpy(dst.get() + b, src.get() + b, (e - b) * sizeof(float));
    });
    auto t1 = Clock::now();
    best_copy = std::max(best_copy, 2.0 * bytes / Seconds(t0, t1) / 1e9);
    t0 = Clock::now();
    ParallelFor(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
      V8 acc[4] = {};
      int64_t i = b;
      for (; i + 32 <= e; i += 32) {
        for (int k = 0; k < 4; ++k) {
          V8 v;
          std::memcpy(&v, src.get() + i + 8 * k, sizeof v);
          acc[k] += v;
        }
      }
      float s = 0;
      for (; i < e; ++i) s += src[i];
      for (int k = 0; k < 4; ++k) s += acc[k][0];
      sink.fetch_add(static_cast<uint64_t>(s));
    });
    t1 = Clock::now();
    best_read = std::max(best_read, static_cast<double>(bytes) / Seconds(t0, t1) / 1e9);
  }
  out->copy_gbps = best_copy;
  out->read_gbps = best_read;

  // Peak FLOP/s: calibrate iterations to ~50 ms per thread, then run on all threads.
  const CpuFeatures& f = GetCpuFeatures();
  bool wide = false;
#ifdef CANOPY_HAVE_FMA512
  wide = f.avx512f;
#endif
  const int lanes = wide ? 16 : 8;
  auto run = [&](int64_t iters, float seed) {
#ifdef CANOPY_HAVE_FMA512
    if (wide) return FmaAvx512(iters, seed);
#endif
    return FmaAvx2(iters, seed);
  };
  int64_t iters = 1 << 16;
  for (;;) {
    auto t0 = Clock::now();
    volatile float v = run(iters, 1.f);
    (void)v;
    if (Seconds(t0, Clock::now()) > 0.02 || iters > (int64_t{1} << 34)) break;
    iters *= 2;
  }
  double best_flops = 0;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    ParallelFor(threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) sink.fetch_add(static_cast<uint64_t>(run(iters, 1.f + t)));
    });
    const double s = Seconds(t0, Clock::now());
    best_flops = std::max(best_flops, 2.0 * 12 * lanes * static_cast<double>(iters) * threads / s / 1e9);
  }
  out->peak_gflops = best_flops;
  out->vector_bits = lanes * 32;
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
