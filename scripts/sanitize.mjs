#!/usr/bin/env node
// The native code under AddressSanitizer and UndefinedBehaviorSanitizer (CPU only).
//
//   node scripts/sanitize.mjs [--tests-only | --addon-only] [vitest files...]
//
// 1. Builds the native tests with -DCANOPY_SANITIZE=ON in build/sanitize-tests and runs them.
// 2. Builds the addon the same way in build/sanitize-addon (cmake-js) and runs vitest suites
//    with it (CANOPY_ADDON_PATH), libasan preloaded into Node (LD_PRELOAD) and
//    ASAN_OPTIONS=detect_leaks=0 (Node itself is not built for leak checking). Default suites:
//    the fuzz suite, native exceptions, dispose / file maps, loader integrity, bad options.
// Exit status: non-zero on any build failure, test failure or sanitizer report (UBSan is
// built with -fno-sanitize-recover, ASan aborts on its first report).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const testsOnly = argv.includes('--tests-only');
const addonOnly = argv.includes('--addon-only');
const suites = argv.filter((a) => !a.startsWith('--'));
const jobs = String(Math.max(1, availableParallelism()));
const env = { ...process.env, CANOPY_NO_CUDA: '1' };

function run(cmd, args, extraEnv = {}) {
  console.error(`> ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...env, ...extraEnv } });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    console.error(`sanitize: '${cmd} ${args[0] ?? ''}' failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

const asanOptions = 'detect_leaks=0:abort_on_error=1:strict_string_checks=1';
const ubsanOptions = 'print_stacktrace=1:halt_on_error=1';

if (!addonOnly) {
  const dir = join(root, 'build', 'sanitize-tests');
  mkdirSync(dir, { recursive: true });
  run('cmake', ['-S', root, '-B', dir, '-DCANOPY_BUILD_TESTS=ON', '-DCANOPY_BUILD_ADDON=OFF', '-DCANOPY_SANITIZE=ON', '-DCMAKE_BUILD_TYPE=RelWithDebInfo']);
  run('cmake', ['--build', dir, '--parallel', jobs]);
  run(join(dir, 'canopy_native_tests'), [], { ASAN_OPTIONS: asanOptions.replace('detect_leaks=0', 'detect_leaks=1'), UBSAN_OPTIONS: ubsanOptions });
}

if (!testsOnly) {
  const out = join(root, 'build', 'sanitize-addon');
  const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
  run(process.execPath, [cmakeJs, 'build', '--out', out, '--CDCANOPY_SANITIZE=ON', '--parallel', jobs, '--log-level', 'warn']);
  const addon = join(out, 'Release', 'canopy.node');
  if (!existsSync(addon)) {
    console.error(`sanitize: ${addon} was not built`);
    process.exit(1);
  }
  const libasan = spawnSync(process.env.CXX ?? 'g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
  if (!libasan || !existsSync(libasan)) {
    console.error(`sanitize: libasan.so not found (${libasan})`);
    process.exit(1);
  }
  const files = suites.length
    ? suites
    : ['test/fuzz', 'test/native/exceptions.test.ts', 'test/model/dispose.test.ts', 'test/model/integrity.test.ts', 'test/errors/public-surface.test.ts', 'test/model/stories.test.ts'];
  const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
  run(process.execPath, [vitest, 'run', ...files], {
    CANOPY_ADDON_PATH: addon,
    LD_PRELOAD: libasan,
    ASAN_OPTIONS: asanOptions,
    UBSAN_OPTIONS: ubsanOptions,
    CANOPY_SANITIZER: 'address,undefined',
  });
}
console.error('sanitize: clean');
