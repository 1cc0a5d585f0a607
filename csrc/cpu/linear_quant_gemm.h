// The block-quantized linear layer for 2 and more activation rows (verification, draft trees,
// batched decode, prefill) on AVX-512 VNNI: register-blocked microkernels on 512-bit vectors.
// Included by linear_quant_vnni.cc inside its VNNI target section, after linear_quant_x86.h.
//
// The per-output arithmetic is linear_quant_kernel.h's, unchanged (so every output element is
// bit-identical to the decode step's, for any number of rows or threads):
//   eight f32 lanes; block b adds fma(P_k, d_b * da_b, acc_k) to lane k (P_k the exact int32 lane
//   sum); a ninth accumulator takes fma(-dmin_b * da_b, Smin_b, accm) for the types with mins; the
//   result is Sum8(acc) + accm (+ bias), stored or accumulated.
// Only the way the exact integers P_k and Smin_b are formed differs, and integers are exact:
//   - a 512-bit register holds two outputs' eight lanes: one weight row against two activation
//     rows (the pair's blocks side by side), so each vector instruction serves two outputs;
//   - 32-value blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL): the activation codes are taken
//     unsigned (a + 128, vpdpbusd's unsigned operand) against the weight codes as signed int8, and
//     each weight block's lanes start at -128 * (the sum of its 4 codes), so
//     vpdpbusd(-128 sum4(w), a + 128, w) = sum4(w * a) exactly (|values| far below 2^31);
//   - 256-value blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): the weight codes taken unsigned
//     (u = q + bias, 0..63), vpmaddubsw's int16 pair sums u * a (<= 2 * 63 * 127, exact) minus
//     the activation's bias * (pair sum) (computed once per activation row), then vpdpwssd with the
//     pair's sub-block scale: lane k = sum_c sc(c, k) * dot4, exact in int32;
//   - Smin_b = sum_j m_j * asum_j (exact integers below 2^24, so summed exactly in f32), for 16
//     activation rows at a time.
// Blocking: threads split the weight rows (ParallelFor in linear_quant.cc); each thread takes
// activation rows in blocks of kRowBlock (packed once per block: pairs side by side, as above) and,
// per block, weight rows in tiles of kTn, decoded once per tile into L1 (codes, scales, factors);
// the microkernel then runs kTn weight rows x 3 (32-value blocks) or 2 (K blocks) row pairs with
// all accumulators in registers. For a few rows the tile costs more than it saves: 32-value
// blocks without mins up to 32 rows (Direct32) and Q4_K up to 8 rows (DirectQ4K) unpack each
// weight block in registers and use it for up to 4 row pairs; below MinRows the call stays with
// linear_quant_kernel.h's direct kernels. 32-value blocks without mins above 32 rows (prefill)
// take the rows 16 to a register instead of in pairs (GroupMicro, below): the same integers and
// f32 operations, fewer instructions per multiply-add. Other ISAs (AVX2, portable, NEON) are unchanged.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "linear_quant_cpu.h"
#include "linear_quant_x86.h"

