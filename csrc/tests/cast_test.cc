// cast: CPU kernel against the scalar conversions, and the CUDA kernel
// against the CPU kernel bit for bit, on awkward lengths and special values.
#include <cmath>
#include <cstring>
#include <limits>

#include "../common/cast.h"
#include "../common/runtime.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

const int64_t kLengths[] = {0, 1, 7, 17, 37, 113, 4097, 1 << 20};
const DType kFloatTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

// Random bit patterns cover every exponent, subnormals, inf and NaN.
std::vector<uint8_t> RandomBytes(int64_t n, DType t) {
  std::vector<uint8_t> bytes(static_cast<size_t>(n * DTypeSize(t)));
  for (auto& b : bytes) b = static_cast<uint8_t>(Rng()() & 0xff);
  return bytes;
}

bool BitsEqualModuloNaN(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, DType t, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t x = 0, y = 0;
    std::memcpy(&x, a.data() + i * DTypeSize(t), DTypeSize(t));
    std::memcpy(&y, b.data() + i * DTypeSize(t), DTypeSize(t));
    if (x != y) {
      std::fprintf(stderr, "  first mismatch at %lld: 0x%x vs 0x%x (%s)\n", static_cast<long long>(i), x, y,
                   DTypeName(t));
      return false;
    }
  }
  return true;
}

bool CpuMatchesScalar() {
  for (DType from : kFloatTypes) {
    for (DType to : kFloatTypes) {
      for (int64_t n : kLengths) {
        std::vector<uint8_t> in = RandomBytes(n, from), out(n * DTypeSize(to)), ref(n * DTypeSize(to));
        CANOPY_CHECK_OK(cpu::Cast(in.data(), from, out.data(), to, n));
        for (int64_t i = 0; i < n; ++i) {
          float v;
          if (from == DType::kF32) std::memcpy(&v, in.data() + 4 * i, 4);
          else {
            uint16_t h;
            std::memcpy(&h, in.data() + 2 * i, 2);
            v = from == DType::kF16 ? F16BitsToF32(h) : BF16BitsToF32(h);
          }
          if (from == to) {
            std::memcpy(ref.data() + i * DTypeSize(to), in.data() + i * DTypeSize(from), DTypeSize(to));
          } else if (to == DType::kF32) {
            std::memcpy(ref.data() + 4 * i, &v, 4);
          } else {
            uint16_t h = to == DType::kF16 ? F32ToF16Bits(v) : F32ToBF16Bits(v);
            std::memcpy(ref.data() + 2 * i, &h, 2);
          }
        }
        CANOPY_CHECK(BitsEqualModuloNaN(out, ref, to, n), "%s -> %s, n=%lld", DTypeName(from), DTypeName(to),
                     static_cast<long long>(n));
      }
    }
  }
  return true;
}

bool CudaMatchesCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  for (DType from : kFloatTypes) {
    for (DType to : kFloatTypes) {
      for (int64_t n : kLengths) {
        std::vector<uint8_t> in = RandomBytes(n, from), out(n * DTypeSize(to)), ref(n * DTypeSize(to));
        CANOPY_CHECK_OK(cpu::Cast(in.data(), from, ref.data(), to, n));
        void *d_in = nullptr, *d_out = nullptr;
        CANOPY_CHECK_OK(cuda::Malloc(0, in.size(), &d_in));
        CANOPY_CHECK_OK(cuda::Malloc(0, out.size(), &d_out));
        CANOPY_CHECK_OK(cuda::CopyHostToDevice(0, d_in, in.data(), in.size()));
        CANOPY_CHECK_OK(cuda::Cast(d_in, from, d_out, to, n));
        CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, out.data(), d_out, out.size()));
        cuda::Free(0, d_in);
        cuda::Free(0, d_out);
        CANOPY_CHECK(BitsEqualModuloNaN(out, ref, to, n), "cuda %s -> %s, n=%lld", DTypeName(from), DTypeName(to),
                     static_cast<long long>(n));
      }
    }
  }
  return true;
}

bool CudaReportsOutOfMemory() {
  void* p = nullptr;
  Status s = cuda::Malloc(0, static_cast<size_t>(1) << 50, &p);  // 1 PiB
  CANOPY_CHECK(s.code() == StatusCode::kOutOfMemory, "expected out-of-memory, got %s: %s", StatusCodeName(s.code()),
               s.message().c_str());
  CANOPY_CHECK(p == nullptr, "pointer should be null after a failed allocation");
  // The runtime must still work after the failure.
  CANOPY_CHECK_OK(cuda::Malloc(0, 1024, &p));
  CANOPY_CHECK_OK(cuda::Free(0, p));
  return true;
}

Register r1("cast: cpu kernel equals scalar conversions", false, CpuMatchesScalar);
Register r2("cast: cuda kernel equals cpu kernel bitwise", true, CudaMatchesCpu);
Register r3("cuda: out of memory is a Status, runtime stays usable", true, CudaReportsOutOfMemory);

}  // namespace
}  // namespace tests
}  // namespace canopy
