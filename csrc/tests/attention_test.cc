// attention and mergeStates: the CUDA kernels against the CPU kernels on random
// shapes (odd lengths, GQA ratios 1/4/8, head_dim 64/128, ragged batches,
// causal/none/tree masks, forced splits) in f32, f16 and bf16.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/attention.h"
#include "../common/merge_states.h"
#include "../common/runtime.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

struct DeviceBuf {
  void* p = nullptr;
  size_t n = 0;
  ~DeviceBuf() {
    if (p) cuda::Free(0, p);
  }
  Status Upload(const void* host, size_t bytes) {
    n = bytes;
    CANOPY_RETURN_IF_ERROR(cuda::Malloc(0, bytes ? bytes : 1, &p));
    return cuda::CopyHostToDevice(0, p, host, bytes);
  }
};

std::vector<uint8_t> RandomTensor(int64_t n, DType t) {
  std::vector<uint8_t> out(n * DTypeSize(t));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < n; ++i) StoreFromF32(out.data(), t, i, u(Rng()));
  return out;
}

bool Close(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, DType t, int64_t n, float atol, float rtol,
           const char* what) {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float x = LoadAsF32(a.data(), t, i), y = LoadAsF32(b.data(), t, i);
    if (x == y) continue;
    if (!(std::fabs(x - y) <= atol + rtol * std::fabs(y))) {
      if (bad++ < 5) std::fprintf(stderr, "  %s mismatch at %lld: cuda %g cpu %g\n", what, static_cast<long long>(i), x, y);
    }
  }
  return bad == 0;
}

// One attention problem on host memory. pad > 0: each sequence's region holds `pad` rows past
// its keys (a cache with spare capacity), passed with kv_lens; those rows hold NaN, so a kernel
// that reads past kv_len poisons its output.
struct Problem {
  std::vector<int32_t> qo, kv, kvlens, parents;
  std::vector<uint8_t> q, k, v;
  AttentionParams p;  // points into the vectors above (a Problem is never moved)
  Problem() = default;
  Problem(const Problem&) = delete;
  Problem& operator=(const Problem&) = delete;
};

void MakeProblem(Problem* pr, DType dtype, int hq, int hkv, int d, MaskMode mask, const std::vector<int32_t>& qlens,
                 const std::vector<int32_t>& kvlens, int splits, int pad) {
  const int batch = static_cast<int>(qlens.size());
  pr->qo.assign(batch + 1, 0);
  pr->kv.assign(batch + 1, 0);
  pr->kvlens = kvlens;
  pr->parents.clear();
  for (int b = 0; b < batch; ++b) {
    pr->qo[b + 1] = pr->qo[b] + qlens[b];
    pr->kv[b + 1] = pr->kv[b] + kvlens[b] + pad;
    for (int t = 0; t < qlens[b]; ++t) {
      std::uniform_int_distribution<int> pick(-1, t - 1);
      pr->parents.push_back(pick(Rng()));
    }
  }
  const int64_t total_q = pr->qo[batch], rows = pr->kv[batch];
  pr->q = RandomTensor(total_q * hq * d, dtype);
  pr->k = RandomTensor(rows * hkv * d, dtype);
  pr->v = RandomTensor(rows * hkv * d, dtype);
  if (pad > 0) {
    for (int b = 0; b < batch; ++b) {
      for (int64_t r = pr->kv[b] + kvlens[b]; r < pr->kv[b + 1]; ++r) {
        for (int64_t i = 0; i < static_cast<int64_t>(hkv) * d; ++i) {
          StoreFromF32(pr->k.data(), dtype, r * hkv * d + i, NAN);
          StoreFromF32(pr->v.data(), dtype, r * hkv * d + i, NAN);
        }
      }
    }
  }
  AttentionParams& p = pr->p;
  p = AttentionParams();
  p.dtype = dtype;
  p.batch_size = batch;
  p.num_qo_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  p.total_q = total_q;
  p.kv_rows = rows;
  p.qo_indptr = pr->qo.data();
  p.kv_indptr = pr->kv.data();
  p.kv_lens = pad > 0 ? pr->kvlens.data() : nullptr;
  p.mask = mask;
  p.scale = 1.f / std::sqrt(static_cast<float>(d));
  p.tree_parents = mask == MaskMode::kTree ? pr->parents.data() : nullptr;
  p.num_splits = splits;
  p.q = pr->q.data();
  p.k = pr->k.data();
  p.v = pr->v.data();
}

