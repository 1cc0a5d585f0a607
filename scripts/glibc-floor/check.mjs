#!/usr/bin/env node
// Checks what a Linux binary needs from the system at run time:
//   node scripts/glibc-floor/check.mjs [--floor 2.28] [--json] FILE...
// Fails (exit 1, each problem printed) when FILE needs a glibc symbol version newer than
// the floor, any libstdc++/libgcc_s version (GLIBCXX_, CXXABI_, GCC_: the C++ runtime must
// be linked statically), libstdc++.so or libgcc_s.so at all, or an undefined symbol with
// no version other than Node's own napi_* (which would bind to whatever the loader finds).
// Reads `readelf -V` (version needs) and `readelf --dyn-syms` (undefined symbols).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { compareVersions } from './versions.mjs';

/** The run-time needs of `file`: libraries, version needs per library, unversioned undefined symbols, exports. */
export function readNeeds(file) {
  const readelf = (args) => {
    const r = spawnSync('readelf', [...args, '--wide', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.error || r.status !== 0) throw new Error(`readelf ${args.join(' ')} ${file}: ${r.error?.message ?? r.stderr}`);
    return r.stdout;
  };
  const dynamic = readelf(['-d']);
  const libraries = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const versionsText = readelf(['-V']);
  const needsSection = versionsText.split(/Version needs section/)[1] ?? '';
  const versionNeeds = {}; // library -> [version names]
  let current = null;
  for (const line of needsSection.split('\n')) {
    const file = /File: (\S+)/.exec(line);
    if (file) {
      current = file[1];
      versionNeeds[current] = [];
      continue;
    }
    const name = /Name: (\S+)/.exec(line);
    if (name && current) versionNeeds[current].push(name[1]);
  }
  const undefinedUnversioned = [];
  const exported = [];
  for (const line of readelf(['--dyn-syms']).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^\d+:$/.test(f[0])) continue;
    const [, , , type, bind, , ndx, name] = f;
    if (ndx === 'UND') {
      if (!name.includes('@') && bind !== 'WEAK') undefinedUnversioned.push(name);
    } else if ((bind === 'GLOBAL' || bind === 'WEAK') && type !== 'SECTION') {
      exported.push(name.replace(/@.*/, ''));
    }
  }
  return { file, libraries, versionNeeds, undefinedUnversioned, exported };
}

/** The newest GLIBC_ version in `needs`, or null. */
export function newestGlibc(needs) {
  const all = Object.values(needs.versionNeeds)
    .flat()
    .filter((v) => v.startsWith('GLIBC_') && v !== 'GLIBC_PRIVATE')
    .map((v) => v.slice('GLIBC_'.length));
  return all.sort(compareVersions).at(-1) ?? null;
}

/** Node provides these to addons: the only undefined symbols allowed without a version. */
const NODE_SYMBOL = /^(napi_|node_api_)/;
/** An addon exports its N-API entry points and nothing else. */
const ADDON_EXPORT = /^(napi_register_module_v1|node_api_module_get_api_version_v1|_init|_fini)$/;

/** The problems in `needs` against the floor (empty when it is within). */
export function floorProblems(needs, floor) {
  const problems = [];
  for (const lib of needs.libraries) {
    if (/^(libstdc\+\+|libgcc_s)\./.test(lib)) problems.push(`needs ${lib} (the C++ runtime must be linked statically)`);
  }
  for (const [lib, versions] of Object.entries(needs.versionNeeds)) {
    for (const v of versions) {
      const glibc = /^GLIBC_([0-9.]+)$/.exec(v);
      if (glibc && compareVersions(glibc[1], floor) > 0) problems.push(`needs ${v} from ${lib} (newer than the floor GLIBC_${floor})`);
      if (/^(GLIBCXX|CXXABI|GCC)_/.test(v)) problems.push(`needs ${v} from ${lib} (the C++ runtime must be linked statically)`);
      if (v === 'GLIBC_PRIVATE') problems.push(`needs GLIBC_PRIVATE from ${lib}`);
    }
  }
  const stray = needs.undefinedUnversioned.filter((s) => !NODE_SYMBOL.test(s));
  if (stray.length) problems.push(`undefined symbols with no version (not provided by Node): ${stray.slice(0, 20).join(', ')}${stray.length > 20 ? ', ...' : ''}`);
  const leaked = needs.exported.filter((s) => !ADDON_EXPORT.test(s));
  if (leaked.length) problems.push(`exports ${leaked.length} symbols besides the N-API entry points (static libraries not hidden?): ${leaked.slice(0, 10).join(', ')}`);
  return problems;
}

function main() {
  const args = process.argv.slice(2);
  let floor = '2.28';
  let json = false;
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--floor') floor = args[++i];
    else if (args[i] === '--json') json = true;
    else files.push(args[i]);
  }
  if (files.length === 0) {
    console.error('usage: check.mjs [--floor 2.28] [--json] FILE...');
    process.exitCode = 2;
    return;
  }
  let failed = false;
  const reports = [];
  for (const file of files) {
    const needs = readNeeds(file);
    const problems = floorProblems(needs, floor);
    failed ||= problems.length > 0;
    const { exported, ...rest } = needs; // thousands for a C++ library: a count and a sample
    reports.push({ ...rest, exportedCount: exported.length, exportedSample: exported.slice(0, 10), floor, newestGlibc: newestGlibc(needs), problems });
    if (!json) {
      console.error(`${file}: newest glibc need GLIBC_${newestGlibc(needs)} (floor ${floor}); needs ${needs.libraries.join(' ')}`);
      for (const p of problems) console.error(`  ${p}`);
    }
  }
  if (json) console.log(JSON.stringify(reports, null, 2));
  process.exitCode = failed ? 1 : 0; // not process.exit(): a piped stdout must drain first
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
