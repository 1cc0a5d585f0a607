// Test hooks for the exception paths of the bindings (used by test/native/exceptions.test.ts).
//
//   throwForTest(where, kind)
//     where: 'sync'       thrown in the binding itself (the Guard path)
//            'pool'       thrown in a CPU thread-pool worker chunk, called synchronously
//            'async'      thrown in an async worker (the promise rejects)
//            'poolAsync'  thrown in a thread-pool chunk inside an async worker
//     kind:  'bad_alloc' (std::bad_alloc), 'huge' (a real allocation of 2^62 bytes),
//            'runtime' (std::runtime_error), 'unknown' (a thrown int)
//   Returns undefined ('sync', 'pool': never, they throw) or a Promise that rejects.
// Every case must reach JavaScript as an Error with a code (ERR_CANOPY_OUT_OF_MEMORY for the
// allocation failures, ERR_CANOPY_INTERNAL otherwise) and leave the process and the pool usable.
#include <napi.h>

#include <new>
#include <stdexcept>
#include <string>

#include "../cpu/thread_pool.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"

namespace canopy {
namespace napi {
namespace {

void ThrowKind(const std::string& kind) {
  if (kind == "bad_alloc") throw std::bad_alloc();
  if (kind == "huge") {
    // A real allocation the allocator must refuse (2^62 bytes); volatile keeps it from being folded away.
    volatile size_t bytes = size_t{1} << 62;
    void* p = ::operator new(bytes);
    ::operator delete(p);
    throw std::runtime_error("an allocation of 2^62 bytes succeeded");
  }
  if (kind == "runtime") throw std::runtime_error("test exception");
  throw 42;  // NOLINT: an exception that is not a std::exception
}

void PoolThrow(const std::string& kind) {
  // Many chunks so the throwing one most likely runs on a worker thread; the throwing chunk
  // is in the middle of the range.
  cpu::ParallelFor(1 << 12, 1, [&](int64_t begin, int64_t end) {
    if (begin <= 2049 && 2049 < end) ThrowKind(kind);
  });
}

Napi::Value ThrowForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    throw ArgumentError(env, "throwForTest: expected (where: string, kind: string)");
  }
  const std::string where = info[0].As<Napi::String>().Utf8Value();
  const std::string kind = info[1].As<Napi::String>().Utf8Value();
  if (where == "sync") ThrowKind(kind);
  if (where == "pool") PoolThrow(kind);
  if (where == "async") return RunAsync(env, [kind]() -> Status { ThrowKind(kind); return Status::Ok(); }, {});
  if (where == "poolAsync") return RunAsync(env, [kind]() -> Status { PoolThrow(kind); return Status::Ok(); }, {});
  throw ArgumentError(env, "throwForTest: where must be 'sync', 'pool', 'async' or 'poolAsync'; received " + where);
}

}  // namespace

void RegisterTestBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("throwForTest", Napi::Function::New(env, CANOPY_GUARDED(ThrowForTest), "throwForTest"));
}

}  // namespace napi
}  // namespace canopy
