#!/usr/bin/env node
// `npm pack` and `npm publish` run this first (the "prepack" script): it puts the prebuilt
// binary for this platform into prebuilds/<platform>-<arch>/, or refuses to pack, saying why.
//
//   node scripts/prepack.mjs            build the prebuilt binary unless an up-to-date one exists
//   node scripts/prepack.mjs --force    rebuild it (npm run build:prebuilt)
//
// What ships: the CUDA build (CPU kernels always; CUDA kernels for CANOPY_CUDA_ARCHS, default
// 80;86;89;90; cudart linked statically), on x86-64 Linux a portable binary (glibc >= 2.28, no
// libstdc++ needed: CMakeLists.txt, scripts/glibc-floor/). Refuses when nvcc is missing.
//   CANOPY_PREBUILD_CPU_ONLY=1  a CPU-only prebuilt binary instead (fast: CI's pack check,
//                               scripts/check-pack.mjs); `npm publish` refuses such a package.
// The binary is built in build-prebuild/ (the development build in build/ is left alone),
// stripped, checked (the glibc floor on Linux; that it loads and has CUDA compiled in or not,
// as asked), and copied to prebuilds/<platform>-<arch>/node.napi[.glibc].node, the name
// node-gyp-build looks for. A stamp (hash of csrc/, CMakeLists.txt, the build scripts and the
// configuration) lets a later pack reuse it.
//
// linux-arm64 (CPU only; CUDA stays x64-only): on an x86-64 Linux host, also cross-compiled with
// Debian's g++-aarch64-linux-gnu (scripts/toolchains/aarch64-linux-gnu.cmake; same glibc floor,
// static C++ runtime) into prebuilds/linux-arm64/, in build-prebuild-arm64/:
//   CANOPY_PREBUILD_ARM64 unset   build it when aarch64-linux-gnu-g++ is on PATH; otherwise say so
//                                 and pack without it (a stale prebuilds/linux-arm64 is removed)
//   CANOPY_PREBUILD_ARM64=1       require it: refuse to pack without the cross toolchain
//   CANOPY_PREBUILD_ARM64=0       never build it (and pack none)
// `npm publish` requires it unless CANOPY_PREBUILD_ARM64=0 says otherwise (the README promises it).
// The arm64 binary is checked here for its glibc floor and exports (readelf); it cannot be loaded
// on this host: scripts/test-arm64.mjs runs it under qemu-user.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force');
const cpuOnly = process.env.CANOPY_PREBUILD_CPU_ONLY === '1';
const target = `${process.platform}-${process.arch}`;
const linuxX64 = target === 'linux-x64';
const fileName = process.platform === 'linux' ? 'node.napi.glibc.node' : 'node.napi.node';
const prebuildDir = join(root, 'prebuilds', target);
const prebuilt = join(prebuildDir, fileName);
const buildDir = join(root, 'build-prebuild');
const stampPath = join(buildDir, 'prebuild-stamp.json');
const started = Date.now();

function refuse(reason) {
  console.error(`canopy prepack: refusing to pack: ${reason}`);
  process.exit(1);
}

function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Every file under `dir` (sorted), for the stamp. */
function listFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

function inputsHash() {
  const h = createHash('sha256');
  const files = [
    ...listFiles(join(root, 'csrc')),
    ...listFiles(join(root, 'scripts', 'glibc-floor')),
    join(root, 'CMakeLists.txt'),
    join(root, 'scripts', 'build-native.mjs'),
    join(root, 'scripts', 'prepack.mjs'),
  ];
  for (const f of files) h.update(relative(root, f)).update('\0').update(readFileSync(f)).update('\0');
  h.update(JSON.stringify({ cpuOnly, archs: process.env.CANOPY_CUDA_ARCHS ?? '', target }));
  return h.digest('hex');
}

