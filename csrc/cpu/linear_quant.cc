// CPU linear layer over GGUF block-quantized weights (csrc/common/quant_blocks.h):
//   y[n][o] = sum_i x[n][i] W[o][i] (+ bias[o])   with W read as stored, never dequantized to memory.
//
// The activations are quantized to 8-bit blocks once per call (linear_quant_cpu.h); threads split
// the weight rows; each weight block is decoded once (into an L1-resident DecodedBlock) per group
// of up to kRowGroup activation rows and dotted with each of them in integer arithmetic (AVX-512
// VNNI, AVX2 or portable C++, chosen at run time; CANOPY_CPU_ISA=avx2 or portable forces one; on
// aarch64 SDOT (dotprod), NEON or portable: CANOPY_CPU_ISA=neon-dotprod, neon or portable).
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

// ---- portable C++: the reference arithmetic every ISA reproduces bit for bit ----------------------

namespace {

struct IsaPortable {
  static constexpr bool kVectorDecodeK = false;  // K codes through DecodeBlock
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
  QuantActivations act;
  QuantizeActivations(p.x, p.rows, p.in, info.block, &act);
  ParallelFor(p.out, 4, [&](int64_t o_begin, int64_t o_end) { rows_fn(p, act, o_begin, o_end); });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
