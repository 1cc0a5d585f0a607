// Op family: the elementwise and row-wise pieces of a Llama block, on f32 activations.
//
//   RmsNorm   y[n][i] = x[n][i] / sqrt(mean_i(x[n][i]^2) + eps) * w[i]         w: f32/f16/bf16
//   Rope      rotates pairs of each head's dims of q [rows, nq, D] and k [rows, nk, D] in place
//             by angle pos[n] * inv_freq[j] (angle in double), scaled by attention_factor m:
//               (a, b) -> m (a cos - b sin, a sin + b cos)
//             pairs are (2j, 2j+1) for kInterleaved and (j, j + D/2) for kHalf. inv_freq and m
//             come from the model's RoPE scaling (lib/model/rope.ts states the math: theta^(-2j/D),
//             per-frequency factors, llama3 / linear / YaRN); m is 1 except for YaRN (HF's
//             attention_factor, llama.cpp's mscale), and multiplies both q and k.
//   SwiGlu    h[n][i] = silu(g[n][i]) * u[n][i],  silu(z) = z / (1 + exp(-z))
//   GeGlu     h[n][i] = gelu(g[n][i]) * u[n][i] with the tanh approximation (Gemma's
//             gelu_pytorch_tanh, ggml_gelu): gelu(z) = z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
//   Softcap   x[i] = cap * tanh(x[i] / cap) in place (Gemma 2's final logits)
//   Scale     x[i] *= s in place (Gemma's embedding scale sqrt(dim))
//   Embed     x[n][:] = table[token[n]][:]                                        table: f32/f16/bf16
//   AddBias   y[n][:] += b[:]
//   Argmax    best[n] = argmax_v logits[n][v], ties to the lowest id; NaN counts as -inf
//             (as in verify.h), but a row with no value above -inf (all NaN / -inf: broken
//             numbers) gives -1, not a token
#pragma once

#include <cstdint>

#include "dtype.h"
#include "quant_blocks.h"
#include "status.h"

namespace canopy {

enum class RopeLayout : int32_t { kInterleaved = 0, kHalf = 1 };

struct RopeParams {
  float* q = nullptr;
  float* k = nullptr;
  const int32_t* positions = nullptr;  // [rows]
  const float* inv_freq = nullptr;     // [D/2] (CUDA: device pointer)
  int64_t rows = 0;
  int32_t nq = 0, nk = 0, head_dim = 0;
  RopeLayout layout = RopeLayout::kInterleaved;
  float attention_factor = 1.f;  // multiplies cos and sin (YaRN); 1 otherwise
};

namespace cpu {
Status RmsNorm(const float* x, const void* w, DType w_dtype, float eps, float* y, int64_t rows, int64_t dim);
Status Rope(const RopeParams& p);
Status SwiGlu(const float* g, const float* u, float* h, int64_t n);
Status GeGlu(const float* g, const float* u, float* h, int64_t n);
Status Softcap(float* x, int64_t n, float cap);
Status Scale(float* x, int64_t n, float s);
Status Embed(const int32_t* tokens, int64_t rows, const void* table, DType dtype, int64_t vocab, int64_t dim, float* x);
// Embed from a GGUF block-quantized table [vocab][dim] (quant_blocks.h): only the looked-up rows are
// dequantized (dim a multiple of the block).
Status EmbedQuant(const int32_t* tokens, int64_t rows, const void* table, QuantType type, int64_t vocab, int64_t dim, float* x);
Status Argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* best);
}  // namespace cpu

namespace cuda {
Status RmsNorm(const float* x, const void* w, DType w_dtype, float eps, float* y, int64_t rows, int64_t dim);
Status Rope(const RopeParams& p);
Status SwiGlu(const float* g, const float* u, float* h, int64_t n);
Status GeGlu(const float* g, const float* u, float* h, int64_t n);
Status Softcap(float* x, int64_t n, float cap);
Status Scale(float* x, int64_t n, float s);
Status Embed(const int32_t* tokens, int64_t rows, const void* table, DType dtype, int64_t vocab, int64_t dim, float* x);
// As cpu::EmbedQuant (every block type; tokens are device pointers, checked by the caller): each
// value exactly DequantizeBlock's.
Status EmbedQuant(const int32_t* tokens, int64_t rows, const void* table, QuantType type, int64_t vocab, int64_t dim, float* x);
Status Argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* best);
// Argmax with `best` in HOST memory: the ids pass through the kernel workspace (no cudaMalloc per
// call). Synchronous on return.
Status ArgmaxToHost(const float* logits, int64_t rows, int64_t vocab, int32_t* best);
}  // namespace cuda

}  // namespace canopy