namespace canopy {
namespace cpu {
namespace quant_gemm {
#ifndef CANOPY_GEMM_PREFETCH
#define CANOPY_GEMM_PREFETCH 1
#endif
#ifndef CANOPY_GEMM_DIRECT_PAIRS
#define CANOPY_GEMM_DIRECT_PAIRS 16
#endif

using Isa = x86::IsaX86<true>;

// Activation rows per block (packed once, then read from L2 by every weight tile of the thread).
constexpr int64_t kRowBlock = 64;
constexpr int kTn = 4;  // weight rows per tile
// 32-value blocks without mins: up to this many row pairs run Direct32 (weights decoded in
// registers, 4 pairs at a time) rather than through a decoded tile.
constexpr int64_t kDirectPairs = CANOPY_GEMM_DIRECT_PAIRS;
// Q4_K: up to this many row pairs (at most 4) run DirectQ4K rather than a decoded tile.
constexpr int64_t kDirectPairsK = 4;

// From how many activation rows this file computes a block type (0: never). IQ4_XS is left to
// linear_quant_kernel.h (its signed grid codes would overflow vpmaddubsw's int16 pair sums when
// taken unsigned). Below these counts the direct kernels of linear_quant_kernel.h are as fast or
// faster: measured (in 2048, out 1024, one thread, CPU time, AVX-512 VNNI Xeon): Q8_0, Q5_0,
// IQ4_NL (Direct32), Q6_K and Q2_K (tiles) gain from 2 rows, Q4_0 and Q4_K (DirectQ4K) from 4; the
// types without a direct kernel here need 8 rows (Q4_1, Q5_1, Q3_K) or 16 (Q5_K) for the
// decoded tile to pay for itself.
constexpr int64_t MinRows(QuantType t) {
  switch (t) {
    case QuantType::kQ8_0:
    case QuantType::kQ5_0:
    case QuantType::kIQ4_NL:
    case QuantType::kQ6_K:
    case QuantType::kQ2_K: return 2;
    case QuantType::kQ4_0:
    case QuantType::kQ4_K: return 4;
    case QuantType::kQ4_1:
    case QuantType::kQ5_1:
    case QuantType::kQ3_K: return 8;
    case QuantType::kQ5_K: return 16;
    default: return 0;
  }
}

// K blocks: the bias that makes DecodeBlock's codes unsigned (u = q + bias in 0..63).
constexpr int KBias(QuantType t) { return t == QuantType::kQ6_K ? 32 : t == QuantType::kQ3_K ? 4 : 0; }

// One block of activation rows [r0, r0 + m), packed for the microkernels. Pair p holds rows
// r0 + 2p and r0 + 2p + 1 (an odd m repeats its last row in the last pair; its results are dropped).
struct PackedRows {
  int64_t m = 0, pairs = 0, mpad = 0;  // mpad: m rounded up to 16 (the min pass's vectors)
  std::vector<uint8_t> a;               // [pair][block][chunk][64]: 32-blocks a + 128, K blocks a
  std::vector<int16_t> corr;            // K blocks with a bias: [pair][block][chunk][32] bias * pair sums
  std::vector<float> da;                // [pair][block][16]: the rows' da_b, 8 lanes each
  std::vector<float> daT;               // [block][mpad]: da_b per row (the min pass)
  std::vector<float> asumT;             // [block][sub-block][mpad]: activation code sums (the min pass)
};

template <QuantType T>
void PackRows(const QuantActivations& act, int64_t r0, int64_t m, PackedRows* pk) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  constexpr int kChunks = info.block / 32;
  constexpr int kSubs = info.block / info.sub;
  const int64_t in = act.in, nb = in / info.block, n16 = in / 16;
  pk->m = m;
  pk->pairs = (m + 1) / 2;
  pk->mpad = (m + 15) / 16 * 16;
  pk->a.resize(static_cast<size_t>(pk->pairs * nb * kChunks * 64));
  pk->da.resize(static_cast<size_t>(pk->pairs * nb * 16));
  if constexpr (KBias(T) != 0) pk->corr.resize(static_cast<size_t>(pk->pairs * nb * kChunks * 32));
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t p = 0; p < pk->pairs; ++p) {
    for (int half = 0; half < 2; ++half) {
      const int64_t r = r0 + std::min(2 * p + half, m - 1);
      const int8_t* arow = act.q.data() + r * in;
      for (int64_t b = 0; b < nb; ++b) {
        const float da = act.d[r * nb + b];
        for (int k = 0; k < 8; ++k) pk->da[(p * nb + b) * 16 + 8 * half + k] = da;
        for (int c = 0; c < kChunks; ++c) {
          __m256i v = Isa::Load256(arow + b * info.block + 32 * c);
          const int64_t at = (p * nb + b) * kChunks + c;
          if constexpr (info.block == 32) v = _mm256_xor_si256(v, flip);  // a + 128
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(pk->a.data() + at * 64 + 32 * half), v);
          if constexpr (KBias(T) != 0) {
            const __m256i cp = _mm256_maddubs_epi16(_mm256_set1_epi8(KBias(T)), v);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(pk->corr.data() + at * 32 + 16 * half), cp);
          }
        }
      }
    }
  }
  if constexpr (info.has_min) {
    pk->daT.assign(static_cast<size_t>(nb * pk->mpad), 0.f);
    pk->asumT.assign(static_cast<size_t>(nb * kSubs * pk->mpad), 0.f);
    constexpr int per = info.sub / 16;
    for (int64_t i = 0; i < m; ++i) {
      const int64_t r = r0 + i;
      for (int64_t b = 0; b < nb; ++b) {
        pk->daT[b * pk->mpad + i] = act.d[r * nb + b];
        for (int j = 0; j < kSubs; ++j) {
          int32_t s = 0;
          for (int k = 0; k < per; ++k) s += act.sum16[r * n16 + b * (info.block / 16) + j * per + k];
          pk->asumT[(b * kSubs + j) * pk->mpad + i] = static_cast<float>(s);
        }
      }
    }
  }
}

// A tile of up to kTn weight rows, decoded once for all the activation rows of a block.
struct WeightTile {
  std::vector<int8_t> q;        // [t][block][block values]: 32-blocks signed codes, K blocks q + bias
  std::vector<int32_t> corr;    // 32-blocks: [t][block][8] = -128 * (sum of each lane's 4 codes)
  std::vector<int16_t> scale;   // K blocks: [t][block][chunk][16] the sub-block scale of each pair
  std::vector<float> d;         // [t][block]
  std::vector<float> negdmin;   // [t][block]: -dmin as DecodeBlock gives dmin (32-blocks: m; K: -dmin)
  std::vector<float> mn;        // [t][block][sub-block]: m_j (types with mins)
};

