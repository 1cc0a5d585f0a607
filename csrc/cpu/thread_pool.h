// A fixed-size thread pool for CPU kernels.
//
// Size: CANOPY_THREADS if set to a positive integer, else the number of
// hardware threads. ParallelFor splits [0, n) into contiguous chunks of at
// least `grain` items; the calling thread works too. Concurrent ParallelFor
// calls (from several async workers) are serialised, so each kernel gets the
// whole pool.
//
// Exceptions: if fn throws on any thread (a worker or the caller), the chunks
// not yet started are skipped and, once every started chunk has finished, the
// first exception is rethrown to the caller of ParallelFor (the pool itself
// stays usable). Callers are inside napi Guard or an async worker, which turn
// it into a Status (std::bad_alloc: OutOfMemory).
#pragma once

#include <cstdint>
#include <functional>

namespace canopy {
namespace cpu {

int NumThreads();

// fn(begin, end) is called for disjoint ranges covering [0, n).
// Test hook for the exception path: calls ParallelFor over n items with a function that
// throws from the chunk holding item `throw_at` (kind 0: std::bad_alloc, 1: std::runtime_error).
void ParallelForThrowForTest(int64_t n, int64_t throw_at, int kind);

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cpu
}  // namespace canopy
