// Element types and the exact f16 / bf16 conversions.
//
// Storage types: f32, f16 (IEEE binary16), bf16 (bfloat16: the top 16 bits of
// an f32), int8, uint8 (also used for packed int4: two 4-bit values per byte,
// low nibble first), int32. Arithmetic always accumulates in f32.
//
// Conversions from f32 round to nearest, ties to even, exactly as IEEE 754
// specifies; subnormals are kept (no flush to zero); overflow goes to +-inf;
// NaN stays NaN (quiet, sign kept, payload truncated to the top bits).
// These functions are usable from host and device code.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define CANOPY_HD __host__ __device__ __forceinline__
#else
#define CANOPY_HD inline
#endif

namespace canopy {

enum class DType : int32_t {
  kF32 = 0,
  kF16 = 1,
  kBF16 = 2,
  kI8 = 3,
  kU8 = 4,
  kI32 = 5,
};

constexpr int kNumDTypes = 6;

// Names shared with TypeScript (lib/tensor/dtype.ts).
inline const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kI8: return "int8";
    case DType::kU8: return "uint8";
    case DType::kI32: return "int32";
  }
  return "unknown";
}

inline int DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI8: return 1;
    case DType::kU8: return 1;
    case DType::kI32: return 4;
  }
  return 0;
}

inline bool IsValidDType(int32_t v) { return v >= 0 && v < kNumDTypes; }
inline bool IsFloatDType(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

CANOPY_HD uint32_t F32Bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
#endif
}

CANOPY_HD float F32FromBits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// f32 -> bf16 bits. bf16 keeps the f32 exponent, so rounding is adding half an
// ulp of the kept part (0x7fff) plus the lowest kept bit (ties to even), then
// truncating. NaN is handled first so rounding cannot turn it into inf.
CANOPY_HD uint16_t F32ToBF16Bits(float f) {
  uint32_t u = F32Bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return static_cast<uint16_t>(u >> 16);
}

CANOPY_HD float BF16BitsToF32(uint16_t h) { return F32FromBits(static_cast<uint32_t>(h) << 16); }

// f32 -> f16 bits, round to nearest even, subnormals kept.
// f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
CANOPY_HD uint16_t F32ToF16Bits(float f) {
  uint32_t u = F32Bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  int32_t exp = static_cast<int32_t>(abs >> 23) - 127;  // unbiased f32 exponent
  if (exp >= -14) {
    // Normal f16: drop 13 mantissa bits with round-to-nearest-even. A carry out
    // of the mantissa correctly increments the exponent.
    uint32_t rebased = abs - (112u << 23);  // exponent bias 127 -> 15
    uint32_t lsb = (rebased >> 13) & 1u;
    return static_cast<uint16_t>(sign | ((rebased + 0xfffu + lsb) >> 13));
  }
  if (exp < -25) return sign;  // below half the smallest subnormal (2^-25): rounds to zero
  // Subnormal f16: value = m * 2^-24. Shift the full 24-bit significand.
  uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  int shift = -exp - 1;  // 14..24: number of low bits dropped from mant (value = mant*2^(exp-23))
  // value / 2^-24 = mant * 2^(exp-23+24) = mant >> (-(exp+1))
  uint32_t kept = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (kept & 1u))) kept += 1;
  return static_cast<uint16_t>(sign | kept);
}

CANOPY_HD float F16BitsToF32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return F32FromBits(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return F32FromBits(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return F32FromBits(sign);
  // Subnormal: normalise into an f32 (always representable).
  int e = -14;
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  mant &= 0x3ffu;
  return F32FromBits(sign | (static_cast<uint32_t>(e + 127) << 23) | (mant << 13));
}

// Element access for float storage types, widening to / rounding from f32.
CANOPY_HD float LoadAsF32(const void* p, DType t, int64_t i) {
  if (t == DType::kF32) return static_cast<const float*>(p)[i];
  if (t == DType::kF16) return F16BitsToF32(static_cast<const uint16_t*>(p)[i]);
  return BF16BitsToF32(static_cast<const uint16_t*>(p)[i]);
}

CANOPY_HD void StoreFromF32(void* p, DType t, int64_t i, float v) {
  if (t == DType::kF32) {
    static_cast<float*>(p)[i] = v;
  } else if (t == DType::kF16) {
    static_cast<uint16_t*>(p)[i] = F32ToF16Bits(v);
  } else {
    static_cast<uint16_t*>(p)[i] = F32ToBF16Bits(v);
  }
}

}  // namespace canopy
