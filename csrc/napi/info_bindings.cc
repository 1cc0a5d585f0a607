// canopy info: build facts, CPU features and threads, CUDA runtime and devices.
#include <napi.h>

#include "../common/runtime.h"
#include "../cpu/thread_pool.h"
#include "bindings.h"
#include "errors.h"

namespace canopy {
namespace napi {
namespace {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("napiVersion", NAPI_VERSION);
  o.Set("cudaCompiled", cuda::Compiled());
  o.Set("cudaArchitectures", cuda::CompiledArchitectures());
#if defined(__clang__)
  o.Set("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
  o.Set("compiler", std::string("gcc ") + __VERSION__);
#else
  o.Set("compiler", "unknown");
#endif
#if defined(CANOPY_BUILD_SYSTEM)
  o.Set("buildSystem", CANOPY_BUILD_SYSTEM);
#else
  o.Set("buildSystem", "unknown");
#endif
  return o;
}

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", cpu::NumThreads());
  o.Set("defaultThreads", cpu::DefaultThreads());
  o.Set("model", cpu::CpuModelName());
  std::vector<std::string> names = cpu::CpuFeatureNames();
  Napi::Array features = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) features.Set(static_cast<uint32_t>(i), names[i]);
  o.Set("features", features);
  return o;
}

// setThreads(n): resizes the CPU thread pool (n <= 0: the default, physical cores); returns
// the new size. Waits for a running CPU kernel to finish.
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw ArgumentError(env, "threads must be an integer in [0, 1024] (0: the default)");
  const double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 0 && n <= 1024) || n != static_cast<double>(static_cast<int>(n))) {
    throw ArgumentError(env, "threads must be an integer in [0, 1024] (0: the default); received " + std::to_string(n));
  }
  return Napi::Number::New(env, cpu::SetNumThreads(static_cast<int>(n)));
}

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::RuntimeInfo rt = cuda::QueryRuntime();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", cuda::Compiled());
  o.Set("available", rt.available);
  o.Set("reason", rt.available ? env.Null() : Napi::String::New(env, rt.reason));
  o.Set("driverVersion", rt.driver_version);
  o.Set("runtimeVersion", rt.runtime_version);
  o.Set("architectures", cuda::CompiledArchitectures());
  Napi::Array devices = Napi::Array::New(env, rt.devices.size());
  for (size_t i = 0; i < rt.devices.size(); ++i) {
    const cuda::DeviceInfo& d = rt.devices[i];
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", d.index);
    dev.Set("name", d.name);
    dev.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    dev.Set("totalMemory", static_cast<double>(d.total_memory));
    dev.Set("multiprocessors", d.multiprocessors);
    dev.Set("clockKHz", d.clock_khz);
    dev.Set("usable", d.usable);
    dev.Set("reason", d.usable ? env.Null() : Napi::String::New(env, d.reason));
    devices.Set(static_cast<uint32_t>(i), dev);
  }
  o.Set("devices", devices);
  return o;
}

// cudaMemInfo(device): {free, total} bytes of the device's memory (cudaMemGetInfo).
Napi::Value CudaMemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw ArgumentError(env, "device must be a CUDA device index (a number)");
  const int device = info[0].As<Napi::Number>().Int32Value();
  if (device < 0) throw ArgumentError(env, "device must be >= 0; received " + std::to_string(device));
  size_t free_b = 0, total_b = 0;
  ThrowIfError(env, cuda::MemInfo(device, &free_b, &total_b));
  Napi::Object o = Napi::Object::New(env);
  o.Set("free", static_cast<double>(free_b));
  o.Set("total", static_cast<double>(total_b));
  return o;
}

}  // namespace

void RegisterInfoBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, CANOPY_GUARDED(BuildInfo), "buildInfo"));
  exports.Set("cpuInfo", Napi::Function::New(env, CANOPY_GUARDED(CpuInfo), "cpuInfo"));
  exports.Set("setThreads", Napi::Function::New(env, CANOPY_GUARDED(SetThreads), "setThreads"));
  exports.Set("cudaInfo", Napi::Function::New(env, CANOPY_GUARDED(CudaInfo), "cudaInfo"));
  exports.Set("cudaMemInfo", Napi::Function::New(env, CANOPY_GUARDED(CudaMemInfo), "cudaMemInfo"));
}

}  // namespace napi
}  // namespace canopy
