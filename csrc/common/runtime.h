// Runtime facts the bindings report (canopy info) and use for placement:
// CPU features and threads, CUDA availability and devices, device memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "status.h"

namespace canopy {

namespace cpu {

struct CpuFeatures {
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_fp16 = false, avx512_vnni = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool neon = false;     // aarch64: Advanced SIMD (always present in armv8-a)
  bool dotprod = false;  // aarch64: SDOT/UDOT (armv8.2 dotprod, HWCAP_ASIMDDP)
  bool fp16 = false;     // aarch64: half-precision arithmetic (HWCAP_FPHP | HWCAP_ASIMDHP; reported only)
};

// Detected once with cpuid (x86) and xgetbv (OS support for the wider
// registers), or getauxval(AT_HWCAP) on aarch64 Linux; reported as names like
// "avx2", "avx512f", "neon", "dotprod".
const CpuFeatures& GetCpuFeatures();
std::vector<std::string> CpuFeatureNames();
std::string CpuModelName();

}  // namespace cpu

namespace cuda {

// Minimum compute capability the compiled kernels need (major*10+minor), or 0
// when CUDA was not compiled in.
int MinComputeCapability();
// The architectures compiled into the binary, e.g. "80;86;89;90".
std::string CompiledArchitectures();
bool Compiled();

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;
  size_t total_memory = 0;
  int multiprocessors = 0;
  int clock_khz = 0;         // SM boost clock
  int memory_bus_bits = 0;
  bool usable = false;      // compute capability >= MinComputeCapability()
  std::string reason;       // why not usable, when usable is false
};

struct RuntimeInfo {
  bool available = false;   // at least one usable device
  std::string reason;       // why not, when available is false
  int driver_version = 0;   // e.g. 12080; 0 when no driver
  int runtime_version = 0;
  std::vector<DeviceInfo> devices;
};

RuntimeInfo QueryRuntime();

// Device memory, on device `device`. Errors are Status values, never aborts.
Status Malloc(int device, size_t bytes, void** ptr);
Status Free(int device, void* ptr);
Status CopyHostToDevice(int device, void* dst, const void* src, size_t bytes);
Status CopyDeviceToHost(int device, void* dst, const void* src, size_t bytes);
Status CopyDeviceToDevice(int device, void* dst, const void* src, size_t bytes);
// Makes `device` current on the calling thread (checks it is usable first).
Status SetDevice(int device);
// Free and total memory of `device` in bytes (cudaMemGetInfo): what `canopy bench`
// samples to report the device memory in use per benchmark row.
Status MemInfo(int device, size_t* free_bytes, size_t* total_bytes);

}  // namespace cuda

}  // namespace canopy
