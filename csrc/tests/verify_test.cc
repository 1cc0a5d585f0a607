// verify and kv_commit: the CPU kernels against brute-force references, and
// the CUDA kernels against the CPU kernels exactly (same tokens for the same
// uniforms, same committed bytes), on random trees and awkward vocabularies.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/kv_commit.h"
#include "../common/runtime.h"
#include "../common/verify.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

double Uniform01() { return std::uniform_real_distribution<double>(0.0, 1.0)(Rng()); }
int RandInt(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(Rng()); }

// A random ragged batch of trees (parents local, topological).
struct Batch {
  std::vector<int32_t> indptr{0}, tokens, parents;
  int32_t batch() const { return static_cast<int32_t>(indptr.size()) - 1; }
  int64_t nodes() const { return indptr.back(); }
  int64_t rows() const { return nodes() + batch(); }
  VerifyTree view() const {
    VerifyTree t;
    t.batch = batch();
    t.indptr = indptr.data();
    t.tokens = tokens.data();
    t.parents = parents.data();
    return t;
  }
};

Batch RandomBatch(int batch, int max_nodes, int vocab) {
  Batch b;
  for (int s = 0; s < batch; ++s) {
    const int n = RandInt(0, max_nodes);
    for (int i = 0; i < n; ++i) {
      b.parents.push_back(RandInt(-1, i - 1));
      b.tokens.push_back(RandInt(0, vocab - 1));
    }
    b.indptr.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  return b;
}

int32_t ArgmaxBrute(const std::vector<float>& rows, int64_t row, int64_t vocab) {
  int32_t best = -1;  // no value above -inf
  float bv = -INFINITY;
  for (int64_t y = 0; y < vocab; ++y) {
    float v = rows[row * vocab + y];
    if (std::isnan(v)) v = -INFINITY;
    if (v > bv) {
      bv = v;
      best = static_cast<int32_t>(y);
    }
  }
  return best;
}

// Brute force greedy: every accepted node's path; the longest, then lexicographically smallest.
void GreedyBrute(const Batch& b, const std::vector<float>& rows, int64_t vocab, std::vector<int32_t>* count,
                 std::vector<int32_t>* nodes, std::vector<int32_t>* next) {
  count->assign(b.batch(), 0);
  nodes->assign(b.nodes(), -1);
  next->assign(b.batch(), 0);
  for (int s = 0; s < b.batch(); ++s) {
    const int start = b.indptr[s], n = b.indptr[s + 1] - start;
    const int64_t base = start + s;
    std::vector<bool> acc(n);
    std::vector<int32_t> best;
    for (int i = 0; i < n; ++i) {
      const int p = b.parents[start + i];
      acc[i] = (p < 0 || acc[p]) && b.tokens[start + i] == ArgmaxBrute(rows, base + p + 1, vocab);
      if (!acc[i]) continue;
      std::vector<int32_t> path;
      for (int c = i; c >= 0; c = b.parents[start + c]) path.insert(path.begin(), c);
      if (path.size() > best.size() || (path.size() == best.size() && path < best)) best = path;
    }
    (*count)[s] = static_cast<int32_t>(best.size());
    for (size_t j = 0; j < best.size(); ++j) (*nodes)[start + j] = best[j];
    (*next)[s] = ArgmaxBrute(rows, base + (best.empty() ? 0 : best.back() + 1), vocab);
  }
}

std::vector<uint8_t> Encode(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> out(v.size() * DTypeSize(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      uint16_t h = t == DType::kF16 ? F32ToF16Bits(v[i]) : F32ToBF16Bits(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

std::vector<float> Decode(const std::vector<uint8_t>& bytes, DType t, size_t n) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = LoadFloat(bytes.data(), t, static_cast<int64_t>(i));
  return out;
}

// Random logits, with draft tokens set to the parent's argmax most of the time.
std::vector<float> GreedyLogits(Batch* b, int64_t vocab, DType t) {
  std::vector<float> rows(static_cast<size_t>(b->rows() * vocab));
  for (auto& x : rows) x = static_cast<float>(std::round(Uniform01() * 8.0) / 2.0 - 2.0);  // ties
  if (vocab > 1 && b->rows() > 0) rows[0] = NAN;
  rows = Decode(Encode(rows, t), t, rows.size());
  for (int s = 0; s < b->batch(); ++s) {
    const int start = b->indptr[s];
    for (int i = start; i < b->indptr[s + 1]; ++i) {
      if (Uniform01() < 0.8) b->tokens[i] = ArgmaxBrute(rows, start + s + b->parents[i] + 1, vocab);
    }
  }
  return rows;
}

bool CpuGreedyMatchesBruteForce() {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t vocab : {1, 7, 37, 300}) {
      Batch b = RandomBatch(30, 12, static_cast<int>(vocab));
      std::vector<float> rows = GreedyLogits(&b, vocab, t);
      std::vector<uint8_t> bytes = Encode(rows, t);
      std::vector<int32_t> count(b.batch()), nodes(b.nodes()), next(b.batch()), wc, wn, wx;
      CANOPY_CHECK_OK(cpu::VerifyGreedy(b.view(), bytes.data(), t, vocab, {count.data(), nodes.data(), next.data()}));
      GreedyBrute(b, rows, vocab, &wc, &wn, &wx);
      CANOPY_CHECK(count == wc && nodes == wn && next == wx, "greedy mismatch (%s, vocab %lld)", DTypeName(t),
                   static_cast<long long>(vocab));
    }
  }
  return true;
}

std::vector<float> RandomProbRows(int64_t rows, int64_t vocab, double peak) {
  std::vector<float> out(static_cast<size_t>(rows * vocab));
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> w(vocab);
    double s = 0;
    for (auto& x : w) s += (x = Uniform01() < 0.2 ? 0.0 : std::pow(Uniform01(), peak));
    if (s == 0) {
      w[0] = 1;
      s = 1;
    }
    for (int64_t y = 0; y < vocab; ++y) out[r * vocab + y] = static_cast<float>(w[y] / s);
  }
  return out;
}

// Draft tokens drawn from the draft rows, so paths get accepted.
void DrawTokens(Batch* b, const std::vector<float>& draft, int64_t vocab) {
  for (int s = 0; s < b->batch(); ++s) {
    const int start = b->indptr[s];
    for (int i = start; i < b->indptr[s + 1]; ++i) {
      const float* q = draft.data() + (start + s + b->parents[i] + 1) * vocab;
      double u = Uniform01(), c = 0;
      int32_t tok = static_cast<int32_t>(vocab - 1);
      for (int64_t y = 0; y < vocab; ++y) {
        c += q[y];
        if (u < c && q[y] > 0) {
          tok = static_cast<int32_t>(y);
          break;
        }
      }
      b->tokens[i] = tok;
    }
  }
}

bool CpuSamplingInverseCdfGrid() {
  // No drafts: every sequence samples row 0; a uniform grid must land on y with frequency p(y).
  const int64_t vocab = 600, G = 4000;
  std::vector<float> p = RandomProbRows(1, vocab, 1.0);
  std::vector<float> rows(static_cast<size_t>(G * vocab));
  for (int64_t g = 0; g < G; ++g) std::copy(p.begin(), p.end(), rows.begin() + g * vocab);
  Batch b;
  b.indptr.assign(G + 1, 0);
  std::vector<double> u(G);
  for (int64_t g = 0; g < G; ++g) u[g] = (g + 0.5) / G;
  std::vector<int32_t> count(G), nodes(0), next(G);
  CANOPY_CHECK_OK(cpu::VerifySampling(b.view(), rows.data(), nullptr, vocab, u.data(), {count.data(), nodes.data(), next.data()}));
  std::vector<double> freq(vocab, 0.0);
  for (int32_t t : next) freq[t] += 1.0 / G;
  for (int64_t y = 0; y < vocab; ++y) {
    CANOPY_CHECK(std::fabs(freq[y] - p[y]) <= 1.0 / G + 1e-6, "token %lld: frequency %g vs p %g", static_cast<long long>(y),
                 freq[y], static_cast<double>(p[y]));
  }
  return true;
}

bool CpuSamplingDraftEqualsTargetAcceptsAll() {
  // q == p: every drafted token is accepted (u * q(x) < p(x) for u < 1).
  const int64_t vocab = 50;
  Batch b = RandomBatch(40, 8, static_cast<int>(vocab));
  std::vector<float> probs = RandomProbRows(b.rows(), vocab, 2.0);
  DrawTokens(&b, probs, vocab);
  std::vector<double> u(b.rows());
  for (auto& x : u) x = Uniform01();
  std::vector<int32_t> count(b.batch()), nodes(b.nodes()), next(b.batch());
  CANOPY_CHECK_OK(cpu::VerifySampling(b.view(), probs.data(), probs.data(), vocab, u.data(), {count.data(), nodes.data(), next.data()}));
  for (int s = 0; s < b.batch(); ++s) {
    // The accepted path ends at a leaf: the first child is always accepted, so the path follows first children.
    int cur = -1, expect = 0;
    const int start = b.indptr[s], n = b.indptr[s + 1] - start;
    for (;;) {
      int first = -1;
      for (int c = cur + 1; c < n && first < 0; ++c) if (b.parents[start + c] == cur) first = c;
      if (first < 0) break;
      CANOPY_CHECK(nodes[start + expect] == first, "sequence %d: node %d expected %d", s, nodes[start + expect], first);
      ++expect;
      cur = first;
    }
    CANOPY_CHECK(count[s] == expect, "sequence %d: %d accepted, expected %d", s, count[s], expect);
  }
  return true;
}

// ---- KV commit ------------------------------------------------------------

struct KvCase {
  int64_t layers, capacity, row_elems;
  std::vector<int32_t> kv_indptr, prefix_lens, tree_indptr{0}, accepted_count, accepted_nodes;
  KvCommitPlan view() const {
    KvCommitPlan p;
    p.batch = static_cast<int32_t>(prefix_lens.size());
    p.kv_indptr = kv_indptr.data();
    p.prefix_lens = prefix_lens.data();
    p.tree_indptr = tree_indptr.data();
    p.accepted_count = accepted_count.data();
    p.accepted_nodes = accepted_nodes.data();
    return p;
  }
};

KvCase RandomKvCase() {
  KvCase c;
  c.layers = RandInt(1, 3);
  c.row_elems = RandInt(1, 3) * (RandInt(0, 1) ? 64 : 3);
  c.kv_indptr.push_back(RandInt(0, 2));
  const int batch = RandInt(1, 5);
  for (int s = 0; s < batch; ++s) {
    const int n = RandInt(0, 10), prefix = RandInt(0, 6);
    c.prefix_lens.push_back(prefix);
    int count = 0;
    for (int i = 0; i < n; ++i) {
      if (Uniform01() < 0.5) {
        c.accepted_nodes.push_back(i);
        ++count;
      }
    }
    for (int i = count; i < n; ++i) c.accepted_nodes.push_back(-1);
    c.accepted_count.push_back(count);
    c.tree_indptr.push_back(c.tree_indptr.back() + n);
    c.kv_indptr.push_back(c.kv_indptr.back() + prefix + n + RandInt(0, 2));
  }
  c.capacity = c.kv_indptr.back() + RandInt(0, 2);
  return c;
}

bool CpuKvCommitMatchesRebuild() {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int trial = 0; trial < 20; ++trial) {
      KvCase c = RandomKvCase();
      const int64_t es = DTypeSize(t), row_bytes = c.row_elems * es;
      std::vector<uint8_t> k(static_cast<size_t>(c.layers * c.capacity * row_bytes)), v(k.size());
      for (auto& x : k) x = static_cast<uint8_t>(Rng()() & 0xff);
      for (auto& x : v) x = static_cast<uint8_t>(Rng()() & 0xff);
      std::vector<uint8_t> k0 = k, v0 = v;
      std::vector<int32_t> lens(c.prefix_lens.size());
      CANOPY_CHECK_OK(cpu::CommitKv(k.data(), v.data(), t, c.layers, c.capacity, c.row_elems, c.view(),
                                    static_cast<int64_t>(c.accepted_nodes.size()), lens.data()));
      // Rebuild: untouched rows stay; region rows [prefix, newLen) come from the accepted nodes.
      std::vector<uint8_t> kw = k0, vw = v0;
      for (size_t s = 0; s < c.prefix_lens.size(); ++s) {
        CANOPY_CHECK(lens[s] == c.prefix_lens[s] + c.accepted_count[s], "new length");
        for (int64_t l = 0; l < c.layers; ++l) {
          const int64_t first = l * c.capacity + c.kv_indptr[s] + c.prefix_lens[s];
          for (int j = 0; j < c.accepted_count[s]; ++j) {
            const int node = c.accepted_nodes[c.tree_indptr[s] + j];
            std::memcpy(kw.data() + (first + j) * row_bytes, k0.data() + (first + node) * row_bytes, row_bytes);
            std::memcpy(vw.data() + (first + j) * row_bytes, v0.data() + (first + node) * row_bytes, row_bytes);
          }
        }
      }
      CANOPY_CHECK(k == kw && v == vw, "commit differs from the rebuild (%s, trial %d)", DTypeName(t), trial);
    }
  }
  return true;
}

