// CUDA shared-prefix attention (csrc/common/prefix_attention.h), version 1: every level and the
// suffix run through the v1 attention kernel (attention.cu) as their own ragged batch (a level's
// groups are its "sequences", so the queries of all sequences of a group share each staged key
// block: one block of up to 16 query rows per (group, kv head, key split) instead of one per
// sequence), each writing f32 partial states into its own slots of one buffer; one merge kernel
// combines them. Later versions give the level tiles more query rows per block (tensor cores).
#include <cuda_runtime.h>

#include <vector>

#include "../common/prefix_attention.h"
#include "../common/runtime.h"
#include "attention_internal.cuh"
#include "check.cuh"
#include "merge_states.cuh"

namespace canopy {
namespace cuda {

Status PrefixAttention(const PrefixAttentionParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckPrefixAttentionParams(p));
  if (p.num_levels == 0) {
    PrefixPartStorage qo;
    return Attention(PrefixPartParams(p, -1, &qo));
  }
  if (p.total_q == 0) return Status::Ok();
  const int32_t P = p.num_levels + 1;
  std::vector<PrefixPartStorage> qo(P);
  std::vector<AttentionParams> parts(P);
  std::vector<AttentionPlan> plans(P);
  std::vector<int32_t> slot0(P);
  int32_t slots = 0;
  for (int32_t i = 0; i < P; ++i) {
    parts[i] = PrefixPartParams(p, i < p.num_levels ? i : -1, &qo[i]);
    CANOPY_RETURN_IF_ERROR(PlanAttention(parts[i], &plans[i]));
    slot0[i] = slots;
    slots += plans[i].splits;
  }
  int device = 0;
  CANOPY_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  const size_t rows = static_cast<size_t>(p.total_q) * slots * p.num_qo_heads;
  void *part_o = nullptr, *part_lse = nullptr;
  CANOPY_RETURN_IF_ERROR(Malloc(device, rows * p.head_dim * sizeof(float), &part_o));
  Status st = Malloc(device, rows * sizeof(float), &part_lse);
  // Every (row, slot) is written: each level's groups cover every sequence.
  for (int32_t i = 0; i < P && st.ok(); ++i) {
    st = LaunchAttention(parts[i], plans[i], slot0[i], slots, static_cast<float*>(part_o), static_cast<float*>(part_lse));
  }
  if (st.ok()) {
    st = MergePartials(static_cast<float*>(part_o), static_cast<float*>(part_lse), p.o, p.lse, p.dtype, p.total_q, slots,
                       p.num_qo_heads, p.head_dim);
  }
  if (st.ok()) st = FromCudaError(cudaDeviceSynchronize(), "prefixAttention merge");
  Free(device, part_o);
  if (part_lse) Free(device, part_lse);
  return st;
}

}  // namespace cuda
}  // namespace canopy
