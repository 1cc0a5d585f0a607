// CUDA error -> Status helpers. Launchers use CANOPY_CUDA_RETURN_IF_ERROR so a
// failing runtime call becomes a Status naming the call and the error.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../common/status.h"

namespace canopy {
namespace cuda {

inline Status FromCudaError(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  cudaGetLastError();  // clear the non-sticky error so later calls start clean
  std::string msg = std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  if (err == cudaErrorMemoryAllocation) return Status::OutOfMemory("CUDA out of memory: " + msg);
  if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice || err == cudaErrorNoKernelImageForDevice ||
      err == cudaErrorInvalidDevice) {
    return Status::CudaUnavailable(msg);
  }
  return Status::CudaError(msg);
}

}  // namespace cuda
}  // namespace canopy

#define CANOPY_CUDA_RETURN_IF_ERROR(call) \
  CANOPY_RETURN_IF_ERROR(::canopy::cuda::FromCudaError((call), #call))
