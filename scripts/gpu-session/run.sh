#!/usr/bin/env bash
# canopy's GPU session in one call: runs THERE, on a GPU machine that has nvcc,
# cmake and python3 (with torch) but no Node.js and no network, over a working
# tree sent with .gpu-kit/ (made HERE by scripts/gpu-session/pack.sh).
#
#   bash scripts/gpu-session/run.sh [PHASE ...]
#
# Phases (default: test):
#   test       build the addon and the native tests for this GPU, run the native
#              CUDA-vs-CPU tests with --require-gpu, then every vitest suite with
#              CANOPY_REQUIRE_GPU=1 (what `npm run test:gpu` does)
#   sanitize   compute-sanitizer memcheck, racecheck and synccheck over the native
#              CUDA tests (CANOPY_SANITIZE_FILTER=TEXT to run a subset)
#   bench      `canopy bench` on CUDA with the PyTorch peers: the quick tour with the
#              default kernels and with CANOPY_CUDA_KERNELS=v1 (before/after), then
#              each kernel suite (attention, tree, prefix, kvquant) in full
#   bench-models  the generate and decode suites in full (generate with v1 too)
#   ncu        Nsight Compute (full set) over a few attention kernel launches of the
#              quick attention bench's decode rows: $OUT/profile.ncu-rep
#              (CANOPY_NCU_FILTER picks other rows, CANOPY_NCU_KERNELS other kernels)
# Phases may be combined ("test bench"); each step has its own time limit so the
# whole call ends inside the device tool's 10 minutes: test ~4 min, sanitize
# ~6, bench ~8, bench-models ~9 (one phase per call; CANOPY_STEP_SCALE=0.5 etc.
# scales every step's limit).
#
# What comes back ($OUT; the device tool returns at most 8 files): summary.txt
# (one line per step: exit status, seconds), logs.tar.gz (every step's full log,
# nvidia-smi, canopy info, json/*.json from canopy bench --out) and
# bench-tables.txt (the bench tables). The tail of the output shows the summary
# and the tail of each failed step's log.
#
# CANOPY_GPU_SESSION_NO_GPU=1 runs the phases without requiring a GPU (CUDA tests
# skip): a check of this script's plumbing on the build machine, nothing more.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
kit=$root/.gpu-kit
out=${OUT:-$root/.gpu-out}
logs=$(mktemp -d /tmp/canopy-gpu-logs.XXXXXX)
mkdir -p "$out"
summary=$out/summary.txt
no_gpu=${CANOPY_GPU_SESSION_NO_GPU:-0}
scale=${CANOPY_STEP_SCALE:-1}
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(test)

note() { echo "gpu-session: $*" | tee -a "$summary"; }
pack_logs() { tar -C "$logs" -czf "$out/logs.tar.gz" . 2>/dev/null || true; }

# step NAME SECONDS CMD...: runs CMD with its output in NAME.log, under a time limit
# (scaled by CANOPY_STEP_SCALE); records the exit status and duration; never exits.
failed_steps=()
step() {
  local name=$1 limit=$2
  shift 2
  limit=$(awk -v l="$limit" -v s="$scale" 'BEGIN { printf "%d", l * s }')
  local start=$SECONDS
  echo "== $name (limit ${limit}s): $*" >"$logs/$name.log"
  timeout --kill-after=15 "$limit" "$@" >>"$logs/$name.log" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  [ $rc -eq 124 ] && echo "(killed at its ${limit}s limit)" >>"$logs/$name.log"
  printf '%-28s rc=%-4s %5ss\n' "$name" "$rc" "$took" | tee -a "$summary"
  [ $rc -eq 0 ] || failed_steps+=("$name")
  pack_logs
  return $rc
}

# --- setup: Node.js, node_modules/dist, models, the addon ---------------------
setup() {
  [ -f "$kit/node.xz" ] && [ -f "$kit/node_modules.tar.xz" ] && [ -f "$kit/dist.tar.xz" ] ||
    { note "no complete .gpu-kit (run scripts/gpu-session/pack.sh here and carry .gpu-kit)"; exit 1; }
  local nodedir=/tmp/canopy-node/bin
  if [ ! -x "$nodedir/node" ]; then
    mkdir -p "$nodedir" && xz -dc "$kit/node.xz" >"$nodedir/node" && chmod +x "$nodedir/node"
  fi
  export PATH="$nodedir:$PATH"
  [ -f node_modules/vitest/vitest.mjs ] || xz -dc "$kit/node_modules.tar.xz" | tar -xf - -C "$root"
  [ -f dist/cli/index.js ] || xz -dc "$kit/dist.tar.xz" | tar -xf - -C "$root"
  export CANOPY_TEST_MODELS=$kit/models CANOPY_MODELS=$kit/models
  # This machine's GPU only (sm_90 on an H100/H200): a quarter of the compile time.
  if [ -z "${CANOPY_CUDA_ARCHS:-}" ]; then
    local cc
    cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
    export CANOPY_CUDA_ARCHS=${cc:-90}
  fi
  {
    echo "kit: $(head -2 "$kit/manifest.txt" 2>/dev/null | tr '\n' ' ')"
    echo "node $(node --version), $(nvcc --version 2>/dev/null | tail -1), cmake $(cmake --version 2>/dev/null | head -1 | awk '{print $3}'), archs $CANOPY_CUDA_ARCHS"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>/dev/null
  } | tee -a "$summary"
  nvidia-smi >"$logs/nvidia-smi.txt" 2>&1
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available(), "transformers", transformers.__version__)' >"$logs/python.txt" 2>&1
  step build-addon 300 node scripts/build-native.mjs --if-needed || { note "the addon did not build: see logs"; finish; }
  node dist/cli/index.js info --json >"$logs/info.json" 2>&1
}

