// Model ops and the Llama forward: CUDA against CPU on random inputs.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../common/kv_quant.h"
#include "../common/linear.h"
#include "../common/llama.h"
#include "../common/runtime.h"
#include "../common/transformer_ops.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

std::vector<float> Rand(int64_t n, float scale = 1.f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(Rng());
  return v;
}

template <typename T>
void* Up(const std::vector<T>& host, std::vector<void*>* owned) {
  void* p = nullptr;
  if (!cuda::Malloc(0, host.size() * sizeof(T) + 1, &p).ok()) return nullptr;
  cuda::CopyHostToDevice(0, p, host.data(), host.size() * sizeof(T));
  owned->push_back(p);
  return p;
}

template <typename T>
std::vector<T> Down(const void* dev, size_t n) {
  std::vector<T> h(n);
  cuda::CopyDeviceToHost(0, h.data(), dev, n * sizeof(T));
  return h;
}

struct Owned {
  std::vector<void*> p;
  ~Owned() {
    for (void* x : p) cuda::Free(0, x);
  }
};

bool Near(const std::vector<float>& a, const std::vector<float>& b, float atol, float rtol, const char* what) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(std::fabs(a[i] - b[i]) <= atol + rtol * std::fabs(b[i]))) {
      std::fprintf(stderr, "  %s mismatch at %zu: cuda %g cpu %g\n", what, i, a[i], b[i]);
      return false;
    }
  }
  return true;
}

// Both kernel versions (CANOPY_CUDA_KERNELS=v1 forces version 1): `in` = 100 takes version 2
// for f32 weights only (16-bit rows are not 16-byte aligned), 264 and 1032 take it for every
// dtype; an activation pointer off 16 bytes falls back to version 1. Rows cover one warp's
// 8-row group partly (1, 3), exactly (8) and across groups (17).
bool CudaLinearMatchesCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  for (bool v1 : {false, true}) {
    const KernelsVersionScope version(v1);
    for (DType wt : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (int64_t in : {100, 264, 1032}) {
        for (int64_t rows : {1, 3, 8, 17}) {
          for (bool offset_x : {false, true}) {
            const int64_t out = 37;
            auto x = Rand(rows * in + 4), wf = Rand(out * in), bias = Rand(out);
            std::vector<uint8_t> w(out * in * DTypeSize(wt));
            for (int64_t i = 0; i < out * in; ++i) StoreFromF32(w.data(), wt, i, wf[i]);
            const int64_t x0 = offset_x ? 1 : 0;  // 4 bytes past the (256-aligned) allocation
            std::vector<float> y_cpu(rows * out, 0.5f);
            LinearParams lp = MakeLinearParams(x.data() + x0, w.data(), wt, bias.data(), y_cpu.data(), rows, in, out, true);
            CANOPY_CHECK_OK(cpu::Linear(lp));
            Owned o;
            std::vector<float> y0(rows * out, 0.5f);
            lp.x = static_cast<float*>(Up(x, &o.p)) + x0;
            lp.w = Up(w, &o.p);
            lp.bias = static_cast<float*>(Up(bias, &o.p));
            lp.y = static_cast<float*>(Up(y0, &o.p));
            CANOPY_CHECK_OK(cuda::Linear(lp));
            CANOPY_CHECK(Near(Down<float>(lp.y, rows * out), y_cpu, 1e-4f, 1e-4f, "linear"), "%s %s in=%lld rows=%lld x+%lld",
                         v1 ? "v1" : "v2", DTypeName(wt), static_cast<long long>(in), static_cast<long long>(rows),
                         static_cast<long long>(x0));
          }
        }
      }
    }
  }
  return true;
}

