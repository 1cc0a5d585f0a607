#!/usr/bin/env node
// Builds the native addon into build/Release/canopy.node. `npx canopy build` runs this,
// in a clone and in an installed package alike.
//
//   node scripts/build-native.mjs              configure if needed, then build (incremental)
//   node scripts/build-native.mjs --if-needed  same; skips nothing the compiler would redo
//   node scripts/build-native.mjs --force      wipe build/ and rebuild
//   node scripts/build-native.mjs --cpu-only   no CUDA even when nvcc is present
//   node scripts/build-native.mjs --node-gyp   CPU-only with node-gyp (scripts/node-gyp/binding.gyp)
//   node scripts/build-native.mjs --out DIR    the cmake-js build folder (default build/)
//   node scripts/build-native.mjs --arch arm64 cross-compile the CPU-only linux-arm64 addon on an
//                                              x86-64 Linux host (Debian's g++-aarch64-linux-gnu,
//                                              scripts/toolchains/aarch64-linux-gnu.cmake); CUDA
//                                              stays x64-only
//
// Two ways to build:
//   cmake-js + CMake (CMakeLists.txt): CPU, and CUDA when nvcc is found (architectures
//     from CANOPY_CUDA_ARCHS); on x86-64 Linux a portable binary (glibc floor, static
//     C++ runtime). Needs cmake on PATH and the cmake-js npm package: a devDependency in
//     a clone; in an installed package it is installed on demand into .build-tools/
//     (CANOPY_NO_TOOL_INSTALL=1 refuses, with instructions).
//   node-gyp (scripts/node-gyp/binding.gyp): CPU only, no cmake. node-gyp comes from
//     node_modules or, failing that, the copy bundled with npm; Node's headers from the
//     local Node installation when it has them (no download).
// With cmake on PATH every build goes through cmake-js (--cpu-only: without CUDA); without
// cmake it is the node-gyp CPU-only build (with a message); --node-gyp asks for that one
// explicitly. node-addon-api
// (headers) is a dependency of the package. A stamp records the configuration so a changed
// CANOPY_CUDA_ARCHS or --cpu-only triggers a full rebuild (cmake-js `build` does not
// reconfigure by itself).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const argv = process.argv.slice(2);
const args = new Set(argv);
const outIndex = argv.indexOf('--out');
const buildDir = outIndex >= 0 ? resolve(argv[outIndex + 1]) : join(root, 'build');
const forceNodeGyp = args.has('--node-gyp');
const archIndex = argv.indexOf('--arch');
const targetArch = archIndex >= 0 ? argv[archIndex + 1] : process.arch;
const cross = targetArch !== process.arch;
const cpuOnly = cross || forceNodeGyp || args.has('--cpu-only') || process.env.CANOPY_NO_CUDA === '1';
const force = args.has('--force');
const toolsDir = join(root, '.build-tools'); // on-demand build tools of an installed package

function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** A file inside an npm package, from the package's own node_modules chain or .build-tools. */
function resolveIn(name, file) {
  for (const from of [join(root, 'package.json'), join(toolsDir, 'package.json')]) {
    try {
      return join(dirname(createRequire(from).resolve(`${name}/package.json`)), file);
    } catch {
      // not there
    }
  }
  return null;
}

