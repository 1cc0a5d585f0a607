// A minimal test harness for the native tests: every CUDA kernel checked
// against its CPU counterpart on random, awkward shapes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace canopy {
namespace tests {

struct TestCase {
  const char* name;
  bool needs_cuda;
  std::function<bool()> fn;  // returns true on pass; prints its own mismatches
};

std::vector<TestCase>& Registry();

struct Register {
  Register(const char* name, bool needs_cuda, std::function<bool()> fn) {
    Registry().push_back({name, needs_cuda, std::move(fn)});
  }
};

// Deterministic RNG so failures reproduce (seed printed by the runner).
std::mt19937_64& Rng();

// Sets CANOPY_CUDA_KERNELS for a scope (v1: the version-1 CUDA kernels, see
// csrc/cuda/kernel_version.cuh; else unset: the defaults) and unsets it however the scope ends,
// so a failing check cannot leave later tests on the wrong version.
struct KernelsVersionScope {
  explicit KernelsVersionScope(bool v1) {
    if (v1) {
      setenv("CANOPY_CUDA_KERNELS", "v1", 1);
    } else {
      unsetenv("CANOPY_CUDA_KERNELS");
    }
  }
  ~KernelsVersionScope() { unsetenv("CANOPY_CUDA_KERNELS"); }
  KernelsVersionScope(const KernelsVersionScope&) = delete;
  KernelsVersionScope& operator=(const KernelsVersionScope&) = delete;
};

// Runs a test with the version-1 CUDA kernels, so each later version and version 1 are both
// held to the CPU.
inline std::function<bool()> WithKernelsV1(std::function<bool()> fn) {
  return [fn] {
    KernelsVersionScope v1(true);
    return fn();
  };
}

#define CANOPY_CHECK(cond, ...)                                   \
  do {                                                            \
    if (!(cond)) {                                                \
      std::fprintf(stderr, "  check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                          \
      std::fprintf(stderr, "\n");                                 \
      return false;                                               \
    }                                                             \
  } while (0)

#define CANOPY_CHECK_OK(expr)                                                             \
  do {                                                                                    \
    ::canopy::Status _s = (expr);                                                         \
    CANOPY_CHECK(_s.ok(), "%s returned %s", #expr, _s.message().c_str());                 \
  } while (0)

}  // namespace tests
}  // namespace canopy