// RoPE on random q [rows, nq, D] and k [rows, nk, D]: CUDA equals the CPU kernel. *device gets
// the CUDA call's parameters (device pointers, owned by *o) for further checks.
bool RopeMatchesCpu(int64_t rows, int nq, int nk, int D, const std::vector<int32_t>& pos, const std::vector<float>& inv,
                    RopeLayout layout, Owned* o, RopeParams* device, float attention_factor = 1.f) {
  auto q = Rand(rows * nq * D), k = Rand(rows * nk * D);
  auto qc = q, kc = k;
  RopeParams rp;
  rp.q = qc.data();
  rp.k = kc.data();
  rp.positions = pos.data();
  rp.inv_freq = inv.data();
  rp.rows = rows;
  rp.nq = nq;
  rp.nk = nk;
  rp.head_dim = D;
  rp.layout = layout;
  rp.attention_factor = attention_factor;
  CANOPY_CHECK_OK(cpu::Rope(rp));
  rp.q = static_cast<float*>(Up(q, &o->p));
  rp.k = static_cast<float*>(Up(k, &o->p));
  rp.positions = static_cast<int32_t*>(Up(pos, &o->p));
  rp.inv_freq = static_cast<float*>(Up(inv, &o->p));
  CANOPY_CHECK_OK(cuda::Rope(rp));
  CANOPY_CHECK(Near(Down<float>(rp.q, q.size()), qc, 1e-5f, 1e-5f, "rope q"), "rope q, head_dim %d", D);
  CANOPY_CHECK(Near(Down<float>(rp.k, k.size()), kc, 1e-5f, 1e-5f, "rope k"), "rope k, head_dim %d", D);
  *device = rp;
  return true;
}

bool CudaOpsMatchCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  const int64_t rows = 5, dim = 96;
  auto x = Rand(rows * dim), w = Rand(dim);
  std::vector<float> y(rows * dim);
  CANOPY_CHECK_OK(cpu::RmsNorm(x.data(), w.data(), DType::kF32, 1e-5f, y.data(), rows, dim));
  Owned o;
  std::vector<float> zeros(rows * dim);
  float* dy = static_cast<float*>(Up(zeros, &o.p));
  CANOPY_CHECK_OK(cuda::RmsNorm(static_cast<float*>(Up(x, &o.p)), Up(w, &o.p), DType::kF32, 1e-5f, dy, rows, dim));
  CANOPY_CHECK(Near(Down<float>(dy, rows * dim), y, 1e-5f, 1e-5f, "rmsnorm"), "rmsnorm");
  // RoPE both layouts.
  for (RopeLayout layout : {RopeLayout::kInterleaved, RopeLayout::kHalf}) {
    const int D = 16;
    std::vector<float> inv(D / 2);
    for (int j = 0; j < D / 2; ++j) inv[j] = std::pow(10000.f, -2.f * j / D);
    RopeParams device;
    CANOPY_CHECK(RopeMatchesCpu(rows, 4, 2, D, {0, 1, 7, 100, 4095}, inv, layout, &o, &device), "rope layout %d",
                 static_cast<int>(layout));
    // YaRN's attention factor scales cos and sin.
    CANOPY_CHECK(RopeMatchesCpu(rows, 4, 2, D, {0, 1, 7, 100, 4095}, inv, layout, &o, &device, 1.1386f),
                 "rope layout %d, attention factor", static_cast<int>(layout));
  }
  // Argmax with ties.
  std::vector<float> logits = {1, 5, 5, 2, -1, 7, 7, 7};
  std::vector<int32_t> best(2);
  CANOPY_CHECK_OK(cpu::Argmax(logits.data(), 2, 4, best.data()));
  std::vector<int32_t> none(2, -1);
  int32_t* db = static_cast<int32_t*>(Up(none, &o.p));
  CANOPY_CHECK_OK(cuda::Argmax(static_cast<float*>(Up(logits, &o.p)), 2, 4, db));
  auto got = Down<int32_t>(db, 2);
  CANOPY_CHECK(got == best && best[0] == 1 && best[1] == 1, "argmax ties: cuda %d %d cpu %d %d", got[0], got[1], best[0], best[1]);
  return true;
}

