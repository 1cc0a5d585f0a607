// The block-quantized linear layer's row loop, compiled once per ISA (included by linear_quant.cc
// for the portable and AVX2 paths and by linear_quant_vnni.cc for AVX-512 VNNI) and per block
// type (so the decoder of quant_blocks.h is specialised and inlined).
//
// Two ways over a tile of 4 weight rows, with 4 accumulators in registers (each activation block
// read once for the 4 rows): decoded once into memory (all its blocks) for every activation row
// (QuantTile32, QuantTileK), or, for one row and for the few rows DirectMaxRows allows, each
// activation row dotted straight from the weight bytes, unpacked in registers (QuantTile32Row,
// QuantTileKRow: where the ISA has them, Isa::AddBlock32 for Q8_0 / Q4_0 and Isa::AddBlockQ4K /
// AddBlockQ6K for Q4_K, Q5_K, Q6_K; Q4_0 two rows per vector by Isa::AddBlockQ4_0Pairs where the
// ISA has it). RunRow is the per-output loop all of them share. A decode step (one row) also
// prefetches the next tile's bytes while a tile runs (PrefetchSlice).
// Either way the arithmetic of one output element is fixed (all paths, any number of rows or
// threads; linear_quant_cpu.h states the integer parts):
//   eight f32 lane accumulators; block b adds fma(P_k, d_b * da_b, acc_k) to lane k, with P_k the
//   exact int32 sum over the block's 32-value chunks c of sc(c, k) * (the dot of values
//   32c + 4k .. 32c + 4k + 3), sc the sub-block scale of those values (1 for 32-value blocks);
//   blocks with a min add fma(-dmin_b * da_b, Smin_b, accm) to a ninth, scalar accumulator
//   (Smin_b = sum_j m_j * (sum of the activation codes of sub-block j)); the result is
//   ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) + accm.
// Isa supplies: Acc8 (8 f32 lanes), W32 and Load32<T>(block) (a 32-value block's int8 codes, as
// DecodeBlock gives them), F16(p) (an f16 field, exactly), Zero8(), Fma8(w, a, scale, acc) (one
// 32-value chunk), FmaK(w, a, pair_scale, scale, acc) (a 256-value block), Sum8(acc) (in the order
// above), the flag kVectorDecodeK, and optionally kDirect32 / kDirectK with the direct kernels.
// (No include guard: included once per ISA, each time in its own CANOPY_QUANT_NS.)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "linear_quant_cpu.h"

