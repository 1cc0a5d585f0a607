#!/usr/bin/env node
// The native C++ tests (csrc/tests, CMake option CANOPY_BUILD_TESTS): every kernel against its
// float64 reference and the bit-identity contracts (row counts, threads, ISAs); the CUDA tests
// against the CPU kernels where a GPU is usable (they skip otherwise).
//   node scripts/test-native.mjs                 CPU kernels only (CANOPY_NO_CUDA=1): CI's step
//   node scripts/test-native.mjs --cuda [args]   with CUDA where nvcc is found; args go to the
//                                                test binary (e.g. --require-gpu: npm run test:gpu)
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

import { root, runOrExit } from './run-or-exit.mjs';

const args = process.argv.slice(2);
const cuda = args[0] === '--cuda';
const testArgs = cuda ? args.slice(1) : args;
// Separate build trees, so a CPU-only configure never replaces the CUDA one (and the reverse).
const testBuild = join(root, 'build', cuda ? 'native-tests' : 'native-tests-cpu');
const env = cuda ? {} : { CANOPY_NO_CUDA: '1' };

const run = (cmd, cmdArgs, extraEnv) => runOrExit('test-native', cmd, cmdArgs, extraEnv);

const t0 = Date.now();
run('cmake', ['-S', root, '-B', testBuild, '-DCANOPY_BUILD_TESTS=ON', '-DCANOPY_BUILD_ADDON=OFF', '-DCMAKE_BUILD_TYPE=Release'], env);
run('cmake', ['--build', testBuild, '--parallel', String(availableParallelism())], env);
run(join(testBuild, 'canopy_native_tests'), testArgs);
console.error(`test-native: built and passed in ${Math.round((Date.now() - t0) / 1000)} s`);
