// CPU linear layer over GGUF block-quantized weights (csrc/common/quant_blocks.h):
//   y[n][o] = sum_i x[n][i] W[o][i] (+ bias[o])   with W read as stored, never dequantized to memory.
//
// The activations are quantized to 8-bit blocks once per call (linear_quant_cpu.h); threads split
// the weight rows; each weight block is decoded once (into an L1-resident DecodedBlock) per group
// of up to kRowGroup activation rows and dotted with each of them in integer arithmetic (AVX-512
// VNNI, AVX2 or portable C++, chosen at run time; CANOPY_CPU_ISA=avx2 or portable forces one).
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

int32_t ScaledDotPortable(const int8_t* w, const int8_t* a, const int32_t* lane_scale, int n) {
  int32_t s = 0;
  for (int k = 0; k < n / 4; ++k) {
    int32_t p = 0;
    for (int i = 0; i < 4; ++i) p += static_cast<int32_t>(w[4 * k + i]) * a[4 * k + i];
    s += (lane_scale ? lane_scale[k] : 1) * p;
  }
  return s;
}

#if defined(__AVX2__)
namespace {
// maddubs multiplies unsigned |w| by a * sign(w) and adds pairs into int16 (at most
// 2 * 128 * 127 = 32512: no saturation); madd by ones adds pairs into int32 lanes of 4 values.
int32_t ScaledDotAvx2Impl(const int8_t* w, const int8_t* a, const int32_t* lane_scale, int n) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  for (int c = 0; c < n; c += 32) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c));
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c));
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv)), ones);
    if (lane_scale == nullptr) {
      acc = _mm256_add_epi32(acc, p);
    } else {
      const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lane_scale + c / 4));
      acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, s));
    }
  }
  __m128i r = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
  return _mm_cvtsi128_si32(r);
}
}  // namespace
ScaledDotFn ScaledDotAvx2() { return ScaledDotAvx2Impl; }
#else
ScaledDotFn ScaledDotAvx2() { return nullptr; }
#endif

namespace {

constexpr int64_t kRowGroup = 64;

// The integer dot for this call: CANOPY_CPU_ISA=portable | avx2 forces a path; otherwise VNNI
// where the CPU has it, else AVX2, else portable.
Status PickDot(ScaledDotFn* fn) {
  const char* isa = std::getenv("CANOPY_CPU_ISA");
  const std::string want = isa ? isa : "";
  const CpuFeatures& f = GetCpuFeatures();
  ScaledDotFn avx2 = f.avx2 ? ScaledDotAvx2() : nullptr;
  ScaledDotFn vnni = (f.avx512_vnni && f.avx512vl && f.avx512bw && f.avx512f) ? ScaledDotVnni() : nullptr;
  if (want == "portable") {
    *fn = ScaledDotPortable;
  } else if (want == "avx2") {
    *fn = avx2 ? avx2 : ScaledDotPortable;
  } else {
    *fn = vnni ? vnni : avx2 ? avx2 : ScaledDotPortable;
  }
  return Status::Ok();
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
  ScaledDotFn dot = nullptr;
  CANOPY_RETURN_IF_ERROR(PickDot(&dot));
  const QuantType type = p.w_quant;
  const QuantTypeInfo info = GetQuantTypeInfo(type);
  QuantActivations act;
  QuantizeActivations(p.x, p.rows, p.in, info.block, &act);
  const int64_t nb = p.in / info.block;
  const int64_t row_bytes = nb * info.bytes;
  const int64_t n16 = p.in / 16;
  const int subs = info.block / info.sub;
  const bool unit_scales = info.block == info.sub;  // 32-blocks: one sub-block, scale 1
  const uint8_t* w = static_cast<const uint8_t*>(p.w);
  ParallelFor(p.out, 4, [&](int64_t o_begin, int64_t o_end) {
    DecodedBlock db;
    int32_t lane_scale[64];
    float acc[kRowGroup];
    for (int64_t g0 = 0; g0 < p.rows; g0 += kRowGroup) {
      const int64_t g1 = std::min(p.rows, g0 + kRowGroup);
      for (int64_t o = o_begin; o < o_end; ++o) {
        std::fill(acc, acc + (g1 - g0), 0.f);
        const uint8_t* wrow = w + o * row_bytes;
        for (int64_t b = 0; b < nb; ++b) {
          DecodeBlock(type, wrow + b * info.bytes, &db);
          if (!unit_scales) {
            for (int k = 0; k < info.block / 4; ++k) lane_scale[k] = db.sc[(4 * k) / info.sub];
          }
          for (int64_t r = g0; r < g1; ++r) {
            const int8_t* a = act.q.data() + r * p.in + b * info.block;
            const int32_t s = dot(db.q, a, unit_scales ? nullptr : lane_scale, info.block);
            float t = db.d * static_cast<float>(s);
            if (info.has_min) {
              const int32_t* s16 = act.sum16.data() + r * n16 + b * (info.block / 16);
              const int per = info.sub / 16;
              int32_t smin = 0;
              for (int j = 0; j < subs; ++j) {
                int32_t asum = 0;
                for (int k = 0; k < per; ++k) asum += s16[j * per + k];
                smin += db.mn[j] * asum;
              }
              t = std::fma(-db.dmin, static_cast<float>(smin), t);
            }
            acc[r - g0] = std::fma(act.d[r * nb + b], t, acc[r - g0]);
          }
        }
        for (int64_t r = g0; r < g1; ++r) {
          float v = acc[r - g0];
          if (p.bias) v += p.bias[o];
          float* yo = p.y + r * p.out + o;
          *yo = p.accumulate ? *yo + v : v;
        }
      }
    }
  });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
