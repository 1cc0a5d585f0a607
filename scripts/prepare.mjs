#!/usr/bin/env node
// `npm install` in a clone (and `npm pack`) runs this: compile the TypeScript
// into dist/ and build the native addon if a toolchain is present. A failed
// native build only warns here, so `npx canopy info` can still explain what is
// missing; `npm test` builds again and fails loudly.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: ['ignore', 2, 2], // build logs go to stderr: `npm pack --json` owns stdout
});
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
// tsc writes the `canopy` bin without the executable bit. npm sets it when it links an
// installed package's bins, but `npx canopy` in a clone runs it from the clone (through a
// link npx made earlier, which does not set it again): make it executable here.
const bin = join(root, 'dist', 'cli', 'index.js');
if (existsSync(bin) && process.platform !== 'win32') chmodSync(bin, 0o755);

if (process.env.CANOPY_SKIP_NATIVE_BUILD === '1') process.exit(0);
// `npm pack` / `npm publish` ship prebuilds/ (the prepack step builds it), not build/.
if (process.env.npm_command === 'pack' || process.env.npm_command === 'publish') process.exit(0);
const native = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--if-needed'], { cwd: root, stdio: ['ignore', 2, 2] });
if (native.status !== 0) {
  console.error('canopy: warning: the native addon was not built; run `npx canopy build` once the toolchain is installed.');
}