// Row-wise ops on sizes that are not multiples of the block: RmsNorm over 4099 dims (bf16
// weights), RoPE with 3 pairs and large positions, argmax ties across threads / all -inf / one
// column, SwiGlu over 1000 elements, Embed from an f16 table; and the CPU's argument checks.
bool CudaOpsEdgeCases() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  Owned o;
  {
    const int64_t rows = 3, dim = 4099;
    auto x = Rand(rows * dim), wf = Rand(dim);
    std::vector<uint16_t> w(dim);
    for (int64_t i = 0; i < dim; ++i) w[i] = F32ToBF16Bits(wf[i]);
    std::vector<float> y(rows * dim), zeros(rows * dim);
    CANOPY_CHECK_OK(cpu::RmsNorm(x.data(), w.data(), DType::kBF16, 1e-6f, y.data(), rows, dim));
    float* dy = static_cast<float*>(Up(zeros, &o.p));
    CANOPY_CHECK_OK(cuda::RmsNorm(static_cast<float*>(Up(x, &o.p)), Up(w, &o.p), DType::kBF16, 1e-6f, dy, rows, dim));
    CANOPY_CHECK(Near(Down<float>(dy, rows * dim), y, 1e-5f, 1e-4f, "rmsnorm 4099"), "rmsnorm 4099");
    CANOPY_CHECK(!cuda::RmsNorm(dy, dy, DType::kI32, 1e-6f, dy, rows, dim).ok(), "rmsnorm: an int32 weight must be rejected");
  }
  for (RopeLayout layout : {RopeLayout::kInterleaved, RopeLayout::kHalf}) {
    RopeParams rp;
    CANOPY_CHECK(RopeMatchesCpu(4, 3, 1, 6, {0, 65535, 131071, 1000000}, {1.f, 0.01f, 1e-4f}, layout, &o, &rp),
                 "rope D=6 layout %d", static_cast<int>(layout));
    rp.head_dim = 5;
    CANOPY_CHECK(!cuda::Rope(rp).ok(), "rope: an odd head_dim must be rejected");
  }
  {
    // Row 0: ties at 300 and 700 (different threads) -> 300. Row 1: ties at 0 and 256 (same
    // thread) -> 0. Row 2: all -inf -> -1 (no token). Row 3: ties at 999 and 998 -> 998. Row 4:
    // NaN at 0 and 500 count as -inf -> 600. Row 5: all NaN -> -1.
    const int64_t vocab = 1000, rows = 6;
    std::vector<float> logits = Rand(rows * vocab);
    logits[300] = logits[700] = 9.f;
    logits[vocab + 0] = logits[vocab + 256] = 9.f;
    for (int64_t v = 0; v < vocab; ++v) logits[2 * vocab + v] = -INFINITY;
    logits[3 * vocab + 998] = logits[3 * vocab + 999] = 9.f;
    logits[4 * vocab + 0] = logits[4 * vocab + 500] = NAN;
    logits[4 * vocab + 600] = 9.f;
    for (int64_t v = 0; v < vocab; ++v) logits[5 * vocab + v] = NAN;
    std::vector<int32_t> best(rows), none(rows, -1);
    CANOPY_CHECK_OK(cpu::Argmax(logits.data(), rows, vocab, best.data()));
    int32_t* db = static_cast<int32_t*>(Up(none, &o.p));
    CANOPY_CHECK_OK(cuda::Argmax(static_cast<float*>(Up(logits, &o.p)), rows, vocab, db));
    auto got = Down<int32_t>(db, rows);
    const std::vector<int32_t> want = {300, 0, -1, 998, 600, -1};
    CANOPY_CHECK(got == want && best == want, "argmax: cuda %d %d %d %d %d %d cpu %d %d %d %d %d %d", got[0], got[1],
                 got[2], got[3], got[4], got[5], best[0], best[1], best[2], best[3], best[4], best[5]);
    std::vector<float> one = {-3.f, 2.f};  // vocab 1: two rows of one column
    CANOPY_CHECK_OK(cuda::Argmax(static_cast<float*>(Up(one, &o.p)), 2, 1, db));
    auto got1 = Down<int32_t>(db, 2);
    CANOPY_CHECK(got1[0] == 0 && got1[1] == 0, "argmax vocab 1: %d %d", got1[0], got1[1]);
  }
  {
    const int64_t n = 1000;
    auto g = Rand(n, 6.f), u = Rand(n);
    std::vector<float> h(n), zeros(n);
    CANOPY_CHECK_OK(cpu::SwiGlu(g.data(), u.data(), h.data(), n));
    float* dh = static_cast<float*>(Up(zeros, &o.p));
    CANOPY_CHECK_OK(cuda::SwiGlu(static_cast<float*>(Up(g, &o.p)), static_cast<float*>(Up(u, &o.p)), dh, n));
    CANOPY_CHECK(Near(Down<float>(dh, n), h, 1e-6f, 1e-5f, "swiglu"), "swiglu");
  }
  {
    const int64_t vocab = 50, dim = 70;
    auto tf = Rand(vocab * dim);
    std::vector<uint16_t> table(vocab * dim);
    for (int64_t i = 0; i < vocab * dim; ++i) table[i] = F32ToF16Bits(tf[i]);
    std::vector<int32_t> tokens = {49, 0, 7, 7};
    std::vector<float> x(tokens.size() * dim), zeros(x.size());
    CANOPY_CHECK_OK(cpu::Embed(tokens.data(), 4, table.data(), DType::kF16, vocab, dim, x.data()));
    float* dx = static_cast<float*>(Up(zeros, &o.p));
    CANOPY_CHECK_OK(cuda::Embed(static_cast<int32_t*>(Up(tokens, &o.p)), 4, Up(table, &o.p), DType::kF16, vocab, dim, dx));
    CANOPY_CHECK(Near(Down<float>(dx, x.size()), x, 0.f, 0.f, "embed"), "embed f16");
  }
  return true;
}

