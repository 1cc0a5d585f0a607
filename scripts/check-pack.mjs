#!/usr/bin/env node
// Proves the packed package works for a new user (CI runs this: .ci/run):
//   1. npm pack (its prepack step builds prebuilds/; CANOPY_PREBUILD_CPU_ONLY=1 for a fast
//      CPU-only one); the tarball holds the prebuilt binary, no binding.gyp at its root and
//      no install script;
//   2. installs the tarball into a fresh temp project with PATH holding only node and npm
//      (no cmake, nvcc, g++, make): dependencies come from the registry, nothing is built;
//   3. loads it (the addon from prebuilds/), runs `canopy info`, and generates text from
//      stories260K (CANOPY_TEST_MODELS or ../shared/models) with the CLI and the API;
//   4. without the prebuilt binary, loading fails with ERR_CANOPY_NATIVE_LOAD and says how to build;
//   5. (--build, the default: node-gyp,cmake-js; --build=none skips) builds from source in the
//      installed package with the full PATH: `npx canopy build --node-gyp` (node-gyp bundled
//      with npm) and `npx canopy build --cpu-only` (cmake-js, installed on demand), each
//      then generating the same text.
// Prints the tarball size and the time of each step.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildArg = process.argv.find((a) => a.startsWith('--build='))?.slice('--build='.length) ?? 'node-gyp,cmake-js';
const builds = buildArg === 'none' ? [] : buildArg.split(',');
const keep = process.argv.includes('--keep');
const work = mkdtempSync(join(tmpdir(), 'canopy-pack-'));
const started = Date.now();
const timings = [];
const EXPECTED = 'Once upon a time, there was a little girl named Lily.';

