// A thread pool for CPU kernels.
//
// Size: CANOPY_THREADS if set to a positive integer, else DefaultThreads() (the physical
// cores this process may run on); SetNumThreads changes it at run time (setThreads in
// TypeScript). ParallelFor splits [0, n) into contiguous chunks of at least `grain` items;
// the calling thread works too. Between jobs the workers spin for a short while before
// sleeping, so the few hundred short jobs of a decode step pay no wake-up each. Concurrent ParallelFor calls (from several async workers)
// are serialised, so each kernel gets the whole pool.
//
// Kernels must not let results depend on how [0, n) is chunked or on the pool size (the
// linear layer's bit-identity across thread counts rests on this).
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

// Physical cores among the CPUs this process may run on (Linux: sched affinity and sysfs
// topology); the hardware thread count where that cannot be read. At least 1.
int DefaultThreads();

// Resizes the pool to `threads` (1..1024; <= 0 means DefaultThreads()). Waits for a running
// ParallelFor to finish. Returns the new size.
int SetNumThreads(int threads);

// fn(begin, end) is called for disjoint ranges covering [0, n).
// Test hook for the exception path: calls ParallelFor over n items with a function that
// throws from the chunk holding item `throw_at` (kind 0: std::bad_alloc, 1: std::runtime_error).
void ParallelForThrowForTest(int64_t n, int64_t throw_at, int kind);

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cpu
}  // namespace canopy
