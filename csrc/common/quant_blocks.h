// GGUF (ggml) block-quantized weight formats: each layout and its dequantization, stated once.
//
// A quantized matrix W [out][in] is stored row by row; each row is in / B blocks of `bytes` bytes
// (B values per block), so row o starts at byte o * (in / B) * bytes. in must be a multiple of B.
// Multi-byte fields are little-endian; "f16" is IEEE binary16 (dtype.h). Type ids are ggml's
// (GGML_TYPE_*), as GGUF tensor infos carry them.
//
//  id  type    B    bytes  layout (in order)                                   value of element i
//   8  Q8_0    32    34    f16 d; int8 q[32]                                   d * q[i]
//   2  Q4_0    32    18    f16 d; u8 qs[16]                                    d * (n_i - 8)
//   3  Q4_1    32    20    f16 d; f16 m; u8 qs[16]                             d * n_i + m
//   6  Q5_0    32    22    f16 d; u8 qh[4]; u8 qs[16]                          d * (n_i - 16)
//   7  Q5_1    32    24    f16 d; f16 m; u8 qh[4]; u8 qs[16]                   d * n_i + m
//  20  IQ4_NL  32    18    f16 d; u8 qs[16]                                    d * kIq4nl[n_i]
//      4-bit codes n_i (i < 32): n_i = qs[i] & 15 for i < 16, qs[i - 16] >> 4 for i >= 16.
//      Q5_x add a fifth bit: h = the 32-bit little-endian qh; n_i |= ((h >> i) & 1) << 4.
//      kIq4nl = {-127,-104,-83,-65,-49,-35,-22,-10,1,13,25,38,53,69,89,113} (a non-linear grid).
//
// K-quants: super-blocks of B = 256 values in sub-blocks of 32 or 16 with integer sub-block
// scales (and mins); every K value is  d * sc_j * q_i - dmin * m_j  (j = i's sub-block).
//  10  Q2_K   256    84    u8 scales[16]; u8 qs[64]; f16 d; f16 dmin
//        16 sub-blocks of 16: sc_j = scales[j] & 15, m_j = scales[j] >> 4; q_i 2 bits:
//        i = 128 h + 32 s + l (h < 2, s < 4, l < 32): q_i = (qs[32 h + l] >> 2 s) & 3
//  11  Q3_K   256   110    u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d
//        16 sub-blocks of 16, 6-bit scales sc_j = S_j - 32 (S below), no min;
//        q_i = ((qs[32 h + l] >> 2 s) & 3) - (hmask[l] bit (4 h + s) set ? 0 : 4), in [-4, 3]
//        S_j: low 4 bits from scales[0..7] (j < 8: scales[j] & 15; j >= 8: scales[j - 8] >> 4),
//        high 2 bits from scales[8..11]: (scales[8 + (j & 3)] >> (2 (j >> 2))) & 3
//  12  Q4_K   256   144    f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
//        8 sub-blocks of 32, 6-bit sc_j and m_j packed in scales[12] (ScaleMinK4 below);
//        i = 64 h + 32 s + l (h < 4, s < 2, l < 32): q_i = (qs[32 h + l] >> 4 s) & 15
//  13  Q5_K   256   176    f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
//        as Q4_K plus a fifth bit: q_i |= ((qh[l] >> (2 h + s)) & 1) << 4
//  14  Q6_K   256   210    u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d
//        16 sub-blocks of 16, sc_j = scales[j] (signed), no min;
//        i = 128 h + 32 s + l (h < 2, s < 4, l < 32):
//          low 4 bits  (ql[64 h + 32 (s & 1) + l] >> 4 (s >> 1)) & 15
//          high 2 bits (qh[32 h + l] >> 2 s) & 3;   q_i = (low | high << 4) - 32, in [-32, 31]
//  23  IQ4_XS 256   136    f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]
//        8 sub-blocks of 32, sc_j = (((scales_l[j / 2] >> 4 (j & 1)) & 15) |
//        (((scales_h >> 2 j) & 3) << 4)) - 32; q_i = kIq4nl[n] where sub-block j's 32 codes are
//        coded as one IQ4_NL block's qs (qs[16 j .. 16 j + 16)).
//
// Dequantization (reference: every value computed in f32 as d * sc * q - dmin * m with d, dmin
// widened from f16) is DequantizeBlock below; the CPU dot kernels (csrc/cpu/linear_quant*.cc) use
// DecodeBlock, which splits each block into its integer codes, integer sub-block scales and mins
// and the two float factors, so that a dot product with 8-bit activations is integer arithmetic
// scaled once per (super-)block.
//
// Usable from host and device code (CANOPY_HD).
#pragma once

