// The AVX-512 VNNI integer dot of the block-quantized linear layer (linear_quant_cpu.h): one
// vpdpbusd (unsigned |w| x signed a*sign(w), four products summed into each int32 lane, no
// saturation) per 32 values, on 256-bit vectors (AVX512VL).
#include <cstdint>

#include "linear_quant_cpu.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CANOPY_HAVE_VNNI_TU 1
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#endif

namespace canopy {
namespace cpu {
namespace {

int32_t ScaledDotVnniImpl(const int8_t* w, const int8_t* a, const int32_t* lane_scale, int n) {
  __m256i acc = _mm256_setzero_si256();
  if (lane_scale == nullptr) {
    for (int c = 0; c < n; c += 32) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c));
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c));
      acc = _mm256_dpbusd_epi32(acc, _mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
    }
  } else {
    for (int c = 0; c < n; c += 32) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c));
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c));
      const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
      const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lane_scale + c / 4));
      acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, s));
    }
  }
  __m128i r = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
  return _mm_cvtsi128_si32(r);
}

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
ScaledDotFn ScaledDotVnni() {
#ifdef CANOPY_HAVE_VNNI_TU
  return ScaledDotVnniImpl;
#else
  return nullptr;
#endif
}
}  // namespace cpu
}  // namespace canopy
