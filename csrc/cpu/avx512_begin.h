// Opens an AVX-512 section of a translation unit: where the compiler can target AVX-512 for
// single functions (x86-64 with GCC or Clang), defines CANOPY_HAVE_AVX512_TU and compiles
// every function up to avx512_end.h with AVX-512 (plus the AVX2/FMA/F16C baseline) enabled.
// The rest of the library stays at the baseline, so the binary runs everywhere; callers pick
// the AVX-512 code at run time (cpu_features). Use as:
//   #include "avx512_begin.h"
//   #ifdef CANOPY_HAVE_AVX512_TU
//   ... tiles compiled for AVX-512 ...
//   #endif
//   #include "avx512_end.h"
// (No include guard: each AVX-512 translation unit includes it once.)
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CANOPY_HAVE_AVX512_TU 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif
#endif
