// Memory-mapping files into ArrayBuffers (for weights and Tensor.fromFile).
//
// mapFile(path, offset, length) maps [offset, offset+length) of the file
// copy-on-write (MAP_PRIVATE, read+write): JavaScript may write to the
// returned ArrayBuffer without touching the file and without faulting. The
// mapping is released when the ArrayBuffer is garbage collected.
#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

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
};

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
  auto* mapping = new Mapping{base, map_len};
  char* data = static_cast<char*>(base) + (offset - aligned);
  return Napi::ArrayBuffer::New(env, data, static_cast<size_t>(length), [](Napi::Env, void*, Mapping* m) {
    munmap(m->base, m->length);
    delete m;
  }, mapping);
#endif
}

}  // namespace

void RegisterFileBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("mapFile", Napi::Function::New(env, CANOPY_GUARDED(MapFile), "mapFile"));
}

}  // namespace napi
}  // namespace canopy
