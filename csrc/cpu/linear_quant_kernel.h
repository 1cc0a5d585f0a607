// The block-quantized linear layer's row loop, compiled once per ISA (included by linear_quant.cc
// for the portable and AVX2 paths and by linear_quant_vnni.cc for AVX-512 VNNI) and per block
// type (so the decoder of quant_blocks.h is specialised and inlined).
//
// Per weight row o and group of activation rows, each block is decoded once into a DecodedBlock
// and used for every row of the group. The arithmetic of one output element (all paths, any
// number of rows or threads; linear_quant_cpu.h states the integer parts):
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

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "linear_quant_cpu.h"

namespace canopy {
namespace cpu {
namespace CANOPY_QUANT_NS {

constexpr int64_t kRowGroup = 64;

template <class Isa, QuantType T>
void QuantRows(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  constexpr int B = info.block;
  constexpr bool kBlock32 = info.block == 32;
  const int64_t nb = p.in / B;
  const int64_t row_bytes = nb * info.bytes;
  const int64_t n16 = p.in / 16;
  const uint8_t* w = static_cast<const uint8_t*>(p.w);
  DecodedBlock db;
  int32_t lane_scale[B / 4];
  typename Isa::Acc8 acc8[kRowGroup];
  float acc[kRowGroup];
  float accm[kRowGroup];
  for (int64_t g0 = 0; g0 < p.rows; g0 += kRowGroup) {
    const int64_t g1 = std::min(p.rows, g0 + kRowGroup);
    const int64_t gn = g1 - g0;
    for (int64_t o = o_begin; o < o_end; ++o) {
      for (int64_t r = 0; r < gn; ++r) {
        acc8[r] = Isa::Zero8();
        acc[r] = 0.f;
        accm[r] = 0.f;
      }
      const uint8_t* wrow = w + o * row_bytes;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = wrow + b * info.bytes;
        if constexpr (kBlock32) {
          // d at byte 0 and, for Q4_1 / Q5_1, m at byte 2 (dmin = -m): as DecodeBlock.
          const typename Isa::W32 wq = Isa::template Load32<T>(blk);
          const float d = LoadF16(blk);
          const float dmin = info.has_min ? -LoadF16(blk + 2) : 0.f;
          for (int64_t r = 0; r < gn; ++r) {
            const int64_t ar = g0 + r;
            const float da = act.d[ar * nb + b];
            Isa::Fma8(wq, act.q.data() + ar * p.in + b * B, d * da, acc8[r]);
            if constexpr (info.has_min) {
              const int32_t* s16 = act.sum16.data() + ar * n16 + b * 2;
              accm[r] = std::fma(-dmin * da, static_cast<float>(s16[0] + s16[1]), accm[r]);
            }
          }
        } else {
          DecodeBlock(T, blk, &db);
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
      }
      for (int64_t r = 0; r < gn; ++r) {
        float v = kBlock32 ? Isa::Sum8(acc8[r]) + accm[r] : acc[r];
        if (p.bias) v += p.bias[o];
        float* yo = p.y + (g0 + r) * p.out + o;
        *yo = p.accumulate ? *yo + v : v;
      }
    }
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
