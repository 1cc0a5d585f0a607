// GGUF block-quantized weights (csrc/common/quant_blocks.h): the CPU linear kernel against a
// double-precision reference on its own 8-bit activations, every ISA path bit-identical and every
// row count bit-identical; the CUDA kernels (Q8_0, Q4_0, Q4_K, Q6_K) against the double reference on
// the f32 activations, against the CPU kernel, and row count by row count; the CUDA embedding lookup
// of every type equal to the CPU's; CUDA refuses the other block types with a Status naming them.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "../common/runtime.h"
#include "../common/transformer_ops.h"
#include "../cpu/linear_quant_cpu.h"
#include "../cpu/thread_pool.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

const QuantType kTypes[] = {QuantType::kQ8_0, QuantType::kQ4_0, QuantType::kQ4_1, QuantType::kQ5_0,
                            QuantType::kQ5_1, QuantType::kIQ4_NL, QuantType::kQ2_K, QuantType::kQ3_K,
                            QuantType::kQ4_K, QuantType::kQ5_K, QuantType::kQ6_K, QuantType::kIQ4_XS};

// Offsets of the f16 scale fields of a block (set to finite values; every other byte random).
std::vector<int> F16Fields(QuantType t) {
  switch (t) {
    case QuantType::kQ4_1:
    case QuantType::kQ5_1:
    case QuantType::kQ4_K:
    case QuantType::kQ5_K: return {0, 2};
    case QuantType::kQ2_K: return {80, 82};
    case QuantType::kQ3_K: return {108};
    case QuantType::kQ6_K: return {208};
    default: return {0};
  }
}

std::vector<uint8_t> RandomBlocks(QuantType t, int64_t rows, int64_t in) {
  const QuantTypeInfo info = GetQuantTypeInfo(t);
  std::vector<uint8_t> w(static_cast<size_t>(rows * QuantRowBytes(t, in)));
  for (auto& b : w) b = static_cast<uint8_t>(Rng()() & 0xff);
  std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
  for (size_t b = 0; b < w.size() / info.bytes; ++b) {
    for (int f : F16Fields(t)) {
      const uint16_t h = F32ToF16Bits(scale(Rng()));
      w[b * info.bytes + f] = static_cast<uint8_t>(h & 0xff);
      w[b * info.bytes + f + 1] = static_cast<uint8_t>(h >> 8);
    }
  }
  return w;
}

std::vector<float> Run(QuantType t, const std::vector<uint8_t>& w, const float* x, int64_t rows, int64_t in, int64_t out,
                       const char* isa, Status* st) {
  if (isa) setenv("CANOPY_CPU_ISA", isa, 1);
  else unsetenv("CANOPY_CPU_ISA");
  std::vector<float> y(static_cast<size_t>(rows * out));
  LinearParams p = MakeLinearParams(x, w.data(), DType::kU8, nullptr, y.data(), rows, in, out, false);
  p.w_quant = t;
  *st = cpu::Linear(p);
  unsetenv("CANOPY_CPU_ISA");
  return y;
}

