// Inner tiles of the CPU flash-attention kernel, written as fixed-size loops
// that the compiler vectorises. Included by attention.cc for the baseline
// (x86: AVX2 + FMA + F16C; elsewhere generic 256-bit vectors, CANOPY_CPU_ISA=
// portable on aarch64), by attention_avx512.cc under an AVX-512 target and by
// attention_neon.cc with 128-bit NEON vectors (aarch64), each in its own
// namespace (CANOPY_TILE_NS); attention.cc picks one at run time from the CPU
// features.
//
// Formulation ("key-major"): the query tile is transposed once, and every block
// of kBc keys is scored as St = Kblock * Qt, so K rows are read in place
// (contiguous, no transpose of the cache) and the softmax bookkeeping runs
// across query rows in vector lanes.
//   Qt [D][Rp]     the tile's queries (R rows = tokens x qo heads of one kv head),
//                  transposed and pre-multiplied by the softmax scale; Rp pads R
//   K  rows        kBc keys of D floats, row stride ks (the cache itself for f32)
//   St [kBc][Rp]   scores, then probabilities
//   V  rows        kBc values of D floats, row stride vs
//   O  [Rp][D]     running (unnormalised) output
//
// Everything here has internal linkage (anonymous namespace) and uses no std
// templates: the AVX-512 copy must never be merged by the linker with the
// baseline copy of the same inline function. No include guard on purpose.

#if defined(__F16C__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common/attention.h"
#include "attention_cpu.h"

