// Quantization of f32 values into the GGUF block formats of quant_blocks.h: llama.cpp's reference
// quantizers (ggml-quants.c quantize_row_*_ref, without an importance matrix), so that files
// canopy writes hold the bytes llama.cpp's own `llama-quantize` would write for the same values.
//
// The arithmetic is ggml's, in f32, operation for operation and in the same order (the searches
// compare sums of products, so a different rounding order could pick a different scale); this
// header is compiled without floating-point contraction (no fused multiply-adds), which ggml's
// reference C does not use either. The TypeScript reference (test/helpers/quantize-reference.ts)
// repeats every operation in float64 rounded to f32 (Math.fround), which gives the same f32
// results, and the tests hold the bytes equal.
//
// Per type, for one block of B values x (B = 32 or 256; "f16(v)" rounds to nearest even):
//   Q8_0   d = max|x| / 127, q = round(x / d) (half away from zero)
//   Q4_0   m = the x of largest |x|, d = m / -8,  q = min(15, trunc(x / d + 8.5))
//   Q5_0   as Q4_0 with d = m / -16, q = min(31, trunc(x / d + 16.5))
//   Q4_1   d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5))   (Q5_1: 31)
//   IQ4_NL the scale of the grid kIq4nl fitted by weighted least squares (weights x^2) over 15
//          trial scales (-max / (127 - t), t = -7..7), codes the nearest grid points
//   Q2_K   16 sub-blocks of 16: an affine fit per sub-block (make_qkx2_quants: levels 0..3, the
//          min clamped <= 0, weights |x|, least absolute deviation over 16 trial scales), then
//          4-bit sub-block scales and mins on d = max scale / 15, dmin = max min / 15
//   Q3_K   16 sub-blocks of 16: a symmetric fit in [-4, 3] (make_q3_quants: weights x^2 and a
//          few rounds of per-value improvement), 6-bit signed scales on d = -max scale / 32
//   Q4_K   8 sub-blocks of 32: make_qkx2_quants with levels 0..15 (Q5_K: 0..31), weights
//          rms(x) + |x|, least squares over 21 (Q5_K: 16) trial scales; 6-bit scales and mins
//          on d = max scale / 63, dmin = max min / 63
//   Q6_K   16 sub-blocks of 16: make_qx_quants in [-32, 31] (weights x^2, 18 trial scales),
//          8-bit signed scales on d = -max scale / 128
//   IQ4_XS 8 sub-blocks of 32: the IQ4_NL fit per sub-block, then 6-bit signed sub-block scales
//          on d = -max scale / 32 and codes refitted to the rounded scales
// After the scales are rounded to their integer grids, every value's code is recomputed against
// the scale it will be decoded with (d * sc, and dmin * m), as ggml does.
//
// Host only. Non-finite inputs are refused by the caller (csrc/cpu/quantize.cc); conversions of
// floats to integers go through NearestInt / TruncToInt, which are defined for every float.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "quant_blocks.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