bool CpuMatchesReference() {
  for (QuantType t : kTypes) {
    const QuantTypeInfo info = GetQuantTypeInfo(t);
    for (int64_t in : {static_cast<int64_t>(info.block), int64_t{512}, int64_t{2816}}) {
      if (in % info.block != 0) continue;
      const int64_t rows = 17, out = 9;
      const std::vector<uint8_t> w = RandomBlocks(t, out, in);
      std::vector<float> x(static_cast<size_t>(rows * in));
      std::normal_distribution<float> nd(0.f, 1.f);
      for (auto& v : x) v = nd(Rng());
      cpu::QuantActivations act;
      cpu::QuantizeActivations(x.data(), rows, in, info.block, &act);
      std::vector<float> wd(static_cast<size_t>(out * in));
      for (int64_t o = 0; o < out; ++o) DequantizeRow(t, w.data() + o * QuantRowBytes(t, in), 0, in, wd.data() + o * in);
      std::vector<float> first;
      for (const char* isa : {static_cast<const char*>(nullptr), "avx2", "portable"}) {
        Status st;
        const std::vector<float> y = Run(t, w, x.data(), rows, in, out, isa, &st);
        CANOPY_CHECK(st.ok(), "%s: %s", info.name, st.message().c_str());
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t o = 0; o < out; ++o) {
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < in; ++i) {
              // The dequantized weight (f32, reference rounding) times the kernel's own activation.
              const double a = static_cast<double>(act.q[r * in + i]) * act.d[r * (in / info.block) + i / info.block];
              ref += static_cast<double>(wd[o * in + i]) * a;
              mag += std::fabs(static_cast<double>(wd[o * in + i]) * a);
            }
            // Dequantized f32 weights round d * sc (one f32 rounding per weight) and the kernel
            // rounds its per-block products: a few f32 ulps of the magnitude, per block.
            const double tol = (in / info.block + 4) * 4 * std::ldexp(1.0, -24) * mag + 1e-30;
            const double got = y[r * out + o];
            CANOPY_CHECK(std::fabs(got - ref) <= tol, "%s isa %s in %lld [%lld, %lld]: %.9g vs %.9g (tol %.3g)", info.name,
                         isa ? isa : "auto", static_cast<long long>(in), static_cast<long long>(r), static_cast<long long>(o), got, ref,
                         tol);
          }
        }
        if (first.empty()) {
          first = y;
        } else {
          CANOPY_CHECK(std::memcmp(first.data(), y.data(), y.size() * sizeof(float)) == 0, "%s: isa %s differs from auto bitwise",
                       info.name, isa);
        }
      }
      // Every row count gives the same bits row by row.
      for (int64_t m : {int64_t{1}, int64_t{2}, int64_t{5}}) {
        Status st;
        const std::vector<float> y = Run(t, w, x.data() + 3 * in, m, in, out, nullptr, &st);
        CANOPY_CHECK(st.ok(), "%s", st.message().c_str());
        CANOPY_CHECK(std::memcmp(first.data() + 3 * out, y.data(), y.size() * sizeof(float)) == 0, "%s: %lld rows differ from 17",
                     info.name, static_cast<long long>(m));
      }
    }
  }
  return true;
}

