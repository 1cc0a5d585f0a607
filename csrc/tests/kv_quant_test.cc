// Quantized KV caches and shared-prefix attention: the CUDA kernels against the CPU kernels.
//   - cache ops (append, quantize groups, tree commit, restore) on identical inputs give the
//     same codes and scales (bit for bit) and the same residual rings (to an f16 ulp);
//   - attention over quantized caches (decode, causal chunks, tree masks) agrees;
//   - prefixAttention over plain and quantized levels agrees.
// fp8 attention needs compute capability 8.9+: on older devices the launcher must refuse it
// with CudaUnavailable, which is what is checked there.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common/attention.h"
#include "../common/kv_quant.h"
#include "../common/prefix_attention.h"
#include "../common/runtime.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

// CANOPY_KV_QUANT_TEST_ON_CPU (a local check of this file's own logic on a machine without a
// GPU): the "device" side runs the CPU kernels on host copies.
#ifdef CANOPY_KV_QUANT_TEST_ON_CPU
constexpr bool kNeedsCuda = false;
namespace gpu = ::canopy::cpu;
Status DevMalloc(size_t n, void** p) {
  *p = std::malloc(n);
  return Status::Ok();
}
void DevFree(void* p) { std::free(p); }
Status ToDev(void* d, const void* h, size_t n) {
  std::memcpy(d, h, n);
  return Status::Ok();
}
Status ToHost(void* h, const void* d, size_t n) {
  std::memcpy(h, d, n);
  return Status::Ok();
}
bool Fp8Supported() { return true; }
#else
constexpr bool kNeedsCuda = true;
namespace gpu = ::canopy::cuda;
Status DevMalloc(size_t n, void** p) { return cuda::Malloc(0, n, p); }
void DevFree(void* p) { cuda::Free(0, p); }
Status ToDev(void* d, const void* h, size_t n) { return cuda::CopyHostToDevice(0, d, h, n); }
Status ToHost(void* h, const void* d, size_t n) { return cuda::CopyDeviceToHost(0, h, d, n); }
bool Fp8Supported() {
  cuda::RuntimeInfo rt = cuda::QueryRuntime();
  return !rt.devices.empty() && rt.devices[0].major * 10 + rt.devices[0].minor >= 89;
}
#endif

int RandInt(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(Rng()); }
float RandF(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(Rng()); }

struct Dev {
  void* p = nullptr;
  size_t n = 0;
  Dev() = default;
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() {
    if (p) DevFree(p);
  }
  Status Upload(const void* host, size_t bytes) {
    if (p) DevFree(p);
    n = bytes;
    CANOPY_RETURN_IF_ERROR(DevMalloc(bytes ? bytes : 1, &p));
    return bytes ? ToDev(p, host, bytes) : Status::Ok();
  }
  Status Download(void* host) const { return n ? ToHost(host, p, n) : Status::Ok(); }
};

// A cache in host vectors; Mirror() uploads it and gives the device view.
struct HostCache {
  QuantKvCache c;
  std::vector<uint8_t> k, v, res_k, res_v;
  std::vector<float> ks, vs, kz, vz;
  HostCache(KvFormat f, int layers, int64_t rows, int H, int D, int group, int ring, int rings, DType res) {
    c.format = f;
    c.layers = layers;
    c.rows = rows;
    c.num_kv_heads = H;
    c.head_dim = D;
    c.group = f == KvFormat::kInt4 ? group : 0;
    c.ring = f == KvFormat::kInt4 ? ring : 0;
    c.res_rows = f == KvFormat::kInt4 ? static_cast<int64_t>(ring) * rings : 0;
    c.res_dtype = res;
    k.assign(layers * QuantCodeBytesPerLayer(c), 0);
    v.assign(k.size(), 0);
    ks.assign(layers * QuantKScaleCount(c), 0.f);
    vs.assign(layers * QuantVScaleCount(c), 0.f);
    if (f == KvFormat::kInt4) {
      kz.assign(ks.size(), 0.f);
      vz.assign(vs.size(), 0.f);
      res_k.assign(layers * QuantResElems(c) * DTypeSize(res), 0);
      res_v.assign(res_k.size(), 0);
    }
    Point();
  }
  HostCache(const HostCache& o) { *this = o; }
  HostCache& operator=(const HostCache& o) {
    c = o.c;
    k = o.k, v = o.v, res_k = o.res_k, res_v = o.res_v;
    ks = o.ks, vs = o.vs, kz = o.kz, vz = o.vz;
    Point();  // the view points at this copy's vectors
    return *this;
  }
  void Point() {
    c.k = k.data();
    c.v = v.data();
    c.k_scale = ks.data();
    c.v_scale = vs.data();
    c.k_zero = kz.empty() ? nullptr : kz.data();
    c.v_zero = vz.empty() ? nullptr : vz.data();
    c.res_k = res_k.empty() ? nullptr : res_k.data();
    c.res_v = res_v.empty() ? nullptr : res_v.data();
  }
};

