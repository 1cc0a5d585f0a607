// Inner tiles of the CPU linear layer (see csrc/common/linear.h), included by linear.cc
// (AVX2 baseline), linear_avx512.cc (AVX-512), linear_neon.cc (aarch64 NEON: 8-lane vectors
// as pairs of q registers, so the arithmetic below is the AVX2 path's) and linear_portable.cc
// (plain C++ vectors),
// each in its own namespace, like attention_tiles.h (same rules: internal linkage, no std
// templates, no include guard).
//
// The arithmetic of ONE output element y[n][o] is fixed, whatever tile computes it, however
// many activation rows there are and however the weight rows are split over threads:
//
//   acc  = 0 (a vector of kLanes floats)
//   for c = 0, kLanes, 2 kLanes, ... < in - in % kLanes:     (in order)
//     acc = fma(x[n][c .. c+kLanes), widen(W[o][c .. c+kLanes)), acc)    (lane-wise)
//   s    = HSum(acc)                  (the fixed transposing tree of simd_tiles.h's HSum4)
//   t    = 0; for i in the last in % kLanes, in order: t = fma(x[n][i], W[o][i], t)
//   v    = s + t  (+ bias[o])
//   y[n][o] = accumulate ? y[n][o] + v : v
//
// so a row computed alone (decode) is bit-identical to the same row inside a batch
// (speculative verification) and to any thread count. Each ISA path has its own kLanes (16
// for AVX-512, 8 otherwise), so results differ BETWEEN paths, never within one.
//
// A tile is R activation rows x C weight rows: R*C independent accumulator chains (enough
// to hide the FMA latency even for R = 1), each weight vector loaded and widened once per
// tile and used R times. Tile shapes only change speed, never the numbers above.

#include <cstdint>
#include <cstring>

#include "../common/linear.h"

#if !defined(CANOPY_LINEAR_PORTABLE) && (defined(__AVX2__) || defined(__AVX512F__))
#include <immintrin.h>
#define CANOPY_LINEAR_X86 1
#elif defined(CANOPY_LINEAR_NEON_TU) && defined(__aarch64__)
#include <arm_neon.h>
#define CANOPY_LINEAR_NEON 1
#define CANOPY_TILE_NEON_PAIR 1  // simd_tiles.h: VecF is two q registers
#endif

namespace canopy {
namespace cpu {
namespace {
namespace CANOPY_TILE_NS {

#include "simd_tiles.h"

typedef uint16_t VecH __attribute__((vector_size(CANOPY_TILE_VEC_BYTES / 2), aligned(2), may_alias));
typedef uint32_t VecU __attribute__((vector_size(CANOPY_TILE_VEC_BYTES)));

// acc + a * b, fused (one rounding), in every path.
inline VecF Fma(VecF a, VecF b, VecF acc) {
#if defined(CANOPY_LINEAR_X86) && CANOPY_TILE_VEC_BYTES == 64
  __m512 r = _mm512_fmadd_ps(reinterpret_cast<__m512&>(a), reinterpret_cast<__m512&>(b), reinterpret_cast<__m512&>(acc));
  return reinterpret_cast<VecF&>(r);
#elif defined(CANOPY_LINEAR_X86)
  __m256 r = _mm256_fmadd_ps(reinterpret_cast<__m256&>(a), reinterpret_cast<__m256&>(b), reinterpret_cast<__m256&>(acc));
  return reinterpret_cast<VecF&>(r);
#elif defined(CANOPY_LINEAR_NEON)
  return VecF{{vfmaq_f32(acc.v[0], a.v[0], b.v[0]), vfmaq_f32(acc.v[1], a.v[1], b.v[1])}};
#else
  VecF r;
  for (int l = 0; l < kLanes; ++l) r[l] = __builtin_fmaf(a[l], b[l], acc[l]);
  return r;
#endif
}

// IEEE half -> float, exact (the portable path; x86 uses vcvtph2ps).
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while ((man & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// kLanes weights starting at element i, widened to f32 (exactly: f16 and bf16 are subsets of f32).
template <DType kType>
inline VecF LoadW(const void* w, int64_t i) {
  if constexpr (kType == DType::kF32) {
    return LoadU(static_cast<const float*>(w) + i);
  } else if constexpr (kType == DType::kBF16) {
#if defined(CANOPY_LINEAR_NEON)
    const uint16_t* src = static_cast<const uint16_t*>(w) + i;  // bf16 = the high half of an f32
    return VecF{{vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src), 16)), vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src + 4), 16))}};
#else
    const VecH h = *reinterpret_cast<const VecH*>(static_cast<const uint16_t*>(w) + i);
    const VecU bits = __builtin_convertvector(h, VecU) << 16;
    VecF f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
  } else {
    const uint16_t* src = static_cast<const uint16_t*>(w) + i;
#if defined(CANOPY_LINEAR_X86) && CANOPY_TILE_VEC_BYTES == 64
    // (maskz with all lanes: the same vcvtph2ps, without GCC 12's false "uninitialized" warning)
    const __m512 f = _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
#elif defined(CANOPY_LINEAR_X86)
    const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
#elif defined(CANOPY_LINEAR_NEON)
    const VecF f{{vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src))), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + 4)))}};
