// Parsing quantized KV cache descriptors (csrc/common/kv_quant.h) passed from TypeScript
// (lib/kernels/kv-quant.ts builds them):
//
//   { format: 'int8' | 'int4' | 'fp8', group?: 32 | 64 | 128 (int4), ring?: rows per sequence ring (int4),
//     k, v:            int8 (int8) or uint8 (fp8, int4) [layers, rows, numKvHeads, headDim (int4: headDim / 2)]
//     kScale:          f32 [layers, rows, numKvHeads]     (int4: [layers, rows / group, numKvHeads, headDim])
//     vScale:          f32 [layers, rows, numKvHeads]
//     kZero, vZero:    int4 only, shaped like kScale, vScale
//     resK, resV:      int4 only, f32 / f16 / bf16 [layers, resRows, numKvHeads, headDim] }
//
// Every tensor must be on one device; the parsed view keeps the tensor arguments alive.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "../common/kv_quant.h"
#include "tensor_arg.h"

namespace canopy {
namespace napi {

struct QuantKvArg {
  QuantKvCache cache;  // every layer
  std::vector<TensorArg> tensors;
  Device device;
};

QuantKvArg ParseQuantKvArg(Napi::Env env, Napi::Value value, const std::string& name);

// What attention reads: { cache, layer?: number (default 0), quantLens?: Int32Array [batch],
// resStart?: Int32Array [batch] } (the last two for int4). Holds the single-layer view and the
// arrays so pointers stay valid for an async call.
struct QuantKvViewArg {
  QuantKvArg arg;
  std::shared_ptr<QuantKvCache> layer;
  std::shared_ptr<std::vector<int32_t>> quant_lens, res_start;
};
QuantKvViewArg ParseQuantKvView(Napi::Env env, Napi::Value value, const std::string& name, size_t batch);

}  // namespace napi
}  // namespace canopy
