// Memory-mapping files into ArrayBuffers (for weights and Tensor.fromFile).
//
// mapFile(path, offset, length) maps [offset, offset+length) of the file
// copy-on-write (MAP_PRIVATE, read+write): JavaScript may write to the
// returned ArrayBuffer without touching the file and without faulting.
//
// unmapFile(buffer) releases a mapping now: it first detaches the ArrayBuffer
// (napi_detach_arraybuffer), so every typed array over it reads as empty
// instead of touching unmapped memory, then munmaps. Returns false for a
// buffer that mapFile did not return or that was already unmapped. A mapping
// never unmapped is released when its ArrayBuffer is garbage collected (the
// safety net). Main thread only, like every binding.
#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "bindings.h"
#include "errors.h"

namespace canopy {
namespace napi {
namespace {

struct Mapping {
  void* base;
  size_t length;
  bool unmapped;
};

// Live mappings by the data pointer their ArrayBuffer exposes (for unmapFile).
std::mutex g_mu;
std::unordered_map<const void*, Mapping*>& Live() {
  static auto* live = new std::unordered_map<const void*, Mapping*>();  // leaked: finalizers may run at exit
  return *live;
}

int64_t ParseNonNegative(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsNumber()) throw ArgumentError(env, std::string(name) + " must be a non-negative integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
    throw ArgumentError(env, std::string(name) + " must be a non-negative integer; received " + v.ToString().Utf8Value());
  }
  return static_cast<int64_t>(d);
}

Napi::Value MapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString()) throw ArgumentError(env, "mapFile: expected (path: string, offset, length)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int64_t offset = ParseNonNegative(env, info[1], "offset");
  int64_t length = ParseNonNegative(env, info[2], "length");
#if defined(_WIN32)
  throw StatusToError(env, Status::IoError("mapFile is not supported on Windows yet: " + path));
#else
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw StatusToError(env, Status::IoError("cannot open " + path + ": " + std::strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    throw StatusToError(env, Status::IoError("cannot stat " + path + ": " + std::strerror(e)));
  }
  if (offset > st.st_size || length > st.st_size - offset) {
    close(fd);
    throw StatusToError(env, Status::IoError(path + ": range [" + std::to_string(offset) + ", " +
                                             std::to_string(offset + length) + ") lies beyond the end of the file (" +
                                             std::to_string(st.st_size) + " bytes); is the file truncated?"));
  }
  if (length == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(env, 0);
  }
  const int64_t page = sysconf(_SC_PAGESIZE);
  const int64_t aligned = offset - offset % page;
  const size_t map_len = static_cast<size_t>(length + (offset - aligned));
  void* base = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, aligned);
  int e = errno;
  close(fd);  // the mapping keeps the file referenced
  if (base == MAP_FAILED) throw StatusToError(env, Status::IoError("cannot map " + path + ": " + std::strerror(e)));
  std::unique_ptr<Mapping> mapping;
  char* data = static_cast<char*>(base) + (offset - aligned);
  try {
    mapping.reset(new Mapping{base, map_len, false});
    std::lock_guard<std::mutex> lock(g_mu);
    Live()[data] = mapping.get();
  } catch (...) {
    munmap(base, map_len);
    throw;
  }
  Napi::ArrayBuffer ab;
  try {
    ab = Napi::ArrayBuffer::New(env, data, static_cast<size_t>(length), [](Napi::Env, void* d, Mapping* m) {
      {
        std::lock_guard<std::mutex> lock(g_mu);
        if (!m->unmapped) Live().erase(d);
      }
      if (!m->unmapped) munmap(m->base, m->length);
      delete m;
    }, mapping.get());
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(g_mu);
      Live().erase(data);
    }
    munmap(base, map_len);
    throw;
  }
  mapping.release();  // owned by the ArrayBuffer's finalizer now
  return ab;
#endif
}

Napi::Value UnmapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) throw ArgumentError(env, "unmapFile: expected an ArrayBuffer from mapFile");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.IsDetached() || ab.ByteLength() == 0) return Napi::Boolean::New(env, false);
  const void* data = ab.Data();
  Mapping* m = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = Live().find(data);
    if (it == Live().end()) return Napi::Boolean::New(env, false);
    m = it->second;
  }
  // Detach first: once the views read as empty, nothing in JavaScript can reach the pages.
  ab.Detach();
  {
    std::lock_guard<std::mutex> lock(g_mu);
    Live().erase(data);
    m->unmapped = true;  // the finalizer (still to run) only frees the record
  }
#if !defined(_WIN32)
  if (munmap(m->base, m->length) != 0) {
    throw StatusToError(env, Status::IoError(std::string("cannot unmap: ") + std::strerror(errno)));
  }
#endif
  return Napi::Boolean::New(env, true);
}

}  // namespace

void RegisterFileBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("mapFile", Napi::Function::New(env, CANOPY_GUARDED(MapFile), "mapFile"));
  exports.Set("unmapFile", Napi::Function::New(env, CANOPY_GUARDED(UnmapFile), "unmapFile"));
}

}  // namespace napi
}  // namespace canopy
