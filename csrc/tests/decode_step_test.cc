// The decode step (csrc/common/decode_step.h): CUDA against CPU on a random model. Causal steps
// (argmax, top-k, the sampler chain with its q rows, scores with log-probabilities) and tree
// steps (greedy and sampling verification and commit) must pick the same tokens and accepted
// nodes, leave the same committed KV rows and report the same lengths; the sampled choices' bad
// inputs are statuses naming the argument (CPU). (That the CPU step equals its parts run one by
// one, and the float64 reference sampler, is test/helpers/step-suite.ts's.)
#include <cmath>
#include <vector>

#include "../common/decode_step.h"
#include "../common/runtime.h"
#include "harness.h"

namespace canopy {
namespace tests {
namespace {

struct StepModel {
  LlamaModelDesc host, dev;
  std::vector<std::vector<float>> weights;
  std::vector<void*> owned;
  ~StepModel() {
    for (void* p : owned) cuda::Free(0, p);
  }
};

void* Upload(const void* src, size_t bytes, std::vector<void*>* owned) {
  void* p = nullptr;
  if (!cuda::Malloc(0, bytes + 1, &p).ok()) return nullptr;
  cuda::CopyHostToDevice(0, p, src, bytes);
  owned->push_back(p);
  return p;
}

void Build(StepModel* sm, bool cuda) {
  LlamaModelDesc& m = sm->host;
  m.dim = 64;
  m.hidden_dim = 100;
  m.vocab = 41;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.head_dim = 16;
  for (int j = 0; j < 8; ++j) m.inv_freq.push_back(std::pow(10000.f, -2.f * j / 16));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  auto mk = [&](int64_t n, float scale, float base) {
    sm->weights.emplace_back(n);
    for (float& x : sm->weights.back()) x = base + scale * u(Rng());
    return sm->weights.back().data();
  };
  m.embed.data = mk(m.vocab * m.dim, 0.5f, 0.f);
  m.norm = mk(m.dim, 0.2f, 1.f);
  m.output.data = mk(m.vocab * m.dim, 0.5f, 0.f);
  for (int l = 0; l < m.n_layers; ++l) {
    LlamaLayerWeights w;
    w.attn_norm = mk(m.dim, 0.2f, 1.f);
    w.wq.data = mk(64 * m.dim, 0.25f, 0.f);
    w.wk.data = mk(32 * m.dim, 0.25f, 0.f);
    w.wv.data = mk(32 * m.dim, 0.25f, 0.f);
    w.wo.data = mk(m.dim * 64, 0.25f, 0.f);
    w.ffn_norm = mk(m.dim, 0.2f, 1.f);
    w.w1.data = mk(m.hidden_dim * m.dim, 0.25f, 0.f);
    w.w2.data = mk(m.dim * m.hidden_dim, 0.25f, 0.f);
    w.w3.data = mk(m.hidden_dim * m.dim, 0.25f, 0.f);
    m.layers.push_back(w);
  }
  sm->dev = m;
  if (!cuda) return;
  // Every weight array, in the order mk() made them, mapped to its upload.
  auto up = [&](const void* hp) -> const void* {
    for (const auto& w : sm->weights) {
      if (w.data() == hp) return Upload(w.data(), w.size() * 4, &sm->owned);
    }
    return nullptr;
  };
  LlamaModelDesc& g = sm->dev;
  g.embed.data = up(m.embed.data);
  g.norm = up(m.norm);
  g.output.data = up(m.output.data);
  for (int l = 0; l < m.n_layers; ++l) {
    const LlamaLayerWeights& w = m.layers[l];
    LlamaLayerWeights& d = g.layers[l];
    d.attn_norm = up(w.attn_norm);
    d.wq.data = up(w.wq.data);
    d.wk.data = up(w.wk.data);
    d.wv.data = up(w.wv.data);
    d.wo.data = up(w.wo.data);
    d.ffn_norm = up(w.ffn_norm);
    d.w1.data = up(w.w1.data);
    d.w2.data = up(w.w2.data);
    d.w3.data = up(w.w3.data);
  }
}

// One step over two sequences (regions of 32 rows) on either device; returns its outputs.
struct StepIo {
  std::vector<int32_t> tokens, positions, qo, start, len, parents, rows;
  DecodeChoice choice;
  std::vector<int32_t> next, count, nodes, lens, topk;
  DecodeStepSampling sampling;  // choices 3, 4 (device pointers set by the caller)
  std::vector<float> topk_lp;
};

Status RunStep(const LlamaModelDesc& m, bool cuda, void* k, void* v, float* logits, StepIo* io) {
  DecodeStepParams p;
  LlamaForwardParams& f = p.forward;
  f.tokens = io->tokens.data();
  f.positions = io->positions.data();
  f.n = static_cast<int64_t>(io->tokens.size());
  f.batch = 2;
  f.qo_indptr = io->qo.data();
  f.kv_start = io->start.data();
  f.kv_len_before = io->len.data();
  f.mask = io->parents.empty() ? MaskMode::kCausal : MaskMode::kTree;
  f.tree_parents = io->parents.empty() ? nullptr : io->parents.data();
  f.k_cache = k;
  f.v_cache = v;
  f.capacity = 64;
  f.logit_rows = io->rows.data();
  f.n_logit_rows = static_cast<int64_t>(io->rows.size());
  f.logits = logits;
  p.choice = io->choice;
  p.region_rows = 32;
  p.top_k = 3;
  io->next.assign(2, -7);
  io->count.assign(2, -7);
  io->nodes.assign(f.n - 2, -7);
  io->lens.assign(2, -7);
  io->topk.assign(io->rows.size() * 3, -7);
  p.next_token = io->next.data();
  p.accepted_count = io->count.data();
  p.accepted_nodes = io->nodes.data();
  p.new_lens = io->lens.data();
  p.top_k_ids = io->topk.data();
  io->topk_lp.assign(io->rows.size() * 3, -7.f);
  p.top_k_logprobs = io->topk_lp.data();
  p.sampling = io->sampling;
  return cuda ? cuda::DecodeStep(m, p) : cpu::DecodeStep(m, p);
}

bool CudaDecodeStepMatchesCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  StepModel sm;
  Build(&sm, true);
  const size_t cache = 2 * 64 * 32;  // layers x rows x (kv heads x head dim)
  std::vector<float> hk(cache, 0.f), hv(cache, 0.f), hl(11 * 41);
  void* dk = Upload(hk.data(), cache * 4, &sm.owned);
  void* dv = Upload(hv.data(), cache * 4, &sm.owned);
  float* dl = static_cast<float*>(Upload(hl.data(), hl.size() * 4, &sm.owned));
  // Prefill (causal, argmax of the last rows), then a tree step whose drafts follow the argmax.
  StepIo pre{{1, 5, 9, 2, 33, 7, 7, 3}, {0, 1, 2, 3, 4, 0, 1, 2}, {0, 5, 8}, {0, 32}, {0, 0}, {}, {4, 7}, DecodeChoice::kArgmax};
  StepIo pc = pre, pg = pre;
  CANOPY_CHECK_OK(RunStep(sm.host, false, hk.data(), hv.data(), hl.data(), &pc));
  CANOPY_CHECK_OK(RunStep(sm.dev, true, dk, dv, dl, &pg));
  CANOPY_CHECK(pc.next == pg.next && pc.lens == pg.lens && pc.topk == pg.topk, "prefill: next %d/%d vs %d/%d", pc.next[0], pc.next[1], pg.next[0], pg.next[1]);
  // Sequence 0: pending + 4 drafts (a chain whose first node is the CPU's next argmax guess, plus a sibling);
  // sequence 1: pending + 1 draft.
  StepIo tree{{pc.next[0], 11, 12, 13, 14, pc.next[1], 20}, {5, 6, 7, 8, 6, 3, 4}, {0, 5, 7}, {0, 32}, {5, 3}, {-1, 0, 1, 2, 0, -1, 0},
              {0, 1, 2, 3, 4, 5, 6}, DecodeChoice::kGreedyTree};
  StepIo tc = tree, tg = tree;
  CANOPY_CHECK_OK(RunStep(sm.host, false, hk.data(), hv.data(), hl.data(), &tc));
  CANOPY_CHECK_OK(RunStep(sm.dev, true, dk, dv, dl, &tg));
  CANOPY_CHECK(tc.next == tg.next && tc.count == tg.count && tc.nodes == tg.nodes && tc.lens == tg.lens && tc.topk == tg.topk,
               "tree step: cpu next %d/%d count %d/%d, cuda next %d/%d count %d/%d", tc.next[0], tc.next[1], tc.count[0], tc.count[1],
               tg.next[0], tg.next[1], tg.count[0], tg.count[1]);
  // The committed rows of both sequences agree.
  std::vector<float> gk(cache);
  cuda::CopyDeviceToHost(0, gk.data(), dk, cache * 4);
  for (int layer = 0; layer < 2; ++layer) {
    for (int s = 0; s < 2; ++s) {
      for (int32_t r = 0; r < tc.lens[s]; ++r) {
        for (int e = 0; e < 32; ++e) {
          const size_t i = (static_cast<size_t>(layer) * 64 + s * 32 + r) * 32 + e;
          CANOPY_CHECK(std::fabs(gk[i] - hk[i]) <= 2e-4f + 2e-4f * std::fabs(hk[i]), "key layer %d seq %d row %d: cuda %g cpu %g", layer, s, r, gk[i], hk[i]);
        }
      }
    }
  }
  return true;
}

// Sampled choices: a sampled prefill writing q rows, a sampled tree step against gathered q rows,
// and a scored tree step that commits nothing, on both devices.
bool CudaSampledDecodeStepMatchesCpu() {
  CANOPY_CHECK_OK(cuda::SetDevice(0));
  StepModel sm;
  Build(&sm, true);
  const int64_t V = 41;
  const size_t cache = 2 * 64 * 32;
  std::vector<float> hk(cache, 0.f), hv(cache, 0.f), hl(11 * V), hq(6 * V, 0.f);
  void* dk = Upload(hk.data(), cache * 4, &sm.owned);
  void* dv = Upload(hv.data(), cache * 4, &sm.owned);
  float* dl = static_cast<float*>(Upload(hl.data(), hl.size() * 4, &sm.owned));
  float* dq = static_cast<float*>(Upload(hq.data(), hq.size() * 4, &sm.owned));
  const std::vector<int32_t> pen_indptr{0, 2, 3}, pen_tokens{5, 9, 7}, pen_counts{1, 2, 3};
  const std::vector<double> u_pre{0.31, 0.77};
  const std::vector<int32_t> probs_rows{4, 1};
  StepIo pre{{1, 5, 9, 2, 33, 7, 7, 3}, {0, 1, 2, 3, 4, 0, 1, 2}, {0, 5, 8}, {0, 32}, {0, 0}, {}, {4, 7}, DecodeChoice::kSample};
  pre.sampling.params.temperature = 0.9;
  pre.sampling.params.top_k = 20;
  pre.sampling.params.repeat_penalty = 1.3;
  pre.sampling.penalties.indptr = pen_indptr.data();
  pre.sampling.penalties.tokens = pen_tokens.data();
  pre.sampling.penalties.counts = pen_counts.data();
  pre.sampling.uniforms = u_pre.data();
  pre.sampling.probs_total_rows = 6;
  pre.sampling.probs_rows = probs_rows.data();
  StepIo pc = pre, pg = pre;
  pc.sampling.probs = hq.data();
  pg.sampling.probs = dq;
  CANOPY_CHECK_OK(RunStep(sm.host, false, hk.data(), hv.data(), hl.data(), &pc));
  CANOPY_CHECK_OK(RunStep(sm.dev, true, dk, dv, dl, &pg));
  CANOPY_CHECK(pc.next == pg.next && pc.lens == pg.lens && pc.topk == pg.topk, "sampled prefill: next %d/%d vs %d/%d", pc.next[0], pc.next[1], pg.next[0], pg.next[1]);
  CANOPY_CHECK(pc.next[0] >= 0 && pc.next[1] >= 0, "sampled prefill drew no token");
  std::vector<float> gq(hq.size());
  cuda::CopyDeviceToHost(0, gq.data(), dq, gq.size() * 4);
  for (size_t i = 0; i < hq.size(); ++i) CANOPY_CHECK(std::fabs(gq[i] - hq[i]) <= 1e-6f, "q[%zu]: cuda %g cpu %g", i, gq[i], hq[i]);
  for (size_t i = 0; i < pc.topk_lp.size(); ++i) {
    CANOPY_CHECK(std::fabs(pc.topk_lp[i] - pg.topk_lp[i]) <= 1e-5f, "top-k logprob %zu: cpu %g cuda %g", i, pc.topk_lp[i], pg.topk_lp[i]);
  }
  // A sampled tree below each pending token; q rows: row 0 of each sequence and node rows with children.
  StepIo tree{{pc.next[0], 11, 12, 13, 14, pc.next[1], 20}, {5, 6, 7, 8, 6, 3, 4}, {0, 5, 7}, {0, 32}, {5, 3}, {-1, 0, 1, 2, 0, -1, 0},
              {0, 1, 2, 3, 4, 5, 6}, DecodeChoice::kSampleTree};
  const std::vector<double> u_tree{0.5, 0.99, 0.2, 0.7, 0.05, 0.6, 0.9};
  const std::vector<int32_t> draft_rows{4, 1, 4, -1, -1, 1, -1};
  tree.sampling.params.temperature = 1.1;
  tree.sampling.params.top_p = 0.9;
  tree.sampling.uniforms = u_tree.data();
  tree.sampling.draft_probs_rows = 6;
  tree.sampling.draft_rows = draft_rows.data();
  StepIo tc = tree, tg = tree;
  tc.sampling.draft_probs = hq.data();
  tg.sampling.draft_probs = dq;
  CANOPY_CHECK_OK(RunStep(sm.host, false, hk.data(), hv.data(), hl.data(), &tc));
  CANOPY_CHECK_OK(RunStep(sm.dev, true, dk, dv, dl, &tg));
  CANOPY_CHECK(tc.next == tg.next && tc.count == tg.count && tc.nodes == tg.nodes && tc.lens == tg.lens,
               "sampled tree: cpu next %d/%d count %d/%d, cuda next %d/%d count %d/%d", tc.next[0], tc.next[1], tc.count[0], tc.count[1],
               tg.next[0], tg.next[1], tg.count[0], tg.count[1]);
  // Scores over a tree after the committed rows: nothing committed, the same top-k on both.
  StepIo sc{{3, 4, 5}, {tc.lens[0], tc.lens[0] + 1, tc.lens[1]}, {0, 2, 3}, {0, 32}, {tc.lens[0], tc.lens[1]}, {-1, 0, -1}, {1, 2},
            DecodeChoice::kScores};
  StepIo scc = sc, scg = sc;
  CANOPY_CHECK_OK(RunStep(sm.host, false, hk.data(), hv.data(), hl.data(), &scc));
  CANOPY_CHECK_OK(RunStep(sm.dev, true, dk, dv, dl, &scg));
  CANOPY_CHECK(scc.topk == scg.topk && scc.lens == sc.len && scg.lens == sc.len && scc.next[0] == -1, "scores: top-k or lengths differ");
  return true;
}

// The sampled choices' argument checks (CPU): statuses that name the argument, nothing run.
bool SampledDecodeStepRejectsBadInputs() {
  StepModel sm;
  Build(&sm, false);
  std::vector<float> hk(2 * 64 * 32, 0.f), hv(hk.size(), 0.f), hl(11 * 41), hq(2 * 41, 1.f / 41);
  const std::vector<double> u{0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
  const std::vector<int32_t> bad_rows{0, -1, -1, -1, -1, 0, -1};  // node 0 of sequence 0 has children but no q row
  StepIo tree{{1, 11, 12, 13, 14, 2, 20}, {0, 1, 2, 3, 1, 0, 1}, {0, 5, 7}, {0, 32}, {0, 0}, {-1, 0, 1, 2, 0, -1, 0},
              {0, 1, 2, 3, 4, 5, 6}, DecodeChoice::kSampleTree};
  tree.sampling.params.temperature = 1.0;
  tree.sampling.uniforms = u.data();
  tree.sampling.draft_probs = hq.data();
  tree.sampling.draft_probs_rows = 2;
  tree.sampling.draft_rows = bad_rows.data();
  Status st = RunStep(sm.host, false, hk.data(), hv.data(), hl.data(), &tree);
  CANOPY_CHECK(!st.ok() && st.message().find("draftRows[1]") != std::string::npos, "expected draftRows[1] named; got '%s'", st.message().c_str());
  CANOPY_CHECK(tree.lens[0] == -7, "a rejected step wrote its outputs");
  tree.sampling.draft_probs = nullptr;
  tree.sampling.uniforms = nullptr;
  st = RunStep(sm.host, false, hk.data(), hv.data(), hl.data(), &tree);
  CANOPY_CHECK(!st.ok() && st.message().find("uniforms") != std::string::npos, "expected uniforms named; got '%s'", st.message().c_str());
  StepIo causal{{1, 5}, {0, 0}, {0, 1, 2}, {0, 32}, {0, 0}, {}, {0, 1}, DecodeChoice::kSample};
  causal.sampling.params.top_p = 1.5;
  st = RunStep(sm.host, false, hk.data(), hv.data(), hl.data(), &causal);
  CANOPY_CHECK(!st.ok() && st.message().find("topP") != std::string::npos, "expected topP named; got '%s'", st.message().c_str());
  return true;
}

Register r1("decode step: cuda equals cpu (prefill argmax, top-k, greedy tree verification and commit)", true, CudaDecodeStepMatchesCpu);
Register r2("decode step: cuda equals cpu (sampled prefill with q rows, sampled tree verification against gathered q, scores)", true,
            CudaSampledDecodeStepMatchesCpu);
Register r3("decode step: the sampled choices' bad inputs are statuses naming the argument", false, SampledDecodeStepRejectsBadInputs);

}  // namespace
}  // namespace tests
}  // namespace canopy