#include <cstdint>

#include "dtype.h"

namespace canopy {

// ggml type ids of the block formats canopy reads; kNone marks an f32/f16/bf16 matrix.
enum class QuantType : int32_t {
  kNone = -1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
};

struct QuantTypeInfo {
  const char* name;  // ggml's name (GGML_TYPE_Q4_K -> "Q4_K")
  int block;         // values per block (32 or 256)
  int bytes;         // bytes per block
  int sub;           // values per sub-block sharing an integer scale (== block for 32-blocks)
  bool has_min;      // the value subtracts dmin * m_j (Q4_1, Q5_1 with m_j = 1 and dmin = -m)
};

// Facts of a block type; block == 0 for kNone or an id canopy does not read.
constexpr QuantTypeInfo GetQuantTypeInfoConst(QuantType t) {
  switch (t) {
    case QuantType::kQ8_0: return {"Q8_0", 32, 34, 32, false};
    case QuantType::kQ4_0: return {"Q4_0", 32, 18, 32, false};
    case QuantType::kQ4_1: return {"Q4_1", 32, 20, 32, true};
    case QuantType::kQ5_0: return {"Q5_0", 32, 22, 32, false};
    case QuantType::kQ5_1: return {"Q5_1", 32, 24, 32, true};
    case QuantType::kIQ4_NL: return {"IQ4_NL", 32, 18, 32, false};
    case QuantType::kQ2_K: return {"Q2_K", 256, 84, 16, true};
    case QuantType::kQ3_K: return {"Q3_K", 256, 110, 16, false};
    case QuantType::kQ4_K: return {"Q4_K", 256, 144, 32, true};
    case QuantType::kQ5_K: return {"Q5_K", 256, 176, 32, true};
    case QuantType::kQ6_K: return {"Q6_K", 256, 210, 16, false};
    case QuantType::kIQ4_XS: return {"IQ4_XS", 256, 136, 32, false};
    case QuantType::kNone: break;
  }
  return {"none", 0, 0, 0, false};
}

inline QuantTypeInfo GetQuantTypeInfo(QuantType t) { return GetQuantTypeInfoConst(t); }

inline bool IsValidQuantType(int32_t id) { return GetQuantTypeInfo(static_cast<QuantType>(id)).block != 0; }

// Bytes of one row of `in` values (in a multiple of the block size).
inline int64_t QuantRowBytes(QuantType t, int64_t in) {
  const QuantTypeInfo info = GetQuantTypeInfo(t);
  return info.block == 0 ? 0 : in / info.block * info.bytes;
}

// The IQ4_NL / IQ4_XS grid.
CANOPY_HD int8_t Iq4nlValue(int n) {
  constexpr int8_t kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  return kIq4nl[n & 15];
}

CANOPY_HD float LoadF16(const uint8_t* p) { return F16BitsToF32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes:
// j < 4: sc = s[j] & 63, m = s[j + 4] & 63; j >= 4: the low 4 bits from s[j + 4] (sc: low
// nibble, m: high nibble), the high 2 bits from the top bits of s[j - 4] (sc) and s[j] (m).
CANOPY_HD void ScaleMinK4(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// One block split into integer parts: value_i = d * sc[j] * q[i] - dmin * mn[j] with j = i / sub.
// q holds `block` codes (each in [-128, 127]); sc and mn hold block / sub entries (mn is 0 for
// types without a min). For the 32-blocks sc = 1, and Q4_1 / Q5_1 set mn = 1, dmin = -m.
struct DecodedBlock {
  int8_t q[256];
  int16_t sc[16];
  int16_t mn[16];
  float d;
  float dmin;
};

// 4-bit code i of a 16-byte nibble array holding 32 codes (low nibbles first, then high).
CANOPY_HD int Nibble32(const uint8_t* qs, int i) { return i < 16 ? (qs[i] & 15) : (qs[i - 16] >> 4); }

// Host kernels call DecodeBlock with a constant type: always inlined there, so the switch folds away.
#if !defined(__CUDACC__) && (defined(__GNUC__) || defined(__clang__))
#define CANOPY_DECODE_INLINE inline __attribute__((always_inline))
#else
#define CANOPY_DECODE_INLINE CANOPY_HD
#endif

CANOPY_DECODE_INLINE void DecodeBlock(QuantType t, const uint8_t* b, DecodedBlock* o) {
  o->dmin = 0.f;
  for (int j = 0; j < 16; ++j) {
    o->sc[j] = 1;
    o->mn[j] = 0;
  }
  switch (t) {
    case QuantType::kQ8_0: {
      o->d = LoadF16(b);
      for (int i = 0; i < 32; ++i) o->q[i] = static_cast<int8_t>(b[2 + i]);
      break;
    }
    case QuantType::kQ4_0: {
      o->d = LoadF16(b);
      for (int i = 0; i < 16; ++i) {
        o->q[i] = static_cast<int8_t>((b[2 + i] & 15) - 8);
        o->q[i + 16] = static_cast<int8_t>((b[2 + i] >> 4) - 8);
      }
      break;
    }
    case QuantType::kIQ4_NL: {
      o->d = LoadF16(b);
      for (int i = 0; i < 32; ++i) o->q[i] = Iq4nlValue(Nibble32(b + 2, i));
      break;
    }
    case QuantType::kQ4_1: {
      o->d = LoadF16(b);
      o->dmin = -LoadF16(b + 2);
      o->mn[0] = 1;
      for (int i = 0; i < 16; ++i) {
        o->q[i] = static_cast<int8_t>(b[4 + i] & 15);
        o->q[i + 16] = static_cast<int8_t>(b[4 + i] >> 4);
      }
      break;
    }
    case QuantType::kQ5_0:
    case QuantType::kQ5_1: {
      const bool one = t == QuantType::kQ5_1;
      o->d = LoadF16(b);
      if (one) {
        o->dmin = -LoadF16(b + 2);
        o->mn[0] = 1;
      }
      const uint8_t* qh = b + (one ? 4 : 2);
      const uint32_t h = qh[0] | (qh[1] << 8) | (qh[2] << 16) | (static_cast<uint32_t>(qh[3]) << 24);
      for (int i = 0; i < 32; ++i) {
        const int n = Nibble32(qh + 4, i) | (((h >> i) & 1) << 4);
        o->q[i] = static_cast<int8_t>(one ? n : n - 16);
      }
      break;
    }
    case QuantType::kQ2_K: {
      const uint8_t* scales = b;
      const uint8_t* qs = b + 16;
      o->d = LoadF16(b + 80);
      o->dmin = LoadF16(b + 82);
      for (int j = 0; j < 16; ++j) {
        o->sc[j] = scales[j] & 15;
        o->mn[j] = scales[j] >> 4;
      }
      // i = 128 h + 32 s + l; loops in that order so the inner one is contiguous.
      for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 4; ++s)
          for (int l = 0; l < 32; ++l) o->q[128 * h + 32 * s + l] = static_cast<int8_t>((qs[32 * h + l] >> (2 * s)) & 3);
      break;
    }
    case QuantType::kQ3_K: {
      const uint8_t* hmask = b;
      const uint8_t* qs = b + 32;
      const uint8_t* scales = b + 96;
      o->d = LoadF16(b + 108);
      for (int j = 0; j < 16; ++j) {
        const int lo = j < 8 ? (scales[j] & 15) : (scales[j - 8] >> 4);
        const int hi = (scales[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        o->sc[j] = static_cast<int16_t>((lo | (hi << 4)) - 32);
      }
      for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 4; ++s)
          for (int l = 0; l < 32; ++l) {
            const int low = (qs[32 * h + l] >> (2 * s)) & 3;
            const int high = (hmask[l] >> (4 * h + s)) & 1;
            o->q[128 * h + 32 * s + l] = static_cast<int8_t>(low - 4 + 4 * high);
          }
      break;
    }
    case QuantType::kQ4_K:
    case QuantType::kQ5_K: {
      const bool five = t == QuantType::kQ5_K;
      o->d = LoadF16(b);
      o->dmin = LoadF16(b + 2);
      const uint8_t* scales = b + 4;
      const uint8_t* qh = b + 16;
      const uint8_t* qs = b + (five ? 48 : 16);
      for (int j = 0; j < 8; ++j) {
        int sc, m;
        ScaleMinK4(j, scales, &sc, &m);
        o->sc[j] = static_cast<int16_t>(sc);
        o->mn[j] = static_cast<int16_t>(m);
      }
      for (int h = 0; h < 4; ++h)
        for (int s = 0; s < 2; ++s)
          for (int l = 0; l < 32; ++l) {
            int q = (qs[32 * h + l] >> (4 * s)) & 15;
            if (five) q |= ((qh[l] >> (2 * h + s)) & 1) << 4;
            o->q[64 * h + 32 * s + l] = static_cast<int8_t>(q);
          }
      break;
    }
    case QuantType::kQ6_K: {
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
      o->d = LoadF16(b + 208);
      for (int j = 0; j < 16; ++j) o->sc[j] = scales[j];
      for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 4; ++s)
          for (int l = 0; l < 32; ++l) {
            const int low = (ql[64 * h + 32 * (s & 1) + l] >> (4 * (s >> 1))) & 15;
            const int high = (qh[32 * h + l] >> (2 * s)) & 3;
            o->q[128 * h + 32 * s + l] = static_cast<int8_t>((low | (high << 4)) - 32);
          }
      break;
    }
    case QuantType::kIQ4_XS: {
      o->d = LoadF16(b);
      const uint16_t scales_h = static_cast<uint16_t>(b[2] | (b[3] << 8));
      const uint8_t* scales_l = b + 4;
      const uint8_t* qs = b + 8;
      for (int j = 0; j < 8; ++j) {
        const int ls = ((scales_l[j / 2] >> (4 * (j & 1))) & 15) | (((scales_h >> (2 * j)) & 3) << 4);
        o->sc[j] = static_cast<int16_t>(ls - 32);
        for (int i = 0; i < 32; ++i) o->q[32 * j + i] = Iq4nlValue(Nibble32(qs + 16 * j, i));
      }
      break;
    }
    case QuantType::kNone:
      break;
  }
}

// Reference dequantization of one block into f32 (`block` values): d * sc * q - dmin * m, the
// products in f32 in that order (as ggml's dequantize_row_*: the scale products first).
CANOPY_HD void DequantizeBlock(QuantType t, const uint8_t* b, float* out) {
  DecodedBlock db;
  DecodeBlock(t, b, &db);
  const QuantTypeInfo info = GetQuantTypeInfoConst(t);  // constexpr: callable from device code
  for (int i = 0; i < info.block; ++i) {
    const int j = i / info.sub;
    const float scale = db.d * static_cast<float>(db.sc[j]);
    const float offset = db.dmin * static_cast<float>(db.mn[j]);
    out[i] = scale * static_cast<float>(db.q[i]) - offset;
  }
}

// Dequantizes values [begin, begin + count) of one row (begin and count multiples of the block).
inline void DequantizeRow(QuantType t, const void* row, int64_t begin, int64_t count, float* out) {
  const QuantTypeInfo info = GetQuantTypeInfo(t);
  const uint8_t* p = static_cast<const uint8_t*>(row) + begin / info.block * info.bytes;
  for (int64_t i = 0; i < count; i += info.block, p += info.bytes) DequantizeBlock(t, p, out + i);
}

}  // namespace canopy