struct DevCache {
  Dev k, v, ks, vs, kz, vz, rk, rv;
  QuantKvCache c;
  Status Mirror(const HostCache& h) {
    c = h.c;
    CANOPY_RETURN_IF_ERROR(k.Upload(h.k.data(), h.k.size()));
    CANOPY_RETURN_IF_ERROR(v.Upload(h.v.data(), h.v.size()));
    CANOPY_RETURN_IF_ERROR(ks.Upload(h.ks.data(), h.ks.size() * 4));
    CANOPY_RETURN_IF_ERROR(vs.Upload(h.vs.data(), h.vs.size() * 4));
    c.k = k.p;
    c.v = v.p;
    c.k_scale = static_cast<float*>(ks.p);
    c.v_scale = static_cast<float*>(vs.p);
    if (h.c.format == KvFormat::kInt4) {
      CANOPY_RETURN_IF_ERROR(kz.Upload(h.kz.data(), h.kz.size() * 4));
      CANOPY_RETURN_IF_ERROR(vz.Upload(h.vz.data(), h.vz.size() * 4));
      CANOPY_RETURN_IF_ERROR(rk.Upload(h.res_k.data(), h.res_k.size()));
      CANOPY_RETURN_IF_ERROR(rv.Upload(h.res_v.data(), h.res_v.size()));
      c.k_zero = static_cast<float*>(kz.p);
      c.v_zero = static_cast<float*>(vz.p);
      c.res_k = rk.p;
      c.res_v = rv.p;
    }
    return Status::Ok();
  }
  Status Fetch(HostCache* h) const {
    CANOPY_RETURN_IF_ERROR(k.Download(h->k.data()));
    CANOPY_RETURN_IF_ERROR(v.Download(h->v.data()));
    CANOPY_RETURN_IF_ERROR(ks.Download(h->ks.data()));
    CANOPY_RETURN_IF_ERROR(vs.Download(h->vs.data()));
    if (h->c.format == KvFormat::kInt4) {
      CANOPY_RETURN_IF_ERROR(kz.Download(h->kz.data()));
      CANOPY_RETURN_IF_ERROR(vz.Download(h->vz.data()));
      CANOPY_RETURN_IF_ERROR(rk.Download(h->res_k.data()));
      CANOPY_RETURN_IF_ERROR(rv.Download(h->res_v.data()));
    }
    return Status::Ok();
  }
};

bool SameBytes(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, const char* what) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      std::fprintf(stderr, "  %s differs at byte %zu: cuda %d cpu %d\n", what, i, a[i], b[i]);
      return false;
    }
  }
  return true;
}

bool SameFloats(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], 4) != 0) {
      std::fprintf(stderr, "  %s differs at %zu: cuda %g cpu %g\n", what, i, a[i], b[i]);
      return false;
    }
  }
  return true;
}

bool CloseRes(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, DType t, const char* what) {
  const int64_t n = static_cast<int64_t>(a.size()) / DTypeSize(t);
  for (int64_t i = 0; i < n; ++i) {
    const float x = LoadAsF32(a.data(), t, i), y = LoadAsF32(b.data(), t, i);
    if (!(std::fabs(x - y) <= 1e-3f * std::fabs(y) + 1e-6f) && !(std::isnan(x) && std::isnan(y))) {
      std::fprintf(stderr, "  %s differs at %lld: cuda %g cpu %g\n", what, static_cast<long long>(i), x, y);
      return false;
    }
  }
  return true;
}

std::vector<float> RandomRows(int64_t n, int H, int D) {
  std::vector<float> x(n * H * D);
  for (int64_t r = 0; r < n * H; ++r) {
    const float m = std::pow(10.f, RandF(-1.f, 1.f));
    for (int d = 0; d < D; ++d) x[r * D + d] = RandF(-1.f, 1.f) * m;
  }
  return x;
}

