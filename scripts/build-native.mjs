#!/usr/bin/env node
// Builds the native addon into build/Release/canopy.node.
//
//   node scripts/build-native.mjs              configure if needed, then build (incremental)
//   node scripts/build-native.mjs --if-needed  same; skips nothing the compiler would redo
//   node scripts/build-native.mjs --force      wipe build/ and rebuild
//   node scripts/build-native.mjs --cpu-only   no CUDA even when nvcc is present
//
// cmake-js drives CMake (CUDA compiled in when nvcc is found; architectures
// from CANOPY_CUDA_ARCHS). Without cmake, falls back to node-gyp, which builds
// the CPU-only addon from binding.gyp. A stamp records the configuration so a
// changed CANOPY_CUDA_ARCHS or --cpu-only triggers a full rebuild (cmake-js
// `build` does not reconfigure by itself).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const args = new Set(process.argv.slice(2));
const cpuOnly = args.has('--cpu-only') || process.env.CANOPY_NO_CUDA === '1';
const force = args.has('--force');

function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function resolveBin(pkg, bin) {
  try {
    return join(dirname(require.resolve(`${pkg}/package.json`)), bin);
  } catch {
    return null;
  }
}

function run(cmd, argv, env) {
  console.error(`> ${[cmd, ...argv].join(' ')}`);
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

const buildDir = join(root, 'build');
const stampPath = join(buildDir, 'canopy-build.json');
const stamp = JSON.stringify({ cpuOnly, archs: process.env.CANOPY_CUDA_ARCHS ?? '' });
const previous = existsSync(stampPath) ? readFileSync(stampPath, 'utf8') : null;

const cmakeJs = resolveBin('cmake-js', 'bin/cmake-js');
const nodeAddonApi = resolveBin('node-addon-api', 'package.json');
const cmake = which('cmake');

if (cmakeJs && cmake && nodeAddonApi) {
  const fresh = force || previous !== stamp || !existsSync(join(buildDir, 'CMakeCache.txt'));
  // A fresh configure wipes the addon's build tree, but not the native tests' (build/native-tests).
  if (fresh && existsSync(buildDir)) {
    for (const entry of readdirSync(buildDir)) {
      if (entry !== 'native-tests') rmSync(join(buildDir, entry), { recursive: true, force: true });
    }
  }
  mkdirSync(buildDir, { recursive: true });
  const env = cpuOnly ? { CANOPY_NO_CUDA: '1' } : {};
  const status = run(process.execPath, [cmakeJs, 'build', '--parallel', String(availableParallelism()), '--log-level', 'warn'], env);
  if (status !== 0) {
    console.error('canopy: the native build failed (see above).');
    process.exit(status);
  }
  writeFileSync(stampPath, stamp);
} else {
  const nodeGyp = resolveBin('node-gyp', 'bin/node-gyp.js');
  const missing = [!cmake && 'cmake (on PATH)', !cmakeJs && 'cmake-js (npm)', !nodeAddonApi && 'node-addon-api (npm)'].filter(Boolean);
  if (!nodeGyp || !nodeAddonApi) {
    console.error(
      `canopy: cannot build the addon: missing ${missing.join(', ')}${nodeGyp ? '' : ' and node-gyp (npm)'}.\n` +
        'Install cmake and run `npm install --no-save cmake-js node-addon-api`, then `npx canopy build`.',
    );
    process.exit(1);
  }
  console.error(`canopy: ${missing.join(', ')} not found; building the CPU-only addon with node-gyp (no CUDA).`);
  const status = run(process.execPath, [nodeGyp, 'rebuild']);
  if (status !== 0) process.exit(status);
}
