// One step of a test script: print the command, run it with inherited output in the repository
// root, and exit the script with the command's status when it fails (scripts/test-native.mjs,
// scripts/test-gpu.mjs).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs `cmd args` (env added to this process's); on failure prints `label: cmd exited with N` and exits N. */
export function runOrExit(label, cmd, args, env = {}) {
  console.error(`> ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    console.error(`${label}: ${cmd} exited with ${r.status}`);
    process.exit(r.status ?? 1);
  }
}