namespace canopy {
namespace quantize {

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: a (sub-)block below it is all zero

// ggml's nearest_int: round to nearest, ties to even, by adding 1.5 * 2^23 in f32 (exact for
// |v| < 2^22; other values give some integer, never undefined behaviour).
inline int NearestInt(float v) {
  const float val = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, sizeof(i));
  return (i & 0x007fffff) - 0x00400000;
}

// C's (int) conversion (truncation toward zero) for finite values in range; NaN gives 0 and
// values beyond +-2^30 are clamped there (C leaves them undefined).
inline int TruncToInt(float v) {
  if (!(v == v)) return 0;
  if (v >= 1073741824.f) return 1073741824;
  if (v <= -1073741824.f) return -1073741824;
  return static_cast<int>(v);
}

// roundf (half away from zero) as an int, same range rules.
inline int RoundToInt(float v) { return TruncToInt(std::round(v)); }

inline void StoreF16(uint8_t* p, float v) {
  const uint16_t h = F32ToF16Bits(v);
  p[0] = static_cast<uint8_t>(h & 255);
  p[1] = static_cast<uint8_t>(h >> 8);
}

inline int MinI(int a, int b) { return a < b ? a : b; }
inline int MaxI(int a, int b) { return a > b ? a : b; }

// ---- 32-value blocks ------------------------------------------------------------------------

inline void QuantizeQ8_0(const float* x, uint8_t* y) {
  float amax = 0.f;
  for (int j = 0; j < 32; ++j) {
    const float a = std::fabs(x[j]);
    amax = amax > a ? amax : a;
  }
  const float d = amax / 127.f;
  const float id = d != 0.f ? 1.0f / d : 0.0f;
  StoreF16(y, d);
  for (int j = 0; j < 32; ++j) y[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(RoundToInt(x[j] * id)));
}

// The value of largest magnitude (the first one on ties), as Q4_0 / Q5_0 take it.
inline float SignedAbsMax(const float* x, int n) {
  float amax = 0.f, max = 0.f;
  for (int j = 0; j < n; ++j) {
    const float v = x[j];
    if (amax < std::fabs(v)) {
      amax = std::fabs(v);
      max = v;
    }
  }
  return max;
}

// Q4_0 (bits 4) and Q5_0 (bits 5): symmetric, d = max / -2^(bits-1).
inline void QuantizeQx_0(const float* x, uint8_t* y, int bits) {
  const float half = bits == 4 ? 8.f : 16.f;
  const int top = bits == 4 ? 15 : 31;
  const float d = SignedAbsMax(x, 32) / -half;
  const float id = d != 0.f ? 1.0f / d : 0.0f;
  StoreF16(y, d);
  uint8_t* qs = y + (bits == 4 ? 2 : 6);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const float x0 = x[j] * id;
    const float x1 = x[16 + j] * id;
    // ggml: MIN(top, (int8_t)(x0 + half + 0.5f))
    const int xi0 = MinI(top, static_cast<int8_t>(TruncToInt(x0 + (half + 0.5f))));
    const int xi1 = MinI(top, static_cast<int8_t>(TruncToInt(x1 + (half + 0.5f))));
    qs[j] = static_cast<uint8_t>((xi0 & 15) | ((xi1 & 15) << 4));
    qh |= ((static_cast<uint32_t>(xi0) & 0x10u) >> 4) << j;
    qh |= ((static_cast<uint32_t>(xi1) & 0x10u) >> 4) << (j + 16);
  }
  if (bits == 5) {
    for (int k = 0; k < 4; ++k) y[2 + k] = static_cast<uint8_t>(qh >> (8 * k));
  }
}

// Q4_1 (bits 4) and Q5_1 (bits 5): affine, d = (max - min) / (2^bits - 1), m = min.
inline void QuantizeQx_1(const float* x, uint8_t* y, int bits) {
  const int top = bits == 4 ? 15 : 31;
  float min = 3.402823466e+38f, max = -3.402823466e+38f;
  for (int j = 0; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / static_cast<float>(top);
  const float id = d != 0.f ? 1.0f / d : 0.0f;
  StoreF16(y, d);
  StoreF16(y + 2, min);
  uint8_t* qs = y + (bits == 4 ? 4 : 8);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const float x0 = (x[j] - min) * id;
    const float x1 = (x[16 + j] - min) * id;
    const int xi0 = MinI(top, static_cast<uint8_t>(TruncToInt(x0 + 0.5f)));
    const int xi1 = MinI(top, static_cast<uint8_t>(TruncToInt(x1 + 0.5f)));
    qs[j] = static_cast<uint8_t>((xi0 & 15) | ((xi1 & 15) << 4));
    qh |= ((static_cast<uint32_t>(xi0) & 0x10u) >> 4) << j;
    qh |= ((static_cast<uint32_t>(xi1) & 0x10u) >> 4) << (j + 16);
  }
  if (bits == 5) {
    for (int k = 0; k < 4; ++k) y[4 + k] = static_cast<uint8_t>(qh >> (8 * k));
  }
}

// ---- the IQ4 non-linear grid ----------------------------------------------------------------

// Index of the grid value nearest to v (the lower one on a tie), by bisection as ggml's
// best_index_int8.
inline int BestIndexIq4(float v) {
  if (v <= static_cast<float>(Iq4nlValue(0))) return 0;
  if (v >= static_cast<float>(Iq4nlValue(15))) return 15;
  int ml = 0, mu = 15;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (v < static_cast<float>(Iq4nlValue(mav))) {
      mu = mav;
    } else {
      ml = mav;
    }
  }
  return v - static_cast<float>(Iq4nlValue(mu - 1)) < static_cast<float>(Iq4nlValue(mu)) - v ? mu - 1 : mu;
}

