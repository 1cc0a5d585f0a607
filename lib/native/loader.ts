/**
 * Finding and loading the native addon.
 *
 * Order: CANOPY_ADDON_PATH (a .node file) if set; otherwise node-gyp-build's
 * search of prebuilds/<platform>-<arch>/ and build/Release in the package
 * root. There is no install script: when nothing matches, the error
 * (NativeLoadError, ERR_CANOPY_NATIVE_LOAD) says how to build from source.
 */

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import { NativeLoadError } from '../errors.js';
import type { NativeAddon } from './types.js';

const require = createRequire(import.meta.url);

/** How the addon was found. */
export type AddonSource = 'prebuilt' | 'local build' | 'CANOPY_ADDON_PATH';

export interface LoadedAddon {
  addon: NativeAddon;
  path: string;
  source: AddonSource;
}

/** The package root: the folder holding package.json (lib/native or dist/native, two levels up). */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'CMakeLists.txt'))) return dir;
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
})();

let loaded: LoadedAddon | undefined;
let loadError: NativeLoadError | undefined;

const BUILD_HELP =
  'To build it from source in the installed package (needs a C++17 compiler): `npx canopy build` (CPU, plus CUDA when nvcc is ' +
  'found; with cmake >= 3.18 it uses cmake-js, installed on first use; without cmake it builds CPU-only with node-gyp, bundled ' +
  'with npm), or `npx canopy build --cpu-only` to skip CUDA. See the README, section Install.';

/** What ships prebuilt (package.json files: prebuilds/), for the no-match message. */
const PREBUILT_PLATFORMS = 'linux-x64 and linux-arm64 (CPU only) with glibc >= 2.28';

/** A load failure's likely cause, when the dynamic loader's message says. */
function loadFailureHint(detail: string): string {
  const glibc = /version `(GLIBC_[0-9.]+)' not found/.exec(detail);
  if (glibc) return ` This system's C library is older than the binary needs (${glibc[1]}); the prebuilt binary needs glibc >= 2.28.`;
  if (/GLIBCXX_|CXXABI_/.test(detail)) return ' The binary was built against a newer libstdc++ than this system has.';
  if (/invalid ELF header|wrong ELF class|file too short|ELF load command|cannot open shared object/.test(detail)) return ' The file is not a native addon for this platform.';
  return '';
}

function resolveAddonPath(): { path: string; source: AddonSource } {
  const override = process.env.CANOPY_ADDON_PATH;
  if (override) {
    if (!existsSync(override)) {
      throw new NativeLoadError(`CANOPY_ADDON_PATH points to ${override}, which does not exist`);
    }
    return { path: resolve(override), source: 'CANOPY_ADDON_PATH' };
  }
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  let path: string;
  try {
    path = nodeGypBuild.resolve(packageRoot);
  } catch (cause) {
    throw new NativeLoadError(
      `no canopy native addon matches this platform (${process.platform}-${process.arch}, Node ${process.version}): ` +
        `no prebuilt binary in ${join(packageRoot, 'prebuilds')} for it (the package ships prebuilt binaries for ${PREBUILT_PLATFORMS}) ` +
        `and no local build in ${join(packageRoot, 'build', 'Release')}. ` +
        BUILD_HELP,
      { cause },
    );
  }
  return { path, source: path.includes(`${sep}prebuilds${sep}`) ? 'prebuilt' : 'local build' };
}

/** Loads the addon once; throws NativeLoadError (with build instructions) when it cannot. */
export function loadAddon(): LoadedAddon {
  if (loaded) return loaded;
  if (loadError) throw loadError;
  try {
    const { path, source } = resolveAddonPath();
    let addon: NativeAddon;
    try {
      addon = require(path) as NativeAddon;
    } catch (cause) {
      const detail = cause instanceof Error ? cause.message : String(cause);
      throw new NativeLoadError(`the canopy native addon at ${path} failed to load: ${detail}.${loadFailureHint(detail)} ${BUILD_HELP}`, { cause });
    }
    loaded = { addon, path, source };
    return loaded;
  } catch (e) {
    loadError = e instanceof NativeLoadError ? e : new NativeLoadError(String(e), { cause: e });
    throw loadError;
  }
}

/** The addon's functions (loads on first use). */
export function native(): NativeAddon {
  return loadAddon().addon;
}