# A CUDA tool on PATH, else beside nvcc, else in the usual install folders.
find_tool() {
  local t=$1 c
  command -v "$t" 2>/dev/null && return 0
  for c in "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")/$t" /usr/local/cuda/bin/"$t" \
    /usr/local/cuda/compute-sanitizer/"$t" /opt/nvidia/nsight-compute/*/"$t"; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  echo "$t"  # not found: the step fails with 127 and says so in its log
}

native_tests_built=0
build_native_tests() {
  [ $native_tests_built -eq 1 ] && return 0
  step build-native-tests 300 bash -c "cmake -S . -B build/native-tests -DCANOPY_BUILD_TESTS=ON -DCANOPY_BUILD_ADDON=OFF -DCMAKE_BUILD_TYPE=Release && cmake --build build/native-tests --parallel $(nproc)" &&
    native_tests_built=1
}

require_gpu=(--require-gpu)
[ "$no_gpu" = 1 ] && require_gpu=()

phase_test() {
  build_native_tests && step native-tests 240 build/native-tests/canopy_native_tests "${require_gpu[@]}"
  local req=1
  [ "$no_gpu" = 1 ] && req=0
  step vitest-gpu-suites 180 env CANOPY_REQUIRE_GPU=$req node node_modules/vitest/vitest.mjs run test/gpu
  step vitest-all 360 env CANOPY_REQUIRE_GPU=$req node node_modules/vitest/vitest.mjs run
}

phase_sanitize() {
  build_native_tests || return
  local filter=()
  [ -n "${CANOPY_SANITIZE_FILTER:-}" ] && filter=("--filter=$CANOPY_SANITIZE_FILTER")
  local tool
  for tool in memcheck racecheck synccheck; do
    step "sanitize-$tool" 200 "$(find_tool compute-sanitizer)" --tool "$tool" --error-exitcode 99 --print-limit 50 \
      build/native-tests/canopy_native_tests "${require_gpu[@]}" "${filter[@]}"
  done
}

# One bench step: canopy bench ARGS... --out NAME.json (kept in logs.tar.gz); its tables are
# appended to bench-tables.txt. One suite per step, so a step killed at its limit loses
# only its own tables (canopy bench prints them when every row has run).
bench_step() {
  local name=$1 limit=$2
  shift 2
  local backend=cuda
  [ "$no_gpu" = 1 ] && backend=cpu
  mkdir -p "$logs/json"
  step "$name" "$limit" node dist/cli/index.js bench "$@" --backend "$backend" --out "$logs/json/$name.json"
  { echo "==== $name: canopy bench $* ${CANOPY_CUDA_KERNELS:+(CANOPY_CUDA_KERNELS=$CANOPY_CUDA_KERNELS)}"; cat "$logs/$name.log"; echo; } >>"$out/bench-tables.txt"
}

phase_bench() {
  bench_step bench-quick 120
  CANOPY_CUDA_KERNELS=v1 bench_step bench-quick-v1 120  # before/after: the version-1 kernels
  local suite
  for suite in attention tree prefix kvquant; do
    bench_step "bench-$suite" 90 "$suite"
  done
}

phase_bench_models() {
  bench_step bench-generate 200 generate
  bench_step bench-decode 150 decode
  CANOPY_CUDA_KERNELS=v1 bench_step bench-generate-v1 200 generate
}

phase_ncu() {
  step ncu 300 "$(find_tool ncu)" --set full --kernel-name "regex:${CANOPY_NCU_KERNELS:-AttentionKernel}" --launch-skip 10 --launch-count 4 \
    --target-processes all -o "$out/profile" \
    node dist/cli/index.js bench attention --quick --backend cuda --filter "${CANOPY_NCU_FILTER:-decode}"
}

finish() {
  pack_logs
  echo
  echo "---- summary ----"
  cat "$summary"
  local s
  for s in "${failed_steps[@]}"; do
    echo
    echo "---- tail of $s.log ----"
    tail -n 60 "$logs/$s.log"
  done
  [ ${#failed_steps[@]} -eq 0 ]
  exit $?
}

: >"$summary"
note "phases: ${phases[*]} (started $(date -u +%H:%M:%SZ))"
setup
for p in "${phases[@]}"; do
  case "$p" in
    test) phase_test ;;
    sanitize) phase_sanitize ;;
    bench) phase_bench ;;
    bench-models) phase_bench_models ;;
    ncu) phase_ncu ;;
    *) note "unknown phase '$p' (expected test, sanitize, bench, bench-models, ncu)" ;;
  esac
done
finish
