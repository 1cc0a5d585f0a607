// Turning native failures into JavaScript errors.
//
// Every exported function runs inside Guard(), so no C++ exception (including
// std::bad_alloc) can escape into N-API and abort the process. A non-ok
// Status becomes an Error whose `code` is the StatusCode name; the TypeScript
// layer maps codes to CanopyError subclasses.
#pragma once

#include <napi.h>

#include <exception>
#include <string>

#include "../common/status.h"

namespace canopy {
namespace napi {

inline Napi::Error StatusToError(Napi::Env env, const Status& s) {
  Napi::Error err = Napi::Error::New(env, s.message());
  err.Set("code", Napi::String::New(env, StatusCodeName(s.code())));
  return err;
}

// Throws (as a C++ exception that node-addon-api turns into a JS exception).
inline void ThrowIfError(Napi::Env env, const Status& s) {
  if (!s.ok()) throw StatusToError(env, s);
}

inline Napi::Error ArgumentError(Napi::Env env, const std::string& message) {
  return StatusToError(env, Status::InvalidArgument(message));
}

// Wraps a binding so that any C++ exception becomes a JavaScript error.
template <typename Fn>
Napi::Value Guard(const Napi::CallbackInfo& info, Fn&& fn) {
  Napi::Env env = info.Env();
  try {
    return fn(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw StatusToError(env, Status::OutOfMemory("host out of memory"));
  } catch (const std::exception& e) {
    throw StatusToError(env, Status::Internal(std::string("native error: ") + e.what()));
  } catch (...) {
    throw StatusToError(env, Status::Internal("unknown native error"));
  }
}

#define CANOPY_GUARDED(fn) \
  [](const Napi::CallbackInfo& info) -> Napi::Value { return ::canopy::napi::Guard(info, fn); }

}  // namespace napi
}  // namespace canopy
