// Running native work off the JavaScript thread.
//
// RunAsync(env, work, buffers) queues `work` (a Status-returning function) on
// the libuv thread pool and returns a Promise that resolves with undefined or
// rejects with an Error carrying the Status code. Device buffers the work
// touches are marked busy until it ends, and the tensor arguments are kept
// referenced so the garbage collector cannot free their memory meanwhile.
#pragma once

#include <napi.h>

#include <functional>
#include <vector>

#include "../common/status.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {

// on_done (optional) runs on the JavaScript thread when the work has finished, before the
// promise settles.
Napi::Promise RunAsync(Napi::Env env, std::function<Status()> work, std::vector<TensorArg> args,
                       std::function<void()> on_done = nullptr);

}  // namespace napi
}  // namespace canopy
