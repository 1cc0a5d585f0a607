// Inner tiles of the CPU flash-attention kernel, written as fixed-size loops
// that the compiler vectorises. Included twice: by attention.cc for the
// portable baseline (AVX2 + FMA) and by attention_avx512.cc under an AVX-512
// target, each in its own namespace (CANOPY_TILE_NS); attention.cc picks one
// at run time from the CPU features.
//
// Shapes (all f32, row-major):
//   Q  [R][D]     queries of one tile, pre-multiplied by the softmax scale
//   Kt [D][kBc]   a block of kBc keys, transposed
//   S  [R][kBc]   scores
//   V  [kBc][D]   the block's values
//   O  [R][D]     running output (unnormalised)
// R is a multiple of kRows (callers pad with zero rows).
//
// Everything here has internal linkage (anonymous namespace) and uses no std
// templates: the AVX-512 copy must never be merged by the linker with the
// baseline copy of the same inline function.
// No include guard on purpose: each including file compiles its own copy.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common/attention.h"

namespace canopy {
namespace cpu {
namespace {
namespace CANOPY_TILE_NS {

inline int64_t Min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline float MaxF(float a, float b) { return a > b ? a : b; }

constexpr int kBc = 32;  // keys per block

// S = Q * Kt, kRows query rows at a time (kRows accumulator rows of kBc floats).
template <int kRows>
inline void QKTile(const float* __restrict Q, const float* __restrict Kt, float* __restrict S, int R, int D) {
  for (int r = 0; r < R; r += kRows) {
    float acc[kRows][kBc];
    for (int i = 0; i < kRows; ++i)
      for (int j = 0; j < kBc; ++j) acc[i][j] = 0.f;
    for (int d = 0; d < D; ++d) {
      const float* kt = Kt + d * kBc;
      for (int i = 0; i < kRows; ++i) {
        const float a = Q[(r + i) * D + d];
        for (int j = 0; j < kBc; ++j) acc[i][j] += a * kt[j];
      }
    }
    for (int i = 0; i < kRows; ++i) std::memcpy(S + (r + i) * kBc, acc[i], sizeof acc[i]);
  }
}

// O += P * V over nb keys, kRows rows and kChunk output dims at a time.
template <int kRows, int kChunk>
inline void PVTile(const float* __restrict P, const float* __restrict V, float* __restrict O, int R, int D, int nb) {
  for (int r = 0; r < R; r += kRows) {
    for (int d0 = 0; d0 < D; d0 += kChunk) {
      float acc[kRows][kChunk];
      for (int i = 0; i < kRows; ++i) std::memcpy(acc[i], O + (r + i) * D + d0, sizeof acc[i]);
      for (int j = 0; j < nb; ++j) {
        const float* v = V + j * D + d0;
        for (int i = 0; i < kRows; ++i) {
          const float p = P[(r + i) * kBc + j];
          for (int c = 0; c < kChunk; ++c) acc[i][c] += p * v[c];
        }
      }
      for (int i = 0; i < kRows; ++i) std::memcpy(O + (r + i) * D + d0, acc[i], sizeof acc[i]);
    }
  }
}

// x[i] = exp(x[i]) for n floats; -inf gives 0. A vectorisable Cody-Waite range
// reduction (exp(x) = 2^n * exp(f), |f| <= ln2/2) and a degree-6 polynomial:
// relative error below 2e-7 (about 2 ulp) over the range that matters here
// (x <= 0 after subtracting the row max).
inline void ExpInPlace(float* __restrict x, int n) {
  for (int i = 0; i < n; ++i) {
    float v = x[i];
    v = v < -87.3f ? -87.3f : v;  // exp underflows to ~1e-38; -inf lands here too
    const float k = std::nearbyint(v * 1.44269504088896341f);
    const float f = (v - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;
    float p = 1.f / 720.f;
    p = p * f + 1.f / 120.f;
    p = p * f + 1.f / 24.f;
    p = p * f + 1.f / 6.f;
    p = p * f + 0.5f;
    p = p * f + 1.f;
    p = p * f + 1.f;
    int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    x[i] = x[i] == -INFINITY ? 0.f : p * scale;
  }
}

// Processes one work item: tiles of kBc keys with online softmax (the score
// matrix never exists beyond one R x kBc block).
template <int kRows, int kChunk>
void RunWorkItem(const AttentionParams& p, const AttentionWorkItem& w, const uint32_t* tree_mask, int32_t mask_words,
                 const AttentionTileOutput& out, const AttentionScratch& sc) {
  const int D = p.head_dim;
  const int G = p.num_qo_heads / p.num_kv_heads;
  const int Hq = p.num_qo_heads, Hkv = p.num_kv_heads;
  const int64_t qo_start = p.qo_indptr[w.b];
  const int64_t qo_len = p.qo_indptr[w.b + 1] - qo_start;
  const int64_t kv_len = KvLen(p, w.b);
  const int64_t kv_start = p.kv_indptr[w.b];
  const int64_t prefix = kv_len - qo_len;  // causal offset / tree prefix length
  const int R = (w.t1 - w.t0) * G;
  const int Rp = (R + kRows - 1) / kRows * kRows;

  // Scratch sized by the caller for Rp rows (AttentionScratchFloats).
  float* Q = sc.q;
  float* O = sc.o;
  float* M = sc.m;
  float* L = sc.l;
  for (int64_t i = 0; i < static_cast<int64_t>(Rp) * D; ++i) Q[i] = O[i] = 0.f;
  for (int r = 0; r < Rp; ++r) {
    M[r] = -INFINITY;
    L[r] = 0.f;
  }
  for (int r = 0; r < R; ++r) {
    const int64_t row = qo_start + w.t0 + r / G;
    const int hq = w.h * G + r % G;
    const int64_t base = (row * Hq + hq) * D;
    for (int d = 0; d < D; ++d) Q[r * D + d] = LoadAsF32(p.q, p.dtype, base + d) * p.scale;
  }

  // Keys past the last visible one for this tile are never read.
  int64_t k_end = w.k1;
  if (p.mask == MaskMode::kCausal) k_end = Min64(k_end, prefix + w.t1);
  for (int64_t j0 = w.k0; j0 < k_end; j0 += kBc) {
    const int nb = static_cast<int>(Min64(kBc, k_end - j0));
    // Load the block: K transposed, V row-major, widened to f32; zero padding.
    float* Kt = sc.kt;
    float* Vb = sc.v;
    for (int jj = 0; jj < kBc; ++jj) {
      if (jj < nb) {
        const int64_t base = ((kv_start + j0 + jj) * Hkv + w.h) * D;
        for (int d = 0; d < D; ++d) {
          Kt[d * kBc + jj] = LoadAsF32(p.k, p.dtype, base + d);
          Vb[jj * D + d] = LoadAsF32(p.v, p.dtype, base + d);
        }
      } else {
        for (int d = 0; d < D; ++d) {
          Kt[d * kBc + jj] = 0.f;
          Vb[jj * D + d] = 0.f;
        }
      }
    }
    float* S = sc.s;
    QKTile<kRows>(Q, Kt, S, Rp, D);
    // Mask, then the online softmax update per row.
    for (int r = 0; r < R; ++r) {
      float* srow = S + r * kBc;
      const int64_t t = w.t0 + r / G;  // token index within the sequence
      for (int jj = nb; jj < kBc; ++jj) srow[jj] = -INFINITY;
      if (p.mask == MaskMode::kCausal) {
        const int64_t last = prefix + t;  // last visible key
        for (int jj = 0; jj < nb; ++jj)
          if (j0 + jj > last) srow[jj] = -INFINITY;
      } else if (p.mask == MaskMode::kTree) {
        const uint32_t* bits = tree_mask + (qo_start + t) * mask_words;
        for (int jj = 0; jj < nb; ++jj) {
          const int64_t node = j0 + jj - prefix;
          if (node >= 0 && !((bits[node >> 5] >> (node & 31)) & 1u)) srow[jj] = -INFINITY;
        }
      }
      float mx = M[r];
      for (int jj = 0; jj < kBc; ++jj) mx = MaxF(mx, srow[jj]);
      if (mx == -INFINITY) {  // nothing visible yet: P = 0, state unchanged
        for (int jj = 0; jj < kBc; ++jj) srow[jj] = 0.f;
        continue;
      }
      const float alpha = M[r] == -INFINITY ? 0.f : std::exp(M[r] - mx);
      for (int jj = 0; jj < kBc; ++jj) srow[jj] -= mx;
      ExpInPlace(srow, kBc);
      float sum = 0.f;
      for (int jj = 0; jj < kBc; ++jj) sum += srow[jj];
      L[r] = L[r] * alpha + sum;
      M[r] = mx;
      if (alpha != 1.f) {
        float* orow = O + r * D;
        for (int d = 0; d < D; ++d) orow[d] *= alpha;
      }
    }
    for (int r = R; r < Rp; ++r)
      for (int jj = 0; jj < kBc; ++jj) S[r * kBc + jj] = 0.f;
    PVTile<kRows, kChunk>(S, Vb, O, Rp, D, nb);
  }

  // Normalise and write out.
  for (int r = 0; r < R; ++r) {
    const int64_t row = qo_start + w.t0 + r / G;
    const int hq = w.h * G + r % G;
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

}  // namespace CANOPY_TILE_NS
}  // namespace
}  // namespace cpu
}  // namespace canopy
