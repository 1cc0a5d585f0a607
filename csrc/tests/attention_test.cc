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

bool RunOne(DType dtype, int hq, int hkv, int d, MaskMode mask, const std::vector<int32_t>& qlens,
            const std::vector<int32_t>& kvlens, int splits) {
  const int batch = static_cast<int>(qlens.size());
  std::vector<int32_t> qo(batch + 1, 0), kv(batch + 1, 0), parents;
  for (int b = 0; b < batch; ++b) {
    qo[b + 1] = qo[b] + qlens[b];
    kv[b + 1] = kv[b] + kvlens[b];
    for (int t = 0; t < qlens[b]; ++t) {
      std::uniform_int_distribution<int> pick(-1, t - 1);
      parents.push_back(pick(Rng()));
    }
  }
  const int64_t total_q = qo[batch], rows = kv[batch];
  auto q = RandomTensor(total_q * hq * d, dtype), k = RandomTensor(rows * hkv * d, dtype),
       v = RandomTensor(rows * hkv * d, dtype);
  AttentionParams p;
  p.dtype = dtype;
  p.batch_size = batch;
  p.num_qo_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  p.total_q = total_q;
  p.kv_rows = rows;
  p.qo_indptr = qo.data();
  p.kv_indptr = kv.data();
  p.mask = mask;
  p.scale = 1.f / std::sqrt(static_cast<float>(d));
  p.tree_parents = mask == MaskMode::kTree ? parents.data() : nullptr;
  p.num_splits = splits;
  std::vector<uint8_t> o_cpu(total_q * hq * d * DTypeSize(dtype)), o_gpu(o_cpu.size());
  std::vector<float> lse_cpu(total_q * hq), lse_gpu(total_q * hq);
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.o = o_cpu.data();
  p.lse = lse_cpu.data();
  CANOPY_CHECK_OK(cpu::Attention(p));
  DeviceBuf dq, dk, dv, dout, dlse;
  CANOPY_CHECK_OK(dq.Upload(q.data(), q.size()));
  CANOPY_CHECK_OK(dk.Upload(k.data(), k.size()));
  CANOPY_CHECK_OK(dv.Upload(v.data(), v.size()));
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
  // Both accumulate in fp32 in different orders; 16-bit outputs may round differently by an ulp.
  const float atol = dtype == DType::kF32 ? 2e-5f : (dtype == DType::kF16 ? 1e-3f : 8e-3f);
  const float rtol = dtype == DType::kF32 ? 1e-4f : (dtype == DType::kF16 ? 2e-3f : 1.6e-2f);
  CANOPY_CHECK(Close(o_gpu, o_cpu, dtype, total_q * hq * d, atol, rtol, "output"), "%s hq=%d hkv=%d d=%d mask=%d splits=%d",
               DTypeName(dtype), hq, hkv, d, static_cast<int>(mask), splits);
  for (size_t i = 0; i < lse_cpu.size(); ++i) {
    const bool both_inf = std::isinf(lse_cpu[i]) && lse_cpu[i] == lse_gpu[i];
    CANOPY_CHECK(both_inf || std::fabs(lse_cpu[i] - lse_gpu[i]) <= 1e-4f + 1e-5f * std::fabs(lse_cpu[i]),
                 "lse %zu: cuda %g cpu %g", i, lse_gpu[i], lse_cpu[i]);
  }
  return true;
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
  return true;
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

Register r1("attention: cuda equals cpu (masks, GQA, head_dim, splits, dtypes)", true, CudaAttentionMatchesCpu);
Register r2("mergeStatesN: cuda equals cpu", true, CudaMergeMatchesCpu);

}  // namespace
}  // namespace tests
}  // namespace canopy
