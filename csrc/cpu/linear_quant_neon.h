// aarch64 NEON pieces of the block-quantized linear layer (linear_quant_kernel.h's Isa), the
// counterpart of linear_quant_x86.h: the 8 f32 lanes as two q registers, each int32 lane the exact
// dot of 4 int8 values, by SDOT (kDot: armv8.2 dotprod, chosen at run time when the CPU has it) or
// by widening multiplies and pairwise adds (vmull_s8 + vpaddlq/vpaddq, any armv8-a). Both compute
// the same integers as the portable path, and the f32 parts in its order, so all paths agree bit
// for bit. Included where the matching target is enabled (linear_quant.cc for the baseline, the
// +dotprod section of linear_quant_neon.cc for kDot).
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "../common/quant_blocks.h"

namespace canopy {
namespace cpu {
namespace neon {

template <bool kDot>
struct IsaNeon {
  struct Acc8 {
    float32x4_t lo, hi;  // lanes 0-3, 4-7
  };
  struct W32 {
    int8x16_t lo, hi;  // codes 0-15, 16-31
  };
  static constexpr bool kVectorDecodeK = true;
  // An f16 field, converted exactly (fcvt), as LoadF16.
  static inline float F16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
  }
  // Q4_K codes (quant_blocks.h): value 64h + l (l < 32) is the low nibble of qs[32h + l], value
  // 64h + 32 + l its high nibble.
  static inline void DecodeQ4KCodes(const uint8_t* qs, int8_t* q) {
    const uint8x16_t m4 = vdupq_n_u8(15);
    for (int h = 0; h < 4; ++h) {
      for (int k = 0; k < 2; ++k) {
        const uint8x16_t v = vld1q_u8(qs + 32 * h + 16 * k);
        vst1q_s8(q + 64 * h + 16 * k, vreinterpretq_s8_u8(vandq_u8(v, m4)));
        vst1q_s8(q + 64 * h + 32 + 16 * k, vreinterpretq_s8_u8(vshrq_n_u8(v, 4)));
      }
    }
  }
  // Q6_K codes: value 128h + 32s + l = (low 4 bits | 2 high bits << 4) - 32, the low bits from
  // ql[64h + 32(s & 1) + l] (low nibble for s < 2, high for s >= 2), the high bits (qh[32h + l] >> 2s) & 3.
  static inline void DecodeQ6KCodes(const uint8_t* ql, const uint8_t* qh, int8_t* q) {
    const uint8x16_t m4 = vdupq_n_u8(15), m2 = vdupq_n_u8(3);
    const int8x16_t k32 = vdupq_n_s8(32);
    for (int h = 0; h < 2; ++h) {
      for (int k = 0; k < 2; ++k) {  // values l = 16k .. 16k + 15 of each 32
        const uint8x16_t l0 = vld1q_u8(ql + 64 * h + 16 * k);
        const uint8x16_t l1 = vld1q_u8(ql + 64 * h + 32 + 16 * k);
        const uint8x16_t hb = vld1q_u8(qh + 32 * h + 16 * k);
        const uint8x16_t low[4] = {vandq_u8(l0, m4), vandq_u8(l1, m4), vshrq_n_u8(l0, 4), vshrq_n_u8(l1, 4)};
        const uint8x16_t high[4] = {vandq_u8(hb, m2), vandq_u8(vshrq_n_u8(hb, 2), m2), vandq_u8(vshrq_n_u8(hb, 4), m2),
                                    vshrq_n_u8(hb, 6)};
        for (int s = 0; s < 4; ++s) {
          const int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low[s], vshlq_n_u8(high[s], 4))), k32);
          vst1q_s8(q + 128 * h + 32 * s + 16 * k, v);
        }
      }
    }
  }
  // The 32 codes of a 32-value block as int8 (the values DecodeBlock gives), straight from its bytes.
  template <QuantType T>
  static inline W32 Load32(const uint8_t* blk) {
    if constexpr (T == QuantType::kQ8_0) {
      return W32{vld1q_s8(reinterpret_cast<const int8_t*>(blk + 2)), vld1q_s8(reinterpret_cast<const int8_t*>(blk + 18))};
    } else {
      constexpr int kQs = T == QuantType::kQ4_1 ? 4 : T == QuantType::kQ5_0 ? 6 : T == QuantType::kQ5_1 ? 8 : 2;
      const uint8x16_t qs = vld1q_u8(blk + kQs);
      const uint8x16_t m4 = vdupq_n_u8(15);
      uint8x16_t lo = vandq_u8(qs, m4), hi = vshrq_n_u8(qs, 4);  // codes 0..15 | 16..31
      if constexpr (T == QuantType::kQ5_0 || T == QuantType::kQ5_1) {
        uint8_t h[4];
        std::memcpy(h, blk + (T == QuantType::kQ5_1 ? 4 : 2), 4);
        // Code i takes bit i of the 32-bit field: byte i / 8, bit i % 8.
        static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t bit = vld1q_u8(kBits), k16 = vdupq_n_u8(16);
        const uint8x16_t b01 = vcombine_u8(vdup_n_u8(h[0]), vdup_n_u8(h[1]));
        const uint8x16_t b23 = vcombine_u8(vdup_n_u8(h[2]), vdup_n_u8(h[3]));
        lo = vorrq_u8(lo, vandq_u8(vtstq_u8(b01, bit), k16));
        hi = vorrq_u8(hi, vandq_u8(vtstq_u8(b23, bit), k16));
      }
      int8x16_t slo = vreinterpretq_s8_u8(lo), shi = vreinterpretq_s8_u8(hi);
      if constexpr (T == QuantType::kQ4_0) {
        slo = vsubq_s8(slo, vdupq_n_s8(8));
        shi = vsubq_s8(shi, vdupq_n_s8(8));
      }
      if constexpr (T == QuantType::kQ5_0) {
        slo = vsubq_s8(slo, vdupq_n_s8(16));
        shi = vsubq_s8(shi, vdupq_n_s8(16));
      }
      if constexpr (T == QuantType::kIQ4_NL) {
        static const int8_t kGrid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
        const int8x16_t grid = vld1q_s8(kGrid);
        slo = vqtbl1q_s8(grid, lo);
        shi = vqtbl1q_s8(grid, hi);
      }
      return W32{slo, shi};
    }
  }
  // Lane k of 16 bytes: w[4k..4k+3] . a[4k..4k+3] (|w| <= 128, |a| <= 127: exact in int32; the
  // int16 products of vmull_s8 are exact too).
  static inline int32x4_t Dot4(int8x16_t w, int8x16_t a) {
    if constexpr (kDot) {
      return vdotq_s32(vdupq_n_s32(0), w, a);  // instantiated only in the +dotprod section
    } else {
      const int32x4_t p0 = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a)));  // pairs of values 0-7
      const int32x4_t p1 = vpaddlq_s16(vmull_high_s8(w, a));                       // pairs of values 8-15
      return vpaddq_s32(p0, p1);
    }
  }
  static inline Acc8 Zero8() { return Acc8{vdupq_n_f32(0.f), vdupq_n_f32(0.f)}; }
  // acc_k = fma(float(lane k), scale, acc_k): one rounding, as std::fma in the portable path.
  static inline void Fma8(const W32& w, const int8_t* a, float scale, Acc8& acc) {
    const int32x4_t lo = Dot4(w.lo, vld1q_s8(a)), hi = Dot4(w.hi, vld1q_s8(a + 16));
    const float32x4_t s = vdupq_n_f32(scale);
    acc.lo = vfmaq_f32(acc.lo, vcvtq_f32_s32(lo), s);
    acc.hi = vfmaq_f32(acc.hi, vcvtq_f32_s32(hi), s);
  }
  // ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), as the portable path.
  static inline float Sum8(const Acc8& acc) {
    const float32x4_t v = vaddq_f32(acc.lo, acc.hi);  // l0+l4, l1+l5, l2+l6, l3+l7
    return (vgetq_lane_f32(v, 0) + vgetq_lane_f32(v, 2)) + (vgetq_lane_f32(v, 1) + vgetq_lane_f32(v, 3));
  }
  // A 256-value block: lane k sums, over the 8 chunks c, the sub-block scale times the products
  // of values 32c + 4k .. 32c + 4k + 3 in int32, then acc = fma(lanes, scale, acc).
  static inline void FmaK(const int8_t* w, const int8_t* a, const int16_t* pair_scale, float scale, Acc8& acc) {
    int32x4_t lo = vdupq_n_s32(0), hi = vdupq_n_s32(0);
    for (int c = 0; c < 8; ++c) {
      const int8x16_t w0 = vld1q_s8(w + 32 * c), w1 = vld1q_s8(w + 32 * c + 16);
      const int8x16_t a0 = vld1q_s8(a + 32 * c), a1 = vld1q_s8(a + 32 * c + 16);
      const int16x8_t s0 = vld1q_s16(pair_scale + 16 * c), s1 = vld1q_s16(pair_scale + 16 * c + 8);
      if constexpr (kDot) {
        // The K sub-blocks hold 16 or 32 values, so the two pairs of a 4-value group share their
        // scale: scale * dot4 is the portable path's sum of pair products exactly. The scale of
        // group k is pair scale 2k (the even ones, by an unzip).
        const int16x8_t sc = vuzp1q_s16(s0, s1);
        lo = vmlaq_s32(lo, Dot4(w0, a0), vmovl_s16(vget_low_s16(sc)));
        hi = vmlaq_s32(hi, Dot4(w1, a1), vmovl_high_s16(sc));
      } else {
        // Pair sums in int16 (|sum| <= 2 * 128 * 127 = 32512: exact), times their int16 scales
        // widened to int32, neighbours added.
        const int16x8_t p0 = vpaddq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(a0)), vmull_high_s8(w0, a0));  // pairs 0-7
        const int16x8_t p1 = vpaddq_s16(vmull_s8(vget_low_s8(w1), vget_low_s8(a1)), vmull_high_s8(w1, a1));  // pairs 8-15
        lo = vaddq_s32(lo, vpaddq_s32(vmull_s16(vget_low_s16(p0), vget_low_s16(s0)), vmull_high_s16(p0, s0)));
        hi = vaddq_s32(hi, vpaddq_s32(vmull_s16(vget_low_s16(p1), vget_low_s16(s1)), vmull_high_s16(p1, s1)));
      }
    }
    const float32x4_t s = vdupq_n_f32(scale);
    acc.lo = vfmaq_f32(acc.lo, vcvtq_f32_s32(lo), s);
    acc.hi = vfmaq_f32(acc.hi, vcvtq_f32_s32(hi), s);
  }
};

}  // namespace neon
}  // namespace cpu
}  // namespace canopy