function step(name, fn) {
  const t0 = Date.now();
  console.error(`\n== ${name}`);
  const r = fn();
  timings.push(`${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

function run(cmd, args, opts = {}) {
  console.error(`> ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    console.error(r.stdout, r.stderr);
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}`);
  }
  return r.stdout;
}

function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim();
}

const modelsDir = process.env.CANOPY_TEST_MODELS ?? resolve(root, '..', 'shared', 'models');
const story = join(modelsDir, 'stories260K', 'stories260K.bin');
if (!existsSync(story)) {
  console.error(`check-pack: ${story} not found: set CANOPY_TEST_MODELS to the test models folder (see ../shared/models/README.md)`);
  process.exit(1);
}

// npm run check:pack sets these for this package; the temp project is another package.
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_package_|npm_lifecycle_|INIT_CWD$)/.test(k)));

try {
  const { filename, size, unpackedSize, files } = step('npm pack', () => {
    const packed = run('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, env: baseEnv, stdio: ['ignore', 'pipe', 'inherit'] });
    return JSON.parse(packed)[0];
  });
  const paths = files.map((f) => f.path);
  console.error(`packed ${filename}: ${(size / 2 ** 20).toFixed(1)} MiB (${(unpackedSize / 2 ** 20).toFixed(1)} MiB unpacked, ${paths.length} files)`);
  const binaries = paths.filter((p) => /^prebuilds\/[^/]+\/[^/]+\.node$/.test(p));
  if (binaries.length === 0) throw new Error('the tarball holds no prebuilds/<platform>-<arch>/*.node');
  console.error(`prebuilt: ${binaries.join(' ')}`);
  // CANOPY_PREBUILD_ARM64=1 (CI with the cross toolchain): prepack had to build the arm64 binary too.
  if (process.env.CANOPY_PREBUILD_ARM64 === '1' && !binaries.some((p) => p.startsWith('prebuilds/linux-arm64/'))) {
    throw new Error('CANOPY_PREBUILD_ARM64=1 but the tarball holds no prebuilds/linux-arm64/*.node');
  }
  if (paths.includes('binding.gyp')) throw new Error('binding.gyp at the package root: npm gives such a package a `node-gyp rebuild` install script');
  const packedPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const installScripts = ['preinstall', 'install', 'postinstall'].filter((s) => packedPkg.scripts?.[s]);
  if (installScripts.length) throw new Error(`the package has install scripts: ${installScripts.join(', ')}`);

  // A PATH with node and npm only.
  const bin = join(work, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(which('npm'), join(bin, 'npm'));
  symlinkSync(which('npx'), join(bin, 'npx'));
  symlinkSync(which('sh'), join(bin, 'sh')); // npm runs scripts through sh; there must be none to run
  const bare = { ...baseEnv, PATH: bin };
  delete bare.CUDACXX;
  for (const tool of ['cmake', 'nvcc', 'g++', 'gcc', 'c++', 'cc', 'make', 'clang']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } }).status === 0) throw new Error(`${tool} is still on the test PATH`);
  }

  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  step('npm install <tarball> (node and npm only on PATH)', () =>
    run(process.execPath, [which('npm'), 'install', '--no-audit', '--no-fund', join(work, filename)], { cwd: app, env: bare }),
  );
  const pkgDir = join(app, 'node_modules', 'canopy-llm');
  console.error(`installed: ${readdirSync(pkgDir).join(' ')}`);
  // npm marks a package it would run an install script for (scripts, or a binding.gyp at its root).
  const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8'));
  if (lock.packages?.['node_modules/canopy-llm']?.hasInstallScript) throw new Error('npm lists canopy-llm with an install script (hasInstallScript)');
  const canopy = join(app, 'node_modules', '.bin', 'canopy');

  // The API: where the addon came from, a kernel, and greedy text from stories260K.
  const apiCheck = (expectSource) => `
    import { info, loadModel, generate, Tensor } from 'canopy-llm';
    const i = info();
    if (i.addon.error) throw new Error(i.addon.error);
    if (i.addon.source !== ${JSON.stringify(expectSource)}) throw new Error('addon came from ' + i.addon.source + ' (' + i.addon.path + '), expected ${expectSource}');
    const t = await Tensor.from(new Float32Array([1, 2.5, -3])).cast('bf16');
    const { model, tokenizer } = await loadModel(${JSON.stringify(story)});
    const r = await generate({ model, tokenizer, prompt: 'Once upon a time', maxTokens: 20, temperature: 0 });
    model.dispose();
    console.log(JSON.stringify({ source: i.addon.source, path: i.addon.path, cudaCompiled: i.cuda.compiled, cast: Array.from(t.toFloat32()), text: r.text }));
  `;
  const checkGenerate = (label, expectSource, env) => {
    const api = JSON.parse(run(process.execPath, ['--input-type=module', '-e', apiCheck(expectSource)], { cwd: app, env }).trim());
    if (!api.text.includes(EXPECTED.slice('Once upon a time'.length))) throw new Error(`${label}: unexpected generate() text: ${JSON.stringify(api.text)}`);
    const cli = run(process.execPath, [canopy, 'generate', '--model', story, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '20'], { cwd: app, env });
    if (!cli.startsWith(EXPECTED)) throw new Error(`${label}: unexpected canopy generate output: ${cli}`);
    console.error(`${label}: addon ${api.path} (${api.source}, CUDA compiled ${api.cudaCompiled}); generate: ${cli.trim().slice(0, 80)}...`);
  };
  step('load the prebuilt binary and generate (no compiler on PATH)', () => {
    console.error(run(process.execPath, [canopy, 'info'], { cwd: app, env: bare }).trim());
    checkGenerate('prebuilt', 'prebuilt', bare);
  });

  step('without a matching binary: ERR_CANOPY_NATIVE_LOAD with build instructions', () => {
    rmSync(join(pkgDir, 'prebuilds'), { recursive: true, force: true });
    const missing = spawnSync(process.execPath, [canopy, 'info'], { cwd: app, env: bare, encoding: 'utf8' });
    if (missing.status === 0 || !/npx canopy build/.test(missing.stdout + missing.stderr)) {
      throw new Error(`without prebuilds, canopy info should fail and say how to build; got:\n${missing.stdout}${missing.stderr}`);
    }
    const api = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `import { loadModel } from 'canopy-llm'; try { await loadModel(${JSON.stringify(story)}); console.log('loaded'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`],
      { cwd: app, env: bare, encoding: 'utf8' },
    );
    const err = JSON.parse(api.stdout.trim());
    if (err.code !== 'ERR_CANOPY_NATIVE_LOAD' || !/npx canopy build/.test(err.message)) {
      throw new Error(`loadModel without a binary should reject with ERR_CANOPY_NATIVE_LOAD and build instructions; got ${api.stdout}${api.stderr}`);
    }
    console.error(`loadModel: ${err.code}: ${err.message.slice(0, 160)}...`);
  });

  const full = { ...baseEnv };
  delete full.CANOPY_ADDON_PATH;
  // node-gyp needs Node's headers: the local installation's, or a download from nodejs.org
  // (which CI cannot reach: only the npm registry).
  const localHeaders = existsSync(join(dirname(dirname(process.execPath)), 'include', 'node', 'common.gypi'));
  if (builds.includes('node-gyp') && !localHeaders) {
    console.error(`\n== [skip] npx canopy build --node-gyp: this Node.js (${process.execPath}) has no headers installed, and node-gyp would download them`);
  } else if (builds.includes('node-gyp')) {
    step('npx canopy build --node-gyp in the installed package', () => {
      run(process.execPath, [canopy, 'build', '--node-gyp'], { cwd: app, env: full, stdio: ['ignore', 'inherit', 'inherit'] });
      checkGenerate('node-gyp build', 'local build', full);
    });
  }
  if (builds.includes('cmake-js')) {
    step('npx canopy build --cpu-only in the installed package (cmake-js installed on demand)', () => {
      rmSync(join(pkgDir, 'build'), { recursive: true, force: true });
      run(process.execPath, [canopy, 'build', '--cpu-only'], { cwd: app, env: full, stdio: ['ignore', 'inherit', 'inherit'] });
      if (!existsSync(join(pkgDir, '.build-tools', 'node_modules', 'cmake-js'))) throw new Error('cmake-js was not installed into .build-tools/');
      checkGenerate('cmake-js build', 'local build', full);
    });
  }
  console.error(`\ncheck-pack: OK in ${((Date.now() - started) / 1000).toFixed(0)} s (${(size / 2 ** 20).toFixed(1)} MiB tarball)\n  ${timings.join('\n  ')}`);
} finally {
  if (keep) console.error(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
