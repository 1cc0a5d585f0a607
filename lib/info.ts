/**
 * What this installation of canopy can do: version, addon, CPU, CUDA.
 * The shape is what `canopy info --json` prints.
 */

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

import { CanopyError } from './errors.js';
import { cudaInfo } from './native/backend.js';
import { type AddonSource, loadAddon, packageRoot } from './native/loader.js';
import type { NativeCudaDevice } from './native/types.js';

export interface CanopyInfo {
  version: string;
  addon: {
    path: string | null;
    source: AddonSource | null;
    /** Build facts (compiler, build system, CUDA architectures), when loaded. */
    build?: { buildSystem: string; compiler: string; napiVersion: number };
    /** Why the addon could not be loaded. */
    error?: string;
  };
  cpu: { model: string; threads: number; features: string[] };
  cuda: {
    compiled: boolean;
    available: boolean;
    architectures: string;
    driverVersion: number;
    runtimeVersion: number;
    devices: NativeCudaDevice[];
    reason: string | null;
  };
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** Collects the facts; never throws for a missing addon (reports it in addon.error). */
export function info(): CanopyInfo {
  const version = packageVersion();
  try {
    const { addon, path, source } = loadAddon();
    const build = addon.buildInfo();
    const cpu = addon.cpuInfo();
    const cuda = cudaInfo();
    return {
      version,
      addon: { path, source, build: { buildSystem: build.buildSystem, compiler: build.compiler, napiVersion: build.napiVersion } },
      cpu: { model: cpu.model, threads: cpu.threads, features: cpu.features },
      cuda: {
        compiled: cuda.compiled,
        available: cuda.available,
        architectures: cuda.architectures,
        driverVersion: cuda.driverVersion,
        runtimeVersion: cuda.runtimeVersion,
        devices: cuda.devices,
        reason: cuda.reason,
      },
    };
  } catch (e) {
    if (!(e instanceof CanopyError)) throw e;
    return {
      version,
      addon: { path: null, source: null, error: e.message },
      cpu: { model: '', threads: availableParallelism(), features: [] },
      cuda: { compiled: false, available: false, architectures: '', driverVersion: 0, runtimeVersion: 0, devices: [], reason: 'the native addon is not loaded' },
    };
  }
}
