// Tree verification (csrc/common/verify.h for the layout, rules and uniforms):
//
//   verifyGreedy(treeIndptr, treeTokens, parents, logits,
//                acceptedCount, acceptedNodes, nextToken): Promise<void>
//   verifySampling(treeIndptr, treeTokens, parents, targetProbs, draftProbs | null, uniforms,
//                  acceptedCount, acceptedNodes, nextToken): Promise<void>
//
// treeIndptr [B+1], treeTokens [N], parents [N]: int32 host descriptors (copied here).
// logits [N+B, vocab] f32/f16/bf16, targetProbs / draftProbs [N+B, vocab] f32: host or CUDA
// descriptors (all on one device). uniforms: a Float64Array or Float32Array of N+B values in
// [0, 1). Outputs: int32 host descriptors acceptedCount [B], acceptedNodes [N], nextToken [B],
// written before the promise resolves. The tree is validated here, synchronously.
#include <napi.h>

#include <memory>

#include "../common/runtime.h"
#include "../common/verify.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "host_array.h"

namespace canopy {
namespace napi {
namespace {

// The tree, owned for the duration of the async work.
struct TreeData {
  std::vector<int32_t> indptr, tokens, parents;
  VerifyTree view() const {
    VerifyTree t;
    t.batch = static_cast<int32_t>(indptr.size()) - 1;
    t.indptr = indptr.data();
    t.tokens = tokens.data();
    t.parents = parents.data();
    return t;
  }
};

struct Outputs {
  TensorArg count, nodes, next;
  VerifyOutput view() const {
    VerifyOutput o;
    o.accepted_count = static_cast<int32_t*>(count.view.data);
    o.accepted_nodes = static_cast<int32_t*>(nodes.view.data);
    o.next_token = static_cast<int32_t*>(next.view.data);
    return o;
  }
};

std::shared_ptr<TreeData> ParseTree(Napi::Env env, const Napi::CallbackInfo& info) {
  auto tree = std::make_shared<TreeData>();
  TensorArg indptr = ParseTensorArg(env, info[0], "treeIndptr");
  CheckHostInt32(env, indptr, "treeIndptr", -1);
  if (indptr.view.shape[0] < 1 || indptr.view.shape[0] - 1 > INT32_MAX) {
    throw ArgumentError(env, "treeIndptr must have B+1 >= 1 elements; received " + std::to_string(indptr.view.shape[0]));
  }
  tree->indptr = CopyHostInt32(env, indptr, "treeIndptr", -1);
  TensorArg tokens = ParseTensorArg(env, info[1], "treeTokens");
  tree->tokens = CopyHostInt32(env, tokens, "treeTokens", -1);
  TensorArg parents = ParseTensorArg(env, info[2], "parents");
  tree->parents = CopyHostInt32(env, parents, "parents", static_cast<int64_t>(tree->tokens.size()));
  return tree;
}

// rows: a [N+B, vocab] distribution tensor. Returns vocab.
int64_t CheckRows(Napi::Env env, const TensorArg& rows, const std::string& name, int64_t expected_rows) {
  const TensorView& t = rows.view;
  if (t.ndim != 2) throw ArgumentError(env, name + " must be 2-D [N+B, vocab]; received " + std::to_string(t.ndim) + " dims");
  if (t.shape[0] != expected_rows) {
    throw ArgumentError(env, name + " must have N+B = " + std::to_string(expected_rows) + " rows; received " +
                                 std::to_string(t.shape[0]));
  }
  return t.shape[1];
}

Outputs ParseOutputs(Napi::Env env, const Napi::CallbackInfo& info, size_t first, int64_t batch, int64_t nodes) {
  Outputs o{ParseTensorArg(env, info[first], "acceptedCount"), ParseTensorArg(env, info[first + 1], "acceptedNodes"),
            ParseTensorArg(env, info[first + 2], "nextToken")};
  CheckHostInt32(env, o.count, "acceptedCount", batch);
  CheckHostInt32(env, o.nodes, "acceptedNodes", nodes);
  CheckHostInt32(env, o.next, "nextToken", batch);
  return o;
}

Napi::Value VerifyGreedy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<TreeData> tree = ParseTree(env, info);
  const VerifyTree tv = tree->view();
  const int64_t n = static_cast<int64_t>(tree->tokens.size());
  TensorArg logits = ParseTensorArg(env, info[3], "logits");
  if (!IsFloatDType(logits.view.dtype)) {
    throw ArgumentError(env, std::string("verifyGreedy: logits dtype must be one of f32, f16, bf16; received ") +
                                 DTypeName(logits.view.dtype));
  }
  const int64_t vocab = CheckRows(env, logits, "logits", n + tv.batch);
  ThrowIfError(env, CheckVerifyTree("verifyGreedy", tv, n, vocab));
  Outputs out = ParseOutputs(env, info, 4, tv.batch, n);
  const VerifyOutput ov = out.view();
  const TensorView lv = logits.view;
  std::function<Status()> work;
  if (lv.device.kind == DeviceKind::kCuda) {
    const int dev = lv.device.index;
    work = [=] {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::VerifyGreedy(tree->view(), lv.data, lv.dtype, vocab, ov);
    };
  } else {
    work = [=] { return cpu::VerifyGreedy(tree->view(), lv.data, lv.dtype, vocab, ov); };
  }
  return RunAsync(env, std::move(work), {logits, out.count, out.nodes, out.next});
}

std::shared_ptr<std::vector<double>> ParseUniforms(Napi::Env env, Napi::Value v, int64_t expected) {
  if (!v.IsTypedArray()) {
    throw ArgumentError(env, "uniforms must be a Float64Array or Float32Array");
  }
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  const napi_typedarray_type type = ta.TypedArrayType();
  if (type != napi_float64_array && type != napi_float32_array) {
    throw ArgumentError(env, "uniforms must be a Float64Array or Float32Array");
  }
  if (static_cast<int64_t>(ta.ElementLength()) != expected) {
    throw ArgumentError(env, "uniforms must have N+B = " + std::to_string(expected) + " elements; received " +
                                 std::to_string(ta.ElementLength()));
  }
  auto out = std::make_shared<std::vector<double>>(static_cast<size_t>(expected));
  if (type == napi_float64_array) {
    Napi::Float64Array a = v.As<Napi::Float64Array>();
    for (size_t i = 0; i < out->size(); ++i) (*out)[i] = a[i];
  } else {
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    for (size_t i = 0; i < out->size(); ++i) (*out)[i] = static_cast<double>(a[i]);
  }
  ThrowIfError(env, CheckVerifyUniforms(out->data(), expected));
  return out;
}

Napi::Value VerifySampling(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<TreeData> tree = ParseTree(env, info);
  const VerifyTree tv = tree->view();
  const int64_t n = static_cast<int64_t>(tree->tokens.size());
  const int64_t rows = n + tv.batch;
  TensorArg target = ParseTensorArg(env, info[3], "targetProbs");
  if (target.view.dtype != DType::kF32) {
    throw ArgumentError(env, std::string("verifySampling: targetProbs dtype must be f32; received ") +
                                 DTypeName(target.view.dtype));
  }
  const int64_t vocab = CheckRows(env, target, "targetProbs", rows);
  std::vector<TensorArg> keep{target};
  const float* draft_ptr = nullptr;
  if (!info[4].IsNull() && !info[4].IsUndefined()) {
    TensorArg draft = ParseTensorArg(env, info[4], "draftProbs");
    if (draft.view.dtype != DType::kF32) {
      throw ArgumentError(env, std::string("verifySampling: draftProbs dtype must be f32; received ") +
                                   DTypeName(draft.view.dtype));
    }
    CheckRows(env, draft, "draftProbs", rows);
    if (draft.view.shape[1] != vocab) {
      throw ArgumentError(env, "draftProbs must have the vocab of targetProbs (" + std::to_string(vocab) +
                                   "); received " + std::to_string(draft.view.shape[1]));
    }
    if (draft.view.device.kind != target.view.device.kind || draft.view.device.index != target.view.device.index) {
      throw ArgumentError(env, "draftProbs must be on the device of targetProbs");
    }
    draft_ptr = static_cast<const float*>(draft.view.data);
    keep.push_back(draft);
  }
  ThrowIfError(env, CheckVerifyTree("verifySampling", tv, n, vocab));
  std::shared_ptr<std::vector<double>> uniforms = ParseUniforms(env, info[5], rows);
  Outputs out = ParseOutputs(env, info, 6, tv.batch, n);
  const VerifyOutput ov = out.view();
  const float* target_ptr = static_cast<const float*>(target.view.data);
  std::function<Status()> work;
  if (target.view.device.kind == DeviceKind::kCuda) {
    const int dev = target.view.device.index;
    work = [=] {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::VerifySampling(tree->view(), target_ptr, draft_ptr, vocab, uniforms->data(), ov);
    };
  } else {
    work = [=] { return cpu::VerifySampling(tree->view(), target_ptr, draft_ptr, vocab, uniforms->data(), ov); };
  }
  keep.push_back(out.count);
  keep.push_back(out.nodes);
  keep.push_back(out.next);
  return RunAsync(env, std::move(work), std::move(keep));
}

}  // namespace

void RegisterVerifyBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("verifyGreedy", Napi::Function::New(env, CANOPY_GUARDED(VerifyGreedy), "verifyGreedy"));
  exports.Set("verifySampling", Napi::Function::New(env, CANOPY_GUARDED(VerifySampling), "verifySampling"));
}

}  // namespace napi
}  // namespace canopy