// ---- CUDA against CPU -------------------------------------------------------

struct DeviceCopy {
  void* ptr = nullptr;
  ~DeviceCopy() {
    if (ptr) cuda::Free(0, ptr);
  }
};

Status Upload(const void* host, size_t bytes, DeviceCopy* d) {
  CANOPY_RETURN_IF_ERROR(cuda::Malloc(0, bytes == 0 ? 1 : bytes, &d->ptr));
  return bytes == 0 ? Status::Ok() : cuda::CopyHostToDevice(0, d->ptr, host, bytes);
}

bool CudaGreedyMatchesCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t vocab : {1, 7, 255, 256, 257, 1000, 32000}) {
      Batch b = RandomBatch(vocab > 1000 ? 8 : 40, 12, static_cast<int>(vocab));
      std::vector<float> rows = GreedyLogits(&b, vocab, t);
      std::vector<uint8_t> bytes = Encode(rows, t);
      DeviceCopy d;
      CANOPY_CHECK_OK(Upload(bytes.data(), bytes.size(), &d));
      std::vector<int32_t> c1(b.batch()), n1(b.nodes()), x1(b.batch()), c2(b.batch()), n2(b.nodes()), x2(b.batch());
      CANOPY_CHECK_OK(cpu::VerifyGreedy(b.view(), bytes.data(), t, vocab, {c1.data(), n1.data(), x1.data()}));
      CANOPY_CHECK_OK(cuda::VerifyGreedy(b.view(), d.ptr, t, vocab, {c2.data(), n2.data(), x2.data()}));
      CANOPY_CHECK(c1 == c2 && n1 == n2 && x1 == x2, "cuda greedy differs (%s, vocab %lld)", DTypeName(t),
                   static_cast<long long>(vocab));
    }
  }
  return true;
}

