// CUDA KV commit (see csrc/common/kv_commit.h). The host turns the plan into
// a list of row moves per sequence (only those with node != position); one
// block per (sequence, layer, k|v) performs its moves in order, the whole
// block copying one row at a time with a barrier between rows, so a source
// row is read before any later move can overwrite it.
#include <cuda_runtime.h>

#include <vector>

#include "../common/kv_commit.h"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// moves: [M, 2] (dst row, src row) within a layer; move_indptr [B+1].
__global__ void CommitKvKernel(uint16_t* k, uint16_t* v, int64_t capacity, int64_t row_words,
                               const int64_t* move_indptr, const int64_t* moves) {
  const int64_t b = blockIdx.x, layer = blockIdx.y;
  uint16_t* buf = (blockIdx.z == 0 ? k : v) + layer * capacity * row_words;
  for (int64_t m = move_indptr[b]; m < move_indptr[b + 1]; ++m) {
    uint16_t* dst = buf + moves[2 * m] * row_words;
    const uint16_t* src = buf + moves[2 * m + 1] * row_words;
    for (int64_t i = threadIdx.x; i < row_words; i += blockDim.x) dst[i] = src[i];
    __syncthreads();  // the next move may overwrite a row this one read
  }
}

}  // namespace

Status CommitKv(void* k, void* v, DType dtype, int64_t layers, int64_t capacity, int64_t row_elems,
                const KvCommitPlan& plan, int64_t num_nodes, int32_t* new_lens) {
  CANOPY_RETURN_IF_ERROR(CheckKvCommitArgs(dtype, layers, capacity, row_elems, plan, num_nodes));
  if (layers > 65535) return Status::InvalidArgument("commitKv: at most 65535 layers; received " + std::to_string(layers));
  // Host: move list. Layout: move_indptr [B+1] then moves [M, 2], all int64.
  std::vector<int64_t> staged(static_cast<size_t>(plan.batch) + 1, 0);
  for (int32_t b = 0; b < plan.batch; ++b) {
    const int64_t first = static_cast<int64_t>(plan.kv_indptr[b]) + plan.prefix_lens[b];
    const int32_t* nodes = plan.accepted_nodes + plan.tree_indptr[b];
    for (int32_t j = 0; j < plan.accepted_count[b]; ++j) {
      if (nodes[j] == j) continue;
      staged.push_back(first + j);
      staged.push_back(first + nodes[j]);
    }
  }
  const int64_t num_moves = (static_cast<int64_t>(staged.size()) - plan.batch - 1) / 2;
  {
    int64_t m = 0;
    for (int32_t b = 0; b < plan.batch; ++b) {
      staged[b] = m;
      const int32_t* nodes = plan.accepted_nodes + plan.tree_indptr[b];
      for (int32_t j = 0; j < plan.accepted_count[b]; ++j) m += nodes[j] != j;
    }
    staged[plan.batch] = m;
  }
  const int64_t row_words = row_elems * DTypeSize(dtype) / 2;
  if (num_moves > 0 && layers > 0 && row_words > 0) {
    WorkspaceLease ws;  // the kernel workspace: no cudaMalloc / cudaFree per call
    const size_t off = ws.Reserve(staged.size() * sizeof(int64_t));
    CANOPY_RETURN_IF_ERROR(ws.Acquire());
    const int64_t* d_indptr = ws.At<const int64_t>(off);
    CANOPY_RETURN_IF_ERROR(FromCudaError(
        cudaMemcpy(ws.At<int64_t>(off), staged.data(), staged.size() * sizeof(int64_t), cudaMemcpyHostToDevice),
        "cudaMemcpy(commitKv plan)"));
    dim3 grid(static_cast<unsigned>(plan.batch), static_cast<unsigned>(layers), 2);
    CommitKvKernel<<<grid, kThreads>>>(static_cast<uint16_t*>(k), static_cast<uint16_t*>(v), capacity, row_words, d_indptr,
                                       d_indptr + plan.batch + 1);
    CANOPY_RETURN_IF_ERROR(FromCudaError(cudaGetLastError(), "CommitKvKernel launch"));
    CANOPY_RETURN_IF_ERROR(FromCudaError(cudaDeviceSynchronize(), "CommitKvKernel"));
  }
  for (int32_t b = 0; b < plan.batch; ++b) new_lens[b] = plan.prefix_lens[b] + plan.accepted_count[b];
  return Status::Ok();
}

}  // namespace cuda
}  // namespace canopy
