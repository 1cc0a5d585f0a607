// x86 vector pieces of the block-quantized linear layer (linear_quant_kernel.h's Isa): AVX2
// (maddubs + madd) or, with kVnni, AVX-512 VNNI on 256-bit vectors (vpdpbusd). Both compute each
// int32 lane as the exact dot of 4 values, so they agree with the portable path bit for bit.
// Included where the matching target is enabled (the AVX2 baseline, or the VNNI section).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../common/quant_blocks.h"

namespace canopy {
namespace cpu {
namespace x86 {

template <bool kVnni>
struct IsaX86 {
  using Acc8 = __m256;
  using W32 = __m256i;
  static constexpr bool kVectorDecodeK = true;
  // An f16 field by F16C (exact, as LoadF16).
  static inline float F16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
  }
  // Q4_K codes (quant_blocks.h): value 64h + l (l < 32) is the low nibble of qs[32h + l], value
  // 64h + 32 + l its high nibble.
  static inline void DecodeQ4KCodes(const uint8_t* qs, int8_t* q) {
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int h = 0; h < 4; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * h));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 64 * h), _mm256_and_si256(v, m4));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 64 * h + 32), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    }
  }
  // Q6_K codes: value 128h + 32s + l = (low 4 bits | 2 high bits << 4) - 32, the low bits from
  // ql[64h + 32(s & 1) + l] (low nibble for s < 2, high for s >= 2), the high bits (qh[32h + l] >> 2s) & 3.
  static inline void DecodeQ6KCodes(const uint8_t* ql, const uint8_t* qh, int8_t* q) {
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 64 * h));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh + 32 * h));
      const __m256i low[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                              _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
      for (int s = 0; s < 4; ++s) {
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * s), m2);
        const __m256i v = _mm256_sub_epi8(_mm256_or_si256(low[s], _mm256_slli_epi16(high, 4)), k32);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 128 * h + 32 * s), v);
      }
    }
  }
  // The 32 codes of a 32-value block as int8 (the values DecodeBlock gives), straight from its bytes.
  template <QuantType T>
  static inline W32 Load32(const uint8_t* blk) {
    if constexpr (T == QuantType::kQ8_0) {
      return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    } else {
      constexpr int kQs = T == QuantType::kQ4_1 ? 4 : T == QuantType::kQ5_0 ? 6 : T == QuantType::kQ5_1 ? 8 : 2;
      const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQs));
      const __m128i m4 = _mm_set1_epi8(15);
      __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), _mm_and_si128(qs, m4));  // codes 0..15 | 16..31
      if constexpr (T == QuantType::kQ5_0 || T == QuantType::kQ5_1) {
        uint32_t h;
        std::memcpy(&h, blk + (T == QuantType::kQ5_1 ? 4 : 2), 4);
        // Byte i of the result takes bit i of h: spread byte i / 8 of h to byte i, keep bit i % 8.
        const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(h)),
                                                   _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
        const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(16)));
      }
      if constexpr (T == QuantType::kQ4_0) v = _mm256_sub_epi8(v, _mm256_set1_epi8(8));
      if constexpr (T == QuantType::kQ5_0) v = _mm256_sub_epi8(v, _mm256_set1_epi8(16));
      if constexpr (T == QuantType::kIQ4_NL) {
        const __m128i grid = _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
        v = _mm256_shuffle_epi8(_mm256_set_m128i(grid, grid), v);
      }
      return v;
    }
  }
  // Lane k: w[4k..4k+3] . a[4k..4k+3], as unsigned |w| times a * sign(w) (|w| <= 128, |a| <= 127:
  // maddubs's int16 pair sums stay below 32767).
  static inline __m256i LaneDots(const int8_t* w, const int8_t* a) {
    return LaneDots(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)), a);
  }
  static inline __m256i LaneDots(__m256i wv, const int8_t* a) {
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
    const __m256i aw = _mm256_sign_epi8(wv, wv), sa = _mm256_sign_epi8(av, wv);
    if constexpr (kVnni) {
      return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sa);  // instantiated only in the VNNI section
    } else {
      return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sa), _mm256_set1_epi16(1));
    }
  }
  static inline Acc8 Zero8() { return _mm256_setzero_ps(); }
  static inline void Fma8(W32 w, const int8_t* a, float scale, Acc8& acc) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(LaneDots(w, a)), _mm256_set1_ps(scale), acc);
  }
  // ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), as the portable path.
  static inline float Sum8(const Acc8& acc) {
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));                    // (0+2), (1+3)
    v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 0x55));              // (0+2) + (1+3)
    return _mm_cvtss_f32(v);
  }
  // A 256-value block: lane k sums, over the 8 chunks c, the sub-block scale times each pair's
  // products in int32 (exact: pmaddwd multiplies maddubs's pair sums by the int16 pair scales and
  // adds neighbours), then acc = fma(lanes, scale, acc).
  static inline void FmaK(const int8_t* w, const int8_t* a, const int16_t* pair_scale, float scale, Acc8& acc) {
    __m256i lanes = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * c));
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32 * c));
      const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
      const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pair_scale + 16 * c));
      lanes = _mm256_add_epi32(lanes, _mm256_madd_epi16(pairs, s));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(scale), acc);
  }
};

}  // namespace x86
}  // namespace cpu
}  // namespace canopy
