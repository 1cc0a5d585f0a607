// A fixed-size thread pool for CPU kernels.
//
// Size: CANOPY_THREADS if set to a positive integer, else the number of
// hardware threads. ParallelFor splits [0, n) into contiguous chunks of at
// least `grain` items; the calling thread works too. Concurrent ParallelFor
// calls (from several async workers) are serialised, so each kernel gets the
// whole pool.
#pragma once

#include <cstdint>
#include <functional>

namespace canopy {
namespace cpu {

int NumThreads();

// fn(begin, end) is called for disjoint ranges covering [0, n).
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cpu
}  // namespace canopy
