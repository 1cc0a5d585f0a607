// CUDA row-wise Llama block ops (csrc/common/transformer_ops.h), straightforward
// kernels: one block per row for reductions, one thread per element otherwise.
// Launchers are asynchronous on the default stream; the forward pass synchronises.
#include <cuda_runtime.h>

#include <string>

#include "../common/transformer_ops.h"
#include "check.cuh"
#include "workspace.cuh"

namespace canopy {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__device__ float BlockSum(float v, float* shared) {
  for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(0xffffffffu, v, s);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : 0.f;
  if (warp == 0)
    for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(0xffffffffu, v, s);
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  const float total = shared[0];
  __syncthreads();
  return total;
}

__global__ void RmsNormKernel(const float* x, const void* w, DType wt, float eps, float* y, int64_t dim) {
  __shared__ float shared[32];
  const float* xr = x + blockIdx.x * dim;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = BlockSum(ss, shared);
  const float inv = rsqrtf(ss / dim + eps);
  float* yr = y + blockIdx.x * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * inv * LoadAsF32(w, wt, i);
}

__global__ void RopeKernel(RopeParams p) {
  const int half = p.head_dim / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int heads = p.nq + p.nk;
  if (idx >= p.rows * heads * half) return;
  const int j = static_cast<int>(idx % half);
  const int h = static_cast<int>((idx / half) % heads);
  const int64_t n = idx / (static_cast<int64_t>(half) * heads);
  float* v = h < p.nq ? p.q + (n * p.nq + h) * p.head_dim : p.k + (n * p.nk + (h - p.nq)) * p.head_dim;
  const double angle = static_cast<double>(p.positions[n]) * p.inv_freq[j];
  const float c = static_cast<float>(cos(angle) * p.attention_factor), s = static_cast<float>(sin(angle) * p.attention_factor);
  const int i0 = p.layout == RopeLayout::kInterleaved ? 2 * j : j;
  const int i1 = p.layout == RopeLayout::kInterleaved ? 2 * j + 1 : j + half;
  const float a = v[i0], b = v[i1];
  v[i0] = a * c - b * s;
  v[i1] = a * s + b * c;
}

__global__ void SwiGluKernel(const float* g, const float* u, float* h, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) h[i] = g[i] / (1.f + expf(-g[i])) * u[i];
}

__global__ void GeGluKernel(const float* g, const float* u, float* h, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    const float z = g[i];
    h[i] = 0.5f * z * (1.f + tanhf(0.7978845608028654f * (z + 0.044715f * z * z * z))) * u[i];
  }
}

__global__ void SoftcapKernel(float* x, int64_t n, float cap) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

__global__ void ScaleKernel(float* x, int64_t n, float s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

__global__ void EmbedKernel(const int32_t* tokens, const void* table, DType dt, int64_t dim, float* x) {
  const int64_t n = blockIdx.x;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) x[n * dim + i] = LoadAsF32(table, dt, tokens[n] * dim + i);
}

// One token's row of a block-quantized table: a thread per block, each value as DequantizeBlock
// (the f32 products rounded, no contraction). block / sub / bytes: the type's facts.
__global__ void EmbedQuantKernel(const int32_t* tokens, const uint8_t* table, QuantType type, int block, int sub, int bytes,
                                 int64_t dim, float* x) {
  const int64_t n = blockIdx.x;
  const int64_t nb = dim / block;
  const uint8_t* row = table + static_cast<int64_t>(tokens[n]) * nb * bytes;
  for (int64_t b = threadIdx.x; b < nb; b += blockDim.x) {
    DecodedBlock db;
    DecodeBlock(type, row + b * bytes, &db);
    float* out = x + n * dim + b * block;
    for (int i = 0; i < block; ++i) {
      const int j = i / sub;
      const float scale = __fmul_rn(db.d, static_cast<float>(db.sc[j]));
      const float offset = __fmul_rn(db.dmin, static_cast<float>(db.mn[j]));
      out[i] = __fsub_rn(__fmul_rn(scale, static_cast<float>(db.q[i])), offset);
    }
  }
}

__global__ void ArgmaxKernel(const float* logits, int64_t vocab, int32_t* best) {
  __shared__ float sv[kThreads];
  __shared__ int32_t si[kThreads];
  const float* l = logits + blockIdx.x * vocab;
  float bv = -INFINITY;
  int32_t bi = 0x7fffffff;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    if (l[v] > bv) {  // strided scan: first index wins ties within a thread
      bv = l[v];
      bi = static_cast<int32_t>(v);
    }
  }
  sv[threadIdx.x] = bv;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float ov = sv[threadIdx.x + s];
      const int32_t oi = si[threadIdx.x + s];
      if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) {
        sv[threadIdx.x] = ov;
        si[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) best[blockIdx.x] = si[0] == 0x7fffffff ? -1 : si[0];  // nothing above -inf: -1
}