constexpr int kLayers = 2, kH = 4, kD = 64, kG = 32, kRing = 160, kRegion = 256;

// The same sequence of cache ops on the CPU and on the device; leaves both caches built.
bool BuildBoth(KvFormat f, DType res, HostCache* host, DevCache* dev, std::vector<int32_t>* lens, std::vector<int32_t>* quant_lens) {
  const int B = 2;
  *host = HostCache(f, kLayers, B * kRegion, kH, kD, kG, kRing, B, res);
  CANOPY_CHECK_OK(dev->Mirror(*host));
  std::vector<int32_t> kv_start = {0, kRegion}, res_start = {0, kRing};
  QuantKvBatch seqs;
  seqs.batch = B;
  seqs.kv_start = kv_start.data();
  seqs.res_start = res_start.data();
  lens->assign(B, 0);
  quant_lens->assign(B, 0);
  const int32_t residual = 32;
  // Steps: a prompt chunk, then decode steps, a tree step with a commit; quantize as we go.
  const std::vector<std::vector<int32_t>> steps = {{70, 33}, {1, 1}, {5, 0}, {1, 2}, {40, 50}};
  for (size_t s = 0; s < steps.size(); ++s) {
    std::vector<int32_t> qo = {0, steps[s][0], steps[s][0] + steps[s][1]};
    const int64_t n = qo[2];
    std::vector<float> kx = RandomRows(n, kH, kD), vx = RandomRows(n, kH, kD);
    Dev dk, dv;
    CANOPY_CHECK_OK(dk.Upload(kx.data(), kx.size() * 4));
    CANOPY_CHECK_OK(dv.Upload(vx.data(), vx.size() * 4));
    for (int l = 0; l < kLayers; ++l) {
      QuantAppendParams p;
      p.seqs = seqs;
      p.qo_indptr = qo.data();
      p.pos_before = lens->data();
      p.quant_len = quant_lens->data();
      p.k = kx.data();
      p.v = vx.data();
      p.n = n;
      CANOPY_CHECK_OK(cpu::AppendQuantKv(QuantKvLayer(host->c, l), p));
      p.k = static_cast<const float*>(dk.p);
      p.v = static_cast<const float*>(dv.p);
      CANOPY_CHECK_OK(gpu::AppendQuantKv(QuantKvLayer(dev->c, l), p));
    }
    if (s == 2) {  // step 2 was a tree of 5 nodes for sequence 0: keep nodes 1, 2, 4
      std::vector<int32_t> tree = {0, 5, 5}, count = {3, 0}, nodes = {1, 2, 4, -1, -1}, out_cpu(2), out_gpu(2);
      CANOPY_CHECK_OK(cpu::CommitQuantKv(host->c, seqs, lens->data(), tree.data(), count.data(), nodes.data(), 5, out_cpu.data()));
      CANOPY_CHECK_OK(gpu::CommitQuantKv(dev->c, seqs, lens->data(), tree.data(), count.data(), nodes.data(), 5, out_gpu.data()));
      CANOPY_CHECK(out_cpu == out_gpu, "commit lengths");
      *lens = out_cpu;
    } else {
      for (int b = 0; b < B; ++b) (*lens)[b] += steps[s][b];
    }
    if (f == KvFormat::kInt4) {
      std::vector<int32_t> to(B);
      for (int b = 0; b < B; ++b) to[b] = static_cast<int32_t>(std::max<int64_t>((*quant_lens)[b], CompletedQuantLen((*lens)[b], kG, residual)));
      CANOPY_CHECK_OK(cpu::QuantizeKvGroups(host->c, seqs, quant_lens->data(), to.data()));
      CANOPY_CHECK_OK(gpu::QuantizeKvGroups(dev->c, seqs, quant_lens->data(), to.data()));
      *quant_lens = to;
    }
  }
  if (f == KvFormat::kInt4) {
    // Roll sequence 1 back into its last quantized group.
    std::vector<int32_t> from = {(*quant_lens)[0], (*quant_lens)[1] - kG}, to = {(*quant_lens)[0], (*quant_lens)[1] - 5};
    CANOPY_CHECK((*quant_lens)[1] >= kG, "sequence 1 should have a quantized group");
    CANOPY_CHECK_OK(cpu::RestoreKvGroups(host->c, seqs, from.data(), to.data()));
    CANOPY_CHECK_OK(gpu::RestoreKvGroups(dev->c, seqs, from.data(), to.data()));
    (*lens)[1] = to[1];
    (*quant_lens)[1] = from[1];
  } else {
    *quant_lens = *lens;
  }
  return true;
}