if (process.env.npm_command === 'publish' && cpuOnly) {
  refuse('CANOPY_PREBUILD_CPU_ONLY=1 builds a CPU-only binary for pack checks; a published package ships the CUDA build.');
}
const archs = process.env.CANOPY_CUDA_ARCHS;
if (process.env.npm_command === 'publish' && archs && archs !== '80;86;89;90') {
  refuse(`CANOPY_CUDA_ARCHS=${archs}: the README promises sm_80/86/89/90 in the published binary; unset it to publish.`);
}
const nvcc = process.env.CUDACXX || which('nvcc') || (existsSync('/usr/local/cuda/bin/nvcc') ? '/usr/local/cuda/bin/nvcc' : null);
if (!cpuOnly && !nvcc) {
  refuse(
    'the prebuilt binary ships with CUDA compiled in, and nvcc was not found (install the CUDA toolkit, or set CUDACXX). ' +
      'For a CPU-only package to test packing, set CANOPY_PREBUILD_CPU_ONLY=1.',
  );
}
if (!which('cmake')) refuse('the prebuilt binary is built with CMake (cmake-js), and cmake is not on PATH.');

const hash = inputsHash();
const stamp = existsSync(stampPath) ? JSON.parse(readFileSync(stampPath, 'utf8')) : null;
if (!force && stamp?.hash === hash && existsSync(prebuilt)) {
  console.error(`canopy prepack: ${relative(root, prebuilt)} is up to date (${stamp.kind}); not rebuilding.`);
  prebuildArm64();
  process.exit(0);
}

console.error(`canopy prepack: building the ${cpuOnly ? 'CPU-only' : 'CUDA'} prebuilt binary for ${target} in ${relative(root, buildDir)}/ ...`);
const env = { ...process.env, CANOPY_REQUIRE_PORTABLE: linuxX64 ? '1' : '0' };
if (cpuOnly) env.CANOPY_NO_CUDA = '1';
else delete env.CANOPY_NO_CUDA;
const build = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--force', '--out', buildDir, ...(cpuOnly ? ['--cpu-only'] : [])], {
  cwd: root,
  env,
  stdio: ['ignore', 2, 2], // `npm pack --json` owns stdout
});
if (build.status !== 0) refuse('the native build failed (see above).');
const built = join(buildDir, 'Release', 'canopy.node');
if (!existsSync(built)) refuse(`the build produced no ${relative(root, built)}`);