#else
    VecF f;
    for (int l = 0; l < kLanes; ++l) f[l] = HalfToFloat(src[l]);
#endif
    VecF out;
    std::memcpy(&out, &f, sizeof out);
    return out;
  }
}

template <DType kType>
inline float LoadScalar(const void* w, int64_t i) {
  if constexpr (kType == DType::kF32) {
    return static_cast<const float*>(w)[i];
  } else if constexpr (kType == DType::kBF16) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(w)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  } else {
    return HalfToFloat(static_cast<const uint16_t*>(w)[i]);
  }
}

constexpr int64_t kElemBytes(DType t) { return t == DType::kF32 ? 4 : 2; }

// Software prefetch distance along a weight row for the small-M tiles, bytes (to L2: a
// non-temporal prefetch measured 2-3x slower here).
constexpr int kPrefetchBytes = 2048;

// y rows [n0, n0 + R) x weight rows [o0, o0 + C), the products of elements [k0, k1) (k1 <=
// the vector part `full`, both multiples of kLanes). w0 points at weight row o0, stored as
// kType, rows `in` elements apart (p.w itself, or a widened copy of a chunk). Weight rows past
// `out` repeat row o0 and are not stored.
// The accumulators start at zero when k0 == 0, else from `saved`; when k1 == full the tile
// finishes (horizontal sum, tail, bias, store y), else it leaves them in `saved` (vector
// (r, j) at saved + (r * saved_stride + j) * kLanes). Storing and reloading an f32
// accumulator is exact, so a K-blocked walk gives the numbers of a single pass.
template <DType kType, int R, int C>
inline void Tile(const LinearParams& p, const char* w0, int64_t n0, int64_t o0, int64_t k0, int64_t k1, float* saved,
                 int64_t saved_stride) {
  const int64_t in = p.in;
  const int64_t full = in / kLanes * kLanes;
  const void* w[C];
  for (int j = 0; j < C; ++j) w[j] = w0 + (o0 + j < p.out ? j : 0) * in * kElemBytes(kType);
  const float* x[R];
  for (int r = 0; r < R; ++r) x[r] = p.x + (n0 + r) * in;
  VecF acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) acc[r][j] = k0 == 0 ? VecF{} : LoadU(saved + (r * saved_stride + j) * kLanes);
  for (int64_t i = k0; i < k1; i += kLanes) {
    if (R == 1 && (i * kElemBytes(kType)) % 64 == 0) {
      // One activation row (a decode step): the next tile's rows (C rows on), at the same offset,
      // so every prefetch is of bytes this thread reads next (kPrefetchBytes along a short row
      // would land in the tile's own next row).
      for (int j = 0; j < C; ++j) __builtin_prefetch(static_cast<const char*>(w[j]) + (C * in + i) * kElemBytes(kType), 0, 2);
    } else if (R == 2 && (i * kElemBytes(kType)) % 64 == 0) {
      for (int j = 0; j < C; ++j) __builtin_prefetch(static_cast<const char*>(w[j]) + i * kElemBytes(kType) + kPrefetchBytes, 0, 2);
    }
    VecF xv[R];
    for (int r = 0; r < R; ++r) xv[r] = LoadU(x[r] + i);
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) {
      const VecF wv = LoadW<kType>(w[j], i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][j] = Fma(xv[r], wv, acc[r][j]);
    }
  }
  if (k1 < full) {
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < C; ++j) StoreU(saved + (r * saved_stride + j) * kLanes, acc[r][j]);
    return;
  }
  float tail[R][C];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) tail[r][j] = 0.f;
  for (int64_t i = full; i < in; ++i) {
    for (int j = 0; j < C; ++j) {
      const float wv = LoadScalar<kType>(w[j], i);
      for (int r = 0; r < R; ++r) tail[r][j] = __builtin_fmaf(x[r][i], wv, tail[r][j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s[C + 3];
    for (int j = 0; j < C; j += 4) {
      // HSum4 sums each vector with the same tree whatever its neighbours (zeros pad a group).
      HSum4(acc[r][j], j + 1 < C ? acc[r][j + 1] : VecF{}, j + 2 < C ? acc[r][j + 2] : VecF{},
            j + 3 < C ? acc[r][j + 3] : VecF{}, s + j);
    }
    float* y = p.y + (n0 + r) * p.out + o0;
    for (int j = 0; j < C && o0 + j < p.out; ++j) {
      float v = s[j] + tail[r][j];
      if (p.bias) v += p.bias[o0 + j];
      y[j] = p.accumulate ? y[j] + v : v;
    }
  }
}

// Weight rows per tile for R activation rows: R*C accumulators + C weights + R activations
// fit the register file (32 zmm / 16 ymm). kChunk (the rows a thread's unit of work covers)
// is a multiple of every C, so all row counts walk the same weight-row blocks.
#if CANOPY_TILE_VEC_BYTES == 64
template <int R> constexpr int kCols = R == 4 ? 6 : 8;
#else
template <int R> constexpr int kCols = R == 1 ? 8 : R == 2 ? 4 : 3;
#endif
constexpr int64_t kChunk = 24;

// From this many activation rows in a block, a weight chunk is first copied (16-bit: widened
// to f32, exactly) into the thread's 64-byte aligned scratch and the tiles read that: the
// conversion is paid once per block instead of once per 4 rows, and the loads are aligned (a
// zmm load that splits cache lines costs about a quarter of the FMA rate here). The products
// are the same numbers either way.
constexpr int64_t kWidenRows = 32;

// From this many rows in a block the walk along `in` is blocked by kKBlock elements: one
// k-block of a weight tile (6 x 512 floats) stays in L1 while every 4-row tile of the block
// passes over it, instead of each tile streaming whole weight rows from L2.
constexpr int64_t kKBlockRows = 8;
constexpr int64_t kKBlock = 512;

// Activation rows per cache block: their x rows (64 * in floats: 512 KiB at in = 2048) stay
// in L2 while the thread's weight chunks pass them.
constexpr int64_t kMaxRowBlock = 64;
inline int64_t RowBlock(int64_t) { return kMaxRowBlock; }

// Floats of scratch a thread needs: a widened chunk and the saved accumulators of a block.
constexpr int64_t ScratchFloats(int64_t in) { return kChunk * in + kMaxRowBlock * kChunk * kLanes; }

// The tiles of rows [n0, n1) x weight rows [c0, c1) over elements [k0, k1): weight tiles
// outer, so one weight tile's k-block stays in L1 while the rows' tiles pass it.
template <DType kType, int R>
inline void RowTiles(const LinearParams& p, const char* w0, int64_t n0, int64_t n1, int64_t c0, int64_t o, int64_t k0,
                     int64_t k1, float* acc) {
  const int64_t row_bytes = p.in * kElemBytes(kType);
  for (int64_t n = n0; n + R <= n1; n += R) {
    float* saved = acc == nullptr ? nullptr : acc + ((n - n0) * kChunk + (o - c0)) * kLanes;
    Tile<kType, R, kCols<R>>(p, w0 + (o - c0) * row_bytes, n, o, k0, k1, saved, kChunk);
  }
}

template <DType kType>
inline void BlockPass(const LinearParams& p, const char* w0, int64_t n0, int64_t n1, int64_t c0, int64_t c1, int64_t k0,
                      int64_t k1, float* acc) {
  const int64_t n4 = n0 + (n1 - n0) / 4 * 4;  // rows [n4, n1): one tile of 1-3 rows
  float* acc_rest = acc == nullptr ? nullptr : acc + (n4 - n0) * kChunk * kLanes;
  for (int64_t o = c0; o < c1; o += kCols<4>) RowTiles<kType, 4>(p, w0, n0, n4, c0, o, k0, k1, acc);
  const char* wr = w0;
  switch (n1 - n4) {
    case 3:
      for (int64_t o = c0; o < c1; o += kCols<3>) RowTiles<kType, 3>(p, wr, n4, n1, c0, o, k0, k1, acc_rest);
      break;
    case 2:
      for (int64_t o = c0; o < c1; o += kCols<2>) RowTiles<kType, 2>(p, wr, n4, n1, c0, o, k0, k1, acc_rest);
      break;
    case 1:
      for (int64_t o = c0; o < c1; o += kCols<1>) RowTiles<kType, 1>(p, wr, n4, n1, c0, o, k0, k1, acc_rest);
      break;
    default: break;
  }
}

// Rows [n0, n1) x weight rows [c0, c1) (one chunk) from weights w0 (row c0) of type kType:
// one pass along `in`, or k-blocks of kKBlock with the accumulators saved in `acc` between
// them (nullptr: one pass).
template <DType kType>
inline void Block(const LinearParams& p, const char* w0, int64_t n0, int64_t n1, int64_t c0, int64_t c1, float* acc) {
  const int64_t full = p.in / kLanes * kLanes;
  if (acc == nullptr || n1 - n0 < kKBlockRows || full <= kKBlock) {
    BlockPass<kType>(p, w0, n0, n1, c0, c1, 0, full, nullptr);
    return;
  }
  for (int64_t k0 = 0; k0 < full; k0 += kKBlock) {
    const int64_t k1 = k0 + kKBlock < full ? k0 + kKBlock : full;
    BlockPass<kType>(p, w0, n0, n1, c0, c1, k0, k1, acc);
  }
}

// Weight rows [o_begin, o_end) (o_begin a multiple of kChunk) for every activation row.
// scratch: ScratchFloats(in) floats of this thread's own, or nullptr (then no widening and no
// k-blocking: slower for many rows, the same numbers).
template <DType kType>
void RunRows(const LinearParams& p, int64_t o_begin, int64_t o_end, float* scratch) {
  const int64_t in = p.in;
  const int64_t block = RowBlock(in);
  const char* wbase = static_cast<const char*>(p.w);
  float* acc = scratch == nullptr ? nullptr : scratch + kChunk * in;
  for (int64_t nb = 0; nb < p.rows; nb += block) {
    const int64_t ne = nb + block < p.rows ? nb + block : p.rows;
    for (int64_t c0 = o_begin; c0 < o_end; c0 += kChunk) {
      const int64_t c1 = c0 + kChunk < o_end ? c0 + kChunk : o_end;
      const char* w0 = wbase + c0 * in * kElemBytes(kType);
      if (scratch != nullptr && ne - nb >= kWidenRows) {
        for (int64_t o = 0; o < c1 - c0; ++o) {
          const void* src = w0 + o * in * kElemBytes(kType);
          float* dst = scratch + o * in;
          int64_t i = 0;
          for (; i + kLanes <= in; i += kLanes) StoreU(dst + i, LoadW<kType>(src, i));
          for (; i < in; ++i) dst[i] = LoadScalar<kType>(src, i);
        }
        Block<DType::kF32>(p, reinterpret_cast<const char*>(scratch), nb, ne, c0, c1, acc);
      } else {
        Block<kType>(p, w0, nb, ne, c0, c1, acc);
      }
    }
  }
}

inline void Run(const LinearParams& p, int64_t o_begin, int64_t o_end, float* scratch) {
  switch (p.w_dtype) {
    case DType::kF16: RunRows<DType::kF16>(p, o_begin, o_end, scratch); break;
    case DType::kBF16: RunRows<DType::kBF16>(p, o_begin, o_end, scratch); break;
    default: RunRows<DType::kF32>(p, o_begin, o_end, scratch); break;
  }
}

}  // namespace CANOPY_TILE_NS
}  // namespace
}  // namespace cpu
}  // namespace canopy

#undef CANOPY_LINEAR_X86
#undef CANOPY_LINEAR_NEON
#undef CANOPY_TILE_NEON_PAIR
