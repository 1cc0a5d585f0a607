#include "async_work.h"

#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include "errors.h"

namespace canopy {
namespace napi {
namespace {

class StatusWorker : public Napi::AsyncWorker {
 public:
  StatusWorker(Napi::Env env, std::function<Status()> work, std::vector<TensorArg> args, std::function<void()> on_done)
      : Napi::AsyncWorker(env, "canopy"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), args_(std::move(args)), on_done_(std::move(on_done)) {
    for (TensorArg& a : args_) {
      if (a.device_buffer) a.device_buffer->Acquire();
    }
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // Execute runs on a libuv thread: catch everything, report through status_.
    try {
      status_ = work_();
    } catch (const std::bad_alloc&) {
      status_ = Status::OutOfMemory("host out of memory (a native allocation failed)");
    } catch (const std::length_error& e) {
      status_ = Status::OutOfMemory(std::string("host out of memory: ") + e.what());
    } catch (const std::exception& e) {
      status_ = Status::Internal(std::string("native error: ") + e.what());
    } catch (...) {
      status_ = Status::Internal("unknown native error");
    }
  }

  void OnOK() override {
    ReleaseBuffers();
    Napi::Env env = Env();
    if (status_.ok()) {
      deferred_.Resolve(env.Undefined());
    } else {
      deferred_.Reject(StatusToError(env, status_).Value());
    }
  }

  void OnError(const Napi::Error& e) override {
    ReleaseBuffers();
    deferred_.Reject(e.Value());
  }

 private:
  void ReleaseBuffers() {
    if (on_done_) on_done_();
    for (TensorArg& a : args_) {
      if (a.device_buffer) a.device_buffer->Release();
      a.device_buffer = nullptr;
    }
  }

  Napi::Promise::Deferred deferred_;
  std::function<Status()> work_;
  std::vector<TensorArg> args_;
  std::function<void()> on_done_;
  Status status_;
};

}  // namespace

Napi::Promise RunAsync(Napi::Env env, std::function<Status()> work, std::vector<TensorArg> args,
                       std::function<void()> on_done) {
  auto* worker = new StatusWorker(env, std::move(work), std::move(args), std::move(on_done));
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // the worker deletes itself after OnOK / OnError
  return promise;
}

}  // namespace napi
}  // namespace canopy