template <QuantType T>
void DecodeTile(const LinearParams& p, int64_t o0, int tn, WeightTile* wt) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  constexpr int kSubs = info.block / info.sub;
  const int64_t nb = p.in / info.block;
  const int64_t row_bytes = nb * info.bytes;
  wt->q.resize(static_cast<size_t>(kTn * p.in));
  wt->d.resize(static_cast<size_t>(kTn * nb));
  if constexpr (info.block == 32) wt->corr.resize(static_cast<size_t>(kTn * nb * 8));
  if constexpr (info.block == 256) wt->scale.resize(static_cast<size_t>(kTn * nb * 128));
  if constexpr (info.has_min) {
    wt->negdmin.resize(static_cast<size_t>(kTn * nb));
    wt->mn.resize(static_cast<size_t>(kTn * nb * kSubs));
  }
  const uint8_t* w = static_cast<const uint8_t*>(p.w);
  DecodedBlock db;
  for (int t = 0; t < tn; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = w + (o0 + t) * row_bytes + b * info.bytes;
      const int64_t tb = t * nb + b;
      int8_t* q = wt->q.data() + tb * info.block;
      if constexpr (info.block == 32) {
        const __m256i v = Isa::Load32<T>(blk);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), v);
        const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(static_cast<char>(0x80)), v);  // 128 * sum4
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(wt->corr.data() + tb * 8), _mm256_sub_epi32(_mm256_setzero_si256(), s));
        wt->d[tb] = Isa::F16(blk);
        if constexpr (info.has_min) {
          // QuantTile32 keeps dmin = -m and uses -dmin * da: the factor is m (exactly -(-m)).
          wt->negdmin[tb] = -(-Isa::F16(blk + 2));
          wt->mn[tb] = 1.f;
        }
      } else {
        int16_t* ps = wt->scale.data() + tb * 128;
        if constexpr (T == QuantType::kQ4_K) {
          Isa::DecodeQ4KCodes(blk + 16, q);
          for (int j = 0; j < 8; ++j) {
            int sc, m;
            ScaleMinK4(j, blk + 4, &sc, &m);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(ps + 16 * j), _mm256_set1_epi16(static_cast<int16_t>(sc)));
            wt->mn[tb * kSubs + j] = static_cast<float>(m);
          }
          wt->d[tb] = Isa::F16(blk);
          wt->negdmin[tb] = -Isa::F16(blk + 2);
        } else if constexpr (T == QuantType::kQ6_K) {
          Isa::DecodeQ6KCodes(blk, blk + 128, q);
          for (int j = 0; j < 16; ++j) _mm_storeu_si128(reinterpret_cast<__m128i*>(ps + 8 * j), _mm_set1_epi16(static_cast<int8_t>(blk[192 + j])));
          wt->d[tb] = Isa::F16(blk + 208);
        } else {
          DecodeBlock(T, blk, &db);
          std::memcpy(q, db.q, 256);
          for (int k = 0; k < 128; ++k) ps[k] = db.sc[(2 * k) / info.sub];
          wt->d[tb] = db.d;
          if constexpr (info.has_min) {
            wt->negdmin[tb] = -db.dmin;
            for (int j = 0; j < kSubs; ++j) wt->mn[tb * kSubs + j] = static_cast<float>(db.mn[j]);
          }
        }
        if constexpr (KBias(T) != 0) {
          const __m256i bias = _mm256_set1_epi8(KBias(T));
          for (int c = 0; c < 8; ++c) {
            __m256i* qc = reinterpret_cast<__m256i*>(q + 32 * c);
            _mm256_storeu_si256(qc, _mm256_add_epi8(_mm256_loadu_si256(qc), bias));
          }
        }
      }
    }
  }
}

// accm[t][i] for rows i of the block (mpad columns): the chain fma(-dmin_b * da_b, Smin_b, accm)
// over blocks in order, 16 rows per vector (zero for types without mins).
template <QuantType T>
void MinPass(const PackedRows& pk, const WeightTile& wt, int tn, int64_t nb, float* accm) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  constexpr int kSubs = info.block / info.sub;
  std::fill(accm, accm + kTn * pk.mpad, 0.f);
  if constexpr (info.has_min) {
    for (int t = 0; t < tn; ++t) {
      for (int64_t i = 0; i < pk.mpad; i += 16) {
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; ++b) {
          const int64_t tb = t * nb + b;
          __m512 smin = _mm512_setzero_ps();
          for (int j = 0; j < kSubs; ++j)  // exact: integer products and sums below 2^24
            smin = _mm512_fmadd_ps(_mm512_set1_ps(wt.mn[tb * kSubs + j]), _mm512_loadu_ps(pk.asumT.data() + (b * kSubs + j) * pk.mpad + i), smin);
          const __m512 f = _mm512_mul_ps(_mm512_set1_ps(wt.negdmin[tb]), _mm512_loadu_ps(pk.daT.data() + b * pk.mpad + i));
          acc = _mm512_fmadd_ps(f, smin, acc);
        }
        _mm512_storeu_ps(accm + t * pk.mpad + i, acc);
      }
    }
  }
}

// Writes the two outputs of a pair register: Sum8 of each half + accm (+ bias), stored or added.
inline void StorePair(const LinearParams& p, const PackedRows& pk, int64_t r0, int64_t pair, int64_t o, const float* accm_t, __m512 acc) {
  for (int half = 0; half < 2; ++half) {
    const int64_t i = 2 * pair + half;
    if (i >= pk.m) return;
    const __m256 lanes = half == 0 ? _mm512_castps512_ps256(acc) : _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    float v = Isa::Sum8(lanes) + accm_t[i];
    if (p.bias) v += p.bias[o];
    float* yo = p.y + (r0 + i) * p.out + o;
    *yo = p.accumulate ? *yo + v : v;
  }
}

