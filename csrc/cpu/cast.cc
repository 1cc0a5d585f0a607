// CPU cast kernel: scalar reference loops, threaded over the pool. The scalar
// conversions in dtype.h are exact (round to nearest even); the compiler
// vectorises the f32 <-> bf16 loops. f16 uses F16C when the build enables it
// (the baseline does): vcvtps2ph with imm 0 rounds to nearest even and keeps
// subnormals, matching F32ToF16Bits bit for bit (NaN payloads included).
#include <cstring>

#include "../common/cast.h"
#include "thread_pool.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace canopy {
namespace cpu {
namespace {

void F32ToF16Range(const float* in, uint16_t* out, int64_t begin, int64_t end) {
  int64_t i = begin;
#if defined(__F16C__)
  for (; i + 8 <= end; i += 8) {
    __m256 v = _mm256_loadu_ps(in + i);
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
#endif
  for (; i < end; ++i) out[i] = F32ToF16Bits(in[i]);
}

void F32ToBF16Range(const float* in, uint16_t* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) out[i] = F32ToBF16Bits(in[i]);
}

}  // namespace

Status Cast(const void* in, DType from, void* out, DType to, int64_t n) {
  CANOPY_RETURN_IF_ERROR(CheckCastArgs(from, to, n));
  if (n == 0) return Status::Ok();
  constexpr int64_t kGrain = 1 << 16;
  if (from == to) {
    const int64_t size = DTypeSize(from);
    ParallelFor(n, kGrain, [&](int64_t b, int64_t e) {
      std::memmove(static_cast<char*>(out) + b * size, static_cast<const char*>(in) + b * size, (e - b) * size);
    });
  } else if (from == DType::kF32 && to == DType::kF16) {
    ParallelFor(n, kGrain, [&](int64_t b, int64_t e) {
      F32ToF16Range(static_cast<const float*>(in), static_cast<uint16_t*>(out), b, e);
    });
  } else if (from == DType::kF32 && to == DType::kBF16) {
    ParallelFor(n, kGrain, [&](int64_t b, int64_t e) {
      F32ToBF16Range(static_cast<const float*>(in), static_cast<uint16_t*>(out), b, e);
    });
  } else {
    ParallelFor(n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) StoreFromF32(out, to, i, LoadAsF32(in, from, i));
    });
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