namespace canopy {
namespace cpu {
namespace CANOPY_QUANT_NS {

// Isa::kDirect32 / Isa::kDirectK where the Isa states them, else false (an Isa without the direct
// kernels needs neither flag).
template <class Isa, class = void>
struct IsaDirect32 : std::false_type {};
template <class Isa>
struct IsaDirect32<Isa, std::void_t<decltype(Isa::kDirect32)>> : std::bool_constant<Isa::kDirect32> {};
template <class Isa, class = void>
struct IsaPaired32 : std::false_type {};
template <class Isa>
struct IsaPaired32<Isa, std::void_t<decltype(Isa::kPaired32)>> : std::bool_constant<Isa::kPaired32> {};
template <class Isa, class = void>
struct IsaDirectK : std::false_type {};
template <class Isa>
struct IsaDirectK<Isa, std::void_t<decltype(Isa::kDirectK)>> : std::bool_constant<Isa::kDirectK> {};

// Software prefetch of the next tile's weight bytes while a tile runs (GEMV: the bytes of the TN
// rows of a tile are contiguous, and so are the next tile's): block b of the current tile touches
// the next tile's bytes [b * kSlice, (b + 1) * kSlice), kSlice = TN * block bytes, so the next tile
// is in cache, in order, when it starts. The rows of one tile are TN short streams that the
// hardware prefetchers pick up late; this turns the whole range into one stream read ahead.
// (Prefetches never fault, so the last tile may prefetch past the matrix.)
template <int64_t kSlice>
inline void PrefetchSlice(const uint8_t* next_tile, int64_t b) {
  const uint8_t* p = next_tile + b * kSlice;
  for (int64_t off = 0; off < kSlice; off += 64) __builtin_prefetch(p + off, 0, 3);
}

// One activation row r over TN weight rows from o0: the per-output arithmetic every kernel shares.
// TN lane accumulators and TN min accumulators start at zero; add_block(b, acc, accm) adds block b
// (b = 0..nb-1 in order); then each output is Sum8(acc) + accm (+ bias), stored or accumulated.
template <class Isa, int TN, class AddBlock>
inline void RunRow(const LinearParams& p, int64_t r, int64_t o0, int64_t nb, AddBlock&& add_block) {
  typename Isa::Acc8 acc[TN];
  float accm[TN];
  for (int t = 0; t < TN; ++t) {
    acc[t] = Isa::Zero8();
    accm[t] = 0.f;
  }
  for (int64_t b = 0; b < nb; ++b) add_block(b, acc, accm);
  for (int t = 0; t < TN; ++t) {
    float v = Isa::Sum8(acc[t]) + accm[t];
    if (p.bias) v += p.bias[o0 + t];
    float* yo = p.y + r * p.out + o0 + t;
    *yo = p.accumulate ? *yo + v : v;
  }
}

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
      d[t * nb + b] = Isa::F16(blk);
      dmin[t * nb + b] = info.has_min ? -Isa::F16(blk + 2) : 0.f;
    }
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    const int8_t* arow = act.q.data() + r * p.in;
    const float* drow = act.d.data() + r * nb;
    const int32_t* srow = act.sum16.data() + r * (p.in / 16);
    RunRow<Isa, TN>(p, r, o0, nb, [&](int64_t b, typename Isa::Acc8* acc, float* accm) {
      const float da = drow[b];
      for (int t = 0; t < TN; ++t) {
        Isa::Fma8(tile[t * nb + b], arow + b * 32, d[t * nb + b] * da, acc[t]);
        if constexpr (info.has_min) accm[t] = std::fma(-dmin[t * nb + b] * da, static_cast<float>(srow[2 * b] + srow[2 * b + 1]), accm[t]);
      }
    });
  }
}

