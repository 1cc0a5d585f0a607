// CPU linear layer over GGUF block-quantized weights (csrc/common/quant_blocks.h):
//   y[n][o] = sum_i x[n][i] W[o][i] (+ bias[o])   with W read as stored, never dequantized to memory.
//
// The activations are quantized to 8-bit blocks once per call (linear_quant_cpu.h); threads split
// the weight rows in tiles of 4; each tile is either decoded once (into L1-resident tiles) for all
// activation rows or, for a decode step and a few rows, dotted straight from its bytes with the
// codes unpacked in registers (linear_quant_kernel.h), in integer arithmetic (AVX-512 VNNI, AVX2 or
// portable C++, chosen at run time; CANOPY_CPU_ISA=avx2 or portable forces one; on aarch64 SDOT
// (dotprod), NEON or portable: CANOPY_CPU_ISA=neon-dotprod, neon or portable).
// Decode (1 row), verification and draft trees (2..64 rows) and prefill (more rows, in groups) run
// the same per-element code, so every output element is bit-identical for any number of rows or
// threads, and on every ISA (the integer parts are exact).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "../common/runtime.h"
#include "linear_quant_cpu.h"
#include "thread_pool.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif


namespace canopy {
namespace cpu {

namespace {

#if defined(__AVX2__)
// One activation block by AVX2 (block a multiple of 32), the same numbers as the scalar code in
// QuantizeActivations: the maximum of |x| is exact in any order (vmaxps keeps the running
// maximum when x is NaN, as std::max does), a block holding a NaN or an infinity is the
// non-finite case, x * (127 / a) is the same f32 product, vroundps rounds to nearest even as
// nearbyint does in the default mode, and the clamp and the integer sums are exact.
// Returns false for a non-finite block (the caller writes it as the scalar code does).
inline bool QuantizeBlockAvx2(const float* xb, int block, int8_t* qb, float* d, int32_t* sum16) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 amax = _mm256_setzero_ps();
  __m256i nonfinite = _mm256_setzero_si256();
  const __m256i inf_bits = _mm256_set1_epi32(0x7f800000);
  for (int i = 0; i < block; i += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(xb + i), abs_mask);
    amax = _mm256_max_ps(a, amax);
    // |x| as bits >= the bits of infinity: an infinity or a NaN.
    nonfinite = _mm256_or_si256(nonfinite, _mm256_cmpgt_epi32(_mm256_castps_si256(a), _mm256_sub_epi32(inf_bits, _mm256_set1_epi32(1))));
  }
  if (!_mm256_testz_si256(nonfinite, nonfinite)) return false;
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  const float a = _mm_cvtss_f32(m);
  if (a == 0.f) {
    *d = 0.f;
    std::memset(qb, 0, static_cast<size_t>(block));
    for (int k = 0; k < block / 16; ++k) sum16[k] = 0;
    return true;
  }
  *d = a / 127.f;
  const __m256 id = _mm256_set1_ps(127.f / a);
  const __m256 hi = _mm256_set1_ps(127.f), lo = _mm256_set1_ps(-127.f);
  for (int i = 0; i < block; i += 32) {
    __m256i v[4];
    for (int j = 0; j < 4; ++j) {
      __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8 * j), id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm256_min_ps(hi, _mm256_max_ps(lo, r));
      v[j] = _mm256_cvtps_epi32(r);  // exact: r is an integer in [-127, 127]
    }
    // int32 -> int16 -> int8 (packs work within 128-bit halves: restore the order after).
    const __m256i w01 = _mm256_packs_epi32(v[0], v[1]), w23 = _mm256_packs_epi32(v[2], v[3]);
    __m256i b = _mm256_packs_epi16(w01, w23);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb + i), b);
    // Sums of each 16 codes: widen to int16 and add neighbours by pmaddwd with ones.
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i s_lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(b)), ones);       // codes 0..15: 8 pair sums
    const __m256i s_hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(b, 1)), ones);  // codes 16..31
    const __m256i h = _mm256_hadd_epi32(s_lo, s_hi);  // [lo 0-1, lo 2-3, hi 0-1, hi 2-3 | lo 4-5, lo 6-7, hi 4-5, hi 6-7]
    const __m256i h2 = _mm256_hadd_epi32(h, h);       // [lo 0-3, hi 0-3, .. | lo 4-7, hi 4-7, ..]
    const __m128i t = _mm_add_epi32(_mm256_castsi256_si128(h2), _mm256_extracti128_si256(h2, 1));  // [lo, hi, lo, hi]
    sum16[i / 16] = _mm_cvtsi128_si32(t);
    sum16[i / 16 + 1] = _mm_extract_epi32(t, 1);
  }
  return true;
}
#endif

}  // namespace

