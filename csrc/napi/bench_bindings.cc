// Machine limits for `canopy bench`:
//   measureMachine(bytes, repeats): Promise<{copyGBps, readGBps, peakGFlops, vectorBits, threads}>
//   measureCudaCopy(device, bytes, repeats): Promise<number>   (GB/s, read + write)
#include <napi.h>

#include <memory>

#include "../common/machine_bench.h"
#include "../common/runtime.h"
#include "bindings.h"
#include "errors.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {
namespace {

class MachineWorker : public Napi::AsyncWorker {
 public:
  MachineWorker(Napi::Env env, int64_t bytes, int32_t repeats, int device, bool cuda)
      : Napi::AsyncWorker(env, "canopy-bench"), deferred_(Napi::Promise::Deferred::New(env)), bytes_(bytes),
        repeats_(repeats), device_(device), cuda_(cuda) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      if (cuda_) {
        status_ = cuda::SetDevice(device_);
        if (status_.ok()) status_ = cuda::MeasureCopyBandwidth(bytes_, repeats_, &gbps_);
      } else {
        status_ = cpu::MeasureMachine(bytes_, repeats_, &result_);
      }
    } catch (const std::bad_alloc&) {
      status_ = Status::OutOfMemory("host out of memory");
    } catch (...) {
      status_ = Status::Internal("measureMachine failed");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.ok()) return deferred_.Reject(StatusToError(env, status_).Value());
    if (cuda_) return deferred_.Resolve(Napi::Number::New(env, gbps_));
    Napi::Object o = Napi::Object::New(env);
    o.Set("copyGBps", result_.copy_gbps);
    o.Set("readGBps", result_.read_gbps);
    o.Set("peakGFlops", result_.peak_gflops);
    o.Set("vectorBits", result_.vector_bits);
    o.Set("threads", result_.threads);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int64_t bytes_;
  int32_t repeats_;
  int device_;
  bool cuda_;
  Status status_;
  MachineBenchResult result_;
  double gbps_ = 0;
};

Napi::Value MeasureMachine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = ParseNumber(env, info[0], "bytes", 256.0 * (1 << 20));
  const double repeats = ParseNumber(env, info[1], "repeats", 3);
  if (bytes < (1 << 20) || bytes > 64.0 * (1LL << 30)) throw ArgumentError(env, "bytes must be in [1 MiB, 64 GiB]");
  if (repeats < 1 || repeats > 100) throw ArgumentError(env, "repeats must be in [1, 100]");
  auto* w = new MachineWorker(env, static_cast<int64_t>(bytes), static_cast<int32_t>(repeats), 0, false);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value MeasureCudaCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double device = ParseNumber(env, info[0], "device", 0);
  const double bytes = ParseNumber(env, info[1], "bytes", 1024.0 * (1 << 20));
  const double repeats = ParseNumber(env, info[2], "repeats", 5);
  if (device < 0) throw ArgumentError(env, "device must be >= 0");
  if (bytes < (1 << 20)) throw ArgumentError(env, "bytes must be >= 1 MiB");
  if (repeats < 1 || repeats > 100) throw ArgumentError(env, "repeats must be in [1, 100]");
  auto* w = new MachineWorker(env, static_cast<int64_t>(bytes), static_cast<int32_t>(repeats), static_cast<int>(device), true);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void RegisterBenchBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("measureMachine", Napi::Function::New(env, CANOPY_GUARDED(MeasureMachine), "measureMachine"));
  exports.Set("measureCudaCopy", Napi::Function::New(env, CANOPY_GUARDED(MeasureCudaCopy), "measureCudaCopy"));
}

}  // namespace napi
}  // namespace canopy