// One activation row r (a decode step, or each row of a few): the TN weight rows' blocks are unpacked in registers as they
// are used, with no tile in memory (the same arithmetic as QuantTile32).
template <class Isa, QuantType T, int TN>
void QuantTile32Row(const LinearParams& p, const QuantActivations& act, int64_t r, int64_t o0, const uint8_t* pf = nullptr) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  const int64_t nb = p.in / 32;
  const int64_t row_bytes = nb * info.bytes;
  const uint8_t* w = static_cast<const uint8_t*>(p.w) + o0 * row_bytes;
  const int8_t* arow = act.q.data() + r * p.in;
  const float* drow = act.d.data() + r * nb;
  const int32_t* srow = act.sum16.data() + r * (p.in / 16);
  if constexpr (IsaPaired32<Isa>::value && T == QuantType::kQ4_0 && TN % 2 == 0) {
    // Q4_0, two rows per vector (Isa::AddBlockQ4_0Pairs), then RunRow's per-output steps.
    typename Isa::Acc8 acc[TN];
    for (int t = 0; t < TN; ++t) acc[t] = Isa::Zero8();
    for (int64_t b = 0; b < nb; ++b) {
      if (pf) PrefetchSlice<TN * info.bytes>(pf, b);
      const uint8_t* blk[TN];
      for (int t = 0; t < TN; ++t) blk[t] = w + t * row_bytes + b * info.bytes;
      Isa::template AddBlockQ4_0Pairs<TN>(blk, arow + b * 32, drow[b], acc);
    }
    Isa::template UnpairAcc<TN>(acc);
    for (int t = 0; t < TN; ++t) {
      float v = Isa::Sum8(acc[t]) + 0.f;  // + accm, 0 for Q4_0 (kept: -0 + 0 is +0, as RunRow gives)
      if (p.bias) v += p.bias[o0 + t];
      float* yo = p.y + r * p.out + o0 + t;
      *yo = p.accumulate ? *yo + v : v;
    }
    return;
  }
  RunRow<Isa, TN>(p, r, o0, nb, [&](int64_t b, typename Isa::Acc8* acc, float* accm) {
    if (pf) PrefetchSlice<TN * info.bytes>(pf, b);
    const float da = drow[b];
    if constexpr (IsaDirect32<Isa>::value && (T == QuantType::kQ8_0 || T == QuantType::kQ4_0)) {
      const uint8_t* blk[TN];
      for (int t = 0; t < TN; ++t) blk[t] = w + t * row_bytes + b * info.bytes;
      Isa::template AddBlock32<T, TN>(blk, arow + b * 32, da, acc);
      return;
    }
    for (int t = 0; t < TN; ++t) {
      const uint8_t* blk = w + t * row_bytes + b * info.bytes;
      const float d = Isa::F16(blk);
      Isa::Fma8(Isa::template Load32<T>(blk), arow + b * 32, d * da, acc[t]);
      if constexpr (info.has_min) {
        const float dmin = -Isa::F16(blk + 2);
        accm[t] = std::fma(-dmin * da, static_cast<float>(srow[2 * b] + srow[2 * b + 1]), accm[t]);
      }
    }
  });
}

// Up to how many activation rows the types the ISA dots straight from their bytes (AddBlock32,
// AddBlockQ4K / Q6K) run row by row over each tile of weight rows (its bytes stay in L1) rather than
// through a decoded tile. Measured (2048 x 256, one thread, AVX-512 VNNI and AVX2 Xeon): Q8_0 and Q4_K
// are faster direct up to 64 rows, Q5_K up to 16, Q4_0 and Q6_K up to 4 (their unpacking is then
// worth sharing).
// Either way gives the same bits.
constexpr int64_t DirectMaxRows(QuantType t) {
  return t == QuantType::kQ8_0 || t == QuantType::kQ4_K ? 64 : t == QuantType::kQ5_K || t == QuantType::kIQ4_XS ? 16 : t == QuantType::kQ4_0 || t == QuantType::kQ6_K ? 4 : 1;
}

template <class Isa, QuantType T>
void QuantRows32(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  constexpr int kTile = 4;
  if (p.rows == 1 || (IsaDirect32<Isa>::value && p.rows <= DirectMaxRows(T))) {
    int64_t o = o_begin;
    const int64_t row_bytes = p.in / 32 * GetQuantTypeInfoConst(T).bytes;
    const uint8_t* w = static_cast<const uint8_t*>(p.w);
    if constexpr (IsaPaired32<Isa>::value && T == QuantType::kQ4_0) {
      if constexpr (Isa::kPaired32Wide) {
        // Q4_0 in pairs of rows: 8 rows per tile share the block's activation work (the VNNI
        // target has 32 vector registers for the 8 accumulators).
        constexpr int kWide = 8;
        for (; o + kWide <= o_end; o += kWide) {
          const uint8_t* pf = p.rows == 1 && o + 2 * kWide <= p.out ? w + (o + kWide) * row_bytes : nullptr;
          for (int64_t r = 0; r < p.rows; ++r) QuantTile32Row<Isa, T, kWide>(p, act, r, o, pf);
        }
      }
    }
    for (; o + kTile <= o_end; o += kTile) {
      const uint8_t* pf = p.rows == 1 && o + 2 * kTile <= p.out ? w + (o + kTile) * row_bytes : nullptr;
      for (int64_t r = 0; r < p.rows; ++r) QuantTile32Row<Isa, T, kTile>(p, act, r, o, pf);
    }
    for (; o < o_end; ++o)
      for (int64_t r = 0; r < p.rows; ++r) QuantTile32Row<Isa, T, 1>(p, act, r, o);
    return;
  }
  const int64_t nb = p.in / 32;
  std::vector<typename Isa::W32> tile(static_cast<size_t>(kTile * nb));
  std::vector<float> d(static_cast<size_t>(kTile * nb)), dmin(static_cast<size_t>(kTile * nb));
  int64_t o = o_begin;
  for (; o + kTile <= o_end; o += kTile) QuantTile32<Isa, T, kTile>(p, act, o, tile.data(), d.data(), dmin.data());
  for (; o < o_end; ++o) QuantTile32<Isa, T, 1>(p, act, o, tile.data(), d.data(), dmin.data());
}

