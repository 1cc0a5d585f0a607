// The CPU thread pool under exceptions: a chunk that throws (on a worker or on the caller)
// reaches the caller of ParallelFor as that exception, the chunks not yet started are
// skipped, and the pool computes correctly afterwards. Run with threads > 1 to exercise the
// workers (CANOPY_THREADS; the sanitizer script runs these under ASan + UBSan).
#include <atomic>
#include <new>
#include <stdexcept>
#include <vector>

#include "../cpu/thread_pool.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

bool ExceptionsReachTheCaller() {
  for (int round = 0; round < 50; ++round) {
    const int64_t n = 1000 + round * 37;
    bool caught = false;
    try {
      cpu::ParallelForThrowForTest(n, (round * 131) % n, 0);
    } catch (const std::bad_alloc&) {
      caught = true;
    }
    CANOPY_CHECK(caught, "round %d: std::bad_alloc from a chunk did not reach the caller", round);
    caught = false;
    try {
      cpu::ParallelForThrowForTest(n, n - 1, 1);
    } catch (const std::runtime_error&) {
      caught = true;
    }
    CANOPY_CHECK(caught, "round %d: std::runtime_error from the last chunk did not reach the caller", round);
    // The pool still covers every item exactly once.
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    cpu::ParallelFor(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (int64_t i = 0; i < n; ++i) CANOPY_CHECK(hits[static_cast<size_t>(i)] == 1, "item %lld ran %d times", static_cast<long long>(i), hits[static_cast<size_t>(i)].load());
  }
  return true;
}

Register r1("thread pool: an exception in a chunk reaches the caller; the pool stays usable", false, ExceptionsReachTheCaller);

}  // namespace
}  // namespace tests
}  // namespace canopy