void QuantizeActivations(const float* x, int64_t rows, int64_t in, int block, QuantActivations* out) {
  out->rows = rows;
  out->in = in;
  out->block = block;
  out->q.resize(static_cast<size_t>(rows * in));
  out->d.resize(static_cast<size_t>(rows * (in / block)));
  out->sum16.resize(static_cast<size_t>(rows * (in / 16)));
  const int64_t nb = in / block;
  ParallelFor(rows * nb, 64, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t / nb, b = t % nb;
      const float* xb = x + r * in + b * block;
      int8_t* qb = out->q.data() + r * in + b * block;
#if defined(__AVX2__)
      if (block % 32 == 0 && QuantizeBlockAvx2(xb, block, qb, &out->d[t], out->sum16.data() + r * (in / 16) + b * (block / 16))) continue;
#endif
      float amax = 0.f;
      for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(xb[i]));  // NaN never wins max...
      bool finite = std::isfinite(amax);
      for (int i = 0; i < block && finite; ++i) finite = !std::isnan(xb[i]);      // ...so look for it
      if (!finite) {
        out->d[t] = std::nanf("");
        std::memset(qb, 0, static_cast<size_t>(block));
      } else if (amax == 0.f) {
        out->d[t] = 0.f;
        std::memset(qb, 0, static_cast<size_t>(block));
      } else {
        out->d[t] = amax / 127.f;
        const float id = 127.f / amax;
        for (int i = 0; i < block; ++i) {
          const float v = std::nearbyint(xb[i] * id);
          qb[i] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, v)));
        }
      }
      for (int k = 0; k < block / 16; ++k) {
        int32_t s = 0;
        for (int i = 0; i < 16; ++i) s += qb[16 * k + i];
        out->sum16[r * (in / 16) + b * (block / 16) + k] = s;
      }
    }
  });
}

// ---- portable C++: the reference arithmetic every ISA reproduces bit for bit ----------------------

namespace {

struct IsaPortable {
  static constexpr bool kVectorDecodeK = false;  // K codes through DecodeBlock
  static constexpr bool kDirectK = false;        // GEMV over K blocks through QuantTileK's tile
  static constexpr bool kDirect32 = false;       // GEMV over Q8_0 / Q4_0 through Load32 and Fma8
  static float F16(const uint8_t* p) { return LoadF16(p); }
  static void DecodeQ4KCodes(const uint8_t*, int8_t*) {}
  static void DecodeQ6KCodes(const uint8_t*, const uint8_t*, int8_t*) {}
  struct Acc8 {
    float l[8];
  };
  // A 32-value block's codes: decoded by the reference decoder.
  struct W32 {
    int8_t q[32];
  };
  template <QuantType T>
  static W32 Load32(const uint8_t* blk) {
    DecodedBlock db;
    DecodeBlock(T, blk, &db);
    W32 w;
    std::memcpy(w.q, db.q, 32);
    return w;
  }
  static Acc8 Zero8() { return Acc8{{0, 0, 0, 0, 0, 0, 0, 0}}; }
  static void Fma8(const W32& w, const int8_t* a, float scale, Acc8& acc) {
    for (int k = 0; k < 8; ++k) {
      int32_t p = 0;
      for (int i = 0; i < 4; ++i) p += static_cast<int32_t>(w.q[4 * k + i]) * a[4 * k + i];
      acc.l[k] = std::fma(static_cast<float>(p), scale, acc.l[k]);
    }
  }
  static float Sum8(const Acc8& acc) {
    const float* l = acc.l;
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
  }
  static void FmaK(const int8_t* w, const int8_t* a, const int16_t* pair_scale, float scale, Acc8& acc) {
    for (int k = 0; k < 8; ++k) {
      int32_t lane = 0;
      for (int c = 0; c < 8; ++c) {
        for (int j = 0; j < 2; ++j) {
          const int v = 32 * c + 4 * k + 2 * j;
          lane += pair_scale[16 * c + 2 * k + j] * (static_cast<int32_t>(w[v]) * a[v] + static_cast<int32_t>(w[v + 1]) * a[v + 1]);
        }
      }
      acc.l[k] = std::fma(static_cast<float>(lane), scale, acc.l[k]);
    }
  }
};

}  // namespace
}  // namespace cpu
}  // namespace canopy

