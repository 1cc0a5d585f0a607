// The block-quantized linear layer's row loop, compiled once per ISA (included by linear_quant.cc
// for the portable and AVX2 paths and by linear_quant_vnni.cc for AVX-512 VNNI) and per block
// type (so the decoder of quant_blocks.h is specialised and inlined).
//
// 32-value blocks: a tile of 4 weight rows is decoded once (all its blocks) and every activation row
// runs over it with 4 accumulators in registers. K blocks: per weight row and group of activation
// rows, each block is decoded once into a DecodedBlock and used for every row of the group.
// Either way the arithmetic of one output element is fixed (all paths, any number of rows or
// threads; linear_quant_cpu.h states the integer parts):
//   32-value blocks: eight f32 lane accumulators; block b adds fma(P_k, d_b * da_b, acc_k) to lane k,
//     P_k the exact int32 dot of values 4k..4k+3; blocks with a min add (-m_b * da_b) * asum_b
//     to a ninth, scalar accumulator; the result is ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) + min.
//   256-value (K) blocks: one exact int32 S_b = sum_j sc_j (dot of sub-block j), and
//     acc = fma(da_b, fma(-dmin_b, Smin_b, d_b * S_b), acc).
// Isa supplies: Acc8 (8 f32 lanes), W32 and Load32<T>(block) (a 32-value block's int8 codes, as
// DecodeBlock gives them), Zero8(), Fma8(w, a, scale, acc), Sum8(acc) (in the order above),
// ScaledDot(w, a, lane_scale, n).
// (No include guard: included once per ISA, each time in its own CANOPY_QUANT_NS.)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "linear_quant_cpu.h"

