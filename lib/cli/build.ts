/** `canopy build`: compile the addon from source (scripts/build-native.mjs: cmake-js; node-gyp for --cpu-only without cmake). */

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { packageRoot } from '../native/loader.js';

export interface BuildOptions {
  cpuOnly?: boolean;
  nodeGyp?: boolean;
  cudaArchs?: string;
  force?: boolean;
}

export function runBuild(options: BuildOptions): number {
  const args = [join(packageRoot, 'scripts', 'build-native.mjs')];
  if (options.cpuOnly) args.push('--cpu-only');
  if (options.nodeGyp) args.push('--node-gyp');
  if (options.force) args.push('--force');
  const env = { ...process.env };
  if (options.cudaArchs) env.CANOPY_CUDA_ARCHS = options.cudaArchs;
  const r = spawnSync(process.execPath, args, { cwd: packageRoot, stdio: 'inherit', env });
  return r.status ?? 1;
}
