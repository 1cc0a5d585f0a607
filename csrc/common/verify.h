// Op family: verify (speculative-decoding verification of a draft tree).
//
// ---------------------------------------------------------------------------
// Tree layout (shared by both verifiers), batched over B sequences, CSR style
// ---------------------------------------------------------------------------
//   tree_indptr [B+1] int32   tree_indptr[0] = 0, non-decreasing, tree_indptr[B] = N.
//                             Sequence b owns nodes j in [tree_indptr[b], tree_indptr[b+1]);
//                             its local node index is i = j - tree_indptr[b]; n_b nodes (0 allowed).
//   tree_tokens [N] int32     the draft token of each node, in [0, vocab).
//   parents     [N] int32     the LOCAL index of each node's parent, or -1 for a child of the
//                             root (the last committed position). Topological: parents < i.
//   rows        [N+B, vocab]  distributions (logits or probabilities). Sequence b's rows start
//                             at base_b = tree_indptr[b] + b: row base_b + 0 is the target at the
//                             last committed position (it predicts the root's children) and row
//                             base_b + 1 + i is the target at node i (it predicts i's children).
//   A chain of n drafts is the tree parents = [-1, 0, 1, ..., n-2].
//
// Outputs (host memory):
//   accepted_count [B]  number of accepted nodes of each sequence.
//   accepted_nodes [N]  CSR by tree_indptr: sequence b's accepted LOCAL node indices, in path
//                       (root-to-leaf, hence increasing) order, at [tree_indptr[b],
//                       tree_indptr[b] + accepted_count[b]); the rest of its slots hold -1.
//   next_token     [B]  the token emitted after the accepted path (correction or bonus).
//   Each step therefore emits accepted_count[b] + 1 tokens:
//   tree_tokens of the accepted nodes, then next_token.
//
// ---------------------------------------------------------------------------
// Greedy verification (VerifyGreedy): rows are target LOGITS, f32 / f16 / bf16.
// ---------------------------------------------------------------------------
//   argmax(row): the largest value, ties broken by the LOWEST token id; NaN compares as -inf
//   (a row of only NaN / -inf gives -1: no token; the decode loop ends that sequence with an error). Exact in every dtype (values widen to f32).
//   Node c is accepted iff its parent is accepted (the root always is) and
//   tree_tokens[c] == argmax(row of its parent). The result is the LONGEST accepted
//   root-to-node path; among equally long paths the lexicographically smallest sequence
//   of node indices (so among siblings carrying the same token the lowest index wins
//   unless a higher one leads deeper). next_token = argmax(row of the last accepted node),
//   or argmax(row 0) when nothing was accepted. This equals greedy autoregressive decoding
//   of the target along the accepted path.
//
// ---------------------------------------------------------------------------
// Sampling verification (VerifySampling): lossless multi-candidate tree
// verification (SpecInfer). Rows are PROBABILITIES, f32, already processed
// (temperature / top-k / top-p); every row the verifier reads must hold finite
// values >= 0 that sum to 1 within kVerifyProbSumTolerance (else InvalidArgument).
// ---------------------------------------------------------------------------
//   target [N+B, vocab]  p rows as above.
//   draft  [N+B, vocab]  q rows, or null. Row base_b + 0 is the distribution the root's
//                        children were sampled from, row base_b + 1 + i the one node i's
//                        children were sampled from (i.i.d., with replacement). null means
//                        deterministic drafts (top-k, n-gram): q is a point mass on each child.
//   All arithmetic is in double (f32 inputs widen exactly). Starting at the root with
//   p = target row of the current node:
//     for each child c of the current node, in increasing index order, with x = tree_tokens[c]
//     and u = uniforms[base_b + 1 + c]:
//       with draft:    accept iff  u * q(x) < p(x)     (probability min(1, p(x)/q(x)))
//                      else        p <- norm(max(0, p - q))
//       without draft: accept iff  u < p(x)            (probability p(x))
//                      else        p(x) <- 0, p <- norm(p)
//       on accept: append c, move to c, p <- target row of c, and restart with c's children.
//     when no child is accepted (or the node has none), next_token = Sample(p, uniforms[base_b]).
//   The draft row of a node is read (and checked) only when the node has children; a target
//   row only when its node becomes the current node.
//   norm(r) = r / Z with Z = ChunkedSum(r). If Z is not > 0 (the residual vanished, which
//   has probability 0 for consistent inputs but can happen through rounding), p falls back to
//   the current node's target row (the draft-free distribution). p(x) for a drafted x is read
//   from the current, possibly residual, p; the draft row q is the same for all siblings.
//
// Uniforms convention: uniforms has one entry per row, [N+B], in [0, 1), f64 (f32 callers
// widen exactly). uniforms[base_b] drives the final sample of sequence b;
// uniforms[base_b + 1 + i] decides the acceptance of node i and is consumed only if node i is
// tried. A node is tried at most once, so the uniforms actually used are distinct entries:
// i.i.d. uniforms give exactly the verifier's distribution.
//
// ChunkedSum(r) (every sum over the vocabulary, so CPU and CUDA round identically):
//   chunk k covers ids [k*C, min((k+1)*C, vocab)), C = kVerifySumChunk;
//   partial_k = ((0 + r[kC]) + r[kC+1]) + ...   (left to right, double)
//   total     = ((0 + partial_0) + partial_1) + ...
// Sample(r, u) (inverse CDF over token ids in increasing order): t = u * total; S_0 = 0,
//   S_{k+1} = S_k + partial_k; k* = the first chunk with t < S_{k+1}; inside it, w accumulates
//   r left to right from 0 and the token is the first y with t < S_{k*} + w. The chosen token
//   always has r(y) > 0. If no chunk qualifies (t rounded up to total), the last y with
//   r(y) > 0 is returned. The sums use only additions and the products only one multiply, so
//   no fused multiply-add can change the rounding on either device.
#pragma once