// 32-value blocks: TN weight rows x RP row pairs.
template <int TN, int RP>
inline void Micro32(const LinearParams& p, const PackedRows& pk, const WeightTile& wt, int64_t nb, int64_t r0, int64_t pair0, int64_t o0, const float* accm) {
  __m512 acc[TN][RP];
  for (int t = 0; t < TN; ++t)
    for (int r = 0; r < RP; ++r) acc[t][r] = _mm512_setzero_ps();
  const uint8_t* a0 = pk.a.data() + pair0 * nb * 64;
  const float* da0 = pk.da.data() + pair0 * nb * 16;
  for (int64_t b = 0; b < nb; ++b) {
    __m512i a[RP];
    __m512 da[RP];
    for (int r = 0; r < RP; ++r) {
      a[r] = _mm512_loadu_si512(a0 + (r * nb + b) * 64);
      da[r] = _mm512_loadu_ps(da0 + (r * nb + b) * 16);
    }
    for (int t = 0; t < TN; ++t) {
      const int64_t tb = t * nb + b;
      const __m512i w = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wt.q.data() + tb * 32)));
      const __m512i c = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wt.corr.data() + tb * 8)));
      const __m512 d = _mm512_set1_ps(wt.d[tb]);
      for (int r = 0; r < RP; ++r) {
        const __m512i lanes = _mm512_dpbusd_epi32(c, a[r], w);
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(d, da[r]), acc[t][r]);
      }
    }
  }
  for (int t = 0; t < TN; ++t)
    for (int r = 0; r < RP; ++r) StorePair(p, pk, r0, pair0 + r, o0 + t, accm + t * pk.mpad, acc[t][r]);
}

// 256-value blocks: TN weight rows x RP row pairs.
template <QuantType T, int TN, int RP>
inline void MicroK(const LinearParams& p, const PackedRows& pk, const WeightTile& wt, int64_t nb, int64_t r0, int64_t pair0, int64_t o0, const float* accm) {
  __m512 acc[TN][RP];
  for (int t = 0; t < TN; ++t)
    for (int r = 0; r < RP; ++r) acc[t][r] = _mm512_setzero_ps();
  const uint8_t* a0 = pk.a.data() + pair0 * nb * 8 * 64;
  const int16_t* c0 = KBias(T) != 0 ? pk.corr.data() + pair0 * nb * 8 * 32 : nullptr;
  const float* da0 = pk.da.data() + pair0 * nb * 16;
  for (int64_t b = 0; b < nb; ++b) {
    __m512i lanes[TN][RP];
    for (int t = 0; t < TN; ++t)
      for (int r = 0; r < RP; ++r) lanes[t][r] = _mm512_setzero_si512();
    for (int c = 0; c < 8; ++c) {
      __m512i a[RP], corr[RP];
      for (int r = 0; r < RP; ++r) {
        a[r] = _mm512_loadu_si512(a0 + ((r * nb + b) * 8 + c) * 64);
        if constexpr (KBias(T) != 0) corr[r] = _mm512_loadu_si512(c0 + ((r * nb + b) * 8 + c) * 32);
      }
      for (int t = 0; t < TN; ++t) {
        const int64_t tb = t * nb + b;
        const __m512i w = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wt.q.data() + tb * 256 + 32 * c)));
        const __m512i s = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wt.scale.data() + tb * 128 + 16 * c)));
        for (int r = 0; r < RP; ++r) {
          __m512i pairs = _mm512_maddubs_epi16(w, a[r]);
          if constexpr (KBias(T) != 0) pairs = _mm512_sub_epi16(pairs, corr[r]);
          lanes[t][r] = _mm512_dpwssd_epi32(lanes[t][r], pairs, s);
        }
      }
    }
    for (int r = 0; r < RP; ++r) {
      const __m512 da = _mm512_loadu_ps(da0 + (r * nb + b) * 16);
      for (int t = 0; t < TN; ++t)
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes[t][r]), _mm512_mul_ps(_mm512_set1_ps(wt.d[t * nb + b]), da), acc[t][r]);
    }
  }
  for (int t = 0; t < TN; ++t)
    for (int r = 0; r < RP; ++r) StorePair(p, pk, r0, pair0 + r, o0 + t, accm + t * pk.mpad, acc[t][r]);
}

template <QuantType T, int TN, int RP>
inline void Micro(const LinearParams& p, const PackedRows& pk, const WeightTile& wt, int64_t nb, int64_t r0, int64_t pair0, int64_t o0, const float* accm) {
  if constexpr (GetQuantTypeInfoConst(T).block == 32) {
    Micro32<TN, RP>(p, pk, wt, nb, r0, pair0, o0, accm);
  } else {
    MicroK<T, TN, RP>(p, pk, wt, nb, r0, pair0, o0, accm);
  }
}

