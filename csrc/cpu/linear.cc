// CPU linear layer: ISA dispatch and threading. The tiles are in linear_tiles.h (see there
// for the fixed per-element arithmetic that makes results independent of the row count and
// the thread count). Threads split the weight rows in chunks of kLinearChunk: each weight
// row is read from memory once per call, by the thread that owns it.
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <memory>
#include <new>

#include "../common/linear.h"
#include "../common/runtime.h"
#include "linear_cpu.h"
#include "thread_pool.h"

#define CANOPY_TILE_NS linear_base
#define CANOPY_TILE_VEC_BYTES 32
#include "linear_tiles.h"
#undef CANOPY_TILE_NS
#undef CANOPY_TILE_VEC_BYTES

namespace canopy {
namespace cpu {
namespace {
void RunBase(const LinearParams& p, int64_t o_begin, int64_t o_end, float* scratch) {
  linear_base::Run(p, o_begin, o_end, scratch);
}
static_assert(linear_base::kChunk == kLinearChunk, "chunk sizes agree");
static_assert(linear_base::ScratchFloats(1) <= kLinearChunk * (1 + 64 * 16), "scratch covers the tiles' needs");

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};

// A 64-byte aligned buffer of this thread's (kept between calls; grown as needed), one per
// `slot`. nullptr if it cannot be allocated: the callers then go without (same results,
// slower for many rows).
float* Scratch(int64_t floats, int slot = 0) {
  thread_local std::unique_ptr<float, AlignedFree> buf[2];
  thread_local int64_t size[2] = {0, 0};
  if (size[slot] < floats) {
    buf[slot].reset(nullptr);
    const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
    buf[slot].reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    size[slot] = buf[slot] ? floats : 0;
  }
  return buf[slot].get();
}
}  // namespace

LinearRowsFn SelectLinearRows(const char** name) {
  const char* isa = std::getenv("CANOPY_CPU_ISA");
  const bool force_base = isa != nullptr && std::strcmp(isa, "avx2") == 0;
  const bool force_portable = isa != nullptr && std::strcmp(isa, "portable") == 0;
  const CpuFeatures& f = GetCpuFeatures();
  LinearRowsFn wide = LinearRowsAvx512();
  const char* chosen;
  LinearRowsFn fn;
#if defined(__AVX2__)
  const bool have_base = true;
#else
  const bool have_base = false;  // a non-x86 build: linear_base is the portable code itself
#endif
  LinearRowsFn neon = LinearRowsNeon();  // aarch64 only (NEON is part of its baseline)
  if (force_portable) {
    fn = LinearRowsPortable(), chosen = "portable";
  } else if (neon) {
    fn = neon, chosen = "neon";
  } else if (!force_base && wide && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) {
    fn = wide, chosen = "avx512";
  } else if (have_base) {
    fn = &RunBase, chosen = "avx2";
  } else {
    fn = LinearRowsPortable(), chosen = "portable";
  }
  if (name) *name = chosen;
  return fn;
}

Status Linear(const LinearParams& p) {
  if (p.w_quant != QuantType::kNone) return LinearQuant(p);  // GGUF blocks: linear_quant.cc
  CANOPY_RETURN_IF_ERROR(CheckLinearParams(p));
  if (p.rows == 0) return Status::Ok();
  LinearRowsFn rows_fn = SelectLinearRows(nullptr);
  // Many rows: activations at a 64-byte aligned address (a copy, the same values) when the rows
  // then stay aligned, so the tiles' vector loads never split cache lines.
  LinearParams q = p;
  if (p.rows >= 8 && p.in % 16 == 0 && reinterpret_cast<uintptr_t>(p.x) % 64 != 0) {
    if (float* xa = Scratch(p.rows * p.in, 1)) {
      std::memcpy(xa, p.x, static_cast<size_t>(p.rows * p.in) * sizeof(float));
      q.x = xa;
    }
  }
  const int64_t chunks = (p.out + kLinearChunk - 1) / kLinearChunk;
  // At least ~256k multiply-adds per task: tiny layers (test models) stay on one thread
  // instead of paying for a wake-up per call.
  const int64_t per_chunk = kLinearChunk * p.in * p.rows;
  const int64_t grain = per_chunk >= (int64_t{1} << 18) ? 1 : ((int64_t{1} << 18) + per_chunk - 1) / per_chunk;
  // Scratch for widened weight chunks and k-blocked accumulators (linear_tiles.h
  // ScratchFloats, at the widest vectors): only blocks of 8+ rows use it.
  const bool scratch = p.rows >= 8;
  ParallelFor(chunks, grain, [&](int64_t b, int64_t e) {
    const int64_t o0 = b * kLinearChunk, o1 = e * kLinearChunk < p.out ? e * kLinearChunk : p.out;
    rows_fn(q, o0, o1, scratch ? Scratch(kLinearChunk * (p.in + 64 * 16)) : nullptr);
  });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