bool CacheOpsMatch() {
  for (KvFormat f : {KvFormat::kInt8, KvFormat::kInt4, KvFormat::kFp8}) {
    for (DType res : {DType::kF16, DType::kF32}) {
      if (f != KvFormat::kInt4 && res == DType::kF32) continue;
      HostCache host(f, 1, 32, 1, 2, kG, kRing, 1, res);
      DevCache dev;
      std::vector<int32_t> lens, ql;
      if (!BuildBoth(f, res, &host, &dev, &lens, &ql)) return false;
      HostCache got = host;
      CANOPY_CHECK_OK(dev.Fetch(&got));
      CANOPY_CHECK(SameBytes(got.k, host.k, "k codes") && SameBytes(got.v, host.v, "v codes"), "%s", KvFormatName(f));
      CANOPY_CHECK(SameFloats(got.ks, host.ks, "k scales") && SameFloats(got.vs, host.vs, "v scales"), "%s", KvFormatName(f));
      if (f == KvFormat::kInt4) {
        CANOPY_CHECK(SameFloats(got.kz, host.kz, "k zeros") && SameFloats(got.vz, host.vz, "v zeros"), "int4");
        CANOPY_CHECK(CloseRes(got.res_k, host.res_k, res, "k ring") && CloseRes(got.res_v, host.res_v, res, "v ring"), "int4");
      }
    }
  }
  return true;
}

bool CloseF(const std::vector<float>& a, const std::vector<float>& b, float atol, float rtol, const char* what) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    if (!(std::fabs(a[i] - b[i]) <= atol + rtol * std::fabs(b[i]))) {
      std::fprintf(stderr, "  %s mismatch at %zu: cuda %g cpu %g\n", what, i, a[i], b[i]);
      return false;
    }
  }
  return true;
}

bool QuantizedAttentionMatches() {
  for (KvFormat f : {KvFormat::kInt8, KvFormat::kInt4, KvFormat::kFp8}) {
    HostCache host(f, 1, 32, 1, 2, kG, kRing, 1, DType::kF16);
    DevCache dev;
    std::vector<int32_t> lens, ql;
    if (!BuildBoth(f, DType::kF16, &host, &dev, &lens, &ql)) return false;
    std::vector<int32_t> kv_start = {0, kRegion, 2 * kRegion}, res_start = {0, kRing};
    for (MaskMode mask : {MaskMode::kCausal, MaskMode::kTree, MaskMode::kNone}) {
      const std::vector<int32_t> qlens = mask == MaskMode::kCausal ? std::vector<int32_t>{1, 4} : std::vector<int32_t>{7, 3};
      std::vector<int32_t> qo = {0, qlens[0], qlens[0] + qlens[1]}, parents;
      for (int b = 0; b < 2; ++b)
        for (int t = 0; t < qlens[b]; ++t) parents.push_back(RandInt(-1, t - 1));
      const int hq = 8;
      const int64_t total = qo[2];
      std::vector<float> q(total * hq * kD);
      for (float& x : q) x = RandF(-1.f, 1.f);
      for (int layer = 0; layer < kLayers; ++layer) {
        const QuantKvCache hl = QuantKvLayer(host.c, layer), dl = QuantKvLayer(dev.c, layer);
        AttentionParams p;
        p.dtype = DType::kF32;
        p.batch_size = 2;
        p.num_qo_heads = hq;
        p.num_kv_heads = kH;
        p.head_dim = kD;
        p.total_q = total;
        p.kv_rows = host.c.rows;
        p.qo_indptr = qo.data();
        p.kv_indptr = kv_start.data();
        p.kv_lens = lens.data();
        p.mask = mask;
        p.scale = 0.125f;
        p.tree_parents = mask == MaskMode::kTree ? parents.data() : nullptr;
        p.kv_quant_lens = f == KvFormat::kInt4 ? ql.data() : nullptr;
        p.kv_res_start = f == KvFormat::kInt4 ? res_start.data() : nullptr;
        std::vector<float> o_cpu(q.size()), o_gpu(q.size()), l_cpu(total * hq), l_gpu(total * hq);
        p.q = q.data();
        p.o = o_cpu.data();
        p.lse = l_cpu.data();
        p.kv_quant = &hl;
        CANOPY_CHECK_OK(cpu::Attention(p));
        Dev dq, dout, dlse;
        CANOPY_CHECK_OK(dq.Upload(q.data(), q.size() * 4));
        CANOPY_CHECK_OK(dout.Upload(o_gpu.data(), o_gpu.size() * 4));
        CANOPY_CHECK_OK(dlse.Upload(l_gpu.data(), l_gpu.size() * 4));
        p.q = dq.p;
        p.o = dout.p;
        p.lse = static_cast<float*>(dlse.p);
        p.kv_quant = &dl;
        const Status s = gpu::Attention(p);
        if (f == KvFormat::kFp8 && !Fp8Supported()) {
          CANOPY_CHECK(s.code() == StatusCode::kCudaUnavailable, "fp8 below cc 8.9 must be refused; got %s", s.message().c_str());
          continue;
        }
        CANOPY_CHECK_OK(s);
        CANOPY_CHECK_OK(dout.Download(o_gpu.data()));
        CANOPY_CHECK_OK(dlse.Download(l_gpu.data()));
        CANOPY_CHECK(CloseF(o_gpu, o_cpu, 2e-5f, 1e-4f, "output"), "%s mask %d layer %d", KvFormatName(f), static_cast<int>(mask), layer);
        CANOPY_CHECK(CloseF(l_gpu, l_cpu, 1e-4f, 1e-5f, "lse"), "%s mask %d layer %d", KvFormatName(f), static_cast<int>(mask), layer);
      }
    }
  }
  return true;
}