// 32-value blocks without mins, up to 4 row pairs (verification, small batches): no tile in
// memory; each weight block is decoded in registers (Isa::Load32, the codes linear_quant_kernel.h
// uses), with its lanes' start -128 * sum4(w) (one vpdpbusd), and used for the RP pairs.
template <QuantType T, int TN, int RP>
inline void Direct32(const LinearParams& p, const PackedRows& pk, int64_t nb, int64_t r0, int64_t pair0, int64_t o0, const float* zeros) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  const int64_t row_bytes = nb * info.bytes;
  const uint8_t* w0 = static_cast<const uint8_t*>(p.w) + o0 * row_bytes;
  __m512 acc[TN][RP];
  for (int t = 0; t < TN; ++t)
    for (int r = 0; r < RP; ++r) acc[t][r] = _mm512_setzero_ps();
  const __m512i k128 = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    __m512i a[RP];
    __m512 da[RP];
    for (int r = 0; r < RP; ++r) {
      a[r] = _mm512_loadu_si512(pk.a.data() + ((pair0 + r) * nb + b) * 64);
      da[r] = _mm512_loadu_ps(pk.da.data() + ((pair0 + r) * nb + b) * 16);
    }
    for (int t = 0; t < TN; ++t) {
      const uint8_t* blk = w0 + t * row_bytes + b * info.bytes;
      const __m512i wz = _mm512_broadcast_i64x4(Isa::Load32<T>(blk));
      const __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, wz));
      const __m512 d = _mm512_set1_ps(Isa::F16(blk));
      for (int r = 0; r < RP; ++r) {
        const __m512i lanes = _mm512_dpbusd_epi32(c, a[r], wz);
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(d, da[r]), acc[t][r]);
      }
    }
  }
  for (int t = 0; t < TN; ++t)
    for (int r = 0; r < RP; ++r) StorePair(p, pk, r0, pair0 + r, o0 + t, zeros, acc[t][r]);
}

template <QuantType T, int TN>
void DirectPairs(const LinearParams& p, const PackedRows& pk, int64_t nb, int64_t r0, int64_t o, const float* zeros) {
  int64_t q = 0;
  for (; q + 4 <= pk.pairs; q += 4) Direct32<T, TN, 4>(p, pk, nb, r0, q, o, zeros);
  switch (pk.pairs - q) {
    case 3: Direct32<T, TN, 3>(p, pk, nb, r0, q, o, zeros); break;
    case 2: Direct32<T, TN, 2>(p, pk, nb, r0, q, o, zeros); break;
    case 1: Direct32<T, TN, 1>(p, pk, nb, r0, q, o, zeros); break;
    default: break;
  }
}

// Weight rows in tiles of kTn, each over every pair of the block (its weight bytes stay in L1).
template <QuantType T>
void DirectRows(const LinearParams& p, const PackedRows& pk, int64_t nb, int64_t r0, int64_t o_begin, int64_t o_end, const float* zeros) {
  int64_t o = o_begin;
  for (; o + kTn <= o_end; o += kTn) DirectPairs<T, kTn>(p, pk, nb, r0, o, zeros);
  for (; o < o_end; ++o) DirectPairs<T, 1>(p, pk, nb, r0, o, zeros);
}

// Q4_K, up to kDirectPairsK row pairs: no decoded codes in memory; each 32-byte group of codes
// is unpacked in registers (low nibbles: chunk 2h, high: chunk 2h + 1, as quant_blocks.h) and
// used for the RP pairs; the sub-block scales as int32 words (sc | sc << 16, one per chunk, for
// vpdpwssd) from ScaleMinK4's packing four at a time (as Isa::AddBlockQ4K). The min part comes
// from MinPass over the tile's mins (accm).
template <int TN, int RP>
inline void DirectQ4K(const LinearParams& p, const PackedRows& pk, int64_t nb, int64_t r0, int64_t pair0, int64_t o0, const float* accm) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(QuantType::kQ4_K);
  const int64_t row_bytes = nb * info.bytes;
  const uint8_t* w0 = static_cast<const uint8_t*>(p.w) + o0 * row_bytes;
  __m512 acc[TN][RP];
  for (int t = 0; t < TN; ++t)
    for (int r = 0; r < RP; ++r) acc[t][r] = _mm512_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < nb; ++b) {
    alignas(32) int32_t sc2[TN][8];
    for (int t = 0; t < TN; ++t) {
      const uint8_t* blk = w0 + t * row_bytes + b * info.bytes;
      const uint32_t u0 = Isa::LoadU32(blk + 4), u2 = Isa::LoadU32(blk + 12);
      const uint32_t sc_lo = u0 & 0x3f3f3f3fu, sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
      const __m128i sc16 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int32_t>(sc_hi), static_cast<int32_t>(sc_lo)));
      _mm_store_si128(reinterpret_cast<__m128i*>(sc2[t]), _mm_unpacklo_epi16(sc16, sc16));
      _mm_store_si128(reinterpret_cast<__m128i*>(sc2[t] + 4), _mm_unpackhi_epi16(sc16, sc16));
    }
    __m512i lanes[TN][RP];
    for (int t = 0; t < TN; ++t)
      for (int r = 0; r < RP; ++r) lanes[t][r] = _mm512_setzero_si512();
    for (int h = 0; h < 4; ++h) {
      __m512i alo[RP], ahi[RP];
      for (int r = 0; r < RP; ++r) {
        alo[r] = _mm512_loadu_si512(pk.a.data() + (((pair0 + r) * nb + b) * 8 + 2 * h) * 64);
        ahi[r] = _mm512_loadu_si512(pk.a.data() + (((pair0 + r) * nb + b) * 8 + 2 * h + 1) * 64);
      }
      for (int t = 0; t < TN; ++t) {
        const __m256i v = Isa::Load256(w0 + t * row_bytes + b * info.bytes + 16 + 32 * h);
        const __m512i wlo = _mm512_broadcast_i64x4(_mm256_and_si256(v, m4));
        const __m512i whi = _mm512_broadcast_i64x4(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        const __m512i slo = _mm512_set1_epi32(sc2[t][2 * h]), shi = _mm512_set1_epi32(sc2[t][2 * h + 1]);
        for (int r = 0; r < RP; ++r) {
          lanes[t][r] = _mm512_dpwssd_epi32(lanes[t][r], _mm512_maddubs_epi16(wlo, alo[r]), slo);
          lanes[t][r] = _mm512_dpwssd_epi32(lanes[t][r], _mm512_maddubs_epi16(whi, ahi[r]), shi);
        }
      }
    }
    for (int r = 0; r < RP; ++r) {
      const __m512 da = _mm512_loadu_ps(pk.da.data() + ((pair0 + r) * nb + b) * 16);
      for (int t = 0; t < TN; ++t) {
        const __m512 d = _mm512_set1_ps(Isa::F16(w0 + t * row_bytes + b * info.bytes));
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes[t][r]), _mm512_mul_ps(d, da), acc[t][r]);
      }
    }
  }
  for (int t = 0; t < TN; ++t)
    for (int r = 0; r < RP; ++r) StorePair(p, pk, r0, pair0 + r, o0 + t, accm + t * pk.mpad, acc[t][r]);
}

