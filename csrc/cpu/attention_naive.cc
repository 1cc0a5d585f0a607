// The naive attention baseline for benchmarks (and a second, independent
// implementation): for each query row and qo head, materialise the full score
// row over all visible keys, softmax it, and sum the values. K/V are re-read
// for every query and head. Threaded over (row, head) so the comparison with
// the flash kernel is about the algorithm, not the thread count.
#include <cmath>
#include <vector>

#include "../common/attention.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {

Status AttentionNaive(const AttentionParams& p) {
  CANOPY_RETURN_IF_ERROR(CheckAttentionParams(p));
  std::vector<uint32_t> mask;
  std::vector<int32_t> depths;
  int32_t words = 0;
  if (p.mask == MaskMode::kTree) CANOPY_RETURN_IF_ERROR(BuildTreeMask(p.qo_indptr, p.batch_size, p.tree_parents, &mask, &words, &depths));
  std::vector<int32_t> q_pos;
  if (p.window > 0) ResolveQueryPositions(p, depths.empty() ? nullptr : depths.data(), &q_pos);
  std::vector<int32_t> seq_of_row(static_cast<size_t>(p.total_q));
  for (int b = 0; b < p.batch_size; ++b)
    for (int32_t r = p.qo_indptr[b]; r < p.qo_indptr[b + 1]; ++r) seq_of_row[r] = b;
  const int Hq = p.num_qo_heads, Hkv = p.num_kv_heads, G = Hq / Hkv, D = p.head_dim;
  ParallelFor(p.total_q * Hq, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, q(D), acc(D);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t row = i / Hq;
      const int hq = static_cast<int>(i % Hq), h = hq / G;
      const int b = seq_of_row[row];
      const int64_t qlen = p.qo_indptr[b + 1] - p.qo_indptr[b], t = row - p.qo_indptr[b];
      const int64_t kv = KvLen(p, b), prefix = kv - qlen, start = p.kv_indptr[b];
      for (int d = 0; d < D; ++d) q[d] = LoadAsF32(p.q, p.dtype, (row * Hq + hq) * D + d);
      // Key / value element loads: the plain cache, or dequantized on load from a quantized one.
      const int64_t ql = p.kv_quant_lens ? p.kv_quant_lens[b] : kv;
      const int64_t rs = p.kv_res_start ? p.kv_res_start[b] : 0;
      auto load = [&](bool value, int64_t j, int d) -> float {
        if (p.kv_quant) return LoadQuantKv(*p.kv_quant, value, start, ql, rs, j, h, d);
        return LoadAsF32(value ? p.v : p.k, p.dtype, ((start + j) * Hkv + h) * D + d);
      };
      scores.assign(static_cast<size_t>(kv), -INFINITY);
      float mx = -INFINITY;
      for (int64_t j = 0; j < kv; ++j) {
        bool visible = true;
        if (p.mask == MaskMode::kCausal) visible = j <= prefix + t;
        if (p.mask == MaskMode::kTree && j >= prefix) {
          const int64_t node = j - prefix;
          visible = (mask[row * words + node / 32] >> (node % 32)) & 1u;
        }
        if (visible && p.window > 0) {
          const int64_t kpos = p.mask == MaskMode::kTree && j >= prefix ? q_pos[p.qo_indptr[b] + j - prefix]
                                                                        : (p.kv_pos ? p.kv_pos[b] : 0) + j;
          visible = q_pos[row] - kpos < p.window;
        }
        if (!visible) continue;
        float s = 0.f;
        for (int d = 0; d < D; ++d) s += q[d] * load(false, j, d);
        scores[j] = s * p.scale;
        if (p.softcap > 0.f) scores[j] = p.softcap * std::tanh(scores[j] / p.softcap);
        mx = std::fmax(mx, scores[j]);
      }
      float sum = 0.f;
      for (int d = 0; d < D; ++d) acc[d] = 0.f;
      if (mx != -INFINITY) {
        for (int64_t j = 0; j < kv; ++j) {
          if (scores[j] == -INFINITY) continue;
          const float w = std::exp(scores[j] - mx);
          sum += w;
          for (int d = 0; d < D; ++d) acc[d] += w * load(true, j, d);
        }
      }
      for (int d = 0; d < D; ++d) StoreFromF32(p.o, p.dtype, (row * Hq + hq) * D + d, sum > 0.f ? acc[d] / sum : 0.f);
      if (p.lse) p.lse[row * Hq + hq] = sum > 0.f ? mx + std::log(sum) : -INFINITY;
    }
  });
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