namespace canopy {
namespace cpu {
namespace {
namespace CANOPY_TILE_NS {

constexpr int kBc = kAttentionBlockKeys;  // keys per block

inline int64_t Min64(int64_t a, int64_t b) { return a < b ? a : b; }

#include "simd_tiles.h"

// St[j][r0 .. r0 + kColVecs*kLanes) for 4 keys at a time:
//   acc[i][c] += K[j+i][d] * Qt[d][r0 + c*kLanes ..]   (4 x kColVecs vector accumulators)
template <int kColVecs>
inline void ScoreBlock(const float* __restrict K, int64_t ks, const float* __restrict Qt, float* __restrict St, int Rp,
                       int D, int nb) {
  constexpr int kCols = kColVecs * kLanes;
  for (int j = 0; j < nb; j += 4) {
    const float* k0 = K + j * ks;
    const float* k1 = j + 1 < nb ? k0 + ks : k0;  // past nb: recompute a valid row, result unused
    const float* k2 = j + 2 < nb ? k0 + 2 * ks : k0;
    const float* k3 = j + 3 < nb ? k0 + 3 * ks : k0;
    for (int r0 = 0; r0 < Rp; r0 += kCols) {
      VecF a0[kColVecs], a1[kColVecs], a2[kColVecs], a3[kColVecs];
#pragma GCC unroll 8
      for (int c = 0; c < kColVecs; ++c) a0[c] = a1[c] = a2[c] = a3[c] = VecF{};
      const float* qt = Qt + r0;
      for (int d = 0; d < D; ++d, qt += Rp) {
        const VecF b0 = Splat(k0[d]), b1 = Splat(k1[d]), b2 = Splat(k2[d]), b3 = Splat(k3[d]);
#pragma GCC unroll 8
        for (int c = 0; c < kColVecs; ++c) {
          const VecF q = LoadU(qt + c * kLanes);
          a0[c] += b0 * q;
          a1[c] += b1 * q;
          a2[c] += b2 * q;
          a3[c] += b3 * q;
        }
      }
      float* out = St + j * Rp + r0;
#pragma GCC unroll 8
      for (int c = 0; c < kColVecs; ++c) {
        StoreU(out + c * kLanes, a0[c]);
        if (j + 1 < nb) StoreU(out + Rp + c * kLanes, a1[c]);
        if (j + 2 < nb) StoreU(out + 2 * Rp + c * kLanes, a2[c]);
        if (j + 3 < nb) StoreU(out + 3 * Rp + c * kLanes, a3[c]);
      }
    }
  }
}

// Narrow tiles (R <= 16 rows, decode): St[j][r] = <K[j], Q[r]> with vectors along head_dim
// (K rows read contiguously, Q row-major [Rp][D]), 4 query rows at a time, then one
// horizontal sum per score. Far fewer instructions than broadcasting K elements when R is
// smaller than a vector.
inline void ScoreNarrow(const float* __restrict K, int64_t ks, const float* __restrict Q, float* __restrict St, int R,
                        int Rp, int D, int nb) {
  for (int j = 0; j < nb; ++j) {
    const float* k = K + j * ks;
    for (int r = 0; r < R; r += 4) {
      const float* q0 = Q + r * D;
      VecF a0 = VecF{}, a1 = VecF{}, a2 = VecF{}, a3 = VecF{};
      for (int d = 0; d < D; d += kLanes) {
        const VecF kv = LoadU(k + d);
        a0 += kv * LoadU(q0 + d);
        a1 += kv * LoadU(q0 + D + d);
        a2 += kv * LoadU(q0 + 2 * D + d);
        a3 += kv * LoadU(q0 + 3 * D + d);
      }
      HSum4(a0, a1, a2, a3, St + j * Rp + r);
    }
  }
}

// O[r][:] += sum_j St[j][r] * V[j][:], kRows rows and kChunkVecs vectors of dims at a time.
template <int kRows, int kChunkVecs>
inline void AccumulateValues(const float* __restrict St, const float* __restrict V, int64_t vs, float* __restrict O,
                             int R, int Rp, int D, int nb) {
  constexpr int kChunk = kChunkVecs * kLanes;
  // Rows [R, Rp) are padding: skip whole kRows groups past R (Rp is a multiple of kRows).
  for (int r = 0; r < R; r += kRows) {
    for (int d0 = 0; d0 < D; d0 += kChunk) {
      VecF acc[kRows][kChunkVecs];
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 8
        for (int c = 0; c < kChunkVecs; ++c) acc[i][c] = LoadU(O + (r + i) * D + d0 + c * kLanes);
      for (int j = 0; j < nb; ++j) {
        const float* v = V + j * vs + d0;
        const float* pj = St + j * Rp + r;
        VecF vv[kChunkVecs];
#pragma GCC unroll 8
        for (int c = 0; c < kChunkVecs; ++c) vv[c] = LoadU(v + c * kLanes);
#pragma GCC unroll 8
        for (int i = 0; i < kRows; ++i) {
          // A key with probability 0 (masked: causal, tree, or a row that sees nothing) adds
          // nothing, even when its value holds Inf or NaN (0 * NaN would be NaN): a rejected
          // draft node's broken value must not reach its siblings.
          if (pj[i] == 0.f) continue;
          const VecF pv = Splat(pj[i]);
#pragma GCC unroll 8
          for (int c = 0; c < kChunkVecs; ++c) acc[i][c] += pv * vv[c];
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 8
        for (int c = 0; c < kChunkVecs; ++c) StoreU(O + (r + i) * D + d0 + c * kLanes, acc[i][c]);
    }
  }
}

// x[i] = exp(x[i]) for n floats, -inf (and anything below -87.3) gives 0. Cody-Waite range
// reduction exp(x) = 2^k exp(f), |f| <= ln2/2, and a degree-6 polynomial: relative error
// below 2e-7 (about 2 ulp) for x <= 0, the only range used here.
inline void ExpInPlace(float* __restrict x, int n) {
  for (int i = 0; i < n; ++i) {
    const float in = x[i];
    const float v = in < -87.3f ? -87.3f : in;
    // A NaN score (NaN inputs, or lanes a tile does not use) must stay NaN without undefined
    // behaviour: converting NaN to int32 is UB (UBSan: "left shift of negative value"), so the
    // exponent k is taken as 0 for NaN (p is NaN then anyway) and kept in [-126, 127].
    const float k = std::nearbyint(v * 1.44269504088896341f);
    const int32_t ki = k == k ? static_cast<int32_t>(std::fmin(k, 127.f)) : 0;
    const float f = (v - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;
    float p = 1.f / 720.f;
    p = p * f + 1.f / 120.f;
    p = p * f + 1.f / 24.f;
    p = p * f + 1.f / 6.f;
    p = p * f + 0.5f;
    p = p * f + 1.f;
    p = p * f + 1.f;
    const int32_t bits = static_cast<int32_t>(static_cast<uint32_t>(ki + 127) << 23);
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    x[i] = in < -87.3f ? 0.f : p * scale;
  }
}

// Widens n elements of f16 / bf16 to f32 (exact: F16C is part of the x86 baseline, fcvtl of
// aarch64's; n is a multiple of 4 on aarch64, of 8 on x86: D is a multiple of the tile lanes).
inline void WidenRow(const void* src, DType t, float* __restrict dst, int n) {
  if (t == DType::kF16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
#if defined(__F16C__)
    for (int i = 0; i < n; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#elif defined(__aarch64__)
    for (int i = 0; i < n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s + i))));
#else
    for (int i = 0; i < n; ++i) dst[i] = LoadAsF32(s, DType::kF16, i);
#endif
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (int i = 0; i < n; ++i) {
      const uint32_t bits = static_cast<uint32_t>(s[i]) << 16;
      std::memcpy(dst + i, &bits, sizeof bits);
    }
  }
}

// The e4m3 decoding table (fp8 caches; exact, 256 entries).
inline const float* Fp8Table() {
  static const float* table = [] {
    static float t[256];
    for (int i = 0; i < 256; ++i) t[i] = E4M3ToF32(static_cast<uint8_t>(i));
    return t;
  }();
  return table;
}

// Dequantizes position j of sequence b of a quantized cache (kv heads [h0, h0 + nh)) into f32
// rows kout, vout of nh * D floats: the block-sized, L1-resident load of a tile (the cache
// itself is never rewritten). Same math as LoadQuantKv (kv_quant.h), vectorised along D.
inline void DequantRow(const AttentionParams& p, int b, int64_t j, int h0, int nh, float* __restrict kout,
                       float* __restrict vout) {
  const QuantKvCache& c = *p.kv_quant;
  const int D = p.head_dim, H = c.num_kv_heads;
  if (c.format == KvFormat::kInt4 && p.kv_quant_lens != nullptr && j >= p.kv_quant_lens[b]) {
    // A residual key: the 16-bit (or f32) ring row.
    const int64_t off = ((p.kv_res_start[b] + j % c.ring) * H + h0) * D;
    const int n = nh * D;
    if (c.res_dtype == DType::kF32) {
      std::memcpy(kout, static_cast<const float*>(c.res_k) + off, n * sizeof(float));
      std::memcpy(vout, static_cast<const float*>(c.res_v) + off, n * sizeof(float));
    } else {
      WidenRow(static_cast<const uint16_t*>(c.res_k) + off, c.res_dtype, kout, n);
      WidenRow(static_cast<const uint16_t*>(c.res_v) + off, c.res_dtype, vout, n);
    }
    return;
  }
  const int64_t row = p.kv_indptr[b] + j;
  for (int hh = 0; hh < nh; ++hh) {
    const int64_t rh = row * H + h0 + hh;
    float* __restrict ko = kout + hh * D;
    float* __restrict vo = vout + hh * D;
    if (c.format == KvFormat::kInt8) {
      const int8_t* kq = static_cast<const int8_t*>(c.k) + rh * D;
      const int8_t* vq = static_cast<const int8_t*>(c.v) + rh * D;
      const float ks = c.k_scale[rh], vs = c.v_scale[rh];
      for (int d = 0; d < D; ++d) ko[d] = static_cast<float>(kq[d]) * ks;
      for (int d = 0; d < D; ++d) vo[d] = static_cast<float>(vq[d]) * vs;
    } else if (c.format == KvFormat::kFp8) {
      const uint8_t* kq = static_cast<const uint8_t*>(c.k) + rh * D;
      const uint8_t* vq = static_cast<const uint8_t*>(c.v) + rh * D;
      const float ks = c.k_scale[rh], vs = c.v_scale[rh];
      const float* lut = Fp8Table();
      for (int d = 0; d < D; ++d) ko[d] = lut[kq[d]] * ks;
      for (int d = 0; d < D; ++d) vo[d] = lut[vq[d]] * vs;
    } else {
      const uint8_t* kq = static_cast<const uint8_t*>(c.k) + rh * (D / 2);
      const uint8_t* vq = static_cast<const uint8_t*>(c.v) + rh * (D / 2);
      const int64_t pk = ((row / c.group) * H + h0 + hh) * D;
      const float* __restrict kscale = c.k_scale + pk;
      const float* __restrict kzero = c.k_zero + pk;
      const float vs = c.v_scale[rh], vz = c.v_zero[rh];
      for (int d = 0; d < D / 2; ++d) {
        const uint32_t kb = kq[d], vb = vq[d];
        ko[2 * d] = static_cast<float>(kb & 15u) * kscale[2 * d] + kzero[2 * d];
        ko[2 * d + 1] = static_cast<float>(kb >> 4) * kscale[2 * d + 1] + kzero[2 * d + 1];
        vo[2 * d] = static_cast<float>(vb & 15u) * vs + vz;
        vo[2 * d + 1] = static_cast<float>(vb >> 4) * vs + vz;
      }
    }
  }
}

// Whether these tiles handle head_dim D (vectors run along head_dim in places).
inline bool SupportsHeadDim(int D) { return D % kLanes == 0; }

// Processes one work item (see attention_cpu.h): the queries [t0, t1) of sequence b for
// the kv heads [h0, h1) against keys [k0, k1). Heads are the inner loop so one block of
// keys is read as a single contiguous stretch of the cache (all heads of those keys).
template <int kColVecs, int kRows, int kChunkVecs>
void RunWorkItem(const AttentionParams& p, const AttentionWorkItem& w, const uint32_t* tree_mask, int32_t mask_words,
                 const AttentionTileOutput& out, const AttentionScratch& sc) {
  const int D = p.head_dim;
  const int G = p.num_qo_heads / p.num_kv_heads;
  const int Hq = p.num_qo_heads, Hkv = p.num_kv_heads;
  const int nh = w.h1 - w.h0;
  const int64_t qo_start = p.qo_indptr[w.b];
  const int64_t qo_len = p.qo_indptr[w.b + 1] - qo_start;
  const int64_t kv_len = KvLen(p, w.b);
  const int64_t kv_start = p.kv_indptr[w.b];
  const int64_t prefix = kv_len - qo_len;  // causal offset / tree prefix length
  const int R = (w.t1 - w.t0) * G;         // query rows per head
  // Rows padded to the score tile width: 16 for small tiles (decode: one token's group of
  // heads), kCols otherwise. kRows (the value tile height) divides both.
  constexpr int kCols = kColVecs * kLanes;
  const bool narrow = R <= 16;
  const int step = narrow ? 16 : kCols;
  const int Rp = (R + step - 1) / step * step;
  const int64_t qo_stride = static_cast<int64_t>(Rp) * D;  // per-head state strides in scratch

  for (int64_t i = 0; i < qo_stride * nh; ++i) sc.q[i] = sc.o[i] = 0.f;
  for (int64_t r = 0; r < static_cast<int64_t>(Rp) * nh; ++r) {
    sc.m[r] = -INFINITY;
    sc.l[r] = 0.f;
  }
  // Queries: transposed [D][Rp] for wide tiles, row-major [Rp][D] for narrow ones (ScoreNarrow).
  for (int hh = 0; hh < nh; ++hh) {
    float* Qt = sc.q + hh * qo_stride;
    for (int r = 0; r < R; ++r) {
      const int64_t row = qo_start + w.t0 + r / G;
      const int hq = (w.h0 + hh) * G + r % G;
      const int64_t base = (row * Hq + hq) * D;
      for (int d = 0; d < D; ++d) Qt[narrow ? r * D + d : d * Rp + r] = LoadAsF32(p.q, p.dtype, base + d) * p.scale;
    }
  }

  const int64_t row_stride = static_cast<int64_t>(Hkv) * D;  // between consecutive keys in the cache
  const int64_t span = static_cast<int64_t>(nh) * D;          // the item's heads within one key row
  const int64_t st_stride = static_cast<int64_t>(kBc) * Rp;   // per-head score blocks
  int64_t k_end = w.k1;
  if (p.mask == MaskMode::kCausal) k_end = Min64(k_end, prefix + w.t1);  // later keys are invisible to the tile
  // Sliding window (p.q_pos is resolved by the caller whenever window > 0): keys older than the
  // window of the tile's earliest query are invisible to every row, so the tile starts after them.
  const bool windowed = p.window > 0;
  const int64_t kv_pos0 = p.kv_pos ? p.kv_pos[w.b] : 0;
  int64_t k_begin = w.k0;
  if (windowed) {
    int64_t min_pos = p.q_pos[qo_start + w.t0];
    for (int t = w.t0; t < w.t1; ++t) min_pos = Min64(min_pos, p.q_pos[qo_start + t]);
    int64_t lb = min_pos - p.window + 1 - kv_pos0;      // first key (by index) inside that window
    if (p.mask == MaskMode::kTree) lb = Min64(lb, prefix);  // tree nodes sit at their own positions
    if (lb > k_begin) k_begin = lb;
  }
  for (int64_t j0 = k_begin; j0 < k_end; j0 += kBc) {
    const int nb = static_cast<int>(Min64(kBc, k_end - j0));
    const int64_t block_first = (kv_start + j0) * row_stride + static_cast<int64_t>(w.h0) * D;
    // The block's keys and values as f32 rows of `span` floats, `ks` apart: the cache itself
    // for f32, widened copies for f16 / bf16, dequantized copies for quantized caches.
    const float *Kb, *Vb;
    int64_t ks;
    if (p.kv_quant != nullptr) {
      for (int j = 0; j < nb; ++j) DequantRow(p, w.b, j0 + j, w.h0, nh, sc.kt + j * span, sc.v + j * span);
      Kb = sc.kt;
      Vb = sc.v;
      ks = span;
    } else if (p.dtype == DType::kF32) {
      Kb = static_cast<const float*>(p.k) + block_first;
      Vb = static_cast<const float*>(p.v) + block_first;
      ks = row_stride;
    } else {
      for (int j = 0; j < nb; ++j) {
        WidenRow(static_cast<const uint16_t*>(p.k) + block_first + j * row_stride, p.dtype, sc.kt + j * span, static_cast<int>(span));
        WidenRow(static_cast<const uint16_t*>(p.v) + block_first + j * row_stride, p.dtype, sc.v + j * span, static_cast<int>(span));
      }
      Kb = sc.kt;
      Vb = sc.v;
      ks = span;
    }

    // Scores. Narrow tiles (decode) walk the block key by key across all heads, so the cache
    // is read in address order; while at it they prefetch each key's values into L2 for the
    // value pass below (which reads them head by head).
    if (narrow) {
      for (int j = 0; j < nb; ++j) {
        const float* krow = Kb + j * ks;
        PrefetchRows(reinterpret_cast<const char*>(Vb + j * ks), 0, 1, static_cast<int>(span * sizeof(float)));
        for (int hh = 0; hh < nh; ++hh) {
          ScoreNarrow(krow + hh * D, 0, sc.q + hh * qo_stride, sc.s + hh * st_stride + j * Rp, R, Rp, D, 1);
        }
      }
    } else {
      for (int hh = 0; hh < nh; ++hh) ScoreBlock<kColVecs>(Kb + hh * D, ks, sc.q + hh * qo_stride, sc.s + hh * st_stride, Rp, D, nb);
    }

    for (int hh = 0; hh < nh; ++hh) {
      float* O = sc.o + hh * qo_stride;
      float* M = sc.m + hh * Rp;
      float* L = sc.l + hh * Rp;
      float* St = sc.s + hh * st_stride;
      const float* V = Vb + hh * D;
      int64_t vs = ks;
      if (!narrow && p.kv_quant == nullptr && p.dtype == DType::kF32) {
        // Wide tiles read V once per group of query rows: pack the rows so those passes stay
        // within a few pages (one head's rows are Hkv*D floats apart: a page each).
        for (int j = 0; j < nb; ++j) std::memcpy(sc.vpack + j * D, V + j * ks, D * sizeof(float));
        V = sc.vpack;
        vs = D;
      }

      // Soft-capping: s <- cap * tanh(s / cap), before the mask (masked scores become -inf below).
      if (p.softcap > 0.f) {
        const float cap = p.softcap;
        for (int j = 0; j < nb; ++j) {
          float* srow = St + j * Rp;
          for (int r = 0; r < R; ++r) srow[r] = cap * std::tanh(srow[r] / cap);
        }
      }

      // Mask (per key row, across query rows).
      if (p.mask == MaskMode::kCausal) {
        for (int j = 0; j < nb; ++j) {
          // Row r (token t = w.t0 + r / G) sees key j0 + j iff j0 + j <= prefix + t.
          const int64_t first_row = (j0 + j - prefix - w.t0) * G;  // rows below this are masked
          float* srow = St + j * Rp;
          for (int r = 0; r < R && r < first_row; ++r) srow[r] = -INFINITY;
        }
      } else if (p.mask == MaskMode::kTree) {
        for (int j = 0; j < nb; ++j) {
          const int64_t node = j0 + j - prefix;
          if (node < 0) continue;  // prefix keys are visible to every node
          float* srow = St + j * Rp;
          for (int r = 0; r < R; ++r) {
            const uint32_t* bits = tree_mask + (qo_start + w.t0 + r / G) * mask_words;
            if (!((bits[node >> 5] >> (node & 31)) & 1u)) srow[r] = -INFINITY;
          }
        }
      }
      if (windowed) {  // on top of the mask: pos(query) - pos(key) < window
        for (int j = 0; j < nb; ++j) {
          const int64_t key = j0 + j;
          const int64_t kpos = p.mask == MaskMode::kTree && key >= prefix ? p.q_pos[qo_start + key - prefix] : kv_pos0 + key;
          float* srow = St + j * Rp;
          for (int r = 0; r < R; ++r) {
            if (p.q_pos[qo_start + w.t0 + r / G] - kpos >= p.window) srow[r] = -INFINITY;
          }
        }
      }

      // Online softmax across the block, vectorised over query rows.
      float* mx = sc.tmp;  // [Rp] new running max
      for (int r = 0; r < Rp; ++r) mx[r] = M[r];
      for (int j = 0; j < nb; ++j) {
        const float* srow = St + j * Rp;
        for (int r = 0; r < Rp; ++r) mx[r] = srow[r] > mx[r] ? srow[r] : mx[r];
      }
      for (int r = 0; r < R; ++r) {
        // alpha rescales the old state; a row with nothing visible yet keeps mx = -inf.
        const float alpha = M[r] == -INFINITY ? 0.f : std::exp(M[r] - mx[r]);
        if (alpha != 1.f) {
          L[r] *= alpha;
          float* orow = O + r * D;
          for (int d = 0; d < D; ++d) orow[d] *= alpha;
        }
        M[r] = mx[r];
      }
      for (int j = 0; j < nb; ++j) {
        float* srow = St + j * Rp;
        // -inf - (-inf) would be NaN: rows whose max is still -inf get probability 0.
        for (int r = 0; r < Rp; ++r) srow[r] = mx[r] == -INFINITY ? -INFINITY : srow[r] - mx[r];
        ExpInPlace(srow, Rp);
        for (int r = 0; r < Rp; ++r) L[r] += srow[r];
      }
      if (D % (kChunkVecs * kLanes) == 0) {
        AccumulateValues<kRows, kChunkVecs>(St, V, vs, O, R, Rp, D, nb);
      } else {
        AccumulateValues<kRows, 1>(St, V, vs, O, R, Rp, D, nb);  // D a multiple of kLanes only
      }
    }
  }

  // Normalise and write out.
  for (int hh = 0; hh < nh; ++hh) {
    const float* O = sc.o + hh * qo_stride;
    const float* M = sc.m + hh * Rp;
    const float* L = sc.l + hh * Rp;
    for (int r = 0; r < R; ++r) {
      const int64_t row = qo_start + w.t0 + r / G;
      const int hq = (w.h0 + hh) * G + r % G;
      const float l = L[r];
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const float lse = l > 0.f ? M[r] + std::log(l) : -INFINITY;
      const float* orow = O + r * D;
      if (out.num_splits == 1) {
        const int64_t base = (row * Hq + hq) * D;
        for (int d = 0; d < D; ++d) StoreFromF32(p.o, p.dtype, base + d, orow[d] * inv);
        if (p.lse) p.lse[row * Hq + hq] = lse;
      } else {
        const int64_t idx = (row * out.num_splits + w.split) * Hq + hq;
        float* dst = out.part_o + idx * D;
        for (int d = 0; d < D; ++d) dst[d] = orow[d] * inv;
        out.part_lse[idx] = lse;
      }
    }
  }
}

}  // namespace CANOPY_TILE_NS
}  // namespace
}  // namespace cpu
}  // namespace canopy
