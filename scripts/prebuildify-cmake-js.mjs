#!/usr/bin/env node
// prebuildify calls its --node-gyp program as `<prog> rebuild --target=... --arch=... --release`
// and then takes the .node file from build/Release. prebuildify has no cmake-js
// backend, so this stands in for node-gyp: it ignores those arguments (N-API
// builds do not depend on the Node version) and runs a full cmake-js build,
// with CUDA when nvcc is present.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--force'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
