#!/usr/bin/env node
// Checks that the packed package installs and loads with no compiler:
//   1. builds the prebuilt binary if prebuilds/ is missing (npm run build:prebuilt);
//   2. npm pack;
//   3. installs the tarball into a fresh temp project with PATH holding only
//      node and npm (no cmake, nvcc, g++, make);
//   4. loads it, checks the addon came from prebuilds/, and runs `canopy info --json`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'canopy-pack-'));

function run(cmd, args, opts = {}) {
  console.error(`> ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
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

try {
  if (!existsSync(join(root, 'prebuilds'))) run('npm', ['run', 'build:prebuilt'], { cwd: root, stdio: 'inherit' });
  const packed = run('npm', ['pack', '--json', '--pack-destination', work], { cwd: root });
  const { filename, size, unpackedSize } = JSON.parse(packed)[0];
  console.error(`packed ${filename}: ${(size / 2 ** 20).toFixed(1)} MiB (${(unpackedSize / 2 ** 20).toFixed(1)} MiB unpacked)`);

  // A PATH with node and npm only.
  const bin = join(work, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(which('npm'), join(bin, 'npm'));
  symlinkSync(which('sh'), join(bin, 'sh')); // npm runs scripts through sh; there must be none to run
  const env = { ...process.env, PATH: bin, npm_config_nodedir: '' };
  delete env.CUDACXX;
  for (const tool of ['cmake', 'nvcc', 'g++', 'gcc', 'make', 'cc']) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } });
    if (r.status === 0) throw new Error(`${tool} is still on the test PATH`);
  }

  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  run(process.execPath, [which('npm'), 'install', '--no-audit', '--no-fund', join(work, filename)], { cwd: app, env });
  const pkgDir = join(app, 'node_modules', 'canopy-llm');
  console.error(`installed files: ${readdirSync(pkgDir).join(' ')}`);

  const check = `
    import { info, Tensor } from 'canopy-llm';
    const i = info();
    if (i.addon.error) throw new Error(i.addon.error);
    if (i.addon.source !== 'prebuilt') throw new Error('addon came from ' + i.addon.source + ', not prebuilds/');
    const t = await Tensor.from(new Float32Array([1, 2.5, -3])).cast('bf16');
    console.log(JSON.stringify({ source: i.addon.source, path: i.addon.path, cuda: i.cuda, cast: Array.from(t.toFloat32()) }));
  `;
  console.log(run(process.execPath, ['--input-type=module', '-e', check], { cwd: app, env }).trim());
  console.log(run(process.execPath, [join(app, 'node_modules', '.bin', 'canopy'), 'info'], { cwd: app, env }).trim());
  // A real model from the installed package, when the shared test models are beside the repo.
  const story = join(root, '..', 'shared', 'models', 'stories260K', 'stories260K.bin');
  if (existsSync(story)) {
    const out = run(process.execPath, [join(app, 'node_modules', '.bin', 'canopy'), 'generate', '--model', story, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '20'], { cwd: app, env });
    if (!out.startsWith('Once upon a time, there was a little girl')) throw new Error(`unexpected generate output: ${out}`);
    console.log(out.trim());
  }

  // Without a matching binary, loading must fail with build instructions.
  rmSync(join(pkgDir, 'prebuilds'), { recursive: true, force: true });
  const missing = spawnSync(process.execPath, [join(app, 'node_modules', '.bin', 'canopy'), 'info'], { cwd: app, env, encoding: 'utf8' });
  if (missing.status === 0 || !/npx canopy build/.test(missing.stdout)) {
    throw new Error(`without prebuilds, canopy info should fail and say how to build; got:\n${missing.stdout}${missing.stderr}`);
  }
  console.log(missing.stdout.split('\n')[1]);
  console.error('check-pack: OK');
} finally {
  rmSync(work, { recursive: true, force: true });
}
