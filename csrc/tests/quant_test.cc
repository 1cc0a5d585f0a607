// GGUF block-quantized weights (csrc/common/quant_blocks.h): the CPU linear kernel against a
// double-precision reference on its own 8-bit activations, every ISA path bit-identical and every
// row count bit-identical; the CUDA launchers refuse block types with a Status (no CUDA kernels yet).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common/linear.h"
#include "../common/quant_blocks.h"
#include "../cpu/linear_quant_cpu.h"
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
  LinearParams p;
  p.rows = 1;
  p.in = 32;
  p.out = 1;
  p.w_quant = QuantType::kQ4_0;
  const Status st = cuda::Linear(p);
  CANOPY_CHECK(!st.ok() && st.message().find("Q4_0") != std::string::npos, "cuda::Linear accepted Q4_0 blocks: %s", st.message().c_str());
  return true;
}

Register r1("quant: cpu linear against a double reference on its 8-bit activations, every ISA and row count bitwise", false,
            CpuMatchesReference);
Register r2("quant: cpu linear rejects a row length off the block and unknown types", false, CpuRejectsBadShapes);
Register r3("quant: cuda linear refuses block types with a Status", true, CudaRefusesBlockTypes);

}  // namespace
}  // namespace tests
}  // namespace canopy