bool CudaSamplingMatchesCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  for (bool with_draft : {true, false}) {
    for (int64_t vocab : {1, 5, 255, 257, 700, 32000}) {
      Batch b = RandomBatch(vocab > 1000 ? 16 : 100, 9, static_cast<int>(vocab));
      const double peak = std::max(3.0, vocab / 3.0);
      std::vector<float> target = RandomProbRows(b.rows(), vocab, peak);
      std::vector<float> draft = RandomProbRows(b.rows(), vocab, peak);
      // Drafts near the target: mix, so that acceptances and rejections both happen.
      for (size_t i = 0; i < draft.size(); ++i) draft[i] = 0.5f * draft[i] + 0.5f * target[i];
      DrawTokens(&b, with_draft ? draft : target, vocab);
      for (int rep = 0; rep < 4; ++rep) {
        std::vector<double> u(b.rows());
        for (auto& x : u) x = Uniform01();
        DeviceCopy dt, dd;
        CANOPY_CHECK_OK(Upload(target.data(), target.size() * 4, &dt));
        CANOPY_CHECK_OK(Upload(draft.data(), draft.size() * 4, &dd));
        std::vector<int32_t> c1(b.batch()), n1(b.nodes()), x1(b.batch()), c2(b.batch()), n2(b.nodes()), x2(b.batch());
        CANOPY_CHECK_OK(cpu::VerifySampling(b.view(), target.data(), with_draft ? draft.data() : nullptr, vocab, u.data(),
                                            {c1.data(), n1.data(), x1.data()}));
        CANOPY_CHECK_OK(cuda::VerifySampling(b.view(), static_cast<const float*>(dt.ptr),
                                             with_draft ? static_cast<const float*>(dd.ptr) : nullptr, vocab, u.data(),
                                             {c2.data(), n2.data(), x2.data()}));
        CANOPY_CHECK(c1 == c2 && n1 == n2 && x1 == x2, "cuda sampling differs (draft %d, vocab %lld)", with_draft ? 1 : 0,
                     static_cast<long long>(vocab));
      }
    }
  }
  return true;
}

