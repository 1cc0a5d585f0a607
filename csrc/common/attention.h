// Op family: attention (flash-style prefill, split-KV decode, tree attention).
//
// Layouts (NHD, row-major, ragged batches CSR-style):
//   q   [total_q,  num_qo_heads, head_dim]      queries of all sequences, concatenated
//   k,v [kv_rows,  num_kv_heads, head_dim]      keys/values; sequence b's keys start at
//                                               row kv_indptr[b] and it uses kv_len(b) rows
//   o   [total_q,  num_qo_heads, head_dim]      same dtype as q
//   lse [total_q,  num_qo_heads] f32 (optional) log-sum-exp of the scaled scores, NATURAL log
// qo_indptr [batch+1]: sequence b's queries are rows [qo_indptr[b], qo_indptr[b+1]).
// kv_indptr [batch+1]: sequence b's keys start at kv_indptr[b]; kv_len(b) = kv_lens[b] when
//   kv_lens is given (rows past it, e.g. cache capacity, are never read), else
//   kv_indptr[b+1] - kv_indptr[b].
// GQA/MQA: qo head hq reads kv head hq / (num_qo_heads / num_kv_heads).
//
// Math, for query row i of sequence b and qo head hq (kv head h):
//   s_j   = scale * <q_i, k_j>                for visible keys j
//   lse_i = log(sum_j exp(s_j))               (-inf when no key is visible)
//   o_i   = sum_j exp(s_j - lse_i) * v_j      (0 when no key is visible)
// accumulated in fp32 whatever the storage dtype (f32, f16, bf16).
//
// Quantized K/V (kv_quant.h): when kv_quant is set, k and v are ignored and keys/values are read
// from that single-layer view of a quantized cache, dequantized on load; kv_indptr[b] is then
// the first row of sequence b's region, kv_rows the cache's rows, and `dtype` the dtype of q and
// o only. int4 also takes kv_quant_lens (keys [0, n) quantized, the rest in the residual ring;
// null: all quantized) and kv_res_start (each sequence's first ring row).
//
// Masks (qo_len = rows of sequence b, kv_len = its keys):
//   kNone    every key is visible.
//   kCausal  aligned bottom-right: query i sits at position kv_len - qo_len + i and sees
//            keys j <= that position (a chunk of new tokens sees the whole cache before it).
//   kTree    the last qo_len keys are the tree nodes themselves (node t at key
//            kv_len - qo_len + t); prefix keys j < kv_len - qo_len are all visible; node i
//            sees node t iff t is i or an ancestor of i (bit t of its ancestor mask).
//            Trees are given by parents (-1 = child of the prefix), topologically ordered.
//
// Soft-capping and sliding windows (Gemma 2 / 3, Mistral-style local layers); 0 turns each off
// and leaves every result bit-identical to a call without it:
//   softcap > 0  s_j <- softcap * tanh(s_j / softcap), after the scale, before mask and softmax
//                (lse is then the log-sum-exp of the capped scores)
//   window > 0   on top of the mask, query i sees key j only if pos(i) - pos(j) < window, i.e.
//                a query at position P sees keys at positions P - window + 1 .. P.
// Positions (used only by the window): key j of sequence b is at kv_pos[b] + j (kv_pos null:
// 0), except that a kTree node's key (j = prefix + u) sits at its own query's position; query
// row i is at q_pos[i] when given, else at kv_pos[b] + prefix + t for the t-th query of the
// sequence (kNone, kCausal: the bottom-right alignment above) or kv_pos[b] + prefix + depth(t)
// (kTree; depth 0 for a child of the prefix). Shared-prefix attention passes absolute positions.
//
// Split-KV (flash-decoding): each (sequence, kv head, query tile) may be split into
// num_splits ranges of keys computed independently and merged with MergeStates. num_splits
// 0 lets the kernel choose (ChooseNumSplits); 1 disables splitting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"
#include "kv_quant.h"
#include "status.h"

namespace canopy {

enum class MaskMode : int32_t { kNone = 0, kCausal = 1, kTree = 2 };

struct AttentionParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // optional
  DType dtype = DType::kF32;
  int32_t batch_size = 0;
  int32_t num_qo_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int64_t total_q = 0;   // rows of q (= qo_indptr[batch])
  int64_t kv_rows = 0;   // rows of k and v
  // Host arrays (the CUDA launcher plans on the host and uploads what it needs).
  const int32_t* qo_indptr = nullptr;
  const int32_t* kv_indptr = nullptr;
  const int32_t* kv_lens = nullptr;  // optional
  MaskMode mask = MaskMode::kNone;
  float scale = 0.f;
  // kTree: parents per query row (indices local to the sequence, -1 for a child of the prefix).
  const int32_t* tree_parents = nullptr;
  int32_t num_splits = 0;  // 0 = heuristic, 1 = no split
  // Quantized K/V (see above); host pointers to the arrays, the view's buffers on the device of q.
  const QuantKvCache* kv_quant = nullptr;
  const int32_t* kv_quant_lens = nullptr;  // [batch], int4
  const int32_t* kv_res_start = nullptr;   // [batch], int4
  // Soft-capping and sliding window (see above; 0 = off).
  float softcap = 0.f;
  int32_t window = 0;
  const int32_t* q_pos = nullptr;   // host [total_q], optional: each query row's position
  const int32_t* kv_pos = nullptr;  // host [batch], optional: the position of each sequence's key 0
};

inline int64_t KvLen(const AttentionParams& p, int b) {
  return p.kv_lens ? p.kv_lens[b] : static_cast<int64_t>(p.kv_indptr[b + 1]) - p.kv_indptr[b];
}

// Validates shapes, indptrs, tree parents (and the quantized view, when set); the binding and
// both kernels call it.
Status CheckAttentionParams(const AttentionParams& p);
// The quantized-KV part of CheckAttentionParams.
Status CheckQuantAttention(const AttentionParams& p);

// Bit-packed ancestor masks for the kTree mode: for each query row r (node t of its
// sequence), words [r * words, (r+1) * words) hold bit u set iff node u is t or an ancestor
// of t. words = ceil(max tree size / 32). Also returns each node's depth (root children: 0).
Status BuildTreeMask(const int32_t* qo_indptr, int32_t batch_size, const int32_t* parents,
                     std::vector<uint32_t>* mask, int32_t* words, std::vector<int32_t>* depths);

// The position of every query row (window attention; see above): q_pos when given, else the
// default from the mask. `depths` are BuildTreeMask's (kTree only; may be null otherwise).
void ResolveQueryPositions(const AttentionParams& p, const int32_t* depths, std::vector<int32_t>* out);

// The split count heuristic: enough independent work items for `workers` (CPU threads or
// CUDA SMs x blocks per SM), and at least `min_chunk` keys per split.
int32_t ChooseNumSplits(int64_t work_items, int64_t max_kv_len, int64_t workers, int64_t min_chunk);

namespace cpu {
Status Attention(const AttentionParams& p);
// The naive baseline for benchmarks: materialises each query's full score row, one pass per
// query and head (no reuse of K/V across GQA heads or queries). Same semantics and outputs.
Status AttentionNaive(const AttentionParams& p);
}  // namespace cpu

namespace cuda {
// q, k, v, o, lse are device pointers; the indptr/len/parent arrays are host pointers.
Status Attention(const AttentionParams& p);
}  // namespace cuda

}  // namespace canopy
