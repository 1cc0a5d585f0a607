# CPU-only build of the canopy addon with node-gyp (no cmake, no CUDA):
#   npx canopy build --cpu-only      (or npm run build:native:cpu in a clone)
# which runs `node-gyp rebuild --directory=scripts/node-gyp` and copies the result
# to build/Release/canopy.node. It lives here, not in the package root, because npm
# gives any package with a binding.gyp at its root an implicit `node-gyp rebuild`
# install script. Paths are relative to this folder. The full build (CUDA when nvcc
# is found, portable glibc floor) uses CMakeLists.txt via cmake-js.
{
  "targets": [
    {
      "target_name": "canopy",
      "sources": [
        "../../csrc/cpu/attention.cc",
        "../../csrc/cpu/attention_avx512.cc",
        "../../csrc/cpu/attention_neon.cc",
        "../../csrc/cpu/attention_naive.cc",
        "../../csrc/cpu/attention_plan.cc",
        "../../csrc/cpu/cast.cc",
        "../../csrc/cpu/cpu_features.cc",
        "../../csrc/cpu/decode_step.cc",
        "../../csrc/cpu/kv_commit.cc",
        "../../csrc/cpu/kv_quant.cc",
        "../../csrc/cpu/kv_quant_plan.cc",
        "../../csrc/cpu/linear.cc",
        "../../csrc/cpu/linear_avx512.cc",
        "../../csrc/cpu/linear_neon.cc",
        "../../csrc/cpu/linear_quant.cc",
        "../../csrc/cpu/linear_quant_neon.cc",
        "../../csrc/cpu/linear_quant_vnni.cc",
        "../../csrc/cpu/linear_portable.cc",
        "../../csrc/cpu/llama.cc",
        "../../csrc/cpu/machine_bench.cc",
        "../../csrc/cpu/merge_states.cc",
        "../../csrc/cpu/no_cuda.cc",
        "../../csrc/cpu/prefix_attention.cc",
        "../../csrc/cpu/prefix_attention_plan.cc",
        "../../csrc/cpu/quantize.cc",
        "../../csrc/cpu/sampling.cc",
        "../../csrc/cpu/thread_pool.cc",
        "../../csrc/cpu/transformer_ops.cc",
        "../../csrc/cpu/verify.cc",
        "../../csrc/napi/addon.cc",
        "../../csrc/napi/async_work.cc",
        "../../csrc/napi/attention_bindings.cc",
        "../../csrc/napi/bench_bindings.cc",
        "../../csrc/napi/cast_bindings.cc",
        "../../csrc/napi/device_buffer.cc",
        "../../csrc/napi/file_bindings.cc",
        "../../csrc/napi/info_bindings.cc",
        "../../csrc/napi/kv_commit_bindings.cc",
        "../../csrc/napi/kv_quant_arg.cc",
        "../../csrc/napi/kv_quant_bindings.cc",
        "../../csrc/napi/linear_quant_bindings.cc",
        "../../csrc/napi/linear_bindings.cc",
        "../../csrc/napi/memory_bindings.cc",
        "../../csrc/napi/model_bindings.cc",
        "../../csrc/napi/prefix_attention_bindings.cc",
        "../../csrc/napi/quantize_bindings.cc",
        "../../csrc/napi/sampling_arg.cc",
        "../../csrc/napi/sampling_bindings.cc",
        "../../csrc/napi/tensor_arg.cc",
        "../../csrc/napi/test_bindings.cc",
        "../../csrc/napi/verify_bindings.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "../../csrc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_ADDON_API_DISABLE_DEPRECATED", "CANOPY_BUILD_SYSTEM=\"node-gyp\""],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fvisibility=hidden"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
      "conditions": [
        ["target_arch=='x64'", { "cflags_cc": ["-mavx2", "-mfma", "-mf16c"] }],
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "MACOSX_DEPLOYMENT_TARGET": "11.0"
          }
        }]
      ]
    }
  ]
}
