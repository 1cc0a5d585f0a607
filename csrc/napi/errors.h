// Turning native failures into JavaScript errors.
//
// Every exported function runs inside Guard(), so no C++ exception (including
// std::bad_alloc) can escape into N-API and abort the process. A non-ok
// Status becomes an Error whose `code` is the StatusCode name; the TypeScript
// layer maps codes to CanopyError subclasses.
#pragma once

#include <napi.h>

#include <exception>
#include <new>
#include <stdexcept>
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

// Runs fn() and turns any C++ exception other than a Napi::Error into one with a
// Status code: std::bad_alloc (and std::length_error from a container asked for more
// than it can hold) -> ERR_CANOPY_OUT_OF_MEMORY, anything else -> ERR_CANOPY_INTERNAL.
// Used by every entry point: exported functions (Guard / CANOPY_GUARDED), class
// constructors and methods (DeviceBuffer, NativeModel).
template <typename Fn>
auto GuardCall(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw StatusToError(env, Status::OutOfMemory("host out of memory (a native allocation failed)"));
  } catch (const std::length_error& e) {
    throw StatusToError(env, Status::OutOfMemory(std::string("host out of memory: ") + e.what()));
  } catch (const std::exception& e) {
    throw StatusToError(env, Status::Internal(std::string("native error: ") + e.what()));
  } catch (...) {
    throw StatusToError(env, Status::Internal("unknown native error"));
  }
}

// Wraps a binding so that any C++ exception becomes a JavaScript error.
template <typename Fn>
Napi::Value Guard(const Napi::CallbackInfo& info, Fn&& fn) {
  return GuardCall(info.Env(), [&]() -> Napi::Value { return fn(info); });
}

#define CANOPY_GUARDED(fn) \
  [](const Napi::CallbackInfo& info) -> Napi::Value { return ::canopy::napi::Guard(info, fn); }

}  // namespace napi
}  // namespace canopy
