#!/usr/bin/env node
// Installs the llama.cpp peer (node-llama-cpp and its prebuilt CPU binary, from the npm
// registry only, never compiling llama.cpp) into CANOPY_PEERS_DIR (else ~/.cache/canopy/peers)
// through the same installer as `canopy bench --install-peers`, without running any benchmark.
// .ci/run calls it before `npm test` so the agreement tests against llama.cpp run in CI.
// Needs the compiled package (dist/, which `npm install` in a clone builds). Prints the time
// it took; exits 1 when the install or the load check fails.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const module = join(root, 'dist', 'bench', 'peers', 'llama-cpp.js');
if (!existsSync(module)) {
  console.error(`install-peers: ${module} is missing; run \`npm run build:ts\` (or \`npm install\`) first`);
  process.exit(1);
}
const { installPeers, peersDir } = await import(pathToFileURL(module).href);
const dir = peersDir();
const t0 = performance.now();
const r = await installPeers(dir, (line) => console.error(`install-peers: ${line}`));
const seconds = ((performance.now() - t0) / 1000).toFixed(1);
console.error(`install-peers: ${r.message} (${seconds} s)`);
process.exit(r.ok ? 0 : 1);