#define CANOPY_QUANT_NS quant_portable
#include "linear_quant_kernel.h"
#undef CANOPY_QUANT_NS

#if defined(__AVX2__)
#include "linear_quant_x86.h"
#define CANOPY_QUANT_NS quant_avx2
#include "linear_quant_kernel.h"
#undef CANOPY_QUANT_NS
#endif

#if defined(__aarch64__)
#include "linear_quant_neon.h"
#define CANOPY_QUANT_NS quant_neon
#include "linear_quant_kernel.h"
#undef CANOPY_QUANT_NS
#endif

namespace canopy {
namespace cpu {

QuantRowsFn QuantRowsPortable() { return quant_portable::QuantRowsAnyType<IsaPortable>; }
#if defined(__AVX2__)
QuantRowsFn QuantRowsAvx2() { return quant_avx2::QuantRowsAnyType<x86::IsaX86<false>>; }
#else
QuantRowsFn QuantRowsAvx2() { return nullptr; }
#endif
#if defined(__aarch64__)
QuantRowsFn QuantRowsNeon() { return quant_neon::QuantRowsAnyType<neon::IsaNeon<false>>; }
#else
QuantRowsFn QuantRowsNeon() { return nullptr; }
#endif

namespace {

// The row kernel for this call: CANOPY_CPU_ISA=portable | avx2 forces a path; otherwise VNNI
// where the CPU has it, else AVX2, else portable. On aarch64: portable | neon | neon-dotprod
// (the last only where the CPU has dotprod, else neon); otherwise dotprod where the CPU has it,
// else neon.
QuantRowsFn PickRows() {
  const char* isa = std::getenv("CANOPY_CPU_ISA");
  const std::string want = isa ? isa : "";
  const CpuFeatures& f = GetCpuFeatures();
  if (QuantRowsFn neon = QuantRowsNeon()) {
    QuantRowsFn dot = f.dotprod ? QuantRowsNeonDot() : nullptr;
    if (want == "portable") return QuantRowsPortable();
    if (want == "neon") return neon;
    return dot ? dot : neon;
  }
  QuantRowsFn avx2 = f.avx2 && f.fma ? QuantRowsAvx2() : nullptr;
  QuantRowsFn vnni = (f.avx512_vnni && f.avx512vl && f.avx512bw && f.avx512f) ? QuantRowsVnni() : nullptr;
  if (want == "portable") return QuantRowsPortable();
  if (want == "avx2") return avx2 ? avx2 : QuantRowsPortable();
  return vnni ? vnni : avx2 ? avx2 : QuantRowsPortable();
}

}  // namespace

Status CheckLinearQuantParams(const LinearParams& p) {
  const QuantTypeInfo info = GetQuantTypeInfo(p.w_quant);
  if (info.block == 0) return Status::InvalidArgument("linear: unknown weight block type " + std::to_string(static_cast<int>(p.w_quant)));
  if (p.rows < 0 || p.in <= 0 || p.out <= 0) return Status::InvalidArgument("linear: bad shape");
  if (p.in % info.block != 0) {
    return Status::InvalidArgument(std::string("linear: ") + info.name + " weights need in to be a multiple of " +
                                   std::to_string(info.block) + "; received in = " + std::to_string(p.in));
  }
  if (p.rows > 0 && (p.x == nullptr || p.w == nullptr || p.y == nullptr)) return Status::InvalidArgument("linear: null pointer");
  return Status::Ok();
}

Status LinearQuant(const LinearParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckLinearQuantParams(p));
  if (p.rows == 0) return Status::Ok();
  const QuantRowsFn rows_fn = PickRows();
  const QuantTypeInfo info = GetQuantTypeInfo(p.w_quant);
  // The calling thread's buffers, kept between calls (a decode step makes a few hundred calls).
  // (A local reference: the workers' lambda must reach this thread's object, not their own.)
  thread_local QuantActivations tls_act;
  QuantActivations& act = tls_act;
  QuantizeActivations(p.x, p.rows, p.in, info.block, &act);
  ParallelFor(p.out, 4, [&](int64_t o_begin, int64_t o_end) { rows_fn(p, act, o_begin, o_end); });
  if (act.q.capacity() > (size_t{4} << 20)) act = QuantActivations();  // a long prefill's buffers are not kept
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
