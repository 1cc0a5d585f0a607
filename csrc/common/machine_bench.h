// Op family: machine limits for benchmarks. Benchmarks report achieved GB/s or
// TFLOP/s against what this machine measurably does, not against a datasheet:
//   copy bandwidth  = (bytes read + bytes written) / time for a threaded memcpy of a
//                     buffer far larger than the caches (STREAM "copy" convention);
//   read bandwidth  = bytes read / time for a threaded vectorised sum;
//   peak FLOP/s     = 2 x FMAs / time for independent FMA chains in registers on all
//                     threads, with the widest vectors the CPU has (AVX-512 or AVX2).
#pragma once

#include <cstdint>

#include "status.h"

namespace canopy {

struct MachineBenchResult {
  double copy_gbps = 0;       // best of the repeats
  double read_gbps = 0;
  double peak_gflops = 0;
  int32_t vector_bits = 0;    // width used for the FLOP/s measurement
  int32_t threads = 0;
};

namespace cpu {
// bytes: buffer size for the bandwidth tests (>= 64 MiB recommended); repeats >= 1.
Status MeasureMachine(int64_t bytes, int32_t repeats, MachineBenchResult* out);
}  // namespace cpu

namespace cuda {
// Device-to-device copy bandwidth (read + write bytes / time) on the current device.
Status MeasureCopyBandwidth(int64_t bytes, int32_t repeats, double* gbps);
}  // namespace cuda

}  // namespace canopy