const staged = join(buildDir, fileName);
copyFileSync(built, staged);
if (process.platform === 'linux' && which('strip')) {
  const s = spawnSync('strip', ['--strip-unneeded', staged], { stdio: ['ignore', 2, 2] });
  if (s.status !== 0) refuse('strip failed');
}
if (linuxX64) {
  const check = spawnSync(process.execPath, [join(root, 'scripts', 'glibc-floor', 'check.mjs'), staged], { stdio: ['ignore', 2, 2] });
  if (check.status !== 0) refuse('the binary is not portable (see above).');
}
// It loads here and has CUDA compiled in exactly when asked.
const probe = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(staged)}).buildInfo()))`], { encoding: 'utf8' });
if (probe.status !== 0) refuse(`the binary does not load: ${probe.stderr}`);
const info = JSON.parse(probe.stdout);
if (info.cudaCompiled === cpuOnly) {
  refuse(`the binary has CUDA ${info.cudaCompiled ? '' : 'not '}compiled in, but a ${cpuOnly ? 'CPU-only' : 'CUDA'} build was asked for (nvcc: ${nvcc ?? 'none'})`);
}

rmSync(prebuildDir, { recursive: true, force: true });
mkdirSync(prebuildDir, { recursive: true });
copyFileSync(staged, prebuilt);
const kind = cpuOnly ? 'CPU-only' : `CUDA ${info.cudaArchitectures}`;
writeFileSync(stampPath, JSON.stringify({ hash, kind, file: relative(root, prebuilt) }, null, 2) + '\n');
const mib = (statSync(prebuilt).size / 2 ** 20).toFixed(1);
console.error(`canopy prepack: ${relative(root, prebuilt)} (${kind}, ${mib} MiB) in ${((Date.now() - started) / 1000).toFixed(0)} s`);
prebuildArm64();

/** The cross-compiled linux-arm64 binary (see the header): built, skipped with a message, or a refusal. */
function prebuildArm64() {
  const mode = process.env.CANOPY_PREBUILD_ARM64 ?? (process.env.npm_command === 'publish' ? '1' : 'auto');
  const armDir = join(root, 'prebuilds', 'linux-arm64');
  const armFile = join(armDir, 'node.napi.glibc.node');
  const armBuild = join(root, 'build-prebuild-arm64');
  const armStampPath = join(armBuild, 'prebuild-stamp.json');
  const t0 = Date.now();
  const skip = (reason) => {
    if (existsSync(armDir)) rmSync(armDir, { recursive: true, force: true });
    console.error(`canopy prepack: not building linux-arm64: ${reason}; the package holds no linux-arm64 binary.`);
  };
  if (mode === '0') return skip('CANOPY_PREBUILD_ARM64=0');
  if (target === 'linux-arm64') return; // a native arm64 host packs its own binary above
  const prefix = process.env.CANOPY_AARCH64_PREFIX ?? 'aarch64-linux-gnu-';
  const why = target !== 'linux-x64' ? `cross-compiling needs an x86-64 Linux host (this is ${target})` : !which(`${prefix}g++`) ? `${prefix}g++ is not on PATH (apt install g++-aarch64-linux-gnu)` : null;
  if (why) {
    if (mode === '1') refuse(`CANOPY_PREBUILD_ARM64=1${process.env.npm_command === 'publish' && !process.env.CANOPY_PREBUILD_ARM64 ? ' (npm publish)' : ''} asks for the linux-arm64 binary, but ${why}. Set CANOPY_PREBUILD_ARM64=0 to pack without it.`);
    return skip(`${why} (set CANOPY_PREBUILD_ARM64=1 to require it)`);
  }
  const armHash = createHash('sha256').update(inputsHash()).update('linux-arm64').update(readFileSync(join(root, 'scripts', 'toolchains', 'aarch64-linux-gnu.cmake'))).digest('hex');
  const armStamp = existsSync(armStampPath) ? JSON.parse(readFileSync(armStampPath, 'utf8')) : null;
  if (!force && armStamp?.hash === armHash && existsSync(armFile)) {
    console.error(`canopy prepack: ${relative(root, armFile)} is up to date; not rebuilding.`);
    return;
  }
  console.error(`canopy prepack: cross-compiling the CPU-only linux-arm64 binary in ${relative(root, armBuild)}/ ...`);
  const armEnv = { ...process.env, CANOPY_REQUIRE_PORTABLE: '1', CANOPY_NO_CUDA: '1' };
  const b = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--force', '--arch', 'arm64', '--out', armBuild], {
    cwd: root,
    env: armEnv,
    stdio: ['ignore', 2, 2],
  });
  if (b.status !== 0) refuse('the linux-arm64 cross build failed (see above).');
  const armStaged = join(armBuild, 'node.napi.glibc.node');
  copyFileSync(join(armBuild, 'Release', 'canopy.node'), armStaged);
  const s = spawnSync(`${prefix}strip`, ['--strip-unneeded', armStaged], { stdio: ['ignore', 2, 2] });
  if (s.status !== 0) refuse(`${prefix}strip failed`);
  const header = spawnSync('readelf', ['-h', armStaged], { encoding: 'utf8' });
  if (!/Machine:\s+AArch64/.test(header.stdout ?? '')) refuse(`${relative(root, armStaged)} is not an AArch64 binary`);
  const check = spawnSync(process.execPath, [join(root, 'scripts', 'glibc-floor', 'check.mjs'), armStaged], { stdio: ['ignore', 2, 2] });
  if (check.status !== 0) refuse('the linux-arm64 binary is not portable (see above).');
  rmSync(armDir, { recursive: true, force: true });
  mkdirSync(armDir, { recursive: true });
  copyFileSync(armStaged, armFile);
  writeFileSync(armStampPath, JSON.stringify({ hash: armHash, kind: 'CPU-only linux-arm64', file: relative(root, armFile) }, null, 2) + '\n');
  const mib = (statSync(armFile).size / 2 ** 20).toFixed(1);
  console.error(`canopy prepack: ${relative(root, armFile)} (CPU-only, ${mib} MiB) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