// Compares outputs and LSEs (both accumulate in fp32 in different orders; 16-bit outputs may
// round differently by an ulp).
bool CompareOutputs(const std::vector<uint8_t>& o_got, const std::vector<uint8_t>& o_ref, const std::vector<float>& lse_got,
                    const std::vector<float>& lse_ref, const AttentionParams& p, const char* who) {
  const DType dtype = p.dtype;
  const float atol = dtype == DType::kF32 ? 2e-5f : (dtype == DType::kF16 ? 1e-3f : 8e-3f);
  const float rtol = dtype == DType::kF32 ? 1e-4f : (dtype == DType::kF16 ? 2e-3f : 1.6e-2f);
  CANOPY_CHECK(Close(o_got, o_ref, dtype, p.total_q * p.num_qo_heads * p.head_dim, atol, rtol, who),
               "%s hq=%d hkv=%d d=%d mask=%d splits=%d kv_lens=%d", DTypeName(dtype), p.num_qo_heads, p.num_kv_heads,
               p.head_dim, static_cast<int>(p.mask), p.num_splits, p.kv_lens != nullptr);
  for (size_t i = 0; i < lse_ref.size(); ++i) {
    const bool both_inf = std::isinf(lse_ref[i]) && lse_ref[i] == lse_got[i];
    CANOPY_CHECK(both_inf || std::fabs(lse_ref[i] - lse_got[i]) <= 1e-4f + 1e-5f * std::fabs(lse_ref[i]),
                 "%s lse %zu: got %g reference %g", who, i, lse_got[i], lse_ref[i]);
  }
  return true;
}

bool RunOne(DType dtype, int hq, int hkv, int d, MaskMode mask, const std::vector<int32_t>& qlens,
            const std::vector<int32_t>& kvlens, int splits, int pad = 0) {
  Problem pr;
  MakeProblem(&pr, dtype, hq, hkv, d, mask, qlens, kvlens, splits, pad);
  AttentionParams p = pr.p;
  const int64_t total_q = p.total_q;
  std::vector<uint8_t> o_cpu(total_q * hq * d * DTypeSize(dtype)), o_gpu(o_cpu.size());
  std::vector<float> lse_cpu(total_q * hq), lse_gpu(total_q * hq);
  p.o = o_cpu.data();
  p.lse = lse_cpu.data();
  CANOPY_CHECK_OK(cpu::Attention(p));
  DeviceBuf dq, dk, dv, dout, dlse;
  CANOPY_CHECK_OK(dq.Upload(pr.q.data(), pr.q.size()));
  CANOPY_CHECK_OK(dk.Upload(pr.k.data(), pr.k.size()));
  CANOPY_CHECK_OK(dv.Upload(pr.v.data(), pr.v.size()));
  CANOPY_CHECK_OK(dout.Upload(o_gpu.data(), o_gpu.size()));
  CANOPY_CHECK_OK(dlse.Upload(lse_gpu.data(), lse_gpu.size() * 4));
  p.q = dq.p;
  p.k = dk.p;
  p.v = dv.p;
  p.o = dout.p;
  p.lse = static_cast<float*>(dlse.p);
  CANOPY_CHECK_OK(cuda::Attention(p));
  CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, o_gpu.data(), dout.p, o_gpu.size()));
  CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, lse_gpu.data(), dlse.p, lse_gpu.size() * 4));
  return CompareOutputs(o_gpu, o_cpu, lse_gpu, lse_cpu, p, "cuda vs cpu");
}

// The same problem through the CPU flash kernel and the naive CPU kernel (no GPU needed): checks
// the reference the CUDA tests compare against on the edge shapes below.
bool RunCpuFlashVsNaive(DType dtype, int hq, int hkv, int d, MaskMode mask, const std::vector<int32_t>& qlens,
                        const std::vector<int32_t>& kvlens, int splits, int pad = 0) {
  Problem pr;
  MakeProblem(&pr, dtype, hq, hkv, d, mask, qlens, kvlens, splits, pad);
  AttentionParams p = pr.p;
  std::vector<uint8_t> o_flash(p.total_q * hq * d * DTypeSize(dtype)), o_naive(o_flash.size());
  std::vector<float> lse_flash(p.total_q * hq), lse_naive(p.total_q * hq);
  p.o = o_flash.data();
  p.lse = lse_flash.data();
  CANOPY_CHECK_OK(cpu::Attention(p));
  p.o = o_naive.data();
  p.lse = lse_naive.data();
  CANOPY_CHECK_OK(cpu::AttentionNaive(p));
  return CompareOutputs(o_flash, o_naive, lse_flash, lse_naive, p, "cpu flash vs naive");
}

