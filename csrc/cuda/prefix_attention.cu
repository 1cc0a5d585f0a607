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
#include "workspace.cuh"

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
  // One kernel-workspace lease for the whole call (no cudaMalloc / cudaFree): every part's
  // upload image, then the f32 partials of all slots. The parts launch from their uploaded
  // images (LaunchAttentionUploaded takes no workspace of its own).
  std::vector<AttentionUpload> ups(P);
  WorkspaceLease ws;
  std::vector<size_t> off_up(P);
  for (int32_t i = 0; i < P; ++i) {
    CANOPY_RETURN_IF_ERROR(BuildAttentionUpload(parts[i], plans[i], slot0[i], &ups[i]));
    off_up[i] = ws.Reserve(ups[i].bytes.size());
  }
  const size_t rows = static_cast<size_t>(p.total_q) * slots * p.num_qo_heads;
  const size_t off_o = ws.Reserve(rows * p.head_dim * sizeof(float));
  const size_t off_lse = ws.Reserve(rows * sizeof(float));
  CANOPY_RETURN_IF_ERROR(ws.Acquire());
  float* part_o = ws.At<float>(off_o);
  float* part_lse = ws.At<float>(off_lse);
  // Every (row, slot) is written: each level's groups cover every sequence.
  for (int32_t i = 0; i < P; ++i) {
    if (ups[i].num_items == 0) continue;
    CANOPY_CUDA_RETURN_IF_ERROR(cudaMemcpy(ws.At<char>(off_up[i]), ups[i].bytes.data(), ups[i].bytes.size(), cudaMemcpyHostToDevice));
    CANOPY_RETURN_IF_ERROR(LaunchAttentionUploaded(parts[i], plans[i], ups[i], ws.At<const char>(off_up[i]), slots, part_o, part_lse, false));
  }
  Status st = MergePartials(part_o, part_lse, p.o, p.lse, p.dtype, p.total_q, slots, p.num_qo_heads, p.head_dim);
  // The workspace is reused by the next call: wait for the kernels before releasing it.
  if (st.ok()) st = FromCudaError(cudaDeviceSynchronize(), "prefixAttention merge");
  return st;
}

}  // namespace cuda
}  // namespace canopy
