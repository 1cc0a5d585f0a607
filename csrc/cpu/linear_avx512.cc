// The AVX-512 build of the linear tiles (see attention_avx512.cc for the pattern).
#include <cstdint>
#include <cstring>

#include "../common/linear.h"
#include "linear_cpu.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CANOPY_HAVE_AVX512_TU 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif

#define CANOPY_TILE_NS linear_avx512
#define CANOPY_TILE_VEC_BYTES 64
#include "linear_tiles.h"
#undef CANOPY_TILE_NS
#undef CANOPY_TILE_VEC_BYTES

namespace canopy {
namespace cpu {
namespace {
void RunAvx512(const LinearParams& p, int64_t o_begin, int64_t o_end) { linear_avx512::Run(p, o_begin, o_end); }
}  // namespace
}  // namespace cpu
}  // namespace canopy

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace canopy {
namespace cpu {
LinearRowsFn LinearRowsAvx512() {
#ifdef CANOPY_HAVE_AVX512_TU
  return &RunAvx512;
#else
  return nullptr;
#endif
}
}  // namespace cpu
}  // namespace canopy
