// CUDA copy bandwidth (see csrc/common/machine_bench.h): cudaMemcpy device to
// device of a large buffer, best of the repeats, timed with events.
#include <cuda_runtime.h>

#include <algorithm>

#include "../common/machine_bench.h"
#include "../common/runtime.h"
#include "check.cuh"

namespace canopy {
namespace cuda {

Status MeasureCopyBandwidth(int64_t bytes, int32_t repeats, double* gbps) {
  if (bytes < (1 << 20) || repeats < 1) return Status::InvalidArgument("measureCopyBandwidth: bytes >= 1 MiB and repeats >= 1");
  int device = 0;
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  void *a = nullptr, *b = nullptr;
  CANOPY_RETURN_IF_ERROR(Malloc(device, bytes, &a));
  Status st = Malloc(device, bytes, &b);
  if (!st.ok()) {
    Free(device, a);
    return st;
  }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  double best = 0;
  cudaMemset(a, 1, bytes);
  for (int r = 0; r <= repeats; ++r) {
    cudaEventRecord(e0);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    if (r > 0 && ms > 0) best = std::max(best, 2.0 * bytes / (ms * 1e-3) / 1e9);  // r == 0 is warm-up
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  st = FromCudaError(cudaGetLastError(), "MeasureCopyBandwidth");
  Free(device, a);
  Free(device, b);
  *gbps = best;
  return st;
}

}  // namespace cuda
}  // namespace canopy
