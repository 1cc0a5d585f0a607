#!/usr/bin/env node
// `npm run test:gpu`: the GPU checks, on a machine with an NVIDIA GPU.
//  1. builds csrc/tests with CUDA and runs it with --require-gpu (scripts/test-native.mjs):
//     every CUDA kernel against its CPU counterpart;
//  2. builds the addon if needed and runs the vitest suites with
//     CANOPY_REQUIRE_GPU=1, so CUDA suites fail instead of skipping.
// Fails (exit 1) when no usable GPU is found.
import { join } from 'node:path';

import { root, runOrExit } from './run-or-exit.mjs';

const run = (cmd, args, env) => runOrExit('test:gpu', cmd, args, env);

run(process.execPath, [join(root, 'scripts', 'test-native.mjs'), '--cuda', '--require-gpu']);
run(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--if-needed']);
run(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run'], { CANOPY_REQUIRE_GPU: '1' });