// A random model whose CUDA forward must match the CPU forward (causal prefill, decode, tree), with
// per-head q/k RMSNorm (Qwen3) and a RoPE attention factor (YaRN).
// long_context: a 600-token prefill, then a decode step and a tree step over 601+ keys, so the
// CUDA attention splits the keys (split-KV partials in the forward scratch, merged every layer)
// and the forward scratch grows past its first size for the prefill (f32, int8 and f16 caches).
// shared_prefix: sequences that read a prefix written by an earlier step (prefix_len, llama.h)
// in a batch of 2: causal chunk, decode and tree steps (f32, int8 and f16 caches).
bool CudaForwardCase(bool long_context, bool shared_prefix = false) {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  LlamaModelDesc m;
  m.dim = 64;
  m.hidden_dim = 100;
  m.vocab = 41;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.head_dim = 16;
  m.rope_layout = RopeLayout::kHalf;
  for (int j = 0; j < 8; ++j) m.inv_freq.push_back(std::pow(10000.f, -2.f * j / 16));
  m.rope_attention_factor = 1.1386f;  // YaRN's, on cos and sin
  const int64_t qd = 64, kvd = 32;
  std::vector<std::vector<float>> host;
  auto mk = [&](int64_t n, float scale) {
    host.push_back(Rand(n, scale));
    return host.back().data();
  };
  m.embed.data = mk(m.vocab * m.dim, 0.5f);
  m.norm = mk(m.dim, 1.f);
  m.output.data = mk(m.vocab * m.dim, 0.5f);
  for (int l = 0; l < m.n_layers; ++l) {
    LlamaLayerWeights w;
    w.attn_norm = mk(m.dim, 1.f);
    w.wq.data = mk(qd * m.dim, 0.25f);
    w.wk.data = mk(kvd * m.dim, 0.25f);
    w.wv.data = mk(kvd * m.dim, 0.25f);
    w.wo.data = mk(m.dim * qd, 0.25f);
    w.q_norm = mk(m.head_dim, 1.f);  // Qwen3's per-head q/k RMSNorm
    w.k_norm = mk(m.head_dim, 1.f);
    w.ffn_norm = mk(m.dim, 1.f);
    w.w1.data = mk(m.hidden_dim * m.dim, 0.25f);
    w.w2.data = mk(m.dim * m.hidden_dim, 0.25f);
    w.w3.data = mk(m.hidden_dim * m.dim, 0.25f);
    m.layers.push_back(w);
  }
  // The CUDA model: same weights uploaded.
  Owned o;
  LlamaModelDesc g = m;
  auto up = [&](const void* hp, int64_t n) {
    std::vector<float> v(static_cast<const float*>(hp), static_cast<const float*>(hp) + n);
    return Up(v, &o.p);
  };
  g.embed.data = up(m.embed.data, m.vocab * m.dim);
  g.norm = up(m.norm, m.dim);
  g.output.data = up(m.output.data, m.vocab * m.dim);
  for (int l = 0; l < m.n_layers; ++l) {
    const LlamaLayerWeights& w = m.layers[l];
    LlamaLayerWeights& d = g.layers[l];
    d.attn_norm = up(w.attn_norm, m.dim);
    d.wq.data = up(w.wq.data, qd * m.dim);
    d.wk.data = up(w.wk.data, kvd * m.dim);
    d.wv.data = up(w.wv.data, kvd * m.dim);
    d.wo.data = up(w.wo.data, m.dim * qd);
    d.q_norm = up(w.q_norm, m.head_dim);
    d.k_norm = up(w.k_norm, m.head_dim);
    d.ffn_norm = up(w.ffn_norm, m.dim);
    d.w1.data = up(w.w1.data, m.hidden_dim * m.dim);
    d.w2.data = up(w.w2.data, m.dim * m.hidden_dim);
    d.w3.data = up(w.w3.data, m.hidden_dim * m.dim);
  }
  const int64_t capacity = long_context ? 640 : shared_prefix ? 64 : 32;
  // Cache kinds: 0 the f32 cache; 1 int8 and 2 int4 quantized caches (kv_quant.h) with the same
  // steps, host copies for the CPU and uploads for CUDA (the int4 ring holds every key here);
  // 3 an f16 cache (q cast to f16 for attention and the output cast back: the cast_q path).
  for (int kind = 0; kind < 4; ++kind) {
    if ((long_context || shared_prefix) && kind == 2) continue;  // the int4 ring here is sized for the short single-sequence steps
    const bool quant = kind == 1 || kind == 2;
    std::vector<float> kc(m.n_layers * capacity * kvd), vc(kc.size());
    void* dk = Up(kc, &o.p);
    void* dv = Up(vc, &o.p);
    QuantKvCache hq, dq;
    std::vector<std::vector<uint8_t>> qbytes;
    if (quant) {
      hq.format = kind == 1 ? KvFormat::kInt8 : KvFormat::kInt4;
      hq.layers = m.n_layers;
      hq.num_kv_heads = m.n_kv_heads;
      hq.head_dim = m.head_dim;
      hq.rows = capacity;
      hq.group = kind == 2 ? 32 : 0;
      hq.ring = kind == 2 ? 64 : 0;
      hq.res_rows = hq.ring;
      hq.res_dtype = DType::kF32;
      const int64_t sizes[] = {m.n_layers * QuantCodeBytesPerLayer(hq), m.n_layers * QuantCodeBytesPerLayer(hq),
                               m.n_layers * QuantKScaleCount(hq) * 4, m.n_layers * QuantVScaleCount(hq) * 4,
                               m.n_layers * QuantKScaleCount(hq) * 4, m.n_layers * QuantVScaleCount(hq) * 4,
                               m.n_layers * QuantResElems(hq) * 4, m.n_layers * QuantResElems(hq) * 4};
      for (int64_t n : sizes) qbytes.emplace_back(static_cast<size_t>(n) + 1, 0);
      void** hp[] = {&hq.k, &hq.v, reinterpret_cast<void**>(&hq.k_scale), reinterpret_cast<void**>(&hq.v_scale),
                     reinterpret_cast<void**>(&hq.k_zero), reinterpret_cast<void**>(&hq.v_zero), &hq.res_k, &hq.res_v};
      dq = hq;
      void** dp[] = {&dq.k, &dq.v, reinterpret_cast<void**>(&dq.k_scale), reinterpret_cast<void**>(&dq.v_scale),
                     reinterpret_cast<void**>(&dq.k_zero), reinterpret_cast<void**>(&dq.v_zero), &dq.res_k, &dq.res_v};
      for (int i = 0; i < 8; ++i) {
        *hp[i] = qbytes[i].data();
        *dp[i] = Up(qbytes[i], &o.p);
      }
    }
    struct Step {
      std::vector<int32_t> tokens, positions, parents;
      int32_t len_before;
      MaskMode mask;
      // Batches (shared_prefix): qo_indptr, region starts, committed rows, prefix rows and lengths.
      std::vector<int32_t> qo = {}, start = {}, lens = {}, prefix_start = {}, prefix_len = {};
    };
    std::vector<Step> steps = {{{1, 5, 9, 2, 33}, {0, 1, 2, 3, 4}, {}, 0, MaskMode::kCausal},
                               {{7}, {5}, {}, 5, MaskMode::kCausal},
                               {{3, 4, 8, 9}, {6, 6, 7, 7}, {-1, -1, 0, 1}, 6, MaskMode::kTree}};
    if (shared_prefix) {
      // The prefix: 5 tokens at rows [0, 5), read by sequence 0 (region at 16); sequence 1 (region
      // at 40) has none (an empty group of the prefix level).
      const std::vector<int32_t> ps = {0, 0}, pl = {5, 0}, st = {16, 40};
      steps = {{{1, 5, 9, 2, 33}, {0, 1, 2, 3, 4}, {}, 0, MaskMode::kCausal},
               {{7, 3, 4}, {5, 6, 0}, {}, 0, MaskMode::kCausal, {0, 2, 3}, st, {0, 0}, ps, pl},
               {{8, 2}, {7, 1}, {}, 0, MaskMode::kCausal, {0, 1, 2}, st, {2, 1}, ps, pl},
               {{3, 4, 8, 9, 3, 4, 8, 9}, {8, 8, 9, 9, 2, 2, 3, 3}, {-1, -1, 0, 1, -1, -1, 0, 1}, 0, MaskMode::kTree, {0, 4, 8}, st, {3, 2}, ps, pl}};
    }
    if (long_context) {
      Step prefill{{}, {}, {}, 0, MaskMode::kCausal};
      for (int32_t i = 0; i < 600; ++i) {
        prefill.tokens.push_back((i * 7 + 3) % m.vocab);
        prefill.positions.push_back(i);
      }
      steps = {prefill, {{7}, {600}, {}, 600, MaskMode::kCausal}, {{3, 4, 8, 9}, {601, 601, 602, 602}, {-1, -1, 0, 1}, 601, MaskMode::kTree}};
    }
    for (const Step& st : steps) {
      LlamaForwardParams p;
      const int32_t n = static_cast<int32_t>(st.tokens.size());
      std::vector<int32_t> qo = {0, n}, start = {0}, len = {st.len_before}, rows;
      if (!st.qo.empty()) {
        qo = st.qo;
        start = st.start;
        len = st.lens;
      }
      const int32_t batch = static_cast<int32_t>(qo.size()) - 1;
      std::vector<int32_t> res(batch, 0), ql(batch, 0);
      for (int32_t i = 0; i < n; ++i) rows.push_back(i);
      p.tokens = st.tokens.data();
      p.positions = st.positions.data();
      p.n = n;
      p.batch = batch;
      if (!st.prefix_len.empty()) {
        p.prefix_start = st.prefix_start.data();
        p.prefix_len = st.prefix_len.data();
      }
      p.qo_indptr = qo.data();
      p.kv_start = start.data();
      p.kv_len_before = len.data();
      p.mask = st.mask;
      p.tree_parents = st.parents.empty() ? nullptr : st.parents.data();
      p.cache_dtype = kind == 3 ? DType::kF16 : DType::kF32;
      p.capacity = capacity;
      p.logit_rows = rows.data();
      p.n_logit_rows = n;
      if (quant) {
        p.kv_res_start = res.data();
        p.quant_len_before = ql.data();
        p.quant_len_after = ql.data();
      }
      std::vector<float> logits_cpu(n * m.vocab);
      p.k_cache = kc.data();
      p.v_cache = vc.data();
      p.kv_quant = quant ? &hq : nullptr;
      p.logits = logits_cpu.data();
      CANOPY_CHECK_OK(cpu::LlamaForward(m, p));
      std::vector<float> zeros(n * m.vocab);
      float* dl = static_cast<float*>(Up(zeros, &o.p));
      p.k_cache = dk;
      p.v_cache = dv;
      p.kv_quant = quant ? &dq : nullptr;
      p.logits = dl;
      CANOPY_CHECK_OK(cuda::LlamaForward(g, p));
      // Quantized caches: CPU and CUDA keys differ in their last bits, so an element at a rounding
      // tie may take the neighbouring int8 code on one side (one quantization step, about 1e-3 in
      // the logits); the int4 ring here holds the keys unquantized (f32).
      // The f16 cache rounds keys, values, q and the attention output to f16 on both sides from f32
      // values that differ in their last bits, so an f16 ulp (about 5e-4 relative) may differ.
      const float tol = kind == 1 || kind == 3 ? 5e-3f : 2e-4f;
      CANOPY_CHECK(Near(Down<float>(dl, logits_cpu.size()), logits_cpu, tol, tol, "logits"),
                   "forward step n=%d mask=%d cache kind %d", n, static_cast<int>(st.mask), kind);
    }
  }
  return true;
}

