// KV commit (csrc/common/kv_commit.h):
//
//   commitKv(k, v, kvIndptr, prefixLens, treeIndptr, acceptedCount, acceptedNodes, newLens): Promise<void>
//
// k, v: [capacity, numKvHeads, headDim] or [layers, capacity, numKvHeads, headDim] descriptors
// (f32/f16/bf16, same shape, dtype and device; host or CUDA). The plan arrays are int32 host
// descriptors (copied here, validated synchronously); newLens [B] is an int32 host output.
#include <napi.h>

#include <memory>

#include "../common/kv_commit.h"
#include "../common/runtime.h"
#include "async_work.h"
#include "bindings.h"
#include "errors.h"
#include "host_array.h"

namespace canopy {
namespace napi {
namespace {

struct PlanData {
  std::vector<int32_t> kv_indptr, prefix_lens, tree_indptr, accepted_count, accepted_nodes;
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

Napi::Value CommitKv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg k = ParseTensorArg(env, info[0], "k");
  TensorArg v = ParseTensorArg(env, info[1], "v");
  const TensorView kv = k.view, vv = v.view;
  if (!IsFloatDType(kv.dtype)) {
    throw ArgumentError(env, std::string("commitKv: k dtype must be one of f32, f16, bf16; received ") + DTypeName(kv.dtype));
  }
  if (kv.ndim != 3 && kv.ndim != 4) {
    throw ArgumentError(env, "commitKv: k must be [capacity, numKvHeads, headDim] or [layers, capacity, numKvHeads, "
                             "headDim]; received " + std::to_string(kv.ndim) + " dims");
  }
  bool same = vv.dtype == kv.dtype && vv.ndim == kv.ndim && vv.device.kind == kv.device.kind &&
              vv.device.index == kv.device.index;
  for (int i = 0; same && i < kv.ndim; ++i) same = vv.shape[i] == kv.shape[i];
  if (!same) throw ArgumentError(env, "commitKv: v must have the shape, dtype and device of k");
  {
    const char* k0 = static_cast<const char*>(kv.data);
    const char* v0 = static_cast<const char*>(vv.data);
    if (kv.nbytes() > 0 && k0 < v0 + vv.nbytes() && v0 < k0 + kv.nbytes()) {
      throw ArgumentError(env, "commitKv: k and v must not share memory");
    }
  }
  const int64_t layers = kv.ndim == 4 ? kv.shape[0] : 1;
  const int64_t capacity = kv.shape[kv.ndim - 3];
  const int64_t row_elems = kv.shape[kv.ndim - 2] * kv.shape[kv.ndim - 1];

  auto plan = std::make_shared<PlanData>();
  TensorArg kv_indptr = ParseTensorArg(env, info[2], "kvIndptr");
  plan->kv_indptr = CopyHostInt32(env, kv_indptr, "kvIndptr", -1);
  if (plan->kv_indptr.empty()) throw ArgumentError(env, "kvIndptr must have B+1 >= 1 elements; received 0");
  const int64_t batch = static_cast<int64_t>(plan->kv_indptr.size()) - 1;
  plan->prefix_lens = CopyHostInt32(env, ParseTensorArg(env, info[3], "prefixLens"), "prefixLens", batch);
  plan->tree_indptr = CopyHostInt32(env, ParseTensorArg(env, info[4], "treeIndptr"), "treeIndptr", batch + 1);
  plan->accepted_count = CopyHostInt32(env, ParseTensorArg(env, info[5], "acceptedCount"), "acceptedCount", batch);
  plan->accepted_nodes = CopyHostInt32(env, ParseTensorArg(env, info[6], "acceptedNodes"), "acceptedNodes", -1);
  const int64_t num_nodes = static_cast<int64_t>(plan->accepted_nodes.size());
  ThrowIfError(env, CheckKvCommitPlan(plan->view(), capacity, num_nodes));
  TensorArg new_lens = ParseTensorArg(env, info[7], "newLens");
  CheckHostInt32(env, new_lens, "newLens", batch);
  int32_t* out = static_cast<int32_t*>(new_lens.view.data);

  std::function<Status()> work;
  if (kv.device.kind == DeviceKind::kCuda) {
    const int dev = kv.device.index;
    work = [=] {
      CANOPY_RETURN_IF_ERROR(cuda::SetDevice(dev));
      return cuda::CommitKv(kv.data, vv.data, kv.dtype, layers, capacity, row_elems, plan->view(), num_nodes, out);
    };
  } else {
    work = [=] { return cpu::CommitKv(kv.data, vv.data, kv.dtype, layers, capacity, row_elems, plan->view(), num_nodes, out); };
  }
  return RunAsync(env, std::move(work), {k, v, new_lens});
}

}  // namespace

void RegisterKvCommitBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("commitKv", Napi::Function::New(env, CANOPY_GUARDED(CommitKv), "commitKv"));
}

}  // namespace napi
}  // namespace canopy