bool CudaAttentionMatchesCpu() {
  const DType dtypes[] = {DType::kF32, DType::kF16, DType::kBF16};
  const int heads[][2] = {{4, 4}, {8, 2}, {16, 2}};
  for (DType dt : dtypes) {
    for (const auto& h : heads) {
      for (int d : {64, 128}) {
        if (!RunOne(dt, h[0], h[1], d, MaskMode::kCausal, {1, 7, 17, 37}, {1, 7, 40, 113}, 0)) return false;
        if (!RunOne(dt, h[0], h[1], d, MaskMode::kNone, {3, 1}, {1000, 5}, 0)) return false;
        if (!RunOne(dt, h[0], h[1], d, MaskMode::kCausal, {1, 1}, {2049, 300}, 5)) return false;
        if (!RunOne(dt, h[0], h[1], d, MaskMode::kTree, {9, 1, 33}, {60, 1, 200}, 0)) return false;
      }
    }
  }
  // Head sizes off the multiples of 32 (tiny models use 8).
  for (int d : {8, 72}) {
    if (!RunOne(DType::kF32, 8, 4, d, MaskMode::kCausal, {3, 1}, {9, 40}, 0)) return false;
    if (!RunOne(DType::kBF16, 8, 4, d, MaskMode::kTree, {5}, {30}, 0)) return false;
  }
  // Head sizes off the 16-byte vector (f32: 4 elements, 16-bit: 8): version 2 stages K/V element
  // by element there (6: every dtype; 36: f16/bf16 only); NaN spare rows read through kv_lens.
  for (int d : {6, 36}) {
    if (!RunOne(DType::kF16, 8, 2, d, MaskMode::kCausal, {3, 1, 17}, {9, 40, 70}, 0)) return false;
    if (!RunOne(DType::kBF16, 8, 4, d, MaskMode::kTree, {5}, {30}, 0)) return false;
    if (!RunOne(DType::kF32, 8, 2, d, MaskMode::kNone, {3, 1}, {3, 100}, 3, /*pad=*/5)) return false;
  }
  if (!RunOne(DType::kF32, 4, 2, 37, MaskMode::kCausal, {1, 7}, {1, 40}, 0)) return false;  // odd head_dim
  return true;
}

// Shapes at the edges of the v1 CUDA kernel's tiling and launch: head_dim 96 (3 lane chunks), 160
// and 256 (dynamic shared memory above 48 KiB: the opt-in attribute path), GQA groups that do not
// divide the 16-row tile (3, 5) or fill it with one token (16), empty key sets (kv length 0),
// sequences without queries, more queries than keys under the causal mask (the first rows see
// nothing: lse -inf, o 0), forced splits over 0/1 keys, and regions with spare rows read through
// kv_lens (the spare rows hold NaN).
template <typename Run>
bool EdgeShapes(Run run) {
  for (int d : {96, 160, 256}) {
    if (!run(DType::kF32, 4, 2, d, MaskMode::kCausal, {1, 7, 33}, {1, 7, 70}, 0, 0)) return false;
    if (!run(DType::kBF16, 4, 2, d, MaskMode::kTree, {9, 1}, {40, 3}, 3, 0)) return false;
    if (!run(DType::kF16, 4, 4, d, MaskMode::kNone, {2}, {300}, 4, 0)) return false;
  }
  const int groups[][2] = {{6, 2}, {15, 3}, {16, 1}, {32, 2}};
  for (const auto& h : groups) {
    if (!run(DType::kF32, h[0], h[1], 64, MaskMode::kCausal, {1, 5, 11}, {1, 40, 11}, 0, 0)) return false;
    if (!run(DType::kF32, h[0], h[1], 64, MaskMode::kTree, {6, 17}, {6, 50}, 0, 0)) return false;
    if (!run(DType::kF16, h[0], h[1], 40, MaskMode::kCausal, {1, 1, 1}, {600, 1, 257}, 0, 0)) return false;
  }
  for (MaskMode mask : {MaskMode::kNone, MaskMode::kCausal}) {
    for (int splits : {0, 1, 3}) {
      // kv length 0 (with and without queries), a sequence with no queries, kv length 1.
      if (!run(DType::kF32, 8, 2, 64, mask, {2, 0, 3, 1}, {0, 5, 1, 0}, splits, 0)) return false;
      // More queries than keys: under the causal mask rows 0..4 of the first sequence see no key.
      if (!run(DType::kBF16, 8, 2, 64, mask, {7, 4}, {2, 9}, splits, 0)) return false;
      // Spare capacity past each sequence's keys, read through kv_lens.
      if (!run(DType::kF16, 8, 2, 72, mask, {3, 1, 0, 5}, {3, 100, 4, 33}, splits, 5)) return false;
    }
  }
  if (!run(DType::kF32, 8, 2, 64, MaskMode::kTree, {4, 1, 3}, {4, 9, 70}, 2, 5)) return false;
  // Only empty sequences: nothing to launch.
  if (!run(DType::kF32, 4, 4, 64, MaskMode::kCausal, {0, 0}, {3, 0}, 0, 0)) return false;
  return true;
}

