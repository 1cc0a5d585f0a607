// Registration functions, one per bindings file; addon.cc calls them all.
#pragma once

#include <napi.h>

namespace canopy {
namespace napi {

void RegisterInfoBindings(Napi::Env env, Napi::Object exports);
void RegisterFileBindings(Napi::Env env, Napi::Object exports);
void RegisterMemoryBindings(Napi::Env env, Napi::Object exports);
void RegisterCastBindings(Napi::Env env, Napi::Object exports);
void RegisterAttentionBindings(Napi::Env env, Napi::Object exports);
void RegisterBenchBindings(Napi::Env env, Napi::Object exports);
void RegisterModelBindings(Napi::Env env, Napi::Object exports);
void RegisterSamplingBindings(Napi::Env env, Napi::Object exports);
void RegisterVerifyBindings(Napi::Env env, Napi::Object exports);
void RegisterKvCommitBindings(Napi::Env env, Napi::Object exports);
void RegisterKvQuantBindings(Napi::Env env, Napi::Object exports);
void RegisterPrefixAttentionBindings(Napi::Env env, Napi::Object exports);
void RegisterTestBindings(Napi::Env env, Napi::Object exports);
void RegisterLinearQuantBindings(Napi::Env env, Napi::Object exports);
void RegisterLinearBindings(Napi::Env env, Napi::Object exports);
void RegisterQuantizeBindings(Napi::Env env, Napi::Object exports);

}  // namespace napi
}  // namespace canopy
