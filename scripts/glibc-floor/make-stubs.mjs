#!/usr/bin/env node
// Generates link-time stand-ins for glibc's shared libraries that offer only the
// symbol versions of an older glibc (the "floor", default 2.28), so that a binary
// linked against them on a newer system runs on every glibc >= the floor.
//
//   node scripts/glibc-floor/make-stubs.mjs --out DIR [--floor 2.28] [--cxx g++]
//
// How: for every symbol the system's libc.so.6, libm.so.6 and ld-linux export, keep
// the newest version <= the floor (exp@GLIBC_2.2.5, not exp@@GLIBC_2.29; pthread_create
// @GLIBC_2.2.5, not @@GLIBC_2.34) and drop symbols with no such version (stat@@2.33,
// __libc_single_threaded@@2.32: csrc/compat/glibc_floor.cc defines those locally).
// Each stub is an empty shared library (SONAME libc.so.6, ...) whose version script
// makes that old version the default, so the linker records it. Symbols that moved
// into libc in glibc 2.34 (pthread_*, sem_*, dl*, shm_*, ...) go back to the library
// that held them before (libpthread.so.0, libdl.so.2, librt.so.1), as a binary built on
// the old glibc would name them; those libraries still exist (as stubs) on new glibc.
// The stubs are only linked against, never loaded. DIR also gets libc.so, libm.so,
// libpthread.so, libdl.so and librt.so linker scripts, so `-L DIR` makes -lc, -lm,
// -lpthread, -ldl and -lrt pick them up before the system's.
//
// Exit status 2 (with the reason on stderr) when the toolchain is not glibc on Linux.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

import { compareVersions } from './versions.mjs';

function parseArgs(argv) {
  const opts = { floor: '2.28', cxx: process.env.CXX || 'g++', out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') opts.out = argv[++i];
    else if (a === '--floor') opts.floor = argv[++i];
    else if (a === '--cxx') opts.cxx = argv[++i];
    else throw new Error(`make-stubs: unknown argument ${a}`);
  }
  if (!opts.out) throw new Error('make-stubs: --out DIR is required');
  opts.out = resolve(opts.out);
  return opts;
}

