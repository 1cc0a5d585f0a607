#!/usr/bin/env node
// `npm run test:gpu`: the GPU checks, on a machine with an NVIDIA GPU.
//  1. builds csrc/tests with CUDA and runs it with --require-gpu (scripts/test-native.mjs):
//     every CUDA kernel against its CPU counterpart;
//  2. builds the addon if needed and runs the vitest suites with
//     CANOPY_REQUIRE_GPU=1, so CUDA suites fail instead of skipping.
// Fails (exit 1) when no usable GPU is found.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd, args, env = {}) {
  console.error(`> ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    console.error(`test:gpu: ${cmd} exited with ${r.status}`);
    process.exit(r.status ?? 1);
  }
}

run(process.execPath, [join(root, 'scripts', 'test-native.mjs'), '--cuda', '--require-gpu']);
run(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--if-needed']);
run(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run'], { CANOPY_REQUIRE_GPU: '1' });