bool CudaAttentionEdgeShapes() {
  return EdgeShapes([](DType dt, int hq, int hkv, int d, MaskMode mask, const std::vector<int32_t>& ql,
                       const std::vector<int32_t>& kl, int splits, int pad) { return RunOne(dt, hq, hkv, d, mask, ql, kl, splits, pad); });
}

bool CpuFlashMatchesNaiveOnEdgeShapes() {
  return EdgeShapes([](DType dt, int hq, int hkv, int d, MaskMode mask, const std::vector<int32_t>& ql,
                       const std::vector<int32_t>& kl, int splits, int pad) {
    return RunCpuFlashVsNaive(dt, hq, hkv, d, mask, ql, kl, splits, pad);
  });
}

bool CudaMergeMatchesCpu() {
  const int64_t tokens = 37;
  const int heads = 5, d = 128, n = 3;
  for (DType dt : {DType::kF32, DType::kBF16}) {
    auto v = RandomTensor(tokens * n * heads * d, dt);
    std::vector<float> s(tokens * n * heads);
    std::uniform_real_distribution<float> u(-5.f, 5.f);
    for (size_t i = 0; i < s.size(); ++i) s[i] = (i % 7 == 0) ? -INFINITY : u(Rng());
    std::vector<uint8_t> out_cpu(tokens * heads * d * DTypeSize(dt)), out_gpu(out_cpu.size());
    std::vector<float> so_cpu(tokens * heads), so_gpu(tokens * heads);
    MergeNParams p;
    p.v = v.data();
    p.s = s.data();
    p.v_out = out_cpu.data();
    p.s_out = so_cpu.data();
    p.dtype = dt;
    p.tokens = tokens;
    p.num_states = n;
    p.heads = heads;
    p.head_dim = d;
    CANOPY_CHECK_OK(cpu::MergeStatesN(p));
    DeviceBuf dv, ds, dout, dso;
    CANOPY_CHECK_OK(dv.Upload(v.data(), v.size()));
    CANOPY_CHECK_OK(ds.Upload(s.data(), s.size() * 4));
    CANOPY_CHECK_OK(dout.Upload(out_gpu.data(), out_gpu.size()));
    CANOPY_CHECK_OK(dso.Upload(so_gpu.data(), so_gpu.size() * 4));
    p.v = dv.p;
    p.s = static_cast<const float*>(ds.p);
    p.v_out = dout.p;
    p.s_out = static_cast<float*>(dso.p);
    CANOPY_CHECK_OK(cuda::MergeStatesN(p));
    CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, out_gpu.data(), dout.p, out_gpu.size()));
    CANOPY_CHECK(Close(out_gpu, out_cpu, dt, tokens * heads * d, 1e-5f, dt == DType::kF32 ? 1e-5f : 8e-3f, "merge"),
                 "%s", DTypeName(dt));
  }
  return true;
}