bool CudaSamplingReportsBadRows() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  Batch b;
  b.indptr = {0, 1};
  b.tokens = {1};
  b.parents = {-1};
  std::vector<float> probs = {0.5f, 0.4f, 0.f, 0.f, 0.25f, 0.25f, 0.25f, 0.25f};
  std::vector<double> u = {0.0, 0.0};
  DeviceCopy d;
  CANOPY_CHECK_OK(Upload(probs.data(), probs.size() * 4, &d));
  std::vector<int32_t> c(1), n(1), x(1);
  Status s = cuda::VerifySampling(b.view(), static_cast<const float*>(d.ptr), nullptr, 4, u.data(), {c.data(), n.data(), x.data()});
  Status s_cpu = cpu::VerifySampling(b.view(), probs.data(), nullptr, 4, u.data(), {c.data(), n.data(), x.data()});
  CANOPY_CHECK(s.code() == StatusCode::kInvalidArgument && s.message() == s_cpu.message(), "got %s / cpu %s",
               s.message().c_str(), s_cpu.message().c_str());
  return true;
}

bool CudaKvCommitMatchesCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int trial = 0; trial < 20; ++trial) {
      KvCase c = RandomKvCase();
      const int64_t bytes = c.layers * c.capacity * c.row_elems * DTypeSize(t);
      std::vector<uint8_t> k(static_cast<size_t>(bytes)), v(k.size());
      for (auto& x : k) x = static_cast<uint8_t>(Rng()() & 0xff);
      for (auto& x : v) x = static_cast<uint8_t>(Rng()() & 0xff);
      DeviceCopy dk, dv;
      CANOPY_CHECK_OK(Upload(k.data(), k.size(), &dk));
      CANOPY_CHECK_OK(Upload(v.data(), v.size(), &dv));
      const int64_t nodes = static_cast<int64_t>(c.accepted_nodes.size());
      std::vector<int32_t> l1(c.prefix_lens.size()), l2(c.prefix_lens.size());
      CANOPY_CHECK_OK(cpu::CommitKv(k.data(), v.data(), t, c.layers, c.capacity, c.row_elems, c.view(), nodes, l1.data()));
      CANOPY_CHECK_OK(cuda::CommitKv(dk.ptr, dv.ptr, t, c.layers, c.capacity, c.row_elems, c.view(), nodes, l2.data()));
      std::vector<uint8_t> k2(k.size()), v2(v.size());
      if (!k2.empty()) {
        CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, k2.data(), dk.ptr, k2.size()));
        CANOPY_CHECK_OK(cuda::CopyDeviceToHost(0, v2.data(), dv.ptr, v2.size()));
      }
      CANOPY_CHECK(l1 == l2 && k == k2 && v == v2, "cuda commit differs (%s, trial %d)", DTypeName(t), trial);
    }
  }
  return true;
}

Register r1("verify: cpu greedy equals brute force (f32/f16/bf16, ties, NaN)", false, CpuGreedyMatchesBruteForce);
Register r2("verify: cpu sampling final sample is the inverse CDF", false, CpuSamplingInverseCdfGrid);
Register r3("verify: cpu sampling with draft == target accepts whole paths", false, CpuSamplingDraftEqualsTargetAcceptsAll);
Register r4("kv_commit: cpu commit equals the row-by-row rebuild", false, CpuKvCommitMatchesRebuild);
Register r5("verify: cuda greedy equals cpu", true, CudaGreedyMatchesCpu);
Register r6("verify: cuda sampling equals cpu token for token", true, CudaSamplingMatchesCpu);
Register r7("verify: cuda sampling reports invalid rows like cpu", true, CudaSamplingReportsBadRows);
Register r8("kv_commit: cuda commit equals cpu bitwise", true, CudaKvCommitMatchesCpu);

}  // namespace
}  // namespace tests
}  // namespace canopy
