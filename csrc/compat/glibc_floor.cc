// Definitions that let the addon, linked on a new glibc against the stubs of
// scripts/glibc-floor/make-stubs.mjs, run on glibc 2.28. Compiled into the addon
// only when CMake turns the glibc floor on (CMakeLists.txt, "Portable Linux
// binary"); every symbol here is hidden (and the static libraries' symbols are
// kept out of the dynamic table by --exclude-libs), so nothing leaks to Node.
//
// Each covers a symbol that the static libstdc++/libgcc or our own code (compiled
// against the new headers) references and that glibc 2.28 does not export:
//   __libc_single_threaded  glibc 2.32 (libstdc++'s reference-count shortcut)
//   stat, fstat, lstat, fstatat (and the *64 names)  exported only since glibc 2.33;
//                           before, <sys/stat.h> inlined calls to __xstat(_STAT_VER, ...)
//   _dl_find_object         glibc 2.35 (libgcc's unwinder finds a PC's .eh_frame_hdr with it)
//   arc4random              glibc 2.36 (libstdc++'s std::random_device)
// The same on x86-64 and aarch64 (the linux-arm64 binary: glibc's aarch64 symbols start at 2.17,
// so the 2.28 floor is the same promise); only the pre-2.33 stat version number differs.
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#include <dlfcn.h>
#include <link.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <ctime>
#endif

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__)) && defined(__GLIBC__)

#define CANOPY_HIDDEN __attribute__((visibility("hidden")))

extern "C" {

// glibc (>= 2.32) keeps this at 1 while the process has one thread, and libstdc++ then
// skips atomic reference counting. 0 means "maybe several threads": libstdc++ always
// uses the atomic path, which is correct in every process, just never the shortcut.
CANOPY_HIDDEN char __libc_single_threaded = 0;

// The pre-2.33 entry points (x86-64: _STAT_VER is 1, the kernel's struct stat; aarch64 uses
// glibc's generic layout, _STAT_VER 0: its __xstat returns EINVAL for anything else).
int __xstat(int ver, const char* path, struct stat* buf);
int __lxstat(int ver, const char* path, struct stat* buf);
int __fxstat(int ver, int fd, struct stat* buf);
int __fxstatat(int ver, int dirfd, const char* path, struct stat* buf, int flags);
}  // extern "C"

namespace {
#if defined(__x86_64__)
constexpr int kStatVer = 1;
#else
constexpr int kStatVer = 0;
#endif
}

extern "C" {
CANOPY_HIDDEN int stat(const char* path, struct stat* buf) noexcept { return __xstat(kStatVer, path, buf); }
CANOPY_HIDDEN int lstat(const char* path, struct stat* buf) noexcept { return __lxstat(kStatVer, path, buf); }
CANOPY_HIDDEN int fstat(int fd, struct stat* buf) noexcept { return __fxstat(kStatVer, fd, buf); }
CANOPY_HIDDEN int fstatat(int dirfd, const char* path, struct stat* buf, int flags) noexcept {
  return __fxstatat(kStatVer, dirfd, path, buf, flags);
}
// On x86-64 and aarch64 struct stat64 is struct stat.
CANOPY_HIDDEN int stat64(const char* path, struct stat64* buf) noexcept { return __xstat(kStatVer, path, reinterpret_cast<struct stat*>(buf)); }
CANOPY_HIDDEN int lstat64(const char* path, struct stat64* buf) noexcept { return __lxstat(kStatVer, path, reinterpret_cast<struct stat*>(buf)); }
CANOPY_HIDDEN int fstat64(int fd, struct stat64* buf) noexcept { return __fxstat(kStatVer, fd, reinterpret_cast<struct stat*>(buf)); }
CANOPY_HIDDEN int fstatat64(int dirfd, const char* path, struct stat64* buf, int flags) noexcept {
  return __fxstatat(kStatVer, dirfd, path, reinterpret_cast<struct stat*>(buf), flags);
}
}  // extern "C"

extern "C" {
// 32 random bits from the kernel (getrandom, glibc 2.25), as glibc 2.36's arc4random gives.
// arc4random cannot fail; where getrandom is unavailable (a kernel before 3.17) this falls
// back to /dev/urandom, and as a last resort to the clock, rather than abort the process.
CANOPY_HIDDEN uint32_t arc4random(void) noexcept {
  uint32_t value = 0;
  auto* bytes = reinterpret_cast<unsigned char*>(&value);
  size_t done = 0;
  while (done < sizeof value) {
    const ssize_t n = getrandom(bytes + done, sizeof value - done, 0);
    if (n > 0) done += static_cast<size_t>(n);
    else if (n < 0 && errno != EINTR) break;
  }
  if (done == sizeof value) return value;
  if (FILE* f = fopen("/dev/urandom", "rb")) {
    const bool ok = fread(&value, sizeof value, 1, f) == 1;
    fclose(f);
    if (ok) return value;
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint32_t>(ts.tv_nsec) ^ static_cast<uint32_t>(ts.tv_sec) ^ static_cast<uint32_t>(reinterpret_cast<uintptr_t>(&ts));
}
}  // extern "C"

#if defined(DLFO_STRUCT_HAS_EH_DBASE)
namespace {
struct FindObject {
  std::uintptr_t pc;
  struct dl_find_object* result;
  bool found;
};

// dl_iterate_phdr callback: is `pc` inside one of this object's loaded segments?
int FindObjectCallback(struct dl_phdr_info* info, size_t, void* data) {
  auto* find = static_cast<FindObject*>(data);
  std::uintptr_t start = UINTPTR_MAX, end = 0;
  bool contains = false;
  const void* eh_frame_hdr = nullptr;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD) {
      const std::uintptr_t hi = lo + ph.p_memsz;
      if (lo < start) start = lo;
      if (hi > end) end = hi;
      if (find->pc >= lo && find->pc < hi) contains = true;
    } else if (ph.p_type == PT_GNU_EH_FRAME) {
      eh_frame_hdr = reinterpret_cast<const void*>(lo);
    }
  }
  if (!contains) return 0;
  find->result->dlfo_flags = 0;
  find->result->dlfo_map_start = reinterpret_cast<void*>(start);
  find->result->dlfo_map_end = reinterpret_cast<void*>(end);
  find->result->dlfo_link_map = nullptr;  // libgcc's unwinder does not read it
  find->result->dlfo_eh_frame = const_cast<void*>(eh_frame_hdr);
  find->found = true;
  return 1;
}
}  // namespace

extern "C" {
// glibc 2.35's lookup of the object holding `pc` (its PT_GNU_EH_FRAME segment for the
// unwinder), done the pre-2.35 way: a walk over the loaded objects' program headers.
// Returns 0 when found, -1 otherwise, like glibc's.
CANOPY_HIDDEN int _dl_find_object(void* pc, struct dl_find_object* result) noexcept {
  FindObject find{reinterpret_cast<std::uintptr_t>(pc), result, false};
  dl_iterate_phdr(FindObjectCallback, &find);
  return find.found ? 0 : -1;
}
}  // extern "C"
#endif  // DLFO_STRUCT_HAS_EH_DBASE

#endif  // __linux__ && (__x86_64__ || __aarch64__) && __GLIBC__