// The tile's factors and mins only (what MinPass reads), for the direct K kernels.
template <QuantType T>
void DecodeMins(const LinearParams& p, int64_t o0, int tn, WeightTile* wt) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  static_assert(T == QuantType::kQ4_K, "Q4_K's packing");
  const int64_t nb = p.in / info.block;
  const int64_t row_bytes = nb * info.bytes;
  wt->negdmin.resize(static_cast<size_t>(kTn * nb));
  wt->mn.resize(static_cast<size_t>(kTn * nb * 8));
  const uint8_t* w = static_cast<const uint8_t*>(p.w);
  for (int t = 0; t < tn; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = w + (o0 + t) * row_bytes + b * info.bytes;
      const int64_t tb = t * nb + b;
      // m[0..3] = u1 & 63, m[4..7] = (u2 >> 4) | (u1 >> 6) << 4, bytewise (ScaleMinK4 four at a time).
      const uint32_t u1 = Isa::LoadU32(blk + 8), u2 = Isa::LoadU32(blk + 12);
      const uint32_t m_lo = u1 & 0x3f3f3f3fu, m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
      const __m256i m8 = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, static_cast<int32_t>(m_hi), static_cast<int32_t>(m_lo)));
      _mm256_storeu_ps(wt->mn.data() + tb * 8, _mm256_cvtepi32_ps(m8));
      wt->negdmin[tb] = -Isa::F16(blk + 2);
    }
  }
}

template <int TN>
void DirectQ4KPairs(const LinearParams& p, const PackedRows& pk, int64_t nb, int64_t r0, int64_t o, const float* accm) {
  switch (pk.pairs) {
    case 4: DirectQ4K<TN, 4>(p, pk, nb, r0, 0, o, accm); break;
    case 3: DirectQ4K<TN, 3>(p, pk, nb, r0, 0, o, accm); break;
    case 2: DirectQ4K<TN, 2>(p, pk, nb, r0, 0, o, accm); break;
    default: DirectQ4K<TN, 1>(p, pk, nb, r0, 0, o, accm); break;
  }
}

// ---- 32-value blocks without mins, many rows: 16 rows per register -----------------------------
// The same per-element arithmetic with the roles of the vector lanes swapped: a register holds
// lane k of 16 activation rows (row i's four codes of lane k in its 32-bit word i), so one vpdpbusd
// with the weight's four lane-k codes broadcast gives P_k for 16 outputs, the block's factor
// d_b * da_b is one multiply for 16 rows (not one per output pair), and Sum8 is done across the
// eight lane registers in Isa::Sum8's order ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
// Every f32 operation is the one StorePair's path performs, so the results are the same bits.

// Rows [r0, r0 + 16 * groups) packed for GroupMicro: a [g][block][lane k][16 rows][4] (a + 128),
// da [g][block][16].
struct PackedGroups {
  int64_t groups = 0;
  std::vector<uint8_t> a;
  std::vector<float> da;
  std::vector<int32_t> corrm;  // the current tile's lane starts plus kMagic: [t][block][8]
};

template <QuantType T>
void PackGroups(const QuantActivations& act, int64_t r0, int64_t groups, PackedGroups* pg) {
  const int64_t in = act.in, nb = in / 32;
  pg->groups = groups;
  pg->a.resize(static_cast<size_t>(groups * nb * 512));
  pg->da.resize(static_cast<size_t>(groups * nb * 16));
  // Row i's 32 codes of a block are 8 words (lanes); the 16 rows x 8 lanes are transposed with
  // one gather-free pass of 32-bit copies.
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      uint32_t* dst = reinterpret_cast<uint32_t*>(pg->a.data() + (g * nb + b) * 512);
      for (int i = 0; i < 16; ++i) {
        const int64_t r = r0 + 16 * g + i;
        const int8_t* src = act.q.data() + r * in + b * 32;
        for (int k = 0; k < 8; ++k) {
          uint32_t v;
          std::memcpy(&v, src + 4 * k, 4);
          dst[k * 16 + i] = v ^ 0x80808080u;  // a + 128
        }
        pg->da[(g * nb + b) * 16 + i] = act.d[r * nb + b];
      }
    }
  }
}

// The int32 bits of 1.5 * 2^23 (added to each lane's start: see GroupMicro).
constexpr int32_t kMagic = 0x4B400000;

