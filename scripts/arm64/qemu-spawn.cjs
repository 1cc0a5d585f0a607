// Preloaded (NODE_OPTIONS=--require) into the arm64 Node that scripts/test-arm64.mjs runs under
// qemu-user: a child process that runs this same Node binary (vitest's forked workers, tests that
// spawn process.execPath) is started through qemu too, since the x86-64 host cannot execute an
// aarch64 binary by itself (no binfmt_misc registration is assumed). Other programs (the x86-64
// esbuild, shells) start as they are. Set by the runner: CANOPY_QEMU (the qemu-aarch64 binary),
// CANOPY_QEMU_SYSROOT (the aarch64 libraries, -L).
'use strict';
const cp = require('node:child_process');
const { syncBuiltinESMExports } = require('node:module');

const qemu = process.env.CANOPY_QEMU;
const sysroot = process.env.CANOPY_QEMU_SYSROOT;
const self = process.execPath;

if (qemu && sysroot) {
  // spawn, fork, exec and execFile all go through ChildProcess#spawn.
  const spawn = cp.ChildProcess.prototype.spawn;
  cp.ChildProcess.prototype.spawn = function (options) {
    if (options && options.file === self) {
      options = { ...options, file: qemu, args: [qemu, '-L', sysroot, self, ...options.args.slice(1)] };
    }
    return spawn.call(this, options);
  };
  const spawnSync = cp.spawnSync;
  cp.spawnSync = function (file, args, options) {
    if (file === self) {
      const rest = Array.isArray(args) ? args : [];
      return spawnSync.call(this, qemu, ['-L', sysroot, self, ...rest], Array.isArray(args) ? options : args);
    }
    return spawnSync.call(this, file, args, options);
  };
  syncBuiltinESMExports(); // `import { spawnSync } from 'node:child_process'` sees the wrapper
}
