// x86 vector pieces of the block-quantized linear layer (linear_quant_kernel.h's Isa): AVX2
// (maddubs + madd) or, with kVnni, AVX-512 VNNI on 256-bit vectors (vpdpbusd). Both compute each
// int32 lane as the exact dot of 4 values, so they agree with the portable path bit for bit.
// Included where the matching target is enabled (the AVX2 baseline, or the VNNI section).
#pragma once

#include <immintrin.h>

#include <cmath>
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
  // kUnsigned: Q4_0's codes left as stored (0..15, the value plus 8).
  template <QuantType T, bool kUnsigned = false>
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
      if constexpr (T == QuantType::kQ4_0 && !kUnsigned) v = _mm256_sub_epi8(v, _mm256_set1_epi8(8));
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

  // ---- one activation row (GEMV): Q8_0 / Q4_0 blocks of TN weight rows ---------------------------
  // The TN scales d_t * da in one vector (one f16 conversion and one multiply for the TN rows; the
  // same f32 products as the scalar code), and the int32 lane dots without the sign trick where the
  // codes can be taken unsigned: with u = code + bias (Q4_0: the stored nibble, bias 8; Q8_0 with
  // VNNI: code ^ 0x80, bias 128), the dot of u with a minus bias * (sum of those 4 activation codes),
  // computed once per activation block for the TN rows. Exact, so the lanes equal LaneDots'.
  static constexpr bool kDirect32 = true;
  template <QuantType T, int TN>
  static inline void AddBlock32(const uint8_t* const* blk, const int8_t* a, float da, Acc8* acc) {
    static_assert(TN <= 8, "one vector of scales");
    __m128i h = _mm_setzero_si128();
    uint16_t f[TN];
    for (int t = 0; t < TN; ++t) std::memcpy(&f[t], blk[t], 2);
    if constexpr (TN == 1) {
      h = _mm_cvtsi32_si128(f[0]);
    } else {
      for (int t = 0; t < TN; ++t) h = _mm_insert_epi16(h, f[t], t);  // (unrolled: t is a constant)
    }
    const __m256 scales = _mm256_castps128_ps256(_mm_mul_ps(_mm_cvtph_ps(h), _mm_set1_ps(da)));
    const __m256i av = Load256(a);
    constexpr bool kUnsignedCodes = T == QuantType::kQ4_0 || kVnni;
    constexpr int kBias = T == QuantType::kQ4_0 ? 8 : 128;
    __m256i neg = _mm256_setzero_si256();  // -bias * (sum of each lane's 4 activation codes)
    __m256i neg_pairs = _mm256_setzero_si256();  // AVX2 Q4_0: -bias * (sum of each pair), int16
    if constexpr (kUnsignedCodes) {
      if constexpr (kVnni) {
        neg = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(static_cast<char>(kBias)), _mm256_sub_epi8(_mm256_setzero_si256(), av));
      } else {
        neg_pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(kBias), av);
      }
    }
    for (int t = 0; t < TN; ++t) {
      __m256i lanes;
      if constexpr (!kUnsignedCodes) {
        lanes = LaneDots(Load256(blk[t] + 2), a);  // AVX2 Q8_0: the sign trick
      } else {
        const __m256i u = T == QuantType::kQ4_0 ? Load32<T, true>(blk[t]) : _mm256_xor_si256(Load256(blk[t] + 2), _mm256_set1_epi8(static_cast<char>(0x80)));
        if constexpr (kVnni) {
          lanes = _mm256_dpbusd_epi32(neg, u, av);
        } else {
          lanes = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(u, av), neg_pairs), _mm256_set1_epi16(1));
        }
      }
      const __m256 sc = _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(t));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), sc, acc[t]);
    }
  }

  // ---- one activation row (GEMV): Q4_0 blocks of TN weight rows taken two rows per vector ------
  // Rows t and t + 1 (t even) share vectors: their 16 code bytes are one vector [row t | row t + 1],
  // whose low nibbles (values 0..15 of each row) are dotted with the block's activations 0..15 in
  // both halves and whose high nibbles (values 16..31) with activations 16..31, so
  //   acc[t]     holds [row t lanes 0..3 | row t + 1 lanes 0..3]
  //   acc[t + 1] holds [row t lanes 4..7 | row t + 1 lanes 4..7]
  // (UnpairAcc restores one row per accumulator; moving lanes is exact). Each int32 lane is the
  // same exact integer as AddBlock32's (the stored nibble u times a, minus 8 * (the sum of those
  // 4 activation codes)) and each lane's f32 steps are the same fma(lanes, d_t * da, acc), so the
  // results are bit-identical; this takes half the shuffles, conversions and fmas per row.
  static constexpr bool kPaired32 = true;
  // Tiles of 8 rows (8 accumulators): with VNNI's 32 vector registers; AVX2's 16 would spill.
  static constexpr bool kPaired32Wide = kVnni;
  template <int TN>
  static inline void AddBlockQ4_0Pairs(const uint8_t* const* blk, const int8_t* a, float da, Acc8* acc) {
    static_assert(TN % 2 == 0 && TN <= 8, "pairs of rows, one vector of scales");
    __m128i h = _mm_setzero_si128();
    for (int t = 0; t < TN; ++t) {
      uint16_t f;
      std::memcpy(&f, blk[t], 2);
      h = _mm_insert_epi16(h, f, t);
    }
    const __m256 scales = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(da));  // d_t * da, t < TN
    const __m256i a_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)));
    const __m256i a_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 16)));
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i neg_lo, neg_hi;  // -8 * (sum of each lane's 4 activation codes): lanes 0..3 | 4..7 in both halves
    if constexpr (kVnni) {
      neg_lo = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), _mm256_sub_epi8(_mm256_setzero_si256(), a_lo));
      neg_hi = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), _mm256_sub_epi8(_mm256_setzero_si256(), a_hi));
    } else {
      neg_lo = _mm256_maddubs_epi16(_mm256_set1_epi8(8), a_lo);  // AVX2: -bias * pair sums, subtracted as int16
      neg_hi = _mm256_maddubs_epi16(_mm256_set1_epi8(8), a_hi);
    }
    for (int t = 0; t < TN; t += 2) {
      const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[t] + 2))),
                                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[t + 1] + 2)), 1);
      const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      __m256i lanes_lo, lanes_hi;
      if constexpr (kVnni) {
        lanes_lo = _mm256_dpbusd_epi32(neg_lo, lo, a_lo);
        lanes_hi = _mm256_dpbusd_epi32(neg_hi, hi, a_hi);
      } else {
        const __m256i one = _mm256_set1_epi16(1);
        lanes_lo = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(lo, a_lo), neg_lo), one);
        lanes_hi = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(hi, a_hi), neg_hi), one);
      }
      const __m256 sc = _mm256_permutevar8x32_ps(scales, _mm256_setr_epi32(t, t, t, t, t + 1, t + 1, t + 1, t + 1));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes_lo), sc, acc[t]);
      acc[t + 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes_hi), sc, acc[t + 1]);
    }
  }
  // From AddBlockQ4_0Pairs' layout back to one row per accumulator.
  template <int TN>
  static inline void UnpairAcc(Acc8* acc) {
    for (int t = 0; t < TN; t += 2) {
      const __m256 lo = acc[t], hi = acc[t + 1];
      acc[t] = _mm256_permute2f128_ps(lo, hi, 0x20);
      acc[t + 1] = _mm256_permute2f128_ps(lo, hi, 0x31);
    }
  }

  // ---- one activation row (GEMV): K blocks dotted straight from their bytes ----------------------
  // Each activation chunk is loaded once for the TN weight rows; codes, scales and mins are unpacked
  // in registers. The int32 lanes are the same exact integers as FmaK's (any summation order of exact
  // integers gives the same value), and the f32 steps are QuantTileK's, so results are bit-identical.
  static constexpr bool kDirectK = true;
  // lanes + pmaddwd(pairs, s): one vpdpwssd with VNNI.
  static inline __m256i MaddAdd(__m256i lanes, __m256i pairs, __m256i s) {
    if constexpr (kVnni) {
      return _mm256_dpwssd_epi32(lanes, pairs, s);
    } else {
      return _mm256_add_epi32(lanes, _mm256_madd_epi16(pairs, s));
    }
  }
  static inline uint32_t LoadU32(const uint8_t* p) {
    uint32_t u;
    std::memcpy(&u, p, 4);
    return u;
  }
  static inline __m256i Load256(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  // The sum of 4 int32 lanes (exact).
  static inline int32_t HSum4(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1));
    return _mm_cvtsi128_si32(v);
  }
  // The activation's code sums per 32 values of a K block (from its 16-value sums) as 8 int16
  // (|sum| <= 32 * 127 fits).
  static inline __m128i ActSums32(const int32_t* s16) {
    __m256i s = _mm256_hadd_epi32(Load256(s16), Load256(s16 + 8));  // sub-blocks 0 1 4 5 | 2 3 6 7
    s = _mm256_permute4x64_epi64(s, 0xD8);                           // 0 1 2 3 | 4 5 6 7
    return _mm_packs_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  }

  // Q4_K (quant_blocks.h): the 12 packed bytes as 32-bit words u0 u1 u2 give, bytewise,
  // sc[0..3] = u0 & 63, m[0..3] = u1 & 63, sc[4..7] = (u2 & 15) | (u0 >> 6) << 4,
  // m[4..7] = (u2 >> 4) | (u1 >> 6) << 4 (ScaleMinK4 four at a time).
  // Codes are unsigned (0..15): maddubs's pair sums (<= 2 * 15 * 127) times the chunk's scale by
  // pmaddwd; the mins part is sum_j m_j * (activation sum of sub-block j) by one pmaddwd.
  // Q5_K (kFifth): the same, qs at byte 48 and the fifth bit of chunk c's value l from bit c of
  // qh[l] (byte 16 + l) moved to bit 4 (codes 0..31; pair sums <= 2 * 31 * 127).
  template <int TN, bool kFifth = false>
  static inline void AddBlockQ4K(const uint8_t* const* blk, const int8_t* a, const int32_t* s16, float da, Acc8* acc, float* accm) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i lanes[TN], sc[TN];
    __m128i mn[TN];
    for (int t = 0; t < TN; ++t) {
      const uint32_t u0 = LoadU32(blk[t] + 4), u1 = LoadU32(blk[t] + 8), u2 = LoadU32(blk[t] + 12);
      const uint32_t sc_lo = u0 & 0x3f3f3f3fu, sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
      const uint32_t m_lo = u1 & 0x3f3f3f3fu, m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
      const __m128i sc8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int32_t>(sc_hi), static_cast<int32_t>(sc_lo)));
      sc[t] = _mm256_broadcastsi128_si256(sc8);
      mn[t] = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int32_t>(m_hi), static_cast<int32_t>(m_lo)));
      lanes[t] = _mm256_setzero_si256();
    }
    for (int h = 0; h < 4; ++h) {
      const __m256i a0 = Load256(a + 64 * h), a1 = Load256(a + 64 * h + 32);
      // int16 word 2c of sc (chunk c's scale) in every word.
      const __m256i pick0 = _mm256_set1_epi16(static_cast<int16_t>(((4 * h + 1) << 8) | (4 * h)));
      const __m256i pick1 = _mm256_set1_epi16(static_cast<int16_t>(((4 * h + 3) << 8) | (4 * h + 2)));
      for (int t = 0; t < TN; ++t) {
        const __m256i v = Load256(blk[t] + (kFifth ? 48 : 16) + 32 * h);
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if constexpr (kFifth) {
          // Bits 2h and 2h + 1 of qh to bit 4 (16-bit shifts: bits crossing bytes are masked off).
          const __m256i qh = Load256(blk[t] + 16), b4 = _mm256_set1_epi8(0x10);
          const __m256i f0 = 2 * h <= 4 ? _mm256_slli_epi16(qh, 4 - 2 * h) : _mm256_srli_epi16(qh, 2 * h - 4);
          const __m256i f1 = 2 * h + 1 <= 4 ? _mm256_slli_epi16(qh, 3 - 2 * h) : _mm256_srli_epi16(qh, 2 * h - 3);
          lo = _mm256_or_si256(lo, _mm256_and_si256(f0, b4));
          hi = _mm256_or_si256(hi, _mm256_and_si256(f1, b4));
        }
        lanes[t] = MaddAdd(lanes[t], _mm256_maddubs_epi16(lo, a0), _mm256_shuffle_epi8(sc[t], pick0));
        lanes[t] = MaddAdd(lanes[t], _mm256_maddubs_epi16(hi, a1), _mm256_shuffle_epi8(sc[t], pick1));
      }
    }
    const __m128i as = ActSums32(s16);
    for (int t = 0; t < TN; ++t) {
      const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int32_t>(LoadU32(blk[t]))));  // d, dmin
      const float d = _mm_cvtss_f32(dd), dmin = _mm_cvtss_f32(_mm_shuffle_ps(dd, dd, 1));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes[t]), _mm256_set1_ps(d * da), acc[t]);
      const int32_t smin = HSum4(_mm_madd_epi16(mn[t], as));
      accm[t] = std::fma(-dmin * da, static_cast<float>(smin), accm[t]);
    }
  }

  // IQ4_XS: chunk j (sub-block j) is an IQ4_NL block's codes from qs[16j..16j+16) (byte 8 on), its
  // signed scale sc_j = (4 low bits from scales_l, 2 high from scales_h) - 32; the codes are signed
  // (the IQ4_NL grid), so maddubs takes |w| and a * sign(w) as LaneDots does.
  template <int TN>
  static inline void AddBlockIQ4XS(const uint8_t* const* blk, const int8_t* a, const int32_t*, float da, Acc8* acc, float*) {
    __m256i lanes[TN], sc[TN];
    for (int t = 0; t < TN; ++t) {
      uint16_t sh;
      std::memcpy(&sh, blk[t] + 2, 2);
      alignas(16) int16_t s8[8];
      for (int j = 0; j < 8; ++j) s8[j] = static_cast<int16_t>((((blk[t][4 + j / 2] >> (4 * (j & 1))) & 15) | (((sh >> (2 * j)) & 3) << 4)) - 32);
      sc[t] = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(s8)));
      lanes[t] = _mm256_setzero_si256();
    }
    for (int j = 0; j < 8; ++j) {
      const __m256i av = Load256(a + 32 * j);
      const __m256i pick = _mm256_set1_epi16(static_cast<int16_t>(((2 * j + 1) << 8) | (2 * j)));
      for (int t = 0; t < TN; ++t) {
        const __m256i w = Load32<QuantType::kIQ4_NL>(blk[t] + 8 + 16 * j - 2);  // (Load32 reads IQ4_NL's qs at byte 2)
        const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(av, w));
        lanes[t] = MaddAdd(lanes[t], pairs, _mm256_shuffle_epi8(sc[t], pick));
      }
    }
    for (int t = 0; t < TN; ++t) {
      const float d = F16(blk[t]);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes[t]), _mm256_set1_ps(d * da), acc[t]);
    }
  }

  // Q6_K: codes taken unsigned (low | high << 4, 0..63) into maddubs, minus maddubs(32, a) (the
  // activation part, once per chunk for the TN rows): the exact pair sums of (q - 32) * a. Chunk c
  // (values 32c..32c+31) has scale 2c in its low 16 values (the low 128 bits) and 2c + 1 in the high.
  // With VNNI (AVX-512 on this target): two chunks per 512-bit vector, chunks 4h + s and 4h + s + 1
  // (s = 0 or 2) whose low bits are the 64 bytes ql[64h..64h+64) (low nibbles for s = 0, high for
  // s = 2) and whose activations are 64 contiguous bytes; each 128-bit lane is one 16-value
  // sub-block, so its scale is one word broadcast over the lane (vpermw). The even chunk's int32
  // lanes land in the low 256 bits and the odd chunk's in the high; their sum is the same exact
  // integer lane as the 256-bit path's.
  template <int TN>
  static inline void AddBlockQ6K(const uint8_t* const* blk, const int8_t* a, const int32_t* s16, float da, Acc8* acc, float* accm) {
    if constexpr (kVnni) {
      AddBlockQ6K512<TN>(blk, a, da, acc);
    } else {
      AddBlockQ6K256<TN>(blk, a, s16, da, acc, accm);
    }
  }
  template <int TN>
  static inline void AddBlockQ6K512(const uint8_t* const* blk, const int8_t* a, float da, Acc8* acc) {
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30), k32 = _mm512_set1_epi8(32);
    const __m512i shl_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);  // s = 0 | s = 1: (hb << 4), (hb << 2)
    const __m512i shr_b = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);  // s = 2 | s = 3: hb, (hb >> 2)
    __m512i lanes[TN], sc[TN];
    for (int t = 0; t < TN; ++t) {
      sc[t] = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[t] + 192))));
      lanes[t] = _mm512_setzero_si512();
    }
    for (int h = 0; h < 2; ++h) {
      const __m512i a_a = _mm512_loadu_si512(a + 128 * h), a_b = _mm512_loadu_si512(a + 128 * h + 64);
      const __m512i corr_a = _mm512_maddubs_epi16(k32, a_a), corr_b = _mm512_maddubs_epi16(k32, a_b);
      // Sub-block scales 8h + j (j = 0..3 for chunks 4h, 4h + 1; 4..7 for 4h + 2, 4h + 3), one per 128-bit lane.
      const __m512i pick_a = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(8 * h + 1)), _mm_set1_epi16(static_cast<int16_t>(8 * h)))),
                                                _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(8 * h + 3)), _mm_set1_epi16(static_cast<int16_t>(8 * h + 2))), 1);
      const __m512i pick_b = _mm512_add_epi16(pick_a, _mm512_set1_epi16(4));
      for (int t = 0; t < TN; ++t) {
        const __m512i l = _mm512_loadu_si512(blk[t] + 64 * h);
        const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[t] + 128 + 32 * h)));
        const __m512i q_a = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(hb, shl_a), m30));
        const __m512i q_b = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(_mm512_srlv_epi16(hb, shr_b), m30));
        const __m512i p_a = _mm512_sub_epi16(_mm512_maddubs_epi16(q_a, a_a), corr_a);
        const __m512i p_b = _mm512_sub_epi16(_mm512_maddubs_epi16(q_b, a_b), corr_b);
        lanes[t] = _mm512_dpwssd_epi32(lanes[t], p_a, _mm512_permutexvar_epi16(pick_a, sc[t]));
        lanes[t] = _mm512_dpwssd_epi32(lanes[t], p_b, _mm512_permutexvar_epi16(pick_b, sc[t]));
      }
    }
    for (int t = 0; t < TN; ++t) {
      const __m256i sum = _mm256_add_epi32(_mm512_castsi512_si256(lanes[t]), _mm512_extracti64x4_epi64(lanes[t], 1));
      const float d = F16(blk[t] + 208);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d * da), acc[t]);
    }
  }
  template <int TN>
  static inline void AddBlockQ6K256(const uint8_t* const* blk, const int8_t* a, const int32_t*, float da, Acc8* acc, float*) {
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    __m256i lanes[TN], scA[TN], scB[TN];
    for (int t = 0; t < TN; ++t) {
      const __m256i s = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[t] + 192)));
      scA[t] = _mm256_permute2x128_si256(s, s, 0x00);  // scales 0..7 in both halves
      scB[t] = _mm256_permute2x128_si256(s, s, 0x11);  // scales 8..15
      lanes[t] = _mm256_setzero_si256();
    }
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < 4; ++s) {
        const int c = 4 * h + s, w = 2 * (c & 3);  // scale words w (low half) and w + 1 (high half) of scA / scB
        const __m256i pick = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(((2 * w + 3) << 8) | (2 * w + 2))),
                                              _mm_set1_epi16(static_cast<int16_t>(((2 * w + 1) << 8) | (2 * w))));
        const __m256i av = Load256(a + 32 * c);
        const __m256i corr = _mm256_maddubs_epi16(k32, av);
        for (int t = 0; t < TN; ++t) {
          const __m256i l = Load256(blk[t] + 64 * h + 32 * (s & 1));
          const __m256i low = s < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
          const __m256i hb = Load256(blk[t] + 128 + 32 * h);
          // (hb >> 2s) & 3, moved to bits 4..5 (16-bit shifts: the bits that cross bytes are masked off).
          const __m256i high = _mm256_and_si256(s == 3 ? _mm256_srli_epi16(hb, 2) : _mm256_slli_epi16(hb, 4 - 2 * s), m30);
          const __m256i pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(_mm256_or_si256(low, high), av), corr);
          lanes[t] = MaddAdd(lanes[t], pairs, _mm256_shuffle_epi8(h == 0 ? scA[t] : scB[t], pick));
        }
      }
    }
    for (int t = 0; t < TN; ++t) {
      const float d = F16(blk[t] + 208);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes[t]), _mm256_set1_ps(d * da), acc[t]);
    }
  }
};

}  // namespace x86
}  // namespace cpu
}  // namespace canopy