// The GEMM paths (2..64 rows and prefill: linear_quant_gemm.h on AVX-512 VNNI, the tiles of
// linear_quant_kernel.h elsewhere) against the decode step: every row of every row count (1, 3, 4, 8,
// 17, 40, 48, 64, 65, 200, at offsets that pair the rows differently), every ISA and 1 or 3 threads gives
// each output element bit for bit as the one-row call on the default ISA, with bias and accumulate.
// out 1, 3, 17, 64 (partial weight tiles), in the smallest size, 512 and 2816.
bool CpuRowCountsBitIdentical() {
  const int before = cpu::NumThreads();
  for (QuantType t : kTypes) {
    const QuantTypeInfo info = GetQuantTypeInfo(t);
    for (int64_t in : {static_cast<int64_t>(info.block), int64_t{512}, int64_t{2816}}) {
      if (in % info.block != 0) continue;
      for (int64_t out : {int64_t{1}, int64_t{3}, int64_t{17}, int64_t{64}}) {
        const int64_t max_rows = 201;
        const std::vector<uint8_t> w = RandomBlocks(t, out, in);
        std::vector<float> x(static_cast<size_t>(max_rows * in)), bias(static_cast<size_t>(out)), y0(static_cast<size_t>(max_rows * out));
        std::normal_distribution<float> nd(0.f, 1.f);
        for (auto& v : x) v = nd(Rng());
        for (auto& v : bias) v = nd(Rng());
        for (auto& v : y0) v = nd(Rng());
        // The decode step's result, row by row.
        Status st;
        auto run = [&](const float* xr, int64_t rows, const float* y0r, const char* isa) {
          if (isa) setenv("CANOPY_CPU_ISA", isa, 1);
          else unsetenv("CANOPY_CPU_ISA");
          std::vector<float> y(y0r, y0r + rows * out);
          LinearParams p = MakeLinearParams(xr, w.data(), DType::kU8, bias.data(), y.data(), rows, in, out, true);
          p.w_quant = t;
          if (st.ok()) st = cpu::Linear(p);
          unsetenv("CANOPY_CPU_ISA");
          return y;
        };
        std::vector<float> one(static_cast<size_t>(max_rows * out));
        for (int64_t r = 0; r < max_rows; ++r) {
          const std::vector<float> y = run(x.data() + r * in, 1, y0.data() + r * out, nullptr);
          std::copy(y.begin(), y.end(), one.begin() + r * out);
        }
        CANOPY_CHECK(st.ok(), "%s: %s", info.name, st.message().c_str());
        for (int threads : {1, 3}) {
          cpu::SetNumThreads(threads);
          for (const char* isa : {static_cast<const char*>(nullptr), "avx2", "portable"}) {
            for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{4}, int64_t{8}, int64_t{17}, int64_t{40}, int64_t{48}, int64_t{64}, int64_t{65}, int64_t{200}}) {
              if (isa != nullptr && rows != 200 && rows != 17) continue;  // the other ISAs: two row counts
              for (int64_t off : {int64_t{0}, int64_t{1}}) {
                const std::vector<float> y = run(x.data() + off * in, rows, y0.data() + off * out, isa);
                CANOPY_CHECK(st.ok(), "%s: %s", info.name, st.message().c_str());
                CANOPY_CHECK(std::memcmp(one.data() + off * out, y.data(), y.size() * sizeof(float)) == 0,
                             "%s in %lld out %lld: %lld rows at %lld, isa %s, %d threads differ bitwise from the one-row calls", info.name,
                             static_cast<long long>(in), static_cast<long long>(out), static_cast<long long>(rows),
                             static_cast<long long>(off), isa ? isa : "auto", threads);
              }
            }
          }
        }
        cpu::SetNumThreads(before);
      }
    }
  }
  cpu::SetNumThreads(before);
  return true;
}

// The activation quantizer (vectorised where the build has AVX2) against its definition in
// linear_quant_cpu.h written out in scalar code, bitwise: blocks of 32 and 256 with zeros, ties
// (x * 127 / a exactly k + 0.5), values at the maximum of either sign, NaN and infinities.
bool CpuQuantizeActivationsMatchDefinition() {
  for (int block : {32, 256}) {
    const int64_t rows = 3, in = 4 * block;
    std::vector<float> x(static_cast<size_t>(rows * in));
    std::normal_distribution<float> nd(0.f, 1.f);
    for (auto& v : x) v = nd(Rng());
    // Row 0: block 1 all zero; block 2 a NaN; block 3 an infinity. Row 1: ties: a = 127, so
    // x * (127 / a) = x exactly, and k + 0.5 must round to even. Row 2: -a is the maximum.
    std::fill(x.begin() + block, x.begin() + 2 * block, 0.f);
    x[2 * block + 5] = std::nanf("");
    x[3 * block + block - 1] = -INFINITY;
    for (int i = 0; i < in; ++i) x[in + i] = (i % block == 0) ? 127.f : static_cast<float>((i % 251) - 125) + 0.5f;
    x[2 * in + 7] = -1e3f;
    cpu::QuantActivations act;
    cpu::QuantizeActivations(x.data(), rows, in, block, &act);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t b = 0; b < in / block; ++b) {
        const float* xb = x.data() + r * in + b * block;
        float amax = 0.f;
        bool finite = true;
        for (int i = 0; i < block; ++i) {
          amax = std::max(amax, std::fabs(xb[i]));
          finite = finite && std::isfinite(xb[i]);
        }
        float d;
        std::vector<int8_t> q(block, 0);
        if (!finite) {
          d = std::nanf("");
        } else if (amax == 0.f) {
          d = 0.f;
        } else {
          d = amax / 127.f;
          const float id = 127.f / amax;
          for (int i = 0; i < block; ++i) q[i] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, std::nearbyint(xb[i] * id))));
        }
        const float got_d = act.d[r * (in / block) + b];
        CANOPY_CHECK(std::isnan(d) ? std::isnan(got_d) : std::memcmp(&d, &got_d, sizeof d) == 0, "block %d row %lld block %lld: d %g vs %g",
                     block, static_cast<long long>(r), static_cast<long long>(b), got_d, d);
        CANOPY_CHECK(std::memcmp(q.data(), act.q.data() + r * in + b * block, static_cast<size_t>(block)) == 0,
                     "block %d row %lld block %lld: codes differ", block, static_cast<long long>(r), static_cast<long long>(b));
        for (int k = 0; k < block / 16; ++k) {
          int32_t sum = 0;
          for (int i = 0; i < 16; ++i) sum += q[16 * k + i];
          CANOPY_CHECK(act.sum16[r * (in / 16) + b * (block / 16) + k] == sum, "block %d row %lld block %lld: sum16[%d] %d vs %d", block,
                       static_cast<long long>(r), static_cast<long long>(b), k, act.sum16[r * (in / 16) + b * (block / 16) + k], sum);
        }
      }
    }
  }
  return true;
}

