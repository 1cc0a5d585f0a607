#!/usr/bin/env bash
# Packs what a GPU machine without Node.js or network needs to run canopy's GPU
# checks and benchmarks, into .gpu-kit/ (ignored by git). Run it HERE, on the
# build machine, after `npm install`; then send the working tree with
# .gpu-kit carried and run scripts/gpu-session/run.sh THERE (see that file).
#
#   bash scripts/gpu-session/pack.sh
#
# .gpu-kit/ holds:
#   node.xz          the Node.js binary (../shared/node; the same v20 as here)
#   node_modules.tar.xz, dist.tar.xz
#                    node_modules/ and dist/ as built here (vitest, cmake-js,
#                    node-addon-api and node-api-headers included, so the addon
#                    and the tests build and run there without npm or network)
#   models/          the tiny test models (../shared/models), for the suites
#                    and the decode benchmark
#   manifest.txt     commit, uncommitted changes and sizes, to tell later which
#                    tree the figures came from
# The native code is NOT carried: run.sh builds it there with that machine's
# nvcc for its GPU (16 cores: well under a minute).
#
# Environment: CANOPY_SHARED (default ../shared beside the repository).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
shared=${CANOPY_SHARED:-$root/../shared}
kit=$root/.gpu-kit
node_xz=$shared/node/node-v20.20.2-linux-x64.xz

die() { echo "gpu-session/pack: $*" >&2; exit 1; }
[ -f "$node_xz" ] || die "no Node.js binary at $node_xz (set CANOPY_SHARED to the shared folder)"
[ -d "$shared/models/stories260K" ] || die "no test models at $shared/models"
[ -f "$root/node_modules/vitest/vitest.mjs" ] || die "node_modules is incomplete: run npm install first"
git -C "$root" check-ignore -q .gpu-kit/ || die ".gpu-kit is not ignored by git (it must be, to be carried)"

echo "gpu-session/pack: compiling TypeScript into dist/" >&2
(cd "$root" && node node_modules/typescript/bin/tsc -p tsconfig.build.json)

rm -rf "$kit"
mkdir -p "$kit"
cp "$node_xz" "$kit/node.xz"
echo "gpu-session/pack: compressing node_modules and dist (about 20 s)" >&2
# node_modules may be a symbolic link (a git worktree's): archive what it points to, under the
# name node_modules (links inside it, node_modules/.bin, stay links).
modules=$(realpath "$root/node_modules")
tar -C "$modules" --transform 's,^\.,node_modules,' -cf - . | xz -T0 -6 > "$kit/node_modules.tar.xz"
tar -C "$root" -cf - dist | xz -T0 -6 > "$kit/dist.tar.xz"
[ "$(stat -c %s "$kit/node_modules.tar.xz")" -gt 1000000 ] || die "node_modules.tar.xz is suspiciously small"
cp -R "$shared/models" "$kit/models"
chmod -R u+w "$kit/models"

{
  echo "packed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$root" rev-parse HEAD)"
  echo "uncommitted changes:"
  git -C "$root" status --short | sed 's/^/  /'
  echo "sizes:"
  du -sh "$kit"/* | sed 's/^/  /'
} > "$kit/manifest.txt"

tree_bytes=$(git -C "$root" ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
kit_bytes=$(du -sb "$kit" | cut -f1)
total=$(( (tree_bytes + kit_bytes) / 1048576 ))
echo "gpu-session/pack: .gpu-kit $(( kit_bytes / 1048576 )) MiB + working tree $(( tree_bytes / 1048576 )) MiB = $total MiB (the device tool carries at most 64)" >&2
[ "$total" -lt 64 ] || die "too large to carry"
cat >&2 <<EOF
gpu-session/pack: ready. On the GPU machine (device tool run, carry [".gpu-kit"]):
  bash scripts/gpu-session/run.sh test        # build, native CUDA-vs-CPU tests, vitest GPU suites
  bash scripts/gpu-session/run.sh sanitize    # compute-sanitizer memcheck, racecheck, synccheck
  bash scripts/gpu-session/run.sh bench       # canopy bench on CUDA with the PyTorch peers
EOF