// A K block decoded for the tile: codes, the sub-block scale of each pair of values (as int16 lanes
// for pmaddwd), mins, factors.
struct KBlock {
  int8_t q[256];
  int16_t pair_scale[128];
  int16_t mn[16];
  float d, dmin;
};

// 256-value (K) blocks, a tile of TN weight rows decoded once (as QuantTile32).
template <class Isa, QuantType T, int TN>
void QuantTileK(const LinearParams& p, const QuantActivations& act, int64_t o0, KBlock* tile) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  const int64_t nb = p.in / 256;
  const int64_t row_bytes = nb * info.bytes;
  const int64_t n16 = p.in / 16;
  const uint8_t* w = static_cast<const uint8_t*>(p.w);
  DecodedBlock db;
  for (int t = 0; t < TN; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = w + (o0 + t) * row_bytes + b * info.bytes;
      KBlock& kb = tile[t * nb + b];
      if constexpr (Isa::kVectorDecodeK && T == QuantType::kQ4_K) {
        // The codes unpacked by the ISA; scales, mins and factors as DecodeBlock.
        Isa::DecodeQ4KCodes(blk + 16, kb.q);
        for (int j = 0; j < 8; ++j) {
          int sc, m;
          ScaleMinK4(j, blk + 4, &sc, &m);
          for (int k = 0; k < 16; ++k) kb.pair_scale[16 * j + k] = static_cast<int16_t>(sc);
          kb.mn[j] = static_cast<int16_t>(m);
        }
        kb.d = Isa::F16(blk);
        kb.dmin = Isa::F16(blk + 2);
      } else if constexpr (Isa::kVectorDecodeK && T == QuantType::kQ6_K) {
        Isa::DecodeQ6KCodes(blk, blk + 128, kb.q);
        for (int j = 0; j < 16; ++j) {
          for (int k = 0; k < 8; ++k) kb.pair_scale[8 * j + k] = static_cast<int8_t>(blk[192 + j]);
          kb.mn[j] = 0;
        }
        kb.d = Isa::F16(blk + 208);
        kb.dmin = 0.f;
      } else {
        DecodeBlock(T, blk, &db);
        std::copy(db.q, db.q + 256, kb.q);
        for (int k = 0; k < 128; ++k) kb.pair_scale[k] = db.sc[(2 * k) / info.sub];
        std::copy(db.mn, db.mn + 16, kb.mn);
        kb.d = db.d;
        kb.dmin = db.dmin;
      }
    }
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    const int8_t* arow = act.q.data() + r * p.in;
    const float* drow = act.d.data() + r * nb;
    const int32_t* srow = act.sum16.data() + r * n16;
    RunRow<Isa, TN>(p, r, o0, nb, [&](int64_t b, typename Isa::Acc8* acc, float* accm) {
      const float da = drow[b];
      for (int t = 0; t < TN; ++t) {
        const KBlock& kb = tile[t * nb + b];
        Isa::FmaK(kb.q, arow + b * 256, kb.pair_scale, kb.d * da, acc[t]);
        if constexpr (info.has_min) {
          constexpr int per = info.sub / 16;
          int32_t smin = 0;
          for (int j = 0; j < 256 / info.sub; ++j) {
            int32_t asum = 0;
            for (int k = 0; k < per; ++k) asum += srow[b * 16 + j * per + k];
            smin += kb.mn[j] * asum;
          }
          accm[t] = std::fma(-kb.dmin * da, static_cast<float>(smin), accm[t]);
        }
      }
    });
  }
}