bool CpuRejectsBadShapes() {
  std::vector<uint8_t> w(34 * 4);
  std::vector<float> x(48), y(4);
  LinearParams p = MakeLinearParams(x.data(), w.data(), DType::kU8, nullptr, y.data(), 1, 48, 2, false);
  p.w_quant = QuantType::kQ8_0;
  const Status st = cpu::Linear(p);
  CANOPY_CHECK(!st.ok() && st.message().find("multiple of 32") != std::string::npos, "in = 48 accepted: %s", st.message().c_str());
  p.w_quant = static_cast<QuantType>(9);  // Q8_1: not read
  CANOPY_CHECK(!cpu::Linear(p).ok(), "unknown type accepted");
  return true;
}

bool CudaRefusesBlockTypes() {
  for (QuantType t : kTypes) {
    if (CudaHasQuantKernel(t)) continue;
    LinearParams p;
    p.rows = 1;
    p.in = 256;
    p.out = 1;
    p.w_quant = t;
    const Status st = cuda::Linear(p);
    const char* name = GetQuantTypeInfo(t).name;
    CANOPY_CHECK(!st.ok() && st.message().find(std::string(name) + " weights have no CUDA kernel") != std::string::npos,
                 "cuda::Linear accepted %s blocks: %s", name, st.message().c_str());
  }
  return true;
}

struct DeviceBuf {
  void* p = nullptr;
  ~DeviceBuf() {
    if (p) cuda::Free(0, p);
  }
  Status Upload(const void* host, size_t bytes) {
    CANOPY_RETURN_IF_ERROR(cuda::Malloc(0, bytes ? bytes : 1, &p));
    return cuda::CopyHostToDevice(0, p, host, bytes);
  }
};

// y = x W^T on CUDA (x rows x in, W out x in blocks); bias when given; accumulate into y0 when given.
std::vector<float> RunCuda(QuantType t, const std::vector<uint8_t>& w, const float* x, int64_t rows, int64_t in, int64_t out,
                           const std::vector<float>* bias, const std::vector<float>* y0, Status* st) {
  std::vector<float> y(static_cast<size_t>(rows * out), 0.f);
  if (y0) y = *y0;
  DeviceBuf dw, dx, dy, db;
  *st = dw.Upload(w.data(), w.size());
  if (st->ok()) *st = dx.Upload(x, static_cast<size_t>(rows * in) * sizeof(float));
  if (st->ok()) *st = dy.Upload(y.data(), y.size() * sizeof(float));
  if (st->ok() && bias) *st = db.Upload(bias->data(), bias->size() * sizeof(float));
  if (!st->ok()) return y;
  LinearParams p = MakeLinearParams(static_cast<const float*>(dx.p), dw.p, DType::kU8, bias ? static_cast<const float*>(db.p) : nullptr,
                                    static_cast<float*>(dy.p), rows, in, out, y0 != nullptr);
  p.w_quant = t;
  *st = cuda::Linear(p);
  if (st->ok()) *st = cuda::CopyDeviceToHost(0, y.data(), dy.p, y.size() * sizeof(float));
  return y;
}

