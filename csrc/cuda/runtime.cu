// CUDA runtime queries and device memory, reported as Status (never aborts).
// cudart is linked statically, so this code loads on machines without a
// driver; there cudaGetDeviceCount returns cudaErrorInsufficientDriver and we
// report that as the reason CUDA is unavailable.
#include <cuda_runtime.h>

#include <cstdlib>
#include <mutex>
#include <sstream>

#include "../common/runtime.h"
#include "check.cuh"

#ifndef CANOPY_CUDA_ARCHS
#define CANOPY_CUDA_ARCHS "unknown"
#endif

namespace canopy {
namespace cuda {
namespace {

// Smallest number in a list like "80;86;89;90" (entries may carry -real/-virtual).
int ParseMinArch(const std::string& archs) {
  int best = 0;
  std::stringstream ss(archs);
  std::string item;
  while (std::getline(ss, item, ';')) {
    int v = std::atoi(item.c_str());
    if (v > 0 && (best == 0 || v < best)) best = v;
  }
  return best;
}

std::string VersionString(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

RuntimeInfo Query() {
  RuntimeInfo info;
  cudaDriverGetVersion(&info.driver_version);
  cudaRuntimeGetVersion(&info.runtime_version);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (err == cudaErrorInsufficientDriver) {
      info.reason = info.driver_version == 0
                        ? "no NVIDIA driver found (libcuda.so.1 is not loadable): cudaErrorInsufficientDriver (35)"
                        : "the NVIDIA driver (CUDA " + VersionString(info.driver_version) +
                              ") is older than this build's CUDA runtime (" + VersionString(info.runtime_version) +
                              "): cudaErrorInsufficientDriver (35)";
    } else if (err == cudaErrorNoDevice) {
      info.reason = "the NVIDIA driver is loaded but reports no CUDA device: cudaErrorNoDevice (100)";
    } else {
      info.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ")";
    }
    return info;
  }
  if (count == 0) {
    info.reason = "the NVIDIA driver reports no CUDA device";
    return info;
  }
  const int min_cc = MinComputeCapability();
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    DeviceInfo d;
    d.index = i;
    cudaError_t perr = cudaGetDeviceProperties(&prop, i);
    if (perr != cudaSuccess) {
      cudaGetLastError();
      d.reason = std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorName(perr);
      info.devices.push_back(d);
      continue;
    }
    d.name = prop.name;
    d.major = prop.major;
    d.minor = prop.minor;
    d.total_memory = prop.totalGlobalMem;
    d.multiprocessors = prop.multiProcessorCount;
    cudaDeviceGetAttribute(&d.clock_khz, cudaDevAttrClockRate, i);
    cudaDeviceGetAttribute(&d.memory_bus_bits, cudaDevAttrGlobalMemoryBusWidth, i);
    int cc = prop.major * 10 + prop.minor;
    d.usable = cc >= min_cc;
    if (!d.usable) {
      d.reason = "compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                 " is older than the oldest architecture compiled in (sm_" + std::to_string(min_cc) +
                 "; CANOPY_CUDA_ARCHS=" + CompiledArchitectures() + ")";
    }
    if (d.usable) info.available = true;
    info.devices.push_back(d);
  }
  if (!info.available) info.reason = "no CUDA device is usable: " + info.devices.front().reason;
  return info;
}

}  // namespace

bool Compiled() { return true; }
// CMake passes the list comma-separated (a ';' would split the definition).
std::string CompiledArchitectures() {
  std::string archs = CANOPY_CUDA_ARCHS;
  for (char& c : archs) {
    if (c == ',') c = ';';
  }
  return archs;
}
int MinComputeCapability() { return ParseMinArch(CompiledArchitectures()); }

RuntimeInfo QueryRuntime() {
  // Devices do not come and go within a process: query once.
  static const RuntimeInfo info = Query();
  return info;
}

Status SetDevice(int device) {
  const RuntimeInfo& info = QueryRuntime();
  if (!info.available) return Status::CudaUnavailable("CUDA is unavailable: " + info.reason);
  if (device < 0 || device >= static_cast<int>(info.devices.size())) {
    return Status::InvalidArgument("device: cuda:" + std::to_string(device) + " does not exist; " +
                                   std::to_string(info.devices.size()) + " CUDA device(s) found");
  }
  if (!info.devices[device].usable) {
    return Status::CudaUnavailable("cuda:" + std::to_string(device) + " is not usable: " + info.devices[device].reason);
  }
  CANOPY_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  return Status::Ok();
}

Status Malloc(int device, size_t bytes, void** ptr) {
  *ptr = nullptr;
  CANOPY_RETURN_IF_ERROR(SetDevice(device));
  if (bytes == 0) return Status::Ok();
  cudaError_t err = cudaMalloc(ptr, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    *ptr = nullptr;
    return Status::OutOfMemory("CUDA out of memory on cuda:" + std::to_string(device) + ": allocating " +
                               std::to_string(bytes) + " bytes with " + std::to_string(free_b) + " of " +
                               std::to_string(total_b) + " bytes free");
  }
  return FromCudaError(err, "cudaMalloc");
}

Status MemInfo(int device, size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = 0;
  *total_bytes = 0;
  CANOPY_RETURN_IF_ERROR(SetDevice(device));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(free_bytes, total_bytes));
  return Status::Ok();
}

Status Free(int device, void* ptr) {
  if (ptr == nullptr) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(SetDevice(device));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaFree(ptr));
  return Status::Ok();
}

Status CopyHostToDevice(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(SetDevice(device));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return Status::Ok();
}

Status CopyDeviceToHost(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(SetDevice(device));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return Status::Ok();
}

Status CopyDeviceToDevice(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  CANOPY_RETURN_IF_ERROR(SetDevice(device));
  CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
