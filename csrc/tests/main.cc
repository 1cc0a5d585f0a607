// Runner for the native tests. Exit status: 0 all passed; 1 a test failed;
// 2 CUDA tests were required (--require-gpu) but no usable GPU exists.
//
//   canopy_native_tests [--require-gpu] [--seed=N] [--filter=TEXT] [--list]
//
// --filter runs only the tests whose name contains TEXT (repeatable: any of
// them), e.g. to run one kernel family under compute-sanitizer; --list prints
// the names. Each test's wall time is printed after its result.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

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
  bool list = false;
  uint64_t seed = 1234;
  std::vector<std::string> filters;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--require-gpu") == 0) {
      require_gpu = true;
    } else if (std::strncmp(argv[i], "--seed=", 7) == 0) {
      seed = std::strtoull(argv[i] + 7, nullptr, 10);
    } else if (std::strncmp(argv[i], "--filter=", 9) == 0) {
      filters.emplace_back(argv[i] + 9);
    } else if (std::strcmp(argv[i], "--list") == 0) {
      list = true;
    } else {
      std::fprintf(stderr, "error: unknown argument '%s' (expected --require-gpu, --seed=N, --filter=TEXT, --list)\n",
                   argv[i]);
      return 1;
    }
  }
  auto selected = [&](const char* name) {
    if (filters.empty()) return true;
    for (const auto& f : filters) {
      if (std::strstr(name, f.c_str()) != nullptr) return true;
    }
    return false;
  };
  if (list) {
    for (const auto& t : tests::Registry()) {
      if (selected(t.name)) std::printf("%s%s\n", t.name, t.needs_cuda ? " (cuda)" : "");
    }
    return 0;
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
    if (!selected(t.name)) continue;
    if (t.needs_cuda && !rt.available) {
      std::printf("SKIP %s (no usable GPU)\n", t.name);
      ++skipped;
      continue;
    }
    auto start = std::chrono::steady_clock::now();
    bool ok = false;
    try {
      ok = t.fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  %s threw: %s\n", t.name, e.what());
    } catch (...) {
      std::fprintf(stderr, "  %s threw a non-standard exception\n", t.name);
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s %s (%.0f ms)\n", ok ? "PASS" : "FAIL", t.name, ms);
    std::fflush(stdout);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  if (passed + failed + skipped == 0) {
    std::fprintf(stderr, "error: no test matched the filter\n");
    return 1;
  }
  return failed == 0 ? 0 : 1;
}