// A row dequantized as the CUDA kernels do: (d * sc) * q - dmin * m, every step rounded to f32
// (volatile: the host compiler may not contract the product into the subtraction).
// terms (when given) receives |prod| + |offset| per value (the scale of one rounding of either).
std::vector<float> DequantRounded(QuantType t, const uint8_t* row, int64_t in, std::vector<double>* terms = nullptr) {
  const QuantTypeInfo info = GetQuantTypeInfo(t);
  std::vector<float> out(static_cast<size_t>(in));
  for (int64_t b = 0; b < in / info.block; ++b) {
    DecodedBlock db;
    DecodeBlock(t, row + b * info.bytes, &db);
    for (int i = 0; i < info.block; ++i) {
      const int j = i / info.sub;
      volatile float scale = db.d * static_cast<float>(db.sc[j]);
      volatile float offset = db.dmin * static_cast<float>(db.mn[j]);
      volatile float prod = scale * static_cast<float>(db.q[i]);
      out[static_cast<size_t>(b * info.block + i)] = prod - offset;
      if (terms) terms->push_back(std::fabs(static_cast<double>(prod)) + std::fabs(static_cast<double>(offset)));
    }
  }
  return out;
}

// The CUDA kernels compute the f32 dot product of the exactly dequantized weights (DequantizeBlock's
// f32 values) and the f32 activations: held to the double dot product of those within f32
// accumulation error ((in + 8) ulps of sum |w x|, the worst case of a sequential f32 sum; a wrong
// chunk, nibble or scale is off by a large fraction of sum |w x|), and to the CPU kernel
// within the CPU's activation rounding (half an activation step per value: sum_i |w_i| d_x / 2)
// plus both f32 terms. Every row count of a row gives the same bits (rows <= 64: one kernel), and
// rows > 64 (the tiled prefill kernel) the same values within the f32 bound. Shapes: out 1, 3, 17,
// 64; in 256, 512, 2816; rows 1, 2, 5, 16, 64 and 65, 130 (tiled, partial tiles).
bool CudaMatchesReferenceAndCpu() {
  for (QuantType t : kTypes) {
    if (!CudaHasQuantKernel(t)) continue;
    const QuantTypeInfo info = GetQuantTypeInfo(t);
    for (int64_t in : {int64_t{256}, int64_t{512}, int64_t{2816}}) {
      for (int64_t out : {int64_t{1}, int64_t{3}, int64_t{17}, int64_t{64}}) {
        const int64_t max_rows = 130;
        const std::vector<uint8_t> w = RandomBlocks(t, out, in);
        std::vector<float> x(static_cast<size_t>(max_rows * in));
        std::normal_distribution<float> nd(0.f, 1.f);
        for (auto& v : x) v = nd(Rng());
        std::vector<float> wd;
        std::vector<double> terms;  // [out][in]
        for (int64_t o = 0; o < out; ++o) {
          const std::vector<float> r = DequantRounded(t, w.data() + o * QuantRowBytes(t, in), in, &terms);
          wd.insert(wd.end(), r.begin(), r.end());
        }
        cpu::QuantActivations act;
        cpu::QuantizeActivations(x.data(), max_rows, in, info.block, &act);
        Status st;
        const std::vector<float> cpu_y = Run(t, w, x.data(), max_rows, in, out, nullptr, &st);
        CANOPY_CHECK(st.ok(), "cpu %s: %s", info.name, st.message().c_str());
        std::vector<float> first;  // the 64-row CUDA result, which every smaller row count must equal
        for (int64_t rows : {int64_t{64}, int64_t{1}, int64_t{2}, int64_t{5}, int64_t{16}, int64_t{65}, int64_t{130}}) {
          const std::vector<float> y = RunCuda(t, w, x.data(), rows, in, out, nullptr, nullptr, &st);
          CANOPY_CHECK(st.ok(), "cuda %s: %s", info.name, st.message().c_str());
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t o = 0; o < out; ++o) {
              double ref = 0, mag = 0, wabs_step = 0, term_mag = 0;
              for (int64_t i = 0; i < in; ++i) {
                const double wv = wd[o * in + i], xv = x[r * in + i];
                ref += wv * xv;
                mag += std::fabs(wv * xv);
                wabs_step += std::fabs(wv) * act.d[r * (in / info.block) + i / info.block] * 0.5;
                term_mag += terms[o * in + i] * std::fabs(xv);
              }
              const double f32_tol = static_cast<double>(in + 8) * std::ldexp(1.0, -24) * mag + 1e-30;
              const double got = y[r * out + o];
              CANOPY_CHECK(std::fabs(got - ref) <= f32_tol, "%s in %lld out %lld rows %lld [%lld, %lld]: cuda %.9g vs double %.9g (tol %.3g)",
                           info.name, static_cast<long long>(in), static_cast<long long>(out), static_cast<long long>(rows),
                           static_cast<long long>(r), static_cast<long long>(o), got, ref, f32_tol);
              // The CPU's error on its own activations (its test's bound, doubled for the activations'
              // magnitude), their rounding, and an ulp of each dequantization term (the CPU scales
              // integer sums instead of rounding each weight).
              const double cpu_tol = 1.01 * wabs_step + f32_tol + 2 * (in / info.block + 4) * 4 * std::ldexp(1.0, -24) * mag +
                                     std::ldexp(1.0, -22) * term_mag;
              CANOPY_CHECK(std::fabs(got - cpu_y[r * out + o]) <= cpu_tol, "%s in %lld out %lld rows %lld [%lld, %lld]: cuda %.9g vs cpu %.9g (tol %.3g)",
                           info.name, static_cast<long long>(in), static_cast<long long>(out), static_cast<long long>(rows),
                           static_cast<long long>(r), static_cast<long long>(o), got, static_cast<double>(cpu_y[r * out + o]), cpu_tol);
            }
          }
          if (rows == 64) {
            first = y;
          } else if (rows < 64) {
            CANOPY_CHECK(std::memcmp(first.data(), y.data(), y.size() * sizeof(float)) == 0, "%s in %lld out %lld: %lld rows differ bitwise from 64",
                         info.name, static_cast<long long>(in), static_cast<long long>(out), static_cast<long long>(rows));
          }
        }
      }
    }
  }
  return true;
}