// CheckLlamaPrefix: prefix rows must lie in the cache and no step may write into them.
bool PrefixRowsChecked() {
  std::vector<int32_t> qo = {0, 1, 2}, start = {16, 40}, len = {0, 3}, ps = {0, 0}, pl = {5, 5};
  LlamaForwardParams p;
  p.batch = 2;
  p.n = 2;
  p.qo_indptr = qo.data();
  p.kv_start = start.data();
  p.kv_len_before = len.data();
  p.capacity = 64;
  p.prefix_start = ps.data();
  p.prefix_len = pl.data();
  CANOPY_CHECK_OK(CheckLlamaPrefix(p));
  start[1] = 0;  // sequence 1 writes row 3, inside the prefix [0, 5)
  const Status inside = CheckLlamaPrefix(p);
  CANOPY_CHECK(!inside.ok() && inside.message().find("inside sequence 0's shared prefix [0, 5)") != std::string::npos, "%s",
               inside.message().c_str());
  start[1] = 40;
  ps[1] = 62;  // rows [62, 67) of 64
  const Status outside = CheckLlamaPrefix(p);
  CANOPY_CHECK(!outside.ok() && outside.message().find("must lie within the cache's 64 rows") != std::string::npos, "%s",
               outside.message().c_str());
  ps[1] = 0;
  p.prefix_start = nullptr;
  CANOPY_CHECK(!CheckLlamaPrefix(p).ok(), "a prefix without prefixStart must be rejected");
  return true;
}