function unsupported(reason) {
  console.error(`make-stubs: ${reason}`);
  process.exit(2);
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

/** The files named in a GNU ld script (GROUP/INPUT/AS_NEEDED), or null when `path` is an ELF file. */
function ldScriptFiles(path) {
  const text = readFileSync(path).subarray(0, 4096).toString('latin1');
  if (text.startsWith('\x7fELF')) return null;
  const body = text.replace(/\/\*[\s\S]*?\*\//g, '');
  return [...body.matchAll(/[^\s()]+/g)].map((m) => m[0]).filter((w) => w.startsWith('/'));
}

/** Exported symbols of a shared library: name -> {versions: [{version, isDefault}], type, size}. */
function exportedSymbols(lib) {
  const out = run('readelf', ['--dyn-syms', '--wide', lib]);
  const symbols = new Map();
  for (const line of out.split('\n')) {
    // Num: Value Size Type Bind Vis Ndx Name
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^\d+:$/.test(f[0])) continue;
    const [, , sizeText, type, bind, , ndx, full] = f;
    if (ndx === 'UND' || ndx === 'ABS' || (bind !== 'GLOBAL' && bind !== 'WEAK')) continue;
    const m = /^([^@]+)(@@?)(GLIBC_[0-9.]+)$/.exec(full);
    if (!m) continue; // GLIBC_PRIVATE and unversioned symbols
    const [, name, at, version] = m;
    const size = sizeText.startsWith('0x') ? parseInt(sizeText, 16) : Number(sizeText);
    let s = symbols.get(name);
    if (!s) symbols.set(name, (s = { versions: [], type, size }));
    s.versions.push({ version: version.slice('GLIBC_'.length), isDefault: at === '@@' });
    if (at === '@@') Object.assign(s, { type, size });
  }
  return symbols;
}

/** Versions a library defines (readelf -V, the verdef section). */
function definedVersions(lib) {
  const out = run('readelf', ['-V', '--wide', lib]);
  const section = out.split(/Version needs section/)[0];
  return new Set([...section.matchAll(/Name: GLIBC_([0-9.]+)/g)].map((m) => m[1]));
}

// Where the symbols that glibc 2.34 moved into libc lived before.
const MOVED_HOME = [
  [/^(pthread_|__pthread_|_pthread_|sem_|thrd_|cnd_|mtx_|tss_|call_once$|__libpthread)/, 'libpthread.so.0'],
  [/^(dl|_dl_)/, 'libdl.so.2'],
  [/^(shm_|mq_|__mq_|aio_|lio_|timer_)/, 'librt.so.1'],
];

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (process.platform !== 'linux') unsupported(`not Linux (${process.platform})`);
  const printed = (name) => run(opts.cxx, [`-print-file-name=${name}`]).trim();
  const libcScript = printed('libc.so');
  if (!isAbsolute(libcScript) || !existsSync(libcScript)) unsupported(`${opts.cxx} finds no libc.so (not a glibc toolchain?)`);
  const libcFiles = ldScriptFiles(libcScript);
  if (!libcFiles) unsupported(`${libcScript} is not a GNU ld script (not glibc?)`);
  const libc = libcFiles.find((f) => /\/libc\.so\.6$/.test(f));
  const nonshared = libcFiles.find((f) => /libc_nonshared\.a$/.test(f));
  const ldso = libcFiles.find((f) => /\/ld-linux[^/]*\.so\.\d+$/.test(f));
  if (!libc || !ldso) unsupported(`${libcScript} names no libc.so.6 or ld-linux (not glibc?)`);
  const libmScript = printed('libm.so');
  // x86-64: a linker script naming libm.so.6 (and libmvec); aarch64: a link to libm.so.6 itself.
  const libm = (ldScriptFiles(libmScript) ?? [realpathSync(libmScript)]).find((f) => /\/libm\.so\.6$/.test(f));
  if (!libm) unsupported(`cannot find libm.so.6 from ${libmScript}`);

  const libcSymbols = exportedSymbols(libc);
  const glibcVersion = [...libcSymbols.values()].flatMap((s) => s.versions.map((v) => v.version)).sort(compareVersions).at(-1);
  if (compareVersions(glibcVersion, opts.floor) < 0) unsupported(`the system glibc (${glibcVersion}) is older than the floor ${opts.floor}`);

  const libDir = join(libc, '..');
  const homes = new Map(); // soname -> Map(name -> {version, type, size})
  const add = (soname, name, sym, version) => {
    if (!homes.has(soname)) homes.set(soname, new Map());
    homes.get(soname).set(name, { version, type: sym.type, size: sym.size });
  };
  const floorVersion = (sym) =>
    sym.versions
      .map((v) => v.version)
      .filter((v) => compareVersions(v, opts.floor) <= 0)
      .sort(compareVersions)
      .at(-1);

  const movedVersions = new Map(); // soname -> versions the real compat library defines
  for (const [, soname] of MOVED_HOME) {
    const real = join(libDir, soname);
    movedVersions.set(soname, existsSync(real) ? definedVersions(real) : new Set());
  }
  let dropped = 0;
  for (const [name, sym] of libcSymbols) {
    const version = floorVersion(sym);
    if (!version) continue; // newer than the floor: not offered
    const moved = sym.versions.some((v) => v.version === '2.34') && sym.versions.some((v) => compareVersions(v.version, '2.34') < 0);
    if (!moved || name === '__libc_start_main') {
      add('libc.so.6', name, sym, version);
      continue;
    }
    const home = MOVED_HOME.find(([re]) => re.test(name))?.[1];
    if (home && movedVersions.get(home).has(version)) add(home, name, sym, version);
    else dropped++; // moved from libutil, libanl, libresolv...: not offered
  }
  // On glibc < 2.34 hosts these libraries still hold their own symbols (on newer ones, placeholders).
  for (const [, soname] of MOVED_HOME) {
    const real = join(libDir, soname);
    if (!existsSync(real)) continue;
    for (const [name, sym] of exportedSymbols(real)) {
      const version = floorVersion(sym);
      if (version && !homes.get('libc.so.6')?.has(name) && !homes.get(soname)?.has(name)) add(soname, name, sym, version);
    }
  }
  for (const [name, sym] of exportedSymbols(libm)) {
    const version = floorVersion(sym);
    if (version) add('libm.so.6', name, sym, version);
  }
  const ldName = ldso.split('/').at(-1);
  for (const [name, sym] of exportedSymbols(ldso)) {
    const version = floorVersion(sym);
    if (version) add(ldName, name, sym, version);
  }

  mkdirSync(opts.out, { recursive: true });
  for (const soname of ['libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', ldName]) {
    buildStub(opts, soname, homes.get(soname) ?? new Map());
  }
  const stub = (f) => join(opts.out, f);
  const script = (body) => `/* GNU ld script: glibc ${opts.floor} link-time stubs (scripts/glibc-floor/make-stubs.mjs) */\n${body}\n`;
  writeFileSync(
    stub('libc.so'),
    script(
      `GROUP ( ${stub('libc.so.6')} ${nonshared ?? ''} AS_NEEDED ( ${stub('libpthread.so.0')} ${stub('libdl.so.2')} ${stub('librt.so.1')} ${stub(ldName)} ) )`,
    ),
  );
  writeFileSync(stub('libm.so'), script(`GROUP ( ${stub('libm.so.6')} )`));
  for (const [link, soname] of [['libpthread.so', 'libpthread.so.0'], ['libdl.so', 'libdl.so.2'], ['librt.so', 'librt.so.1']]) {
    writeFileSync(stub(link), script(`INPUT ( ${stub(soname)} )`));
  }
  const counts = [...homes].map(([s, m]) => `${s} ${m.size}`).join(', ');
  console.log(`make-stubs: glibc ${glibcVersion} -> floor ${opts.floor} in ${opts.out} (${counts}; ${dropped} moved symbols without an old home dropped)`);
}

