// The export table of the canopy addon. The typed surface is declared in
// lib/native/types.ts; keep the two in step.
#include <napi.h>

#include "bindings.h"
#include "device_buffer.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("DeviceBuffer", canopy::napi::DeviceBuffer::Init(env));
  canopy::napi::RegisterInfoBindings(env, exports);
  canopy::napi::RegisterFileBindings(env, exports);
  canopy::napi::RegisterMemoryBindings(env, exports);
  canopy::napi::RegisterCastBindings(env, exports);
  canopy::napi::RegisterAttentionBindings(env, exports);
  canopy::napi::RegisterBenchBindings(env, exports);
  canopy::napi::RegisterModelBindings(env, exports);
  canopy::napi::RegisterSamplingBindings(env, exports);
  canopy::napi::RegisterVerifyBindings(env, exports);
  canopy::napi::RegisterKvCommitBindings(env, exports);
  canopy::napi::RegisterKvQuantBindings(env, exports);
  canopy::napi::RegisterPrefixAttentionBindings(env, exports);
  canopy::napi::RegisterTestBindings(env, exports);
  canopy::napi::RegisterLinearQuantBindings(env, exports);
  canopy::napi::RegisterLinearBindings(env, exports);
  canopy::napi::RegisterQuantizeBindings(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(canopy, Init)