bool CudaForwardMatchesCpu() { return CudaForwardCase(false); }
bool CudaLongForwardMatchesCpu() { return CudaForwardCase(true); }
bool CudaPrefixForwardMatchesCpu() { return CudaForwardCase(false, true); }

Register r1("linear: cuda equals cpu (f32/f16/bf16 weights, odd sizes, bias, accumulate)", true, CudaLinearMatchesCpu);
Register r2("rmsnorm, rope, argmax: cuda equals cpu", true, CudaOpsMatchCpu);
Register r2b("rmsnorm, rope, argmax, swiglu, embed: cuda equals cpu on edge sizes", true, CudaOpsEdgeCases);
Register r3("llama forward: cuda equals cpu (prefill, decode, tree step; f32, f16, int8 and int4 caches)", true, CudaForwardMatchesCpu);
Register r3v1("llama forward v1: cuda equals cpu (the version-1 kernels)", true, WithKernelsV1(CudaForwardMatchesCpu));
Register r3c("llama forward: shared prefix rows are checked (inside the cache, never written by the step)", false, PrefixRowsChecked);
Register r3p("llama forward with a shared prefix: cuda equals cpu (batch 2, one sequence without; causal, decode and tree steps; f32, f16 and int8 caches)", true,
             CudaPrefixForwardMatchesCpu);
Register r4("llama forward: cuda equals cpu over 600+ keys (split-KV in the forward, scratch growth)", true,
            CudaLongForwardMatchesCpu);
Register r4v1("llama forward v1: cuda equals cpu over 600+ keys", true, WithKernelsV1(CudaLongForwardMatchesCpu));

}  // namespace
}  // namespace tests
}  // namespace canopy