// TN weight rows of the tile (from row t0) x the 16 rows of group g.
template <int TN>
inline void GroupMicro(const LinearParams& p, const PackedGroups& pg, const WeightTile& wt, int64_t nb, int64_t r0, int64_t g, int t0, int64_t o0,
                       int pf_rows, const char* pf, int64_t row_bytes, int block_bytes) {
  __m512 acc[TN][8];
  for (int t = 0; t < TN; ++t)
    for (int k = 0; k < 8; ++k) acc[t][k] = _mm512_setzero_ps();
  const uint8_t* a0 = pg.a.data() + g * nb * 512;
  const float* da0 = pg.da.data() + g * nb * 16;
  const int32_t* corrm = pg.corrm.data();
  const __m512 magic = _mm512_set1_ps(12582912.f);
  for (int64_t b = 0; b < nb; ++b) {
    for (int t = 0; t < pf_rows; ++t) _mm_prefetch(pf + t * row_bytes + b * block_bytes, _MM_HINT_T1);
    const __m512 da = _mm512_loadu_ps(da0 + b * 16);
    __m512 s[TN];
    for (int t = 0; t < TN; ++t) s[t] = _mm512_mul_ps(_mm512_set1_ps(wt.d[(t0 + t) * nb + b]), da);
    for (int k = 0; k < 8; ++k) {
      const __m512i a = _mm512_loadu_si512(a0 + (b * 8 + k) * 64);
      for (int t = 0; t < TN; ++t) {
        const int64_t tb = (t0 + t) * nb + b;
        const __m512i c = _mm512_set1_epi32(corrm[tb * 8 + k]);
        const __m512i w = _mm512_set1_epi32(static_cast<int32_t>(Isa::LoadU32(reinterpret_cast<const uint8_t*>(wt.q.data() + tb * 32 + 4 * k))));
        // The bits kMagic + P_k are the f32 1.5 * 2^23 + P_k (|P_k| <= 4 * 127 * 128 < 2^22), so
        // subtracting 1.5 * 2^23 gives float(P_k) exactly (as vcvtdq2ps would, off its port).
        const __m512 pf = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_dpbusd_epi32(c, a, w)), magic);
        acc[t][k] = _mm512_fmadd_ps(pf, s[t], acc[t][k]);
      }
    }
  }
  for (int t = 0; t < TN; ++t) {
    const __m512 l04 = _mm512_add_ps(acc[t][0], acc[t][4]), l26 = _mm512_add_ps(acc[t][2], acc[t][6]);
    const __m512 l15 = _mm512_add_ps(acc[t][1], acc[t][5]), l37 = _mm512_add_ps(acc[t][3], acc[t][7]);
    // + accm (zero for these types), as StorePair adds it (-0 + 0 is +0).
    const __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(l04, l26), _mm512_add_ps(l15, l37)), _mm512_setzero_ps());
    alignas(64) float vs[16];
    _mm512_store_ps(vs, v);
    const int64_t o = o0 + t0 + t;
    for (int i = 0; i < 16; ++i) {
      float x = vs[i];
      if (p.bias) x += p.bias[o];
      float* yo = p.y + (r0 + 16 * g + i) * p.out + o;
      *yo = p.accumulate ? *yo + x : x;
    }
  }
}

// Weight rows [o_begin, o_end) for the 16-row groups of pg: tiles of kTn rows decoded once, each
// used by every group (the group's codes stay in L1 across the tile's rows).
template <QuantType T>
void GroupRows(const LinearParams& p, PackedGroups& pg, int64_t nb, int64_t r0, int64_t o_begin, int64_t o_end, WeightTile* wt) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  const int64_t row_bytes = nb * info.bytes;
  pg.corrm.resize(static_cast<size_t>(kTn * nb * 8));
  for (int64_t o = o_begin; o < o_end; o += kTn) {
    const int tn = static_cast<int>(std::min<int64_t>(kTn, o_end - o));
    DecodeTile<T>(p, o, tn, wt);
    // The next tile's bytes are fetched into L2 block by block while the first group runs
    // (prefetches never fault).
    const char* next = static_cast<const char*>(p.w) + (o + kTn) * row_bytes;
    const int pf_rows = CANOPY_GEMM_PREFETCH ? static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kTn, o_end - o - kTn))) : 0;
    for (int64_t i = 0; i < tn * nb * 8; ++i) pg.corrm[i] = wt->corr[i] + kMagic;
    for (int64_t g = 0; g < pg.groups; ++g) {
      int t = 0;
      for (; t + 2 <= tn; t += 2) GroupMicro<2>(p, pg, *wt, nb, r0, g, t, o, g == 0 && t == 0 ? pf_rows : 0, next, row_bytes, info.bytes);
      if (t < tn) GroupMicro<1>(p, pg, *wt, nb, r0, g, t, o, g == 0 && t == 0 ? pf_rows : 0, next, row_bytes, info.bytes);
    }
  }
}