unsigned Blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

Status RmsNorm(const float* x, const void* w, DType w_dtype, float eps, float* y, int64_t rows, int64_t dim) {
  // The CPU kernel's checks: LoadAsF32 reads any non-f32/f16 dtype as bf16, and dim 0 divides by 0.
  if (!IsFloatDType(w_dtype) || dim <= 0) return Status::InvalidArgument("rmsNorm: bad weight dtype or dim");
  if (rows == 0) return Status::Ok();
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads>>>(x, w, w_dtype, eps, y, dim);
  return FromCudaError(cudaGetLastError(), "RmsNormKernel launch");
}

Status Rope(const RopeParams& p) {
  // As the CPU kernel: an odd head_dim has no pairing (the kernel would leave the last dim unrotated).
  if (p.head_dim <= 0 || p.head_dim % 2 != 0) return Status::InvalidArgument("rope: head_dim must be even");
  const int64_t n = p.rows * (p.nq + p.nk) * (p.head_dim / 2);
  if (n == 0) return Status::Ok();
  RopeKernel<<<Blocks(n), kThreads>>>(p);
  return FromCudaError(cudaGetLastError(), "RopeKernel launch");
}

Status SwiGlu(const float* g, const float* u, float* h, int64_t n) {
  if (n == 0) return Status::Ok();
  SwiGluKernel<<<Blocks(n), kThreads>>>(g, u, h, n);
  return FromCudaError(cudaGetLastError(), "SwiGluKernel launch");
}

Status GeGlu(const float* g, const float* u, float* h, int64_t n) {
  if (n == 0) return Status::Ok();
  GeGluKernel<<<Blocks(n), kThreads>>>(g, u, h, n);
  return FromCudaError(cudaGetLastError(), "GeGluKernel launch");
}

Status Softcap(float* x, int64_t n, float cap) {
  if (!(cap > 0.f)) return Status::InvalidArgument("softcap: cap must be > 0; received " + std::to_string(cap));
  if (n == 0) return Status::Ok();
  SoftcapKernel<<<Blocks(n), kThreads>>>(x, n, cap);
  return FromCudaError(cudaGetLastError(), "SoftcapKernel launch");
}

Status Scale(float* x, int64_t n, float s) {
  if (n == 0) return Status::Ok();
  ScaleKernel<<<Blocks(n), kThreads>>>(x, n, s);
  return FromCudaError(cudaGetLastError(), "ScaleKernel launch");
}

Status Embed(const int32_t* tokens, int64_t rows, const void* table, DType dtype, int64_t, int64_t dim, float* x) {
  if (rows == 0) return Status::Ok();
  EmbedKernel<<<static_cast<unsigned>(rows), kThreads>>>(tokens, table, dtype, dim, x);
  return FromCudaError(cudaGetLastError(), "EmbedKernel launch");
}

Status EmbedQuant(const int32_t* tokens, int64_t rows, const void* table, QuantType type, int64_t, int64_t dim, float* x) {
  const QuantTypeInfo info = GetQuantTypeInfo(type);
  if (info.block == 0) return Status::InvalidArgument("embed (cuda): unknown block type " + std::to_string(static_cast<int>(type)));
  if (dim % info.block != 0) {
    return Status::InvalidArgument(std::string("embed (cuda): ") + info.name + " rows need dim to be a multiple of " +
                                   std::to_string(info.block));
  }
  if (rows == 0) return Status::Ok();
  EmbedQuantKernel<<<static_cast<unsigned>(rows), 64>>>(tokens, static_cast<const uint8_t*>(table), type, info.block, info.sub,
                                                       info.bytes, dim, x);
  return FromCudaError(cudaGetLastError(), "EmbedQuantKernel launch");
}

Status Argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* best) {
  if (rows == 0) return Status::Ok();
  ArgmaxKernel<<<static_cast<unsigned>(rows), kThreads>>>(logits, vocab, best);
  return FromCudaError(cudaGetLastError(), "ArgmaxKernel launch");
}

Status ArgmaxToHost(const float* logits, int64_t rows, int64_t vocab, int32_t* best) {
  if (rows == 0) return Status::Ok();
  WorkspaceLease ws;  // the kernel workspace: held until the copy below has synchronised
  const size_t off = ws.Reserve(static_cast<size_t>(rows) * sizeof(int32_t));
  CANOPY_RETURN_IF_ERROR(ws.Acquire());
  CANOPY_RETURN_IF_ERROR(Argmax(logits, rows, vocab, ws.At<int32_t>(off)));
  return FromCudaError(cudaMemcpy(best, ws.At<int32_t>(off), static_cast<size_t>(rows) * sizeof(int32_t), cudaMemcpyDeviceToHost),
                       "argmax copy");
}

}  // namespace cuda
}  // namespace canopy