function run(cmd, cmdArgs, env = {}, cwd = root) {
  console.error(`> ${[cmd, ...cmdArgs].join(' ')}`);
  const r = spawnSync(cmd, cmdArgs, { cwd, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function fail(message) {
  console.error(`canopy build: ${message}`);
  process.exit(1);
}

/** Children (cmake's `node -p require(...)`, node-gyp's `<!(node ...)`) also find on-demand tools. */
const toolEnv = existsSync(join(toolsDir, 'node_modules'))
  ? { NODE_PATH: [join(toolsDir, 'node_modules'), process.env.NODE_PATH].filter(Boolean).join(delimiter) }
  : {};

/** Installs cmake-js (the version range this package was developed with) into .build-tools/. */
function installCmakeJs() {
  const range = pkg.devDependencies?.['cmake-js'] ?? 'latest';
  const spec = `cmake-js@${range}`;
  if (process.env.CANOPY_NO_TOOL_INSTALL === '1') {
    fail(
      `cmake-js is not installed (a build tool, not a dependency of ${pkg.name}) and CANOPY_NO_TOOL_INSTALL=1 forbids installing it.\n` +
        `Install it yourself (npm install --no-save ${spec}) and run \`npx canopy build\` again, or build CPU-only without cmake: \`npx canopy build --cpu-only\`.`,
    );
  }
  const npmCli = npmCliPath();
  if (!npmCli) fail(`cmake-js is not installed and npm was not found to install it; install ${spec} and retry.`);
  console.error(
    `canopy build: cmake-js is not installed: it is a build tool, not a dependency of ${pkg.name} (most installs use the prebuilt binary).\n` +
      `canopy build: installing ${spec} into ${toolsDir} (npm; set CANOPY_NO_TOOL_INSTALL=1 to refuse) ...`,
  );
  mkdirSync(toolsDir, { recursive: true });
  if (!existsSync(join(toolsDir, 'package.json'))) {
    writeFileSync(join(toolsDir, 'package.json'), JSON.stringify({ name: 'canopy-build-tools', private: true }, null, 2) + '\n');
  }
  const status = run(process.execPath, [npmCli, 'install', '--no-audit', '--no-fund', '--no-package-lock', '--ignore-scripts', spec], {}, toolsDir);
  if (status !== 0) fail(`installing ${spec} failed (see above); install it yourself (npm install --no-save ${spec}) and retry.`);
  toolEnv.NODE_PATH = [join(toolsDir, 'node_modules'), process.env.NODE_PATH].filter(Boolean).join(delimiter);
}

/** npm's CLI script (for installing tools and finding the node-gyp npm bundles). */
function npmCliPath() {
  if (process.env.npm_execpath && existsSync(process.env.npm_execpath)) return process.env.npm_execpath;
  const npm = which('npm');
  if (!npm) return null;
  try {
    const real = realpathSync(npm); // .../npm/bin/npm-cli.js
    return existsSync(real) && real.endsWith('.js') ? real : join(dirname(real), 'npm-cli.js');
  } catch {
    return null;
  }
}

/** node-gyp: from node_modules, else the copy npm bundles. */
function nodeGypPath() {
  const local = resolveIn('node-gyp', 'bin/node-gyp.js');
  if (local && existsSync(local)) return local;
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const npmCli = npmCliPath();
  if (npmCli) {
    const bundled = join(dirname(dirname(npmCli)), 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(bundled)) return bundled;
  }
  return null;
}

/** --nodedir for node-gyp: the running Node's own headers when installed (saves a download). */
function localNodeDir() {
  if (process.env.npm_config_nodedir) return null; // the user's choice stands
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) && existsSync(join(prefix, 'include', 'node', 'common.gypi')) ? prefix : null;
}

function buildWithNodeGyp(reason) {
  const nodeGyp = nodeGypPath();
  if (!nodeGyp) fail('node-gyp was not found (neither in node_modules nor bundled with npm); install it (npm install -g node-gyp) and retry.');
  if (!resolveIn('node-addon-api', 'package.json')) fail('node-addon-api is missing (a dependency of canopy-llm): reinstall the package.');
  console.error(`canopy build: CPU-only build with node-gyp (${reason}).`);
  const gypDir = join(root, 'scripts', 'node-gyp');
  const nodeDir = localNodeDir();
  const status = run(process.execPath, [nodeGyp, 'rebuild', `--directory=${gypDir}`, `--jobs=${availableParallelism()}`, ...(nodeDir ? [`--nodedir=${nodeDir}`] : [])], toolEnv);
  if (status !== 0) fail('the node-gyp build failed (see above).');
  mkdirSync(join(buildDir, 'Release'), { recursive: true });
  copyFileSync(join(gypDir, 'build', 'Release', 'canopy.node'), join(buildDir, 'Release', 'canopy.node'));
  // The CMake build's configuration and portability promise no longer describe build/Release.
  for (const f of ['canopy-build.json', 'canopy-portable.json', 'CMakeCache.txt']) rmSync(join(buildDir, f), { force: true });
  console.error(`canopy build: wrote ${join(buildDir, 'Release', 'canopy.node')}`);
}

/** cmake-js arguments for a cross build to `targetArch` (only linux x64 -> arm64 is supported). */
function crossArgs() {
  if (!cross) return [];
  if (process.platform !== 'linux' || process.arch !== 'x64' || targetArch !== 'arm64') {
    fail(`cross-compiling for ${targetArch} on ${process.platform}-${process.arch} is not supported (only linux-x64 -> arm64).`);
  }
  if (forceNodeGyp) fail('--arch arm64 builds with cmake-js, not node-gyp.');
  const prefix = process.env.CANOPY_AARCH64_PREFIX ?? 'aarch64-linux-gnu-';
  if (!which(`${prefix}g++`)) {
    fail(`the aarch64 cross compiler ${prefix}g++ is not on PATH (Debian/Ubuntu: apt install g++-aarch64-linux-gnu).`);
  }
  return ['--arch', 'arm64', `--CDCMAKE_TOOLCHAIN_FILE=${join(root, 'scripts', 'toolchains', 'aarch64-linux-gnu.cmake')}`];
}

function buildWithCmakeJs(cmakeJs) {
  const stampPath = join(buildDir, 'canopy-build.json');
  const stamp = JSON.stringify({ cpuOnly, archs: process.env.CANOPY_CUDA_ARCHS ?? '', arch: targetArch });
  const previous = existsSync(stampPath) ? readFileSync(stampPath, 'utf8') : null;
  const fresh = force || previous !== stamp || !existsSync(join(buildDir, 'CMakeCache.txt'));
  // A fresh configure wipes the addon's build tree, but not the native tests' (build/native-tests).
  if (fresh && existsSync(buildDir)) {
    for (const entry of readdirSync(buildDir)) {
      if (entry !== 'native-tests') rmSync(join(buildDir, entry), { recursive: true, force: true });
    }
  }
  mkdirSync(buildDir, { recursive: true });
  const env = { ...toolEnv, ...(cpuOnly ? { CANOPY_NO_CUDA: '1' } : {}) };
  const cmakeArgs = ['build', '--out', buildDir, '--parallel', String(availableParallelism()), '--log-level', 'warn', ...crossArgs()];
  const status = run(process.execPath, [cmakeJs, ...cmakeArgs], env);
  if (status !== 0) fail('the native build failed (see above).');
  writeFileSync(stampPath, stamp);
}

const cmake = which('cmake');
let cmakeJs = resolveIn('cmake-js', 'bin/cmake-js');
if (cross && !cmake) {
  fail('--arch arm64 (a cross build) needs cmake >= 3.18 on PATH.');
} else if (forceNodeGyp) {
  buildWithNodeGyp('--node-gyp');
} else if (!cmake) {
  console.error('canopy build: cmake is not on PATH: building the CPU-only addon instead. The full build (CUDA when nvcc is found) needs cmake >= 3.18 (e.g. apt install cmake).');
  buildWithNodeGyp('cmake is not on PATH');
} else {
  if (!cmakeJs) {
    installCmakeJs();
    cmakeJs = resolveIn('cmake-js', 'bin/cmake-js');
    if (!cmakeJs) fail(`cmake-js was installed into ${toolsDir} but cannot be found there.`);
  }
  buildWithCmakeJs(cmakeJs);
}