// MergeStates (two states): one or both sides empty (-inf), NaN in an empty state's values (must
// not leak), and v_out aliasing v_a, as the header allows.
bool CudaMergeTwoMatchesCpu() {
  const int64_t tokens = 19;
  const int heads = 3, d = 72;
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    const int64_t n = tokens * heads * d;
    auto va = RandomTensor(n, dt), vb = RandomTensor(n, dt);
    std::vector<float> sa(tokens * heads), sb(tokens * heads);
    std::uniform_real_distribution<float> u(-5.f, 5.f);
    for (size_t i = 0; i < sa.size(); ++i) {
      sa[i] = i % 5 == 0 ? -INFINITY : u(Rng());
      sb[i] = i % 3 == 0 ? -INFINITY : u(Rng());
      // An empty state's values are never read: NaN there must not reach the output.
      for (int c = 0; c < d; ++c) {
        if (sa[i] == -INFINITY) StoreFromF32(va.data(), dt, static_cast<int64_t>(i) * d + c, NAN);
        if (sb[i] == -INFINITY) StoreFromF32(vb.data(), dt, static_cast<int64_t>(i) * d + c, NAN);
      }
    }
    std::vector<uint8_t> out_cpu(va.size());
    std::vector<float> so_cpu(sa.size()), so_gpu(sa.size());
    MergeParams p;
    p.v_a = va.data();
    p.s_a = sa.data();
    p.v_b = vb.data();
    p.s_b = sb.data();
    p.v_out = out_cpu.data();
    p.s_out = so_cpu.data();
    p.dtype = dt;
    p.tokens = tokens;
    p.heads = heads;
    p.head_dim = d;
    CANOPY_CHECK_OK(cpu::MergeStates(p));
    DeviceBuf dva, dsa, dvb, dsb, dso;
    CANOPY_CHECK_OK(dva.Upload(va.data(), va.size()));
    CANOPY_CHECK_OK(dsa.Upload(sa.data(), sa.size() * 4));
    CANOPY_CHECK_OK(dvb.Upload(vb.data(), vb.size()));
    CANOPY_CHECK_OK(dsb.Upload(sb.data(), sb.size() * 4));
    CANOPY_CHECK_OK(dso.Upload(so_gpu.data(), so_gpu.size() * 4));
    p.v_a = dva.p;
    p.s_a = static_cast<const float*>(dsa.p);
    p.v_b = dvb.p;
    p.s_b = static_cast<const float*>(dsb.p);
    p.v_out = dva.p;  // in place over v_a
    p.s_out = static_cast<float*>(dso.p);
    CANOPY_CHECK_OK(cuda::MergeStates(p));
    std::vector<uint8_t> out_gpu(va.size());
    CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, out_gpu.data(), dva.p, out_gpu.size()));
    CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, so_gpu.data(), dso.p, so_gpu.size() * 4));
    CANOPY_CHECK(Close(out_gpu, out_cpu, dt, n, 1e-5f, dt == DType::kF32 ? 1e-5f : 8e-3f, "merge two"), "%s", DTypeName(dt));
    for (size_t i = 0; i < so_cpu.size(); ++i) {
      const bool same_inf = std::isinf(so_cpu[i]) && so_cpu[i] == so_gpu[i];
      CANOPY_CHECK(same_inf || std::fabs(so_cpu[i] - so_gpu[i]) <= 1e-5f + 1e-6f * std::fabs(so_cpu[i]),
                   "merged lse %zu: cuda %g cpu %g", i, so_gpu[i], so_cpu[i]);
    }
  }
  // The CPU kernel's shape checks hold on CUDA too.
  MergeParams bad;
  bad.dtype = DType::kF32;
  bad.tokens = 1;
  bad.heads = 1;
  bad.head_dim = 0;
  CANOPY_CHECK(!cuda::MergeStates(bad).ok(), "head_dim 0 must be rejected");
  return true;
}

Register r1("attention: cuda equals cpu (masks, GQA, head_dim, splits, dtypes)", true, CudaAttentionMatchesCpu);
Register r1b("attention: cuda equals cpu on edge shapes (head_dim 96/160/256, GQA 3/5/16, empty, kv_lens)", true,
             CudaAttentionEdgeShapes);
Register r1v1("attention v1: cuda equals cpu (masks, GQA, head_dim, splits, dtypes)", true,
              WithKernelsV1(CudaAttentionMatchesCpu));
Register r1bv1("attention v1: cuda equals cpu on edge shapes", true, WithKernelsV1(CudaAttentionEdgeShapes));
Register r1c("attention: cpu flash equals cpu naive on the cuda edge shapes", false, CpuFlashMatchesNaiveOnEdgeShapes);
Register r2("mergeStatesN: cuda equals cpu", true, CudaMergeMatchesCpu);
Register r2b("mergeStates: cuda equals cpu (-inf states, v_out aliasing v_a, head_dim 72)", true, CudaMergeTwoMatchesCpu);

}  // namespace
}  // namespace tests
}  // namespace canopy