// One activation row (a decode step) over K blocks, for the types the ISA dots straight from their
// bytes (Isa::AddBlockQ4K for Q4_K / Q5_K, AddBlockQ6K): no tile in memory, the same arithmetic as QuantTileK.
template <class Isa, QuantType T, int TN>
void QuantTileKRow(const LinearParams& p, const QuantActivations& act, int64_t r, int64_t o0, const uint8_t* pf = nullptr) {
  constexpr QuantTypeInfo info = GetQuantTypeInfoConst(T);
  const int64_t nb = p.in / 256;
  const int64_t row_bytes = nb * info.bytes;
  const uint8_t* w = static_cast<const uint8_t*>(p.w) + o0 * row_bytes;
  RunRow<Isa, TN>(p, r, o0, nb, [&](int64_t b, typename Isa::Acc8* acc, float* accm) {
    if (pf) PrefetchSlice<TN * info.bytes>(pf, b);
    const uint8_t* blk[TN];
    for (int t = 0; t < TN; ++t) blk[t] = w + t * row_bytes + b * info.bytes;
    const int8_t* a = act.q.data() + r * p.in + b * 256;
    const int32_t* s16 = act.sum16.data() + (r * nb + b) * 16;
    if constexpr (T == QuantType::kQ4_K || T == QuantType::kQ5_K) {
      Isa::template AddBlockQ4K<TN, T == QuantType::kQ5_K>(blk, a, s16, act.d[r * nb + b], acc, accm);
    } else if constexpr (T == QuantType::kIQ4_XS) {
      Isa::template AddBlockIQ4XS<TN>(blk, a, s16, act.d[r * nb + b], acc, accm);
    } else {
      Isa::template AddBlockQ6K<TN>(blk, a, s16, act.d[r * nb + b], acc, accm);
    }
  });
}

template <class Isa, QuantType T>
void QuantRowsK(const LinearParams& p, const QuantActivations& act, int64_t o_begin, int64_t o_end) {
  constexpr int kTile = 4;
  if constexpr (IsaDirectK<Isa>::value && (T == QuantType::kQ4_K || T == QuantType::kQ5_K || T == QuantType::kQ6_K || T == QuantType::kIQ4_XS)) {
    if (p.rows <= DirectMaxRows(T)) {
      int64_t o = o_begin;
      const int64_t row_bytes = p.in / 256 * GetQuantTypeInfoConst(T).bytes;
      const uint8_t* w = static_cast<const uint8_t*>(p.w);
      for (; o + kTile <= o_end; o += kTile) {
        const uint8_t* pf = p.rows == 1 && o + 2 * kTile <= p.out ? w + (o + kTile) * row_bytes : nullptr;
        for (int64_t r = 0; r < p.rows; ++r) QuantTileKRow<Isa, T, kTile>(p, act, r, o, pf);
      }
      for (; o < o_end; ++o)
        for (int64_t r = 0; r < p.rows; ++r) QuantTileKRow<Isa, T, 1>(p, act, r, o);
      return;
    }
  }
  const int64_t nb = p.in / 256;
  std::vector<KBlock> tile(static_cast<size_t>(kTile * nb));
  int64_t o = o_begin;
  for (; o + kTile <= o_end; o += kTile) QuantTileK<Isa, T, kTile>(p, act, o, tile.data());
  for (; o < o_end; ++o) QuantTileK<Isa, T, 1>(p, act, o, tile.data());
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