/** Assembles an empty shared library defining `symbols` at their chosen versions. */
function buildStub(opts, soname, symbols) {
  const asm = ['/* generated by scripts/glibc-floor/make-stubs.mjs */', '.text'];
  const data = ['.data'];
  const byVersion = new Map();
  for (const [name, s] of [...symbols].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!byVersion.has(s.version)) byVersion.set(s.version, []);
    byVersion.get(s.version).push(name);
    if (s.type === 'OBJECT' || s.type === 'TLS') {
      const size = Math.max(s.size, 1);
      data.push(`.globl ${name}`, `.type ${name},@object`, `.size ${name},${size}`, `${name}:`, `.zero ${size}`);
    } else {
      asm.push(`.globl ${name}`, `.type ${name},@function`, `${name}:`, 'ret');
    }
  }
  const versions = [...byVersion.keys()].sort(compareVersions);
  const map = versions.map((v, i) => `GLIBC_${v} {\n  global:\n${byVersion.get(v).map((n) => `    ${n};`).join('\n')}\n${i === 0 ? '  local: *;\n' : ''}};`);
  if (versions.length === 0) map.push(`GLIBC_2.2.5 { local: *; };`); // a library with only its version nodes
  const base = join(opts.out, soname);
  writeFileSync(`${base}.s`, [...asm, ...data, ''].join('\n'));
  writeFileSync(`${base}.map`, map.join('\n') + '\n');
  run(opts.cxx, ['-shared', '-nostdlib', '-x', 'assembler', `${base}.s`, `-Wl,--version-script=${base}.map`, `-Wl,-soname,${soname}`, '-o', base]);
}

try {
  main();
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
}