#include <cstdint>
#include <string>

#include "dtype.h"
#include "status.h"

namespace canopy {

// Chunk length of the deterministic vocabulary sums (see ChunkedSum above).
constexpr int64_t kVerifySumChunk = 256;
// |sum(row) - 1| allowed for every probability row the sampling verifier reads.
constexpr double kVerifyProbSumTolerance = 1e-3;

// The tree and batch layout (host memory), see above.
struct VerifyTree {
  int32_t batch = 0;                // B
  const int32_t* indptr = nullptr;  // [B+1]
  const int32_t* tokens = nullptr;  // [N]
  const int32_t* parents = nullptr; // [N]
};

// Where the verifiers write (host memory).
struct VerifyOutput {
  int32_t* accepted_count = nullptr;  // [B]
  int32_t* accepted_nodes = nullptr;  // [N]
  int32_t* next_token = nullptr;      // [B]
};

inline int64_t VerifyNumNodes(const VerifyTree& t) { return t.batch > 0 ? t.indptr[t.batch] : 0; }
inline int64_t VerifyNumRows(const VerifyTree& t) { return VerifyNumNodes(t) + t.batch; }

// Validates the layout: B >= 0, indptr well formed with indptr[B] == num_nodes (the length of
// tokens and parents), parents topological, tokens in [0, vocab), vocab in [1, 2^31).
// `op` prefixes the messages.
inline Status CheckVerifyTree(const char* op, const VerifyTree& t, int64_t num_nodes, int64_t vocab) {
  const std::string pre = std::string(op) + ": ";
  if (vocab < 1 || vocab > INT32_MAX) {
    return Status::InvalidArgument(pre + "vocab must be in [1, 2^31); received " + std::to_string(vocab));
  }
  if (t.batch < 0) return Status::InvalidArgument(pre + "batch must be >= 0; received " + std::to_string(t.batch));
  if (t.batch == 0) {
    if (num_nodes != 0) {
      return Status::InvalidArgument(pre + "treeIndptr describes 0 sequences but there are " +
                                     std::to_string(num_nodes) + " nodes");
    }
    return Status::Ok();
  }
  if (t.indptr[0] != 0) {
    return Status::InvalidArgument(pre + "treeIndptr[0] must be 0; received " + std::to_string(t.indptr[0]));
  }
  for (int32_t b = 0; b < t.batch; ++b) {
    if (t.indptr[b + 1] < t.indptr[b]) {
      return Status::InvalidArgument(pre + "treeIndptr must be non-decreasing: treeIndptr[" + std::to_string(b + 1) +
                                     "] = " + std::to_string(t.indptr[b + 1]) + " < treeIndptr[" + std::to_string(b) +
                                     "] = " + std::to_string(t.indptr[b]));
    }
  }
  if (t.indptr[t.batch] != num_nodes) {
    return Status::InvalidArgument(pre + "treeIndptr[" + std::to_string(t.batch) + "] must equal the number of nodes " +
                                   std::to_string(num_nodes) + "; received " + std::to_string(t.indptr[t.batch]));
  }
  for (int32_t b = 0; b < t.batch; ++b) {
    for (int32_t j = t.indptr[b]; j < t.indptr[b + 1]; ++j) {
      const int32_t i = j - t.indptr[b];
      if (t.parents[j] < -1 || t.parents[j] >= i) {
        return Status::InvalidArgument(pre + "parents[" + std::to_string(j) + "] must be -1 or a node index in [0, " +
                                       std::to_string(i) + ") (parents are local to the sequence and topologically " +
                                       "ordered); received " + std::to_string(t.parents[j]));
      }
      if (t.tokens[j] < 0 || t.tokens[j] >= vocab) {
        return Status::InvalidArgument(pre + "treeTokens[" + std::to_string(j) + "] must be a token id in [0, " +
                                       std::to_string(vocab) + "); received " + std::to_string(t.tokens[j]));
      }
    }
  }
  return Status::Ok();
}

// ---- Shared host/device helpers (identical code on both devices) ----------

// The argmax order: larger value first, then lower index; NaN is -inf.
struct ArgmaxCandidate {
  float value;
  int32_t index;
};

// Where an argmax starts: {-inf, -1}. A candidate at -inf never beats it (same value, higher
// index), so a row with no value above -inf (all NaN / -inf) gives -1, as argmaxRows does.
CANOPY_HD ArgmaxCandidate ArgmaxNone() { return ArgmaxCandidate{F32FromBits(0xff800000u), -1}; }

CANOPY_HD float ArgmaxKey(float v) { return v != v ? F32FromBits(0xff800000u) : v; }  // NaN -> -inf

CANOPY_HD bool ArgmaxBetter(ArgmaxCandidate a, ArgmaxCandidate b) {
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

CANOPY_HD float LoadFloat(const void* p, DType t, int64_t i) {
  if (t == DType::kF32) return static_cast<const float*>(p)[i];
  if (t == DType::kF16) return F16BitsToF32(static_cast<const uint16_t*>(p)[i]);
  return BF16BitsToF32(static_cast<const uint16_t*>(p)[i]);
}

// The greedy tree walk of one sequence, given the argmax of its rows.
//   argmax_of_row(r): argmax of the sequence's local row r (0 = root, 1 + i = node i); called
//                     only for the root and for accepted nodes.
//   scratch:          2 * n ints.
//   out_nodes:        n ints; the first *out_count are the accepted path, the rest -1.
template <typename ArgmaxFn>
CANOPY_HD void GreedyWalk(int32_t n, const int32_t* tokens, const int32_t* parents, ArgmaxFn& argmax_of_row,
                          int32_t* scratch, int32_t* out_nodes, int32_t* out_count, int32_t* out_next) {
  int32_t* accepted = scratch;   // 1 if accepted
  int32_t* height = scratch + n; // longest accepted path below the node (0 = accepted leaf), -1 if rejected
  for (int32_t i = 0; i < n; ++i) {
    const int32_t par = parents[i];
    const bool parent_ok = par < 0 || accepted[par] != 0;
    accepted[i] = parent_ok && tokens[i] == argmax_of_row(par + 1) ? 1 : 0;
    height[i] = accepted[i] ? 0 : -1;
  }
  for (int32_t i = n - 1; i >= 0; --i) {
    const int32_t par = parents[i];
    if (accepted[i] && par >= 0 && height[i] + 1 > height[par]) height[par] = height[i] + 1;
  }
  int32_t cur = -1, count = 0;
  for (;;) {
    int32_t best = -1;
    for (int32_t c = cur + 1; c < n; ++c) {
      if (parents[c] == cur && accepted[c] && (best < 0 || height[c] > height[best])) best = c;
    }
    if (best < 0) break;
    out_nodes[count++] = best;
    cur = best;
  }
  for (int32_t i = count; i < n; ++i) out_nodes[i] = -1;
  *out_count = count;
  *out_next = argmax_of_row(cur + 1);
}

// Left-to-right double sum of r[begin, end) starting from 0 (one chunk of ChunkedSum).
template <typename T>
CANOPY_HD double VerifyChunkSum(const T* r, int64_t begin, int64_t end) {
  double s = 0.0;
  for (int64_t y = begin; y < end; ++y) s = s + static_cast<double>(r[y]);
  return s;
}

CANOPY_HD int64_t VerifyNumChunks(int64_t vocab) { return (vocab + kVerifySumChunk - 1) / kVerifySumChunk; }

CANOPY_HD double VerifySumPartials(const double* partials, int64_t chunks) {
  double s = 0.0;
  for (int64_t k = 0; k < chunks; ++k) s = s + partials[k];
  return s;
}

// Sample(r, u) given the chunk partials of r (see the header comment). Returns -1 only when
// r has no positive entry.
CANOPY_HD int32_t VerifyInverseCdf(const double* r, int64_t vocab, const double* partials, double u) {
  const int64_t chunks = VerifyNumChunks(vocab);
  const double total = VerifySumPartials(partials, chunks);
  const double t = u * total;
  double s = 0.0;
  for (int64_t k = 0; k < chunks; ++k) {
    const double next = s + partials[k];
    if (t < next) {
      const int64_t end = (k + 1) * kVerifySumChunk < vocab ? (k + 1) * kVerifySumChunk : vocab;
      double w = 0.0;
      for (int64_t y = k * kVerifySumChunk; y < end; ++y) {
        w = w + r[y];
        if (t < s + w) return static_cast<int32_t>(y);
      }
      break;  // unreachable: s + w equals next at the chunk's end
    }
    s = next;
  }
  for (int64_t y = vocab - 1; y >= 0; --y) {
    if (r[y] > 0.0) return static_cast<int32_t>(y);
  }
  return -1;
}

// Error codes the sampling kernels report per sequence (turned into Status by the launchers).
enum VerifySampleError : int32_t {
  kVerifyOk = 0,
  kVerifyTargetBadValue = 1,  // a target row holds a negative, NaN or infinite value
  kVerifyTargetBadSum = 2,    // a target row does not sum to 1 within the tolerance
  kVerifyDraftBadValue = 3,
  kVerifyDraftBadSum = 4,
  kVerifyNoMass = 5,          // nothing to sample from (impossible after the checks above)
};

// The checks both VerifyGreedy kernels (CPU, CUDA) run first.
inline Status CheckVerifyGreedyArgs(const VerifyTree& tree, int64_t num_nodes, DType dtype, int64_t vocab) {
  CANOPY_RETURN_IF_ERROR(CheckVerifyTree("verifyGreedy", tree, num_nodes, vocab));
  if (!IsFloatDType(dtype)) {
    return Status::InvalidArgument(std::string("verifyGreedy: targetLogits dtype must be one of f32, f16, bf16; received ") +
                                   DTypeName(dtype));
  }
  return Status::Ok();
}

inline Status VerifySampleErrorStatus(int32_t code, int32_t batch_index, int64_t row, double sum) {
  const std::string where = " row " + std::to_string(row) + " (sequence " + std::to_string(batch_index) + ")";
  switch (code) {
    case kVerifyOk: return Status::Ok();
    case kVerifyTargetBadValue:
      return Status::InvalidArgument("verifySampling: targetProbs" + where +
                                     " must hold finite probabilities >= 0; it holds a negative, NaN or infinite value");
    case kVerifyTargetBadSum:
      return Status::InvalidArgument("verifySampling: targetProbs" + where + " must sum to 1 (within 1e-3); received " +
                                     std::to_string(sum));
    case kVerifyDraftBadValue:
      return Status::InvalidArgument("verifySampling: draftProbs" + where +
                                     " must hold finite probabilities >= 0; it holds a negative, NaN or infinite value");
    case kVerifyDraftBadSum:
      return Status::InvalidArgument("verifySampling: draftProbs" + where + " must sum to 1 (within 1e-3); received " +
                                     std::to_string(sum));
    default:
      return Status::Internal("verifySampling: no probability mass to sample from at" + where);
  }
}

// Checks each uniform is finite and in [0, 1).
inline Status CheckVerifyUniforms(const double* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!(u[i] >= 0.0 && u[i] < 1.0)) {
      return Status::InvalidArgument("verifySampling: uniforms[" + std::to_string(i) + "] must be in [0, 1); received " +
                                     std::to_string(u[i]));
    }
  }
  return Status::Ok();
}

namespace cpu {
// logits: [N+B, vocab] host, dtype f32 / f16 / bf16.
Status VerifyGreedy(const VerifyTree& tree, const void* logits, DType dtype, int64_t vocab, const VerifyOutput& out);
// target, draft (nullable): [N+B, vocab] f32 host; uniforms [N+B] host.
Status VerifySampling(const VerifyTree& tree, const float* target, const float* draft, int64_t vocab,
                      const double* uniforms, const VerifyOutput& out);
}  // namespace cpu

namespace cuda {
// Same contracts; logits / target / draft are DEVICE pointers on the current device. The tree,
// the uniforms and the outputs are host memory: the launcher stages them through device memory
// (a few hundred integers per step). Synchronous on return; the results equal the CPU kernels'
// exactly (same argmax order; same double-precision operations in the same order).
Status VerifyGreedy(const VerifyTree& tree, const void* logits, DType dtype, int64_t vocab, const VerifyOutput& out);
Status VerifySampling(const VerifyTree& tree, const float* target, const float* draft, int64_t vocab,
                      const double* uniforms, const VerifyOutput& out);
}  // namespace cuda

}  // namespace canopy
