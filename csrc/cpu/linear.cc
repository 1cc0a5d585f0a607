// CPU linear layer: threads split the weight rows (each weight row is read once
// per call, from whichever thread owns it), tiles in linear_tiles.h.
#include <cstdlib>
#include <cstring>

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

Status Linear(const LinearParams& p) {
  if (p.w_quant != QuantType::kNone) return LinearQuant(p);  // GGUF blocks: linear_quant.cc
  CANOPY_RETURN_IF_ERROR(CheckLinearParams(p));
  if (p.rows == 0) return Status::Ok();
  const char* isa = std::getenv("CANOPY_CPU_ISA");
  const bool force_base = isa != nullptr && std::strcmp(isa, "avx2") == 0;
  const CpuFeatures& f = GetCpuFeatures();
  LinearRowsFn wide = LinearRowsAvx512();
  const bool use_wide = !force_base && wide && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
  const int64_t tiles = (p.out + 3) / 4;
  ParallelFor(tiles, 4, [&](int64_t b, int64_t e) {
    const int64_t o0 = b * 4, o1 = e * 4 < p.out ? e * 4 : p.out;
    if (use_wide) {
      wide(p, o0, o1);
    } else {
      linear_base::Run(p, o0, o1);
    }
  });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