namespace canopy {
namespace cpu {
namespace CANOPY_QUANT_NS {

constexpr int64_t kRowGroup = 64;

// 32-value blocks, a tile of TN weight rows: their blocks decoded once into `tile` (TN x nb codes,
// scales), then every activation row runs over them with TN accumulators in registers (each
// activation block loaded once for the TN rows). The per-output arithmetic is QuantRows's.
template <class Isa, QuantType T, int TN>
void QuantTile32(const LinearParams& p, const QuantActivations& act, int64_t o0, typename Isa::W32* tile, float* d, float* dmin) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  const int64_t nb = p.in / 32;
  const int64_t row_bytes = nb * info.bytes;
  const uint8_t* w = static_cast<const uint8_t*>(p.w);
  for (int t = 0; t < TN; ++t) {
    const uint8_t* wrow = w + (o0 + t) * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = wrow + b * info.bytes;
      tile[t * nb + b] = Isa::template Load32<T>(blk);
      // d at byte 0 and, for Q4_1 / Q5_1, m at byte 2 (dmin = -m): as DecodeBlock.
      d[t * nb + b] = LoadF16(blk);
      dmin[t * nb + b] = info.has_min ? -LoadF16(blk + 2) : 0.f;
    }
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    typename Isa::Acc8 acc[TN];
    float accm[TN];
    for (int t = 0; t < TN; ++t) {
      acc[t] = Isa::Zero8();
      accm[t] = 0.f;
    }
    const int8_t* arow = act.q.data() + r * p.in;
    const float* drow = act.d.data() + r * nb;
    const int32_t* srow = act.sum16.data() + r * (p.in / 16);
    for (int64_t b = 0; b < nb; ++b) {
      const float da = drow[b];
      for (int t = 0; t < TN; ++t) {
        Isa::Fma8(tile[t * nb + b], arow + b * 32, d[t * nb + b] * da, acc[t]);
        if constexpr (info.has_min) accm[t] = std::fma(-dmin[t * nb + b] * da, static_cast<float>(srow[2 * b] + srow[2 * b + 1]), accm[t]);
      }
    }
    for (int t = 0; t < TN; ++t) {
      float v = Isa::Sum8(acc[t]) + accm[t];
      if (p.bias) v += p.bias[o0 + t];
      float* yo = p.y + r * p.out + o0 + t;
      *yo = p.accumulate ? *yo + v : v;
    }
  }
}

template <class Isa, QuantType T>
void QuantRows32(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  constexpr int kTile = 4;
  const int64_t nb = p.in / 32;
  std::vector<typename Isa::W32> tile(static_cast<size_t>(kTile * nb));
  std::vector<float> d(static_cast<size_t>(kTile * nb)), dmin(static_cast<size_t>(kTile * nb));
  int64_t o = o_begin;
  for (; o + kTile <= o_end; o += kTile) QuantTile32<Isa, T, kTile>(p, act, o, tile.data(), d.data(), dmin.data());
  for (; o < o_end; ++o) QuantTile32<Isa, T, 1>(p, act, o, tile.data(), d.data(), dmin.data());
}

// 256-value (K) blocks: per weight row and group of up to kRowGroup activation rows, each block is
// decoded once and used for every row of the group.
template <class Isa, QuantType T>
void QuantRowsK(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  constexpr int B = info.block;
  const int64_t nb = p.in / B;
  const int64_t row_bytes = nb * info.bytes;
  const int64_t n16 = p.in / 16;
  const uint8_t* w = static_cast<const uint8_t*>(p.w);
  DecodedBlock db;
  int32_t lane_scale[B / 4];
  float acc[kRowGroup];
  for (int64_t g0 = 0; g0 < p.rows; g0 += kRowGroup) {
    const int64_t gn = std::min(p.rows, g0 + kRowGroup) - g0;
    for (int64_t o = o_begin; o < o_end; ++o) {
      std::fill(acc, acc + gn, 0.f);
      const uint8_t* wrow = w + o * row_bytes;
      for (int64_t b = 0; b < nb; ++b) {
        DecodeBlock(T, wrow + b * info.bytes, &db);
        for (int k = 0; k < B / 4; ++k) lane_scale[k] = db.sc[(4 * k) / info.sub];
        for (int64_t r = 0; r < gn; ++r) {
          const int64_t ar = g0 + r;
          const int32_t s = Isa::ScaledDot(db.q, act.q.data() + ar * p.in + b * B, lane_scale, B);
          float t = db.d * static_cast<float>(s);
          if constexpr (info.has_min) {
            const int32_t* s16 = act.sum16.data() + ar * n16 + b * (B / 16);
            constexpr int per = info.sub / 16;
            int32_t smin = 0;
            for (int j = 0; j < B / info.sub; ++j) {
              int32_t asum = 0;
              for (int k = 0; k < per; ++k) asum += s16[j * per + k];
              smin += db.mn[j] * asum;
            }
            t = std::fma(-db.dmin, static_cast<float>(smin), t);
          }
          acc[r] = std::fma(act.d[ar * nb + b], t, acc[r]);
        }
      }
      for (int64_t r = 0; r < gn; ++r) {
        float v = acc[r];
        if (p.bias) v += p.bias[o];
        float* yo = p.y + (g0 + r) * p.out + o;
        *yo = p.accumulate ? *yo + v : v;
      }
    }
  }
}

template <class Isa, QuantType T>
void QuantRows(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  if constexpr (GetQuantTypeInfoConst(T).block == 32) {
    QuantRows32<Isa, T>(p, act, o_begin, o_end);
  } else {
    QuantRowsK<Isa, T>(p, act, o_begin, o_end);
  }
}

// Runs weight rows [o_begin, o_end) for every activation row, with the type's specialisation.
template <class Isa>
void QuantRowsAnyType(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  switch (p.w_quant) {
    case QuantType::kQ8_0: return QuantRows<Isa, QuantType::kQ8_0>(p, act, o_begin, o_end);
    case QuantType::kQ4_0: return QuantRows<Isa, QuantType::kQ4_0>(p, act, o_begin, o_end);
    case QuantType::kQ4_1: return QuantRows<Isa, QuantType::kQ4_1>(p, act, o_begin, o_end);
    case QuantType::kQ5_0: return QuantRows<Isa, QuantType::kQ5_0>(p, act, o_begin, o_end);
    case QuantType::kQ5_1: return QuantRows<Isa, QuantType::kQ5_1>(p, act, o_begin, o_end);
    case QuantType::kIQ4_NL: return QuantRows<Isa, QuantType::kIQ4_NL>(p, act, o_begin, o_end);
    case QuantType::kQ2_K: return QuantRows<Isa, QuantType::kQ2_K>(p, act, o_begin, o_end);
    case QuantType::kQ3_K: return QuantRows<Isa, QuantType::kQ3_K>(p, act, o_begin, o_end);
    case QuantType::kQ4_K: return QuantRows<Isa, QuantType::kQ4_K>(p, act, o_begin, o_end);
    case QuantType::kQ5_K: return QuantRows<Isa, QuantType::kQ5_K>(p, act, o_begin, o_end);
    case QuantType::kQ6_K: return QuantRows<Isa, QuantType::kQ6_K>(p, act, o_begin, o_end);
    case QuantType::kIQ4_XS: return QuantRows<Isa, QuantType::kIQ4_XS>(p, act, o_begin, o_end);
    case QuantType::kNone: return;
  }
}

}  // namespace CANOPY_QUANT_NS
}  // namespace cpu
}  // namespace canopy