// Bias and accumulate, on both kernels (rows 3: version 1; rows 70: tiled), against the CPU path's
// own bias / accumulate applied to the same CUDA product.
bool CudaBiasAndAccumulate() {
  const QuantType t = QuantType::kQ4_K;
  const int64_t in = 512, out = 19;
  const std::vector<uint8_t> w = RandomBlocks(t, out, in);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(70 * in)), bias(out), y0(static_cast<size_t>(70 * out));
  for (auto& v : x) v = nd(Rng());
  for (auto& v : bias) v = nd(Rng());
  for (auto& v : y0) v = nd(Rng());
  for (int64_t rows : {int64_t{3}, int64_t{70}}) {
    Status st;
    std::vector<float> y0r(y0.begin(), y0.begin() + rows * out);
    const std::vector<float> plain = RunCuda(t, w, x.data(), rows, in, out, nullptr, nullptr, &st);
    CANOPY_CHECK(st.ok(), "%s", st.message().c_str());
    const std::vector<float> biased = RunCuda(t, w, x.data(), rows, in, out, &bias, &y0r, &st);
    CANOPY_CHECK(st.ok(), "%s", st.message().c_str());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        const float want = y0r[r * out + o] + (plain[r * out + o] + bias[o]);
        CANOPY_CHECK(biased[r * out + o] == want, "rows %lld [%lld, %lld]: %.9g vs %.9g", static_cast<long long>(rows),
                     static_cast<long long>(r), static_cast<long long>(o), biased[r * out + o], want);
      }
    }
  }
  return true;
}

