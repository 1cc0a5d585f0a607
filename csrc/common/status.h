// Status: how every kernel launcher and native helper reports failure.
//
// Native code never aborts the process and never throws across the kernel
// boundary: launchers return a Status, and the N-API layer turns a non-ok
// Status into a JavaScript error (CanopyError subclass chosen by `code`).
#pragma once

#include <string>
#include <utility>

namespace canopy {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // a shape, dtype or value the kernel cannot accept
  kOutOfMemory,       // host or device allocation failed
  kCudaUnavailable,   // no driver, no device, or compute capability too old
  kCudaError,         // any other CUDA runtime error
  kIoError,           // file open/read/map failures
  kInternal,          // a bug: a state that should be impossible
};

// Stable string codes shared with TypeScript (lib/errors.ts).
inline const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "ERR_CANOPY_INVALID_ARGUMENT";
    case StatusCode::kOutOfMemory: return "ERR_CANOPY_OUT_OF_MEMORY";
    case StatusCode::kCudaUnavailable: return "ERR_CANOPY_CUDA_UNAVAILABLE";
    case StatusCode::kCudaError: return "ERR_CANOPY_CUDA";
    case StatusCode::kIoError: return "ERR_CANOPY_IO";
    case StatusCode::kInternal: return "ERR_CANOPY_INTERNAL";
  }
  return "ERR_CANOPY_INTERNAL";
}

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status OutOfMemory(std::string m) { return {StatusCode::kOutOfMemory, std::move(m)}; }
  static Status CudaUnavailable(std::string m) { return {StatusCode::kCudaUnavailable, std::move(m)}; }
  static Status CudaError(std::string m) { return {StatusCode::kCudaError, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Early-return helper: CANOPY_RETURN_IF_ERROR(SomeLauncher(...));
#define CANOPY_RETURN_IF_ERROR(expr)        \
  do {                                      \
    ::canopy::Status _canopy_s = (expr);    \
    if (!_canopy_s.ok()) return _canopy_s;  \
  } while (0)

}  // namespace canopy