// Row pairs of the block for a tile of TN weight rows, kRpMax pairs at a time.
template <QuantType T, int TN>
void TileRows(const LinearParams& p, const PackedRows& pk, const WeightTile& wt, int64_t nb, int64_t r0, int64_t o0, const float* accm) {
  constexpr int kRpMax = GetQuantTypeInfoConst(T).block == 32 ? 3 : 2;
  int64_t q = 0;
  for (; q + kRpMax <= pk.pairs; q += kRpMax) Micro<T, TN, kRpMax>(p, pk, wt, nb, r0, q, o0, accm);
  if (pk.pairs - q == 2) Micro<T, TN, 2>(p, pk, wt, nb, r0, q, o0, accm);
  else if (pk.pairs - q == 1) Micro<T, TN, 1>(p, pk, wt, nb, r0, q, o0, accm);
}

// Weight rows [o_begin, o_end) for every activation row.
template <QuantType T>
void GemmRows(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  const int64_t nb = p.in / info.block;
  thread_local PackedRows pk;
  thread_local WeightTile wt;
  thread_local std::vector<float> accm;
  for (int64_t r0 = 0; r0 < p.rows; r0 += kRowBlock) {
    const int64_t m = std::min(kRowBlock, p.rows - r0);
    if constexpr (info.block == 32 && !info.has_min) {
      // More rows than Direct32 takes: groups of 16 rows (GroupMicro); the rest (< 16) Direct32.
      if (m > 2 * kDirectPairs && m >= 16) {
        thread_local PackedGroups pg;
        const int64_t gm = m / 16 * 16;
        PackGroups<T>(act, r0, gm / 16, &pg);
        GroupRows<T>(p, pg, nb, r0, o_begin, o_end, &wt);
        if (m > gm) {
          PackRows<T>(act, r0 + gm, m - gm, &pk);
          accm.assign(static_cast<size_t>(kTn * pk.mpad), 0.f);
          DirectRows<T>(p, pk, nb, r0 + gm, o_begin, o_end, accm.data());
        }
        continue;
      }
    }
    PackRows<T>(act, r0, m, &pk);
    accm.resize(static_cast<size_t>(kTn * pk.mpad));
    if constexpr (info.block == 32 && !info.has_min) {
      if (pk.pairs <= kDirectPairs) {
        accm.assign(accm.size(), 0.f);
        DirectRows<T>(p, pk, nb, r0, o_begin, o_end, accm.data());
        continue;
      }
    }
    if constexpr (T == QuantType::kQ4_K) {
      if (pk.pairs <= kDirectPairsK) {
        for (int64_t o = o_begin; o < o_end; o += kTn) {
          const int tn = static_cast<int>(std::min<int64_t>(kTn, o_end - o));
          DecodeMins<T>(p, o, tn, &wt);
          MinPass<T>(pk, wt, tn, nb, accm.data());
          if (tn == kTn) DirectQ4KPairs<kTn>(p, pk, nb, r0, o, accm.data());
          else
            for (int t = 0; t < tn; ++t) DirectQ4KPairs<1>(p, pk, nb, r0, o + t, accm.data() + t * pk.mpad);
        }
        continue;
      }
    }
    for (int64_t o = o_begin; o < o_end; o += kTn) {
      const int tn = static_cast<int>(std::min<int64_t>(kTn, o_end - o));
      DecodeTile<T>(p, o, tn, &wt);
      MinPass<T>(pk, wt, tn, nb, accm.data());
      switch (tn) {
        case 4: TileRows<T, 4>(p, pk, wt, nb, r0, o, accm.data()); break;
        case 3: TileRows<T, 3>(p, pk, wt, nb, r0, o, accm.data()); break;
        case 2: TileRows<T, 2>(p, pk, wt, nb, r0, o, accm.data()); break;
        default: TileRows<T, 1>(p, pk, wt, nb, r0, o, accm.data()); break;
      }
    }
  }
}

// True when this file computed weight rows [o_begin, o_end) of p (MinRows or more activation rows
// of a type it handles); false leaves the call to linear_quant_kernel.h.
inline bool Run(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  const int64_t min_rows = MinRows(p.w_quant);
  if (min_rows == 0 || p.rows < min_rows) return false;
  switch (p.w_quant) {
    case QuantType::kQ8_0: GemmRows<QuantType::kQ8_0>(p, act, o_begin, o_end); return true;
    case QuantType::kQ4_0: GemmRows<QuantType::kQ4_0>(p, act, o_begin, o_end); return true;
    case QuantType::kQ4_1: GemmRows<QuantType::kQ4_1>(p, act, o_begin, o_end); return true;
    case QuantType::kQ5_0: GemmRows<QuantType::kQ5_0>(p, act, o_begin, o_end); return true;
    case QuantType::kQ5_1: GemmRows<QuantType::kQ5_1>(p, act, o_begin, o_end); return true;
    case QuantType::kIQ4_NL: GemmRows<QuantType::kIQ4_NL>(p, act, o_begin, o_end); return true;
    case QuantType::kQ2_K: GemmRows<QuantType::kQ2_K>(p, act, o_begin, o_end); return true;
    case QuantType::kQ3_K: GemmRows<QuantType::kQ3_K>(p, act, o_begin, o_end); return true;
    case QuantType::kQ4_K: GemmRows<QuantType::kQ4_K>(p, act, o_begin, o_end); return true;
    case QuantType::kQ5_K: GemmRows<QuantType::kQ5_K>(p, act, o_begin, o_end); return true;
    case QuantType::kQ6_K: GemmRows<QuantType::kQ6_K>(p, act, o_begin, o_end); return true;
    default: return false;
  }
}

}  // namespace quant_gemm
}  // namespace cpu
}  // namespace canopy