// The CUDA embedding lookup of every block type: each value equal to the CPU's (DequantizeRow).
bool CudaEmbedMatchesCpu() {
  for (QuantType t : kTypes) {
    const QuantTypeInfo info = GetQuantTypeInfo(t);
    const int64_t vocab = 37, dim = 512;
    const std::vector<uint8_t> table = RandomBlocks(t, vocab, dim);
    const std::vector<int32_t> tokens = {0, 36, 5, 5, 17};
    const int64_t n = static_cast<int64_t>(tokens.size());
    std::vector<float> want(static_cast<size_t>(n * dim)), got(want.size());
    CANOPY_CHECK_OK(cpu::EmbedQuant(tokens.data(), n, table.data(), t, vocab, dim, want.data()));
    DeviceBuf dt, dtok, dx;
    CANOPY_CHECK_OK(dt.Upload(table.data(), table.size()));
    CANOPY_CHECK_OK(dtok.Upload(tokens.data(), tokens.size() * sizeof(int32_t)));
    CANOPY_CHECK_OK(dx.Upload(got.data(), got.size() * sizeof(float)));
    CANOPY_CHECK_OK(cuda::EmbedQuant(static_cast<const int32_t*>(dtok.p), n, dt.p, t, vocab, dim, static_cast<float*>(dx.p)));
    CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, got.data(), dx.p, got.size() * sizeof(float)));
    for (int64_t k = 0; k < n; ++k) {
      const uint8_t* row = table.data() + tokens[k] * QuantRowBytes(t, dim);
      for (int64_t b = 0; b < dim / info.block; ++b) {
        DecodedBlock db;
        DecodeBlock(t, row + b * info.bytes, &db);
        for (int i = 0; i < info.block; ++i) {
          // Both compute (d * sc) * q - dmin * m in f32; the host compiler may contract the last
          // two steps into an fma (one rounding fewer): allow an ulp of the two terms.
          const int j = i / info.sub;
          const double prod = static_cast<double>(db.d * static_cast<float>(db.sc[j])) * db.q[i];
          const double off = static_cast<double>(db.dmin * static_cast<float>(db.mn[j]));
          const double tol = std::ldexp(1.0, -23) * (std::fabs(prod) + std::fabs(off));
          const size_t at = static_cast<size_t>(k * dim + b * info.block + i);
          CANOPY_CHECK(std::fabs(static_cast<double>(got[at]) - want[at]) <= tol, "%s token %lld value %lld: cuda %.9g vs cpu %.9g",
                       info.name, static_cast<long long>(k), static_cast<long long>(b * info.block + i), got[at], want[at]);
        }
      }
    }
  }
  return true;
}

Register r1("quant: cpu linear against a double reference on its 8-bit activations, every ISA and row count bitwise", false,
            CpuMatchesReference);
Register r7("quant: cpu linear, every row count (1..200), ISA and thread count bit-identical to the one-row call, bias and accumulate", false,
            CpuRowCountsBitIdentical);
Register r8("quant: cpu activation quantizer equals its scalar definition bitwise (zeros, ties, NaN, infinities)", false,
            CpuQuantizeActivationsMatchDefinition);
Register r2("quant: cpu linear rejects a row length off the block and unknown types", false, CpuRejectsBadShapes);
Register r3("quant: cuda linear refuses the block types it has no kernel for, naming them", true, CudaRefusesBlockTypes);
Register r4("quant: cuda linear (Q8_0, Q4_0, Q4_K, Q6_K) against the double reference and the cpu kernel, rows 1..130 on odd shapes", true,
            CudaMatchesReferenceAndCpu);
Register r5("quant: cuda linear bias and accumulate on the gemv and tiled kernels", true, CudaBiasAndAccumulate);
Register r6("quant: cuda embedding lookup of every block type equals the cpu's", true, CudaEmbedMatchesCpu);

}  // namespace
}  // namespace tests
}  // namespace canopy
