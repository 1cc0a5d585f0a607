// Runner for the native tests. Exit status: 0 all passed; 1 a test failed;
// 2 CUDA tests were required (--require-gpu) but no usable GPU exists.
#include <cstdlib>
#include <cstring>

#include "../common/runtime.h"
#include "harness.h"

namespace canopy {
namespace tests {

std::vector<TestCase>& Registry() {
  static std::vector<TestCase> r;
  return r;
}

std::mt19937_64& Rng() {
  static std::mt19937_64 rng;
  return rng;
}

}  // namespace tests
}  // namespace canopy

int main(int argc, char** argv) {
  using namespace canopy;
  bool require_gpu = false;
  uint64_t seed = 1234;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--require-gpu") == 0) require_gpu = true;
    if (std::strncmp(argv[i], "--seed=", 7) == 0) seed = std::strtoull(argv[i] + 7, nullptr, 10);
  }
  tests::Rng().seed(seed);
  cuda::RuntimeInfo rt = cuda::QueryRuntime();
  std::printf("canopy native tests (seed %llu)\n", static_cast<unsigned long long>(seed));
  if (rt.available) {
    for (const auto& d : rt.devices) {
      std::printf("cuda:%d %s (compute capability %d.%d, %.1f GiB)\n", d.index, d.name.c_str(), d.major, d.minor,
                  d.total_memory / 1073741824.0);
    }
  } else {
    std::printf("CUDA unavailable: %s\n", rt.reason.c_str());
    if (require_gpu) {
      std::fprintf(stderr, "error: --require-gpu given but no usable GPU\n");
      return 2;
    }
  }
  int passed = 0, failed = 0, skipped = 0;
  for (const auto& t : tests::Registry()) {
    if (t.needs_cuda && !rt.available) {
      std::printf("SKIP %s (no usable GPU)\n", t.name);
      ++skipped;
      continue;
    }
    bool ok = t.fn();
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", t.name);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed == 0 ? 0 : 1;
}
