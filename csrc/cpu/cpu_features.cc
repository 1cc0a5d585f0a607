// CPU feature detection (x86: cpuid + xgetbv; aarch64 Linux: the kernel's HWCAP bits;
// other architectures report what the compiler targets).
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "../common/runtime.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define CANOPY_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
// The arm64 HWCAP bits (asm/hwcap.h; spelled out for older headers).
#define CANOPY_HWCAP_FPHP (1ul << 9)
#define CANOPY_HWCAP_ASIMDHP (1ul << 10)
#define CANOPY_HWCAP_ASIMDDP (1ul << 20)
#endif

namespace canopy {
namespace cpu {
namespace {

#ifdef CANOPY_X86
uint64_t Xgetbv() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures Detect() {
  CpuFeatures f;
#ifdef CANOPY_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  f.sse42 = c & (1u << 20);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  bool osxsave = c & (1u << 27);
  bool avx_hw = c & (1u << 28);
  uint64_t xcr0 = osxsave ? Xgetbv() : 0;
  bool os_ymm = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
  bool os_zmm = (xcr0 & 0xe6) == 0xe6;          // + opmask, ZMM_Hi256, Hi16_ZMM
  bool os_amx = (xcr0 & 0x60000) == 0x60000;    // XTILECFG + XTILEDATA
  f.avx = avx_hw && os_ymm;
  f.fma = f.fma && os_ymm;
  f.f16c = f.f16c && os_ymm;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = f.avx && (b & (1u << 5));
    f.avx512f = os_zmm && (b & (1u << 16));
    f.avx512dq = os_zmm && (b & (1u << 17));
    f.avx512bw = os_zmm && (b & (1u << 30));
    f.avx512vl = os_zmm && (b & (1u << 31));
    f.avx512_vnni = os_zmm && (c & (1u << 11));
    f.avx512_fp16 = os_zmm && (d & (1u << 23));
    f.amx_bf16 = os_amx && (d & (1u << 22));
    f.amx_tile = os_amx && (d & (1u << 24));
    f.amx_int8 = os_amx && (d & (1u << 25));
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
    f.avx512_bf16 = os_zmm && (a & (1u << 5));
  }
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is mandatory in armv8-a (the build's baseline)
#if defined(__linux__)
  const unsigned long hwcap = getauxval(AT_HWCAP);
  f.dotprod = (hwcap & CANOPY_HWCAP_ASIMDDP) != 0;
  f.fp16 = (hwcap & CANOPY_HWCAP_FPHP) != 0 && (hwcap & CANOPY_HWCAP_ASIMDHP) != 0;
#endif
#endif
  return f;
}

}  // namespace

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

std::vector<std::string> CpuFeatureNames() {
  const CpuFeatures& f = GetCpuFeatures();
  std::vector<std::string> names;
  auto add = [&](bool has, const char* name) {
    if (has) names.emplace_back(name);
  };
  add(f.sse42, "sse4.2");
  add(f.avx, "avx");
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512dq, "avx512dq");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512_vnni, "avx512vnni");
  add(f.avx512_bf16, "avx512bf16");
  add(f.avx512_fp16, "avx512fp16");
  add(f.amx_tile, "amx-tile");
  add(f.amx_bf16, "amx-bf16");
  add(f.amx_int8, "amx-int8");
  add(f.neon, "neon");
  add(f.dotprod, "dotprod");
  add(f.fp16, "fp16");
  return names;
}

std::string CpuModelName() {
#ifdef CANOPY_X86
  unsigned regs[12];
  unsigned max_ext = __get_cpuid_max(0x80000000u, nullptr);
  if (max_ext >= 0x80000004u) {
    for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002u + i, &regs[i * 4], &regs[i * 4 + 1], &regs[i * 4 + 2], &regs[i * 4 + 3]);
    char name[49];
    std::memcpy(name, regs, 48);
    name[48] = '\0';
    std::string s(name);
    size_t b = s.find_first_not_of(' ');
    size_t e = s.find_last_not_of(" \0");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  }
#endif
  return std::string();
}

}  // namespace cpu
}  // namespace canopy