// Shared-prefix attention: 3 levels (plain, then an int8 level when `quant`), plain suffix.
bool PrefixAttentionMatches() {
  for (bool quant : {false, true}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      if (quant && dt != DType::kF32) continue;
      const int B = 6, hq = 16, hkv = 4, D = 128;
      const std::vector<int32_t> qlens = {1, 3, 1, 1, 2, 1};
      std::vector<int32_t> qo(B + 1, 0);
      for (int b = 0; b < B; ++b) qo[b + 1] = qo[b] + qlens[b];
      const int64_t total = qo[B];
      auto rnd = [&](int64_t n) {
        std::vector<uint8_t> out(n * DTypeSize(dt));
        for (int64_t i = 0; i < n; ++i) StoreFromF32(out.data(), dt, i, RandF(-1.f, 1.f));
        return out;
      };
      // Level 0: one group of 300 keys; level 1: groups of 2, 3, 1 sequences; suffixes.
      std::vector<int32_t> seq0 = {0, B}, kv0 = {0, 300}, seq1 = {0, 2, 5, 6}, kv1 = {0, 40, 40, 97};
      std::vector<int32_t> suf_lens = {5, 9, 0, 33, 4, 1}, suf_indptr(B + 1, 0);
      for (int b = 0; b < B; ++b) suf_indptr[b + 1] = suf_indptr[b] + suf_lens[b];
      auto k0 = rnd(300 * hkv * D), v0 = rnd(300 * hkv * D), k1 = rnd(97 * hkv * D), v1 = rnd(97 * hkv * D);
      auto ks = rnd(suf_indptr[B] * hkv * D), vs = rnd(suf_indptr[B] * hkv * D), q = rnd(total * hq * D);
      // The int8 variant of level 1: quantized from the same values.
      HostCache qc(KvFormat::kInt8, 1, 128, hkv, D, kG, kRing, 1, DType::kF16);
      DevCache qd;
      if (quant) {
        std::vector<float> kf(97 * hkv * D), vf(97 * hkv * D);
        for (size_t i = 0; i < kf.size(); ++i) {
          kf[i] = LoadAsF32(k1.data(), dt, static_cast<int64_t>(i));
          vf[i] = LoadAsF32(v1.data(), dt, static_cast<int64_t>(i));
        }
        std::vector<int32_t> st = {0}, qo1 = {0, 97}, pos = {0};
        QuantAppendParams ap;
        ap.seqs.batch = 1;
        ap.seqs.kv_start = st.data();
        ap.qo_indptr = qo1.data();
        ap.pos_before = pos.data();
        ap.k = kf.data();
        ap.v = vf.data();
        ap.n = 97;
        CANOPY_CHECK_OK(cpu::AppendQuantKv(qc.c, ap));
        CANOPY_CHECK_OK(qd.Mirror(qc));
      }
      auto run = [&](bool on_gpu, std::vector<uint8_t>* o, std::vector<float>* lse) -> Status {
        std::vector<Dev> bufs(10);
        auto ptr = [&](int i, const std::vector<uint8_t>& h) -> const void* {
          if (!on_gpu) return h.data();
          bufs[i].Upload(h.data(), h.size());
          return bufs[i].p;
        };
        PrefixLevel levels[2];
        levels[0].num_groups = 1;
        levels[0].seq_indptr = seq0.data();
        levels[0].kv.k = ptr(0, k0);
        levels[0].kv.v = ptr(1, v0);
        levels[0].kv.kv_rows = 300;
        levels[0].kv.kv_indptr = kv0.data();
        levels[1].num_groups = 3;
        levels[1].seq_indptr = seq1.data();
        levels[1].kv.kv_indptr = kv1.data();
        if (quant) {
          levels[1].kv.quant = on_gpu ? &qd.c : &qc.c;
          levels[1].kv.kv_rows = 128;
        } else {
          levels[1].kv.k = ptr(2, k1);
          levels[1].kv.v = ptr(3, v1);
          levels[1].kv.kv_rows = 97;
        }
        PrefixAttentionParams p;
        p.q = ptr(4, q);
        std::vector<uint8_t> o_host(q.size());
        void* o_ptr = on_gpu ? const_cast<void*>(ptr(5, o_host)) : o->data();
        std::vector<uint8_t> lse_host(total * hq * 4);
        float* lse_ptr = on_gpu ? static_cast<float*>(const_cast<void*>(ptr(6, lse_host))) : lse->data();
        p.o = o_ptr;
        p.lse = lse_ptr;
        p.dtype = dt;
        p.batch_size = B;
        p.num_qo_heads = hq;
        p.num_kv_heads = hkv;
        p.head_dim = D;
        p.total_q = total;
        p.qo_indptr = qo.data();
        p.scale = 1.f / std::sqrt(static_cast<float>(D));
        p.levels = levels;
        p.num_levels = 2;
        p.suffix.k = ptr(7, ks);
        p.suffix.v = ptr(8, vs);
        p.suffix.kv_rows = suf_indptr[B];
        p.suffix.kv_indptr = suf_indptr.data();
        p.mask = MaskMode::kCausal;
        if (!on_gpu) return cpu::PrefixAttention(p);
        CANOPY_RETURN_IF_ERROR(gpu::PrefixAttention(p));
        CANOPY_RETURN_IF_ERROR(bufs[5].Download(o->data()));
        return bufs[6].Download(lse->data());
      };
      std::vector<uint8_t> o_cpu(q.size()), o_gpu(q.size());
      std::vector<float> l_cpu(total * hq), l_gpu(total * hq);
      CANOPY_CHECK_OK(run(false, &o_cpu, &l_cpu));
      CANOPY_CHECK_OK(run(true, &o_gpu, &l_gpu));
      std::vector<float> a(total * hq * D), b(a.size());
      for (size_t i = 0; i < a.size(); ++i) {
        a[i] = LoadAsF32(o_gpu.data(), dt, static_cast<int64_t>(i));
        b[i] = LoadAsF32(o_cpu.data(), dt, static_cast<int64_t>(i));
      }
      const float atol = dt == DType::kF32 ? 2e-5f : 8e-3f, rtol = dt == DType::kF32 ? 1e-4f : 1.6e-2f;
      CANOPY_CHECK(CloseF(a, b, atol, rtol, "prefix output"), "%s quant=%d", DTypeName(dt), quant);
      CANOPY_CHECK(CloseF(l_gpu, l_cpu, 1e-4f, 1e-5f, "prefix lse"), "%s quant=%d", DTypeName(dt), quant);
    }
  }
  return true;
}

Register r1("kv quant: cuda cache ops equal cpu (append, quantize groups, commit, restore)", kNeedsCuda, CacheOpsMatch);
Register r2("kv quant: cuda attention over int8/int4/fp8 caches equals cpu", kNeedsCuda, QuantizedAttentionMatches);
Register r3("prefixAttention: cuda equals cpu (plain and quantized levels)", kNeedsCuda, PrefixAttentionMatches);
Register r2v1("kv quant v1: cuda attention over int8/int4/fp8 caches equals cpu", kNeedsCuda,
              WithKernelsV1(QuantizedAttentionMatches));
Register r3v1("prefixAttention v1: cuda equals cpu (plain and quantized levels)", kNeedsCuda,
              WithKernelsV1(PrefixAttentionMatches));

}  // namespace
}  // namespace tests
}  // namespace canopy