// The IQ4_NL / IQ4_XS search over `nsub` sub-blocks of 32 values (ggml's quantize_row_iq4_nl_impl
// with ntry = 7 and no importance weights). IQ4_NL is nsub = 1 (out: d, qs[16]); IQ4_XS is
// nsub = 8 (out: d, scales_h, scales_l[4], qs[128]).
inline void QuantizeIq4(const float* x, uint8_t* y, int nsub) {
  constexpr int kTry = 7;
  const float v0 = static_cast<float>(Iq4nlValue(0));  // -127
  float scales[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  uint8_t L[256];
  std::memset(L, 0, sizeof(L));
  for (int ib = 0; ib < nsub; ++ib) {
    const float* xb = x + 32 * ib;
    uint8_t* Lb = L + 32 * ib;
    float weight[32];
    for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
    const float max = SignedAbsMax(xb, 32);
    if (std::fabs(max) < kGroupMaxEps) {
      scales[ib] = 0.f;
      continue;
    }
    float d = -max / v0;
    float id = 1 / d;
    float sumqx = 0.f, sumq2 = 0.f;
    for (int j = 0; j < 32; ++j) {
      const int l = BestIndexIq4(id * xb[j]);
      Lb[j] = static_cast<uint8_t>(l);
      const float q = static_cast<float>(Iq4nlValue(l));
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -kTry; itry <= kTry; ++itry) {
      id = static_cast<float>(itry + Iq4nlValue(0)) / max;
      sumqx = 0.f;
      sumq2 = 0.f;
      for (int j = 0; j < 32; ++j) {
        const int l = BestIndexIq4(id * xb[j]);
        const float q = static_cast<float>(Iq4nlValue(l));
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
  }
  const float max_scale = SignedAbsMax(scales, nsub);
  if (nsub > 1) {
    const float d = -max_scale / 32;
    StoreF16(y, d);
    const float id = d != 0.f ? 1 / d : 0.f;
    uint16_t scales_h = 0;
    uint8_t* scales_l = y + 4;
    std::memset(scales_l, 0, 4);
    for (int ib = 0; ib < nsub; ++ib) {
      int l = NearestInt(id * scales[ib]);
      l = MaxI(-32, MinI(31, l));
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0.f ? 1 / dl : 0.f;
      for (int j = 0; j < 32; ++j) L[32 * ib + j] = static_cast<uint8_t>(BestIndexIq4(idl * x[32 * ib + j]));
      l += 32;
      scales_l[ib / 2] |= static_cast<uint8_t>((l & 15) << (4 * (ib % 2)));
      scales_h |= static_cast<uint16_t>((l >> 4) << (2 * (ib % 8)));
    }
    y[2] = static_cast<uint8_t>(scales_h & 255);
    y[3] = static_cast<uint8_t>(scales_h >> 8);
  } else {
    StoreF16(y, scales[0]);
    const float id = scales[0] != 0.f ? 1 / scales[0] : 0.f;
    for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(BestIndexIq4(id * x[j]));
  }
  uint8_t* q4 = y + (nsub > 1 ? 8 : 2);
  for (int i = 0; i < nsub; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

// ---- K-quant sub-block fits -----------------------------------------------------------------

// ggml's make_qkx2_quants: levels L[i] in 0..nmax for x ~ scale * L - the_min (the_min >= 0),
// weighted by `weights`; the error is absolute (use_mad) or squared. Returns the scale.
inline float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux, float rmin,
                            float rdelta, int nstep, bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(MaxI(0, MinI(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = MaxI(0, MinI(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const float fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// ggml's make_qx_quants with rmse_type 1 (weights x^2) and no importance weights: codes
// L[i] + nmax with L[i] in [-nmax, nmax - 1] for x ~ scale * L. Returns the scale.
inline float MakeQxQuants(int n, int nmax, const float* x, uint8_t* L) {
  const float max = SignedAbsMax(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = MaxI(-nmax, MinI(nmax - 1, l));
    L[i] = static_cast<uint8_t>(l + nmax);
    const float w = x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = 0;
    suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * x[i]);
      l = MaxI(-nmax, MinI(nmax - 1, l));
      const float w = x[i] * x[i];
      const float fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = NearestInt(iscale * x[i]);
        L[i] = static_cast<uint8_t>(nmax + MaxI(-nmax, MinI(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// ggml's make_q3_quants with do_rmse (weights x^2): codes L[i] + nmax, L[i] in [-nmax, nmax - 1],
// refined by moving single values while that raises sum(w x l)^2 / sum(w l^2).
inline float MakeQ3Quants(int n, int nmax, const float* x, uint8_t* Lout) {
  const float max = SignedAbsMax(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) Lout[i] = 0;
    return 0.f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  int L[16];
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = MaxI(-nmax, MinI(nmax - 1, l));
    L[i] = l;
    const float w = x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * static_cast<float>(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * static_cast<float>(L[i]) * static_cast<float>(L[i]);
        int new_l = NearestInt(x[i] * sl2 / slx);
        new_l = MaxI(-nmax, MinI(nmax - 1, new_l));
        if (new_l != L[i]) {
          slx += w * x[i] * static_cast<float>(new_l);
          sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = new_l;
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) Lout[i] = static_cast<uint8_t>(L[i] + nmax);
  return sumlx / suml2;
}

// ---- K-quant super-blocks (256 values) ------------------------------------------------------

inline void QuantizeQ2_K(const float* x, uint8_t* y) {
  uint8_t L[256], Laux[16];
  float weights[16], mins[16], scales[16];
  const float q4scale = 15.f;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = MakeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  uint8_t* sc = y;
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(NearestInt(iscale * scales[j]));
    StoreF16(y + 80, max_scale / q4scale);
  } else {
    for (int j = 0; j < 16; ++j) sc[j] = 0;
    StoreF16(y + 80, 0.f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(sc[j] | (NearestInt(iscale * mins[j]) << 4));
    StoreF16(y + 82, max_min / q4scale);
  } else {
    StoreF16(y + 82, 0.f);
  }
  const float dd = LoadF16(y + 80), dmin = LoadF16(y + 82);
  for (int j = 0; j < 16; ++j) {
    const float d = dd * static_cast<float>(sc[j] & 15);
    if (d == 0.f) continue;
    const float dm = dmin * static_cast<float>(sc[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = NearestInt((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = static_cast<uint8_t>(MaxI(0, MinI(3, l)));
    }
  }
  uint8_t* qs = y + 16;
  for (int j = 0; j < 256; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

inline void QuantizeQ3_K(const float* x, uint8_t* y) {
  uint8_t L[256];
  float scales[16];
  for (int j = 0; j < 16; ++j) scales[j] = MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j);
  const float max_scale = SignedAbsMax(scales, 16);
  uint8_t* hmask = y;
  uint8_t* qs = y + 32;
  uint8_t* sc = y + 96;
  std::memset(sc, 0, 12);
  if (max_scale != 0.f) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j) {
      int l = static_cast<int8_t>(NearestInt(iscale * scales[j]));
      l = MaxI(-32, MinI(31, l)) + 32;
      if (j < 8) {
        sc[j] = static_cast<uint8_t>(l & 15);
      } else {
        sc[j - 8] = static_cast<uint8_t>(sc[j - 8] | ((l & 15) << 4));
      }
      l >>= 4;
      sc[j % 4 + 8] = static_cast<uint8_t>(sc[j % 4 + 8] | (l << (2 * (j / 4))));
    }
    StoreF16(y + 108, 1 / iscale);
  } else {
    StoreF16(y + 108, 0.f);
  }
  const float dd = LoadF16(y + 108);
  for (int j = 0; j < 16; ++j) {
    int s = j < 8 ? (sc[j] & 15) : (sc[j - 8] >> 4);
    s = (s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    const float d = dd * static_cast<float>(s);
    if (d == 0.f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      int l = NearestInt(x[16 * j + ii] / d);
      l = MaxI(-4, MinI(3, l));
      L[16 * j + ii] = static_cast<uint8_t>(l + 4);
    }
  }
  std::memset(hmask, 0, 32);
  int m = 0;
  uint8_t hm = 1;
  for (int j = 0; j < 256; ++j) {
    if (L[j] > 3) {
      hmask[m] = static_cast<uint8_t>(hmask[m] | hm);
      L[j] = static_cast<uint8_t>(L[j] - 4);
    }
    if (++m == 32) {
      m = 0;
      hm = static_cast<uint8_t>(hm << 1);
    }
  }
  for (int j = 0; j < 256; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Q4_K (five = false) and Q5_K (five = true).
inline void QuantizeQ45_K(const float* x, uint8_t* y, bool five) {
  const int nmax = five ? 31 : 15;
  uint8_t L[256], Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = five ? MakeQkx2Quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15, false)
                     : MakeQkx2Quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t* s = y + 4;
  std::memset(s, 0, 12);
  for (int j = 0; j < 8; ++j) {
    uint8_t ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    ls = static_cast<uint8_t>(MinI(63, ls));
    lm = static_cast<uint8_t>(MinI(63, lm));
    if (j < 4) {
      s[j] = ls;
      s[j + 4] = lm;
    } else {
      s[j + 4] = static_cast<uint8_t>((ls & 15) | ((lm & 15) << 4));
      s[j - 4] = static_cast<uint8_t>(s[j - 4] | ((ls >> 4) << 6));
      s[j] = static_cast<uint8_t>(s[j] | ((lm >> 4) << 6));
    }
  }
  StoreF16(y, max_scale / 63.f);
  StoreF16(y + 2, max_min / 63.f);
  const float dd = LoadF16(y), dmin = LoadF16(y + 2);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    ScaleMinK4(j, s, &sc, &m);
    const float d = dd * static_cast<float>(sc);
    if (d == 0.f) continue;
    const float dm = dmin * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = NearestInt((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(MaxI(0, MinI(nmax, l)));
    }
  }
  if (!five) {
    uint8_t* q = y + 16;
    for (int j = 0; j < 256; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    return;
  }
  uint8_t* qh = y + 16;
  uint8_t* ql = y + 48;
  std::memset(qh, 0, 32);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < 256; n += 64, ql += 32) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] = static_cast<uint8_t>(qh[j] | m1);
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        qh[j] = static_cast<uint8_t>(qh[j] | m2);
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
  }
}

inline void QuantizeQ6_K(const float* x, uint8_t* y) {
  uint8_t L[256];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  std::memset(y, 0, 210);
  if (max_abs_scale < kGroupMaxEps) return;  // all zero (d = +0)
  const float iscale = -128.f / max_scale;
  StoreF16(y + 208, 1 / iscale);
  int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(MinI(127, NearestInt(iscale * scales[ib])));
  const float dd = LoadF16(y + 208);
  for (int j = 0; j < 16; ++j) {
    const float d = dd * static_cast<float>(sc[j]);
    if (d == 0.f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      int l = NearestInt(x[16 * j + ii] / d);
      l = MaxI(-32, MinI(31, l));
      L[16 * j + ii] = static_cast<uint8_t>(l + 32);
    }
  }
  uint8_t* ql = y;
  uint8_t* qh = y + 128;
  for (int j = 0; j < 256; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l] & 15, q2 = L[j + l + 32] & 15, q3 = L[j + l + 64] & 15, q4 = L[j + l + 96] & 15;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
    }
  }
}

// One block of `type` (its `block` values x) into its `bytes` bytes y (every byte written).
inline void QuantizeBlock(QuantType type, const float* x, uint8_t* y) {
  switch (type) {
    case QuantType::kQ8_0: return QuantizeQ8_0(x, y);
    case QuantType::kQ4_0: return QuantizeQx_0(x, y, 4);
    case QuantType::kQ5_0: return QuantizeQx_0(x, y, 5);
    case QuantType::kQ4_1: return QuantizeQx_1(x, y, 4);
    case QuantType::kQ5_1: return QuantizeQx_1(x, y, 5);
    case QuantType::kIQ4_NL: return QuantizeIq4(x, y, 1);
    case QuantType::kIQ4_XS: return QuantizeIq4(x, y, 8);
    case QuantType::kQ2_K: return QuantizeQ2_K(x, y);
    case QuantType::kQ3_K: return QuantizeQ3_K(x, y);
    case QuantType::kQ4_K: return QuantizeQ45_K(x, y, false);
    case QuantType::kQ5_K: return QuantizeQ45_K(x, y, true);
    case QuantType::kQ6_K: return QuantizeQ6_K(x, y);
    case QuantType::kNone: return;
  }
}

// One row of n values (n a multiple of the block) into QuantRowBytes(type, n) bytes.
inline void QuantizeRow(QuantType type, const float* x, int64_t n, uint8_t* y) {
  const QuantTypeInfo info = GetQuantTypeInfo(type);
  for (int64_t i = 0; i < n; i += info.block, y += info.bytes) QuantizeBlock(type, x + i, y);
}

}  // namespace quantize
}  // namespace canopy

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
