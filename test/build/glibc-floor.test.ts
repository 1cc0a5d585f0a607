/**
 * The Linux x86-64 addon runs on glibc >= 2.28 with no libstdc++: it needs no glibc symbol
 * version above the floor, no GLIBCXX/CXXABI/GCC version, no libstdc++.so or libgcc_s.so,
 * and exports only its N-API entry points (scripts/glibc-floor/check.mjs reads readelf).
 * Checks the local build (when CMake built it portable: build/canopy-portable.json) and
 * every prebuilt linux-x64 binary in prebuilds/; likewise the cross-compiled linux-arm64
 * binaries (readelf reads them on this host): prebuilds/linux-arm64/, the cross build in
 * build-arm64/ (node scripts/build-native.mjs --arch arm64 --out build-arm64) and
 * CANOPY_ARM64_ADDON (scripts/test-arm64.mjs sets it to the binary it runs under qemu).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const checker = join(root, 'scripts', 'glibc-floor', 'check.mjs');
const hasReadelf = spawnSync('readelf', ['--version']).status === 0;
const linuxX64 = process.platform === 'linux' && process.arch === 'x64';
const skipReason = !linuxX64 ? `not x86-64 Linux (${process.platform}-${process.arch})` : !hasReadelf ? 'readelf not found' : null;
if (skipReason) console.log(`glibc floor tests skipped: ${skipReason}`);

interface Report {
  file: string;
  libraries: string[];
  versionNeeds: Record<string, string[]>;
  newestGlibc: string | null;
  problems: string[];
}

function check(file: string, floor = '2.28'): { status: number; reports: Report[] } {
  const r = spawnSync(process.execPath, [checker, '--json', '--floor', floor, file], { encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 1) throw new Error(`check.mjs failed: ${r.stderr}`);
  return { status: r.status, reports: JSON.parse(r.stdout) as Report[] };
}

const localAddon = join(root, 'build', 'Release', 'canopy.node');
const marker = join(root, 'build', 'canopy-portable.json');
const localPortable = existsSync(marker) ? (JSON.parse(readFileSync(marker, 'utf8')) as { portable: boolean; reason?: string }) : null;
const prebuildDir = join(root, 'prebuilds', 'linux-x64');
const prebuilt = existsSync(prebuildDir) ? readdirSync(prebuildDir).filter((f) => f.endsWith('.node')).map((f) => join(prebuildDir, f)) : [];
const arm64Dir = join(root, 'prebuilds', 'linux-arm64');
const arm64Build = join(root, 'build-arm64', 'Release', 'canopy.node');
const arm64Marker = join(root, 'build-arm64', 'canopy-portable.json');
const arm64Binaries = [
  ...(existsSync(arm64Dir) ? readdirSync(arm64Dir).filter((f) => f.endsWith('.node')).map((f) => join(arm64Dir, f)) : []),
  ...(existsSync(arm64Build) && existsSync(arm64Marker) && (JSON.parse(readFileSync(arm64Marker, 'utf8')) as { portable: boolean }).portable ? [arm64Build] : []),
  ...(process.env.CANOPY_ARM64_ADDON ? [process.env.CANOPY_ARM64_ADDON] : []),
];

describe.skipIf(skipReason !== null)('glibc floor', () => {
  it('the checker flags what a non-portable library needs (negative control: the system libstdc++)', () => {
    const lib = spawnSync('g++', ['-print-file-name=libstdc++.so.6'], { encoding: 'utf8' }).stdout?.trim();
    if (!lib || !existsSync(lib)) return void console.log('no system libstdc++.so.6 to check against');
    const { status, reports } = check(lib);
    expect(status).toBe(1);
    const problems = reports[0]!.problems.join('\n');
    expect(problems).toMatch(/libgcc_s/);
    // A floor below what it needs is flagged; the same file against its own newest need is not (for glibc).
    const newest = reports[0]!.newestGlibc!;
    expect(problems).toContain(`GLIBC_${newest}`);
    expect(check(lib, newest).reports[0]!.problems.some((p) => p.includes('newer than the floor'))).toBe(false);
  });

  it.runIf(localPortable?.portable === true && existsSync(localAddon))('the local build (build/Release/canopy.node)', () => {
    const { status, reports } = check(localAddon);
    const r = reports[0]!;
    console.log(`build/Release/canopy.node: newest glibc need GLIBC_${r.newestGlibc}; needs ${r.libraries.join(' ')}`);
    expect(r.problems).toEqual([]);
    expect(status).toBe(0);
    expect(r.libraries.filter((l) => /libstdc\+\+|libgcc_s/.test(l))).toEqual([]);
  });

  it.runIf(prebuilt.length > 0)('the prebuilt binaries (prebuilds/linux-x64)', () => {
    for (const file of prebuilt) {
      const r = check(file).reports[0]!;
      console.log(`${file}: newest glibc need GLIBC_${r.newestGlibc}`);
      expect(r.problems, file).toEqual([]);
    }
  });

  it.runIf(arm64Binaries.length > 0)('the linux-arm64 binaries (prebuilds/linux-arm64, build-arm64, CANOPY_ARM64_ADDON)', () => {
    for (const file of arm64Binaries) {
      const header = spawnSync('readelf', ['-h', file], { encoding: 'utf8' }).stdout;
      expect(header, file).toMatch(/Machine:\s+AArch64/);
      const r = check(file).reports[0]!;
      console.log(`${file}: newest glibc need GLIBC_${r.newestGlibc}; needs ${r.libraries.join(' ')}`);
      expect(r.problems, file).toEqual([]);
      expect(r.libraries.filter((l) => /libstdc\+\+|libgcc_s/.test(l)), file).toEqual([]);
    }
  });

  it('says why the local build is not checked, if it is not', () => {
    if (localPortable?.portable !== true) {
      const why = localPortable ? `CMake built it non-portable: ${localPortable.reason}` : 'no build/canopy-portable.json (not a CMake build)';
      console.log(`build/Release/canopy.node not checked: ${why}`);
      // CI asks for a portable build; there, falling back is a failure, not a skip.
      expect(process.env.CANOPY_REQUIRE_PORTABLE, why).not.toBe('1');
    }
  });
});
