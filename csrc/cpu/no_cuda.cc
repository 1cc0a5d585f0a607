// Definitions of the cuda:: entry points for builds without CUDA (no nvcc at
// build time, or the node-gyp CPU-only build). Every call reports that CUDA
// was not compiled in.
#include "../common/attention.h"
#include "../common/cast.h"
#include "../common/decode_step.h"
#include "../common/machine_bench.h"
#include "../common/merge_states.h"
#include "../common/kv_commit.h"
#include "../common/kv_quant.h"
#include "../common/linear.h"
#include "../common/llama.h"
#include "../common/prefix_attention.h"
#include "../common/transformer_ops.h"
#include "../common/runtime.h"
#include "../common/sampling.h"
#include "../common/verify.h"

namespace canopy {
namespace cuda {
namespace {
Status NotCompiled() {
  return Status::CudaUnavailable(
      "this build of canopy has no CUDA support (nvcc was not found when it was compiled); "
      "install the CUDA toolkit and run `npx canopy build`");
}
}  // namespace

bool Compiled() { return false; }
std::string CompiledArchitectures() { return ""; }
int MinComputeCapability() { return 0; }

RuntimeInfo QueryRuntime() {
  RuntimeInfo info;
  info.reason = NotCompiled().message();
  return info;
}

Status SetDevice(int) { return NotCompiled(); }
Status Malloc(int, size_t, void** ptr) {
  *ptr = nullptr;
  return NotCompiled();
}
Status Free(int, void*) { return NotCompiled(); }
Status MemInfo(int, size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = 0;
  *total_bytes = 0;
  return NotCompiled();
}
Status CopyHostToDevice(int, void*, const void*, size_t) { return NotCompiled(); }
Status CopyDeviceToHost(int, void*, const void*, size_t) { return NotCompiled(); }
Status CopyDeviceToDevice(int, void*, const void*, size_t) { return NotCompiled(); }
Status Cast(const void*, DType, void*, DType, int64_t) { return NotCompiled(); }
Status Attention(const AttentionParams&) { return NotCompiled(); }
Status MergeStates(const MergeParams&) { return NotCompiled(); }
Status MergeStatesN(const MergeNParams&) { return NotCompiled(); }
Status MeasureCopyBandwidth(int64_t, int32_t, double*) { return NotCompiled(); }
Status Linear(const LinearParams&) { return NotCompiled(); }
Status LinearQuant(const LinearParams&) { return NotCompiled(); }
Status RmsNorm(const float*, const void*, DType, float, float*, int64_t, int64_t) { return NotCompiled(); }
Status Rope(const RopeParams&) { return NotCompiled(); }
Status SwiGlu(const float*, const float*, float*, int64_t) { return NotCompiled(); }
Status Embed(const int32_t*, int64_t, const void*, DType, int64_t, int64_t, float*) { return NotCompiled(); }
Status EmbedQuant(const int32_t*, int64_t, const void*, QuantType, int64_t, int64_t, float*) { return NotCompiled(); }
Status Argmax(const float*, int64_t, int64_t, int32_t*) { return NotCompiled(); }
Status ArgmaxToHost(const float*, int64_t, int64_t, int32_t*) { return NotCompiled(); }
Status LlamaForward(const LlamaModelDesc&, const LlamaForwardParams&) { return NotCompiled(); }
Status DecodeStep(const LlamaModelDesc&, const DecodeStepParams&) { return NotCompiled(); }
Status VerifyGreedy(const VerifyTree&, const void*, DType, int64_t, const VerifyOutput&) { return NotCompiled(); }
Status VerifySampling(const VerifyTree&, const float*, const float*, int64_t, const double*, const VerifyOutput&) {
  return NotCompiled();
}
Status SamplingChain(const float*, int64_t, int64_t, const SamplingParams&, const SamplingBias&, const SamplingPenalties&,
                     const double*, const SamplingOutput&) {
  return NotCompiled();
}
Status CommitKv(void*, void*, DType, int64_t, int64_t, int64_t, const KvCommitPlan&, int64_t, int32_t*) {
  return NotCompiled();
}
Status PrefixAttention(const PrefixAttentionParams&) { return NotCompiled(); }
Status AppendQuantKv(const QuantKvCache&, const QuantAppendParams&) { return NotCompiled(); }
Status QuantizeKvGroups(const QuantKvCache&, const QuantKvBatch&, const int32_t*, const int32_t*) { return NotCompiled(); }
Status RestoreKvGroups(const QuantKvCache&, const QuantKvBatch&, const int32_t*, const int32_t*) { return NotCompiled(); }
Status CommitQuantKv(const QuantKvCache&, const QuantKvBatch&, const int32_t*, const int32_t*, const int32_t*, const int32_t*, int64_t,
                     int32_t*) {
  return NotCompiled();
}
Status DequantizeKv(const QuantKvCache&, const QuantKvBatch&, const int32_t*, const int32_t*, float*, float*) { return NotCompiled(); }

}  // namespace cuda
}  // namespace canopy
