// Inner tiles of the CPU linear layer (see csrc/common/linear.h), included by
// linear.cc (AVX2 baseline) and linear_avx512.cc (AVX-512 target), each in its
// own namespace, like attention_tiles.h (same rules: internal linkage, no std
// templates, no include guard).
//
// A tile is 4 weight rows x up to 4 activation rows: 16 vector accumulators run
// along `in`; the weights are widened to f32 on load; 4-way transposing sums
// finish the dot products.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../common/linear.h"

namespace canopy {
namespace cpu {
namespace {
namespace CANOPY_TILE_NS {

#include "simd_tiles.h"

typedef uint16_t VecH __attribute__((vector_size(CANOPY_TILE_VEC_BYTES / 2), aligned(2), may_alias));
typedef uint32_t VecU __attribute__((vector_size(CANOPY_TILE_VEC_BYTES)));

// kLanes weights starting at element i, widened to f32.
template <DType kType>
inline VecF LoadW(const void* w, int64_t i) {
  if constexpr (kType == DType::kF32) {
    return LoadU(static_cast<const float*>(w) + i);
  } else if constexpr (kType == DType::kBF16) {
    const VecH h = *reinterpret_cast<const VecH*>(static_cast<const uint16_t*>(w) + i);
    const VecU bits = __builtin_convertvector(h, VecU) << 16;
    VecF f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  } else {
    const uint16_t* src = static_cast<const uint16_t*>(w) + i;
#if CANOPY_TILE_VEC_BYTES == 64
    const __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
#else
    const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
#endif
    VecF out;
    std::memcpy(&out, &f, sizeof out);
    return out;
  }
}


// y rows [n0, n0 + nr) x weight rows [o0, o0 + 4) (rows past `out` repeat the last one and
// are not stored). nr <= 4 (missing x rows repeat the last one and are not stored).
template <DType kType>
inline void Tile(const LinearParams& p, int64_t n0, int nr, int64_t o0) {
  const int64_t in = p.in;
  const char* wbase = static_cast<const char*>(p.w);
  const int64_t esize = DTypeSize(kType);
  const void* w[4];
  for (int j = 0; j < 4; ++j) w[j] = wbase + (o0 + (o0 + j < p.out ? j : 0)) * in * esize;
  const float* x[4];
  for (int r = 0; r < 4; ++r) x[r] = p.x + (n0 + (r < nr ? r : 0)) * in;
  VecF acc[4][4];
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = VecF{};
  const int64_t full = in / kLanes * kLanes;
  for (int64_t i = 0; i < full; i += kLanes) {
    const VecF w0 = LoadW<kType>(w[0], i), w1 = LoadW<kType>(w[1], i), w2 = LoadW<kType>(w[2], i),
               w3 = LoadW<kType>(w[3], i);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      const VecF xv = LoadU(x[r] + i);
      acc[r][0] += xv * w0;
      acc[r][1] += xv * w1;
      acc[r][2] += xv * w2;
      acc[r][3] += xv * w3;
    }
  }
  // The last in % kLanes features (e.g. hidden size 172), scalar.
  float tail[4][4] = {};
  for (int64_t i = full; i < in; ++i) {
    for (int j = 0; j < 4; ++j) {
      const float wv = LoadAsF32(w[j], kType, i);
      for (int r = 0; r < 4; ++r) tail[r][j] += x[r][i] * wv;
    }
  }
  for (int r = 0; r < nr; ++r) {
    float s[4];
    HSum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], s);
    for (int j = 0; j < 4; ++j) s[j] += tail[r][j];
    float* y = p.y + (n0 + r) * p.out + o0;
    for (int j = 0; j < 4 && o0 + j < p.out; ++j) {
      const float v = s[j] + (p.bias ? p.bias[o0 + j] : 0.f);
      y[j] = p.accumulate ? y[j] + v : v;
    }
  }
}

// Weight rows [o_begin, o_end) for every activation row.
template <DType kType>
void RunRows(const LinearParams& p, int64_t o_begin, int64_t o_end) {
  for (int64_t o0 = o_begin; o0 < o_end; o0 += 4) {
    for (int64_t n0 = 0; n0 < p.rows; n0 += 4) {
      const int nr = static_cast<int>(p.rows - n0 < 4 ? p.rows - n0 : 4);
      Tile<kType>(p, n0, nr, o0);
    }
  }
}

inline void Run(const LinearParams& p, int64_t o_begin, int64_t o_end) {
  switch (p.w_dtype) {
    case DType::kF16: RunRows<DType::kF16>(p, o_begin, o_end); break;
    case DType::kBF16: RunRows<DType::kBF16>(p, o_begin, o_end); break;
    default: RunRows<DType::kF32>(p, o_begin, o_end); break;
  }
}

}  // namespace CANOPY_TILE_NS
}  // namespace
}  // namespace cpu
}  // namespace canopy
