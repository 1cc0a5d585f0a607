/**
 * The bench peers' plumbing, without the peers themselves (neither node-llama-cpp nor torch
 * is installed here): PyTorch output parsing on canned JSON and every way running the script
 * can fail; the llama.cpp job loop against a stand-in node-llama-cpp module; where peers are
 * looked for; greedy agreement. No timing is asserted.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

import { afterAll, describe, expect, it } from 'vitest';

import {
  WORKER_RESULT_MARKER,
  compareGreedy,
  findNodeLlamaCpp,
  llamaCppStatus,
  parseWorkerOutput,
  peersDir,
  prebuiltPackage,
  runLlamaCppJobs,
  runLlamaCppWorker,
} from '../../lib/bench/peers/llama-cpp.js';
import { type TorchJob, parseTorchPeerOutput, runTorchPeers, torchScriptPath } from '../../lib/bench/peers/torch.js';
import { torchPeersFor } from '../../lib/bench/run.js';

const tmp = mkdtempSync(join(tmpdir(), 'canopy-peers-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** What torch_peers.py prints on a GPU machine (shape as documented in the script). */
const CANNED = {
  ok: true,
  torch: '2.5.1+cu124',
  transformers: '4.46.3',
  cuda: '12.4',
  device: 'NVIDIA H100 80GB HBM3',
  results: [
    { id: 'attention:prefill:4096:bf16', peer: 'torch sdpa flash', medianMs: 2.5, p10Ms: 2.4, p90Ms: 2.7, repeats: 80 },
    { id: 'attention:prefill:4096:bf16', peer: 'torch sdpa cudnn', medianMs: 2.0, p10Ms: 1.9, p90Ms: 2.1, repeats: 90 },
    { id: 'attention:decode:16x8192', peer: 'torch sdpa cudnn', error: 'RuntimeError: No available kernel. Aborting execution.' },
    { id: 'generate:smollm-135m', peer: 'transformers generate', medianMs: 20, p10Ms: 19, p90Ms: 22, repeats: 3, notes: { 'tokens/s': 50, 'TTFT ms': 30, junk: { nested: true } } },
    { id: 'generate:smollm-135m', peer: 'transformers assisted (draft: first 4 layers)', medianMs: 25, repeats: 3, notes: { 'same tokens as plain': 'yes' } },
    { id: 'x', peer: 'torch sdpa flash', medianMs: -1 }, // dropped: not a time
    { peer: 'no id' }, // dropped
    'not an object', // dropped
  ],
};

describe('PyTorch peer output', () => {
  it('parses the canned JSON after any noise lines; drops malformed results and non-scalar notes', () => {
    const out = parseTorchPeerOutput(`UserWarning: something\n{not json either\n${JSON.stringify(CANNED)}\n`);
    expect(out.ok).toBe(true);
    if (!out.ok) return;
    expect(out.torch).toBe('2.5.1+cu124');
    expect(out.transformers).toBe('4.46.3');
    expect(out.device).toBe('NVIDIA H100 80GB HBM3');
    expect(out.results.map((r) => r.peer)).toEqual([
      'torch sdpa flash',
      'torch sdpa cudnn',
      'torch sdpa cudnn',
      'transformers generate',
      'transformers assisted (draft: first 4 layers)',
    ]);
    expect(out.results[2]).toEqual({ id: 'attention:decode:16x8192', peer: 'torch sdpa cudnn', error: 'RuntimeError: No available kernel. Aborting execution.' });
    expect(out.results[3]!.notes).toEqual({ 'tokens/s': 50, 'TTFT ms': 30 });
  });

  it.each([
    ['', /printed no JSON/],
    ['{"ok": tru', /malformed JSON/],
    ['{"ok": false, "reason": "torch is not importable"}', /^torch is not importable$/],
    ['{"ok": false}', /gave no reason/],
    ['{"results": []}', /no "ok" field/],
    ['{"ok": true}', /no "results" array/],
    ['[1, 2]', /no JSON/],
  ])('turns %j into a reason', (text, reason) => {
    const out = parseTorchPeerOutput(text);
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.reason).toMatch(reason);
  });

  it('attaches results to rows as peers: speedup = peer time / canopy time, errors as absences', () => {
    const out = parseTorchPeerOutput(JSON.stringify(CANNED));
    const jobs = [{ id: 'attention:prefill:4096:bf16' }, { id: 'attention:decode:16x8192' }] as TorchJob[];
    const peers = torchPeersFor(jobs, out, 1.25);
    expect(peers).toEqual([
      { name: 'torch sdpa flash', medianMs: 2.5, speedup: 2 },
      { name: 'torch sdpa cudnn', medianMs: 2.0, speedup: 1.6 },
      { name: 'torch sdpa cudnn', absent: 'RuntimeError: No available kernel. Aborting execution.' },
    ]);
    expect(torchPeersFor([{ id: 'nothing' }] as TorchJob[], out, 1)).toEqual([{ name: 'PyTorch', absent: 'torch_peers.py returned nothing for this row' }]);
    expect(torchPeersFor(jobs, { ok: false, reason: 'no torch' }, 1)).toEqual([{ name: 'PyTorch', absent: 'no torch' }]);
  });

  // The runner with node standing in for python3 (the script path is just an argument).
  const fake = (name: string, body: string) => {
    const p = join(tmp, name);
    writeFileSync(p, body);
    return p;
  };
  const run = (script: string, timeoutMs = 20_000, python = process.execPath) => runTorchPeers([], { device: 0, budgetMs: 10, timeoutMs, python, script });

  it('runs the script with the jobs on stdin and parses what it prints', async () => {
    const script = fake('echo.mjs', `let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const r=JSON.parse(s);console.log('noise');console.log(JSON.stringify({ok:true,torch:'t',results:[{id:'budget',peer:'p',medianMs:r.budgetMs}]}))})`);
    const out = await run(script);
    expect(out).toEqual({ ok: true, torch: 't', results: [{ id: 'budget', peer: 'p', medianMs: 10 }] });
  });

  it('skips with a reason when python is missing, the script is missing, crashes, or hangs', async () => {
    const missing = await run(torchScriptPath(), 20_000, join(tmp, 'no-such-python'));
    expect(missing).toEqual({ ok: false, reason: expect.stringMatching(/no-such-python not found on PATH \(set CANOPY_PYTHON/) });
    expect(await run(join(tmp, 'nope.py'))).toEqual({ ok: false, reason: expect.stringMatching(/nope\.py is missing/) });
    const crash = await run(fake('crash.mjs', `console.error('Traceback: boom'); process.exit(3)`));
    expect(crash).toEqual({ ok: false, reason: expect.stringMatching(/printed no JSON \(exit 3: Traceback: boom\)/) });
    const hang = await run(fake('hang.mjs', 'setInterval(() => {}, 1000)'), 500);
    expect(hang).toEqual({ ok: false, reason: 'torch_peers.py did not finish within 1 s' });
  });

  const python = spawnSync('python3', ['--version']).status === 0;
  it.runIf(python)('the real script answers with JSON whatever this machine has (here: a reason, no torch or no GPU)', async () => {
    const out = await runTorchPeers([], { device: 0, budgetMs: 10, timeoutMs: 120_000, python: 'python3' });
    if (!out.ok) expect(out.reason).toMatch(/torch is not importable|sees no CUDA device|CUDA device/);
    else expect(out.results).toEqual([]);
  });
});

describe('llama.cpp peer: where it is looked for', () => {
  it('CANOPY_PEERS_DIR, else the XDG cache, else ~/.cache/canopy/peers', () => {
    expect(peersDir({ CANOPY_PEERS_DIR: '/x/peers' })).toBe('/x/peers');
    expect(peersDir({ XDG_CACHE_HOME: '/c' })).toBe(join('/c', 'canopy', 'peers'));
    expect(peersDir({})).toMatch(/\.cache[/\\]canopy[/\\]peers$/);
  });

  it('knows the prebuilt binary package per platform, and says when there is none', () => {
    expect(prebuiltPackage('linux', 'x64')).toBe('@node-llama-cpp/linux-x64');
    expect(prebuiltPackage('darwin', 'arm64')).toBe('@node-llama-cpp/mac-arm64-metal');
    expect(prebuiltPackage('freebsd', 'x64')).toBeUndefined();
  });

  it('absent with how to install it when the folder is empty; a CPU peer only', () => {
    const empty = join(tmp, 'empty-peers');
    expect(findNodeLlamaCpp(empty).reason).toMatch(/node-llama-cpp is not installed in .*empty-peers; run `npx canopy bench --install-peers`/);
    expect(llamaCppStatus(true, empty)).toEqual({ name: 'llama.cpp', available: false, detail: expect.stringMatching(/--install-peers/) });
    expect(llamaCppStatus(false, empty).detail).toMatch(/CPU peer/);
  });
});

/** A stand-in node-llama-cpp: greedy "generation" counts up from the last prompt id. */
function fakeNodeLlamaCpp(dir: string): string {
  const pkg = join(dir, 'node_modules', 'node-llama-cpp');
  mkdirSync(join(pkg, 'dist'), { recursive: true });
  mkdirSync(join(dir, 'node_modules', ...(prebuiltPackage() ?? '@node-llama-cpp/none').split('/')), { recursive: true });
  writeFileSync(join(dir, 'node_modules', ...(prebuiltPackage() ?? '@node-llama-cpp/none').split('/'), 'package.json'), '{"name":"prebuilt"}');
  writeFileSync(join(dir, 'package.json'), '{"private":true}');
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'node-llama-cpp', version: '9.9.9', type: 'module', exports: { '.': { node: './dist/index.js', default: './dist/index.js' } } }));
  writeFileSync(
    join(pkg, 'dist', 'index.js'),
    `
export const LlamaLogLevel = { error: 'error' };
export const calls = [];
export async function getLlama(o) {
  calls.push(['getLlama', o.build, o.gpu, o.maxThreads]);
  return {
    buildType: 'prebuilt', llamaCppRelease: { release: 'b1234' },
    async loadModel({ modelPath }) {
      if (modelPath.includes('broken')) throw new Error('failed to load model');
      return {
        async createContext(c) {
          calls.push(['context', c.threads, c.contextSize]);
          return { getSequence: () => ({
            async clearHistory() { calls.push(['clear']); },
            async *evaluate(tokens, o) { if (o.temperature !== 0) throw new Error('not greedy'); let t = tokens[tokens.length - 1]; for (;;) yield ++t; },
          }), async dispose() {} };
        },
        detokenize(tokens, special, last) { return (last ? '[' + last.length + ']' : '') + tokens.join(' '); },
        async dispose() {},
      };
    },
    async dispose() {},
  };
}`,
  );
  return join(pkg, 'dist', 'index.js');
}

describe('llama.cpp peer: the job loop (stand-in module)', () => {
  const dir = join(tmp, 'fake-peers');
  const entry = fakeNodeLlamaCpp(dir);

  it('times warm-up + repeats per thread count, greedy, from a cleared history; text uses the prompt as context', async () => {
    const out = await runLlamaCppJobs(entry, {
      threads: [2, 1, 2],
      jobs: [
        { id: 'a', modelPath: '/m.gguf', prompt: [1, 5], maxTokens: 4, warmup: 1, repeats: 2 },
        { id: 'b', modelPath: '/broken.gguf', prompt: [1], maxTokens: 4, warmup: 0, repeats: 1 },
      ],
    });
    expect(out.version).toBe('9.9.9');
    expect(out.llamaCpp).toBe('b1234');
    expect(out.buildType).toBe('prebuilt');
    const a = out.results[0]!;
    expect(a.tokens).toEqual([6, 7, 8, 9]);
    expect(a.text).toBe('[2]6 7 8 9');
    expect(a.variants!.map((v) => [v.threads, v.runs.length])).toEqual([
      [2, 2],
      [1, 2],
    ]);
    for (const v of a.variants!) for (const r of v.runs) expect(r.msPerToken).toBeGreaterThanOrEqual(0);
    expect(out.results[1]).toEqual({ id: 'b', error: 'failed to load model' });
    const calls = ((await import(entry)) as { calls: unknown[][] }).calls;
    expect(calls[0]).toEqual(['getLlama', 'never', false, 2]);
    expect(calls.filter((c) => c[0] === 'context')).toEqual([
      ['context', 2, 14],
      ['context', 1, 14],
    ]);
    expect(calls.filter((c) => c[0] === 'clear')).toHaveLength(6);
  });

  it('is found once installed; from TypeScript sources the worker says to build first', async () => {
    expect(findNodeLlamaCpp(dir)).toEqual({ entry, version: '9.9.9' });
    const r = await runLlamaCppWorker({ threads: [1], jobs: [] }, 10_000, dir);
    expect(r.reason).toMatch(/runs from the compiled package \(dist\/\); run `npm run build:ts`/);
  });

  it('reads the worker line after the marker, whatever else was printed', () => {
    expect(parseWorkerOutput(`llama log\n${WORKER_RESULT_MARKER}{"version":"1","results":[]}\n`)).toEqual({ version: '1', results: [] });
    expect(parseWorkerOutput('nothing')).toEqual({ error: 'the worker printed no result' });
    expect(parseWorkerOutput(`${WORKER_RESULT_MARKER}{"error":"no binary"}`)).toEqual({ error: 'no binary' });
    expect(parseWorkerOutput(`${WORKER_RESULT_MARKER}{bad`)).toEqual({ error: expect.stringMatching(/malformed JSON/) });
  });
});

describe('greedy agreement', () => {
  it('identical, same tokens with other text, or the first differing token', () => {
    expect(compareGreedy({ tokens: [1, 2, 3], text: 'abc' }, { tokens: [1, 2, 3], text: 'abc' }).summary).toBe('identical');
    expect(compareGreedy({ tokens: [1, 2, 3], text: 'abc' }, { tokens: [1, 2, 3], text: ' abc' })).toEqual({ tokensIdentical: true, textIdentical: false, summary: 'same tokens, text differs' });
    expect(compareGreedy({ tokens: [1, 2, 3], text: 'a' }, { tokens: [1, 4, 3], text: 'b' })).toEqual({
      tokensIdentical: false,
      textIdentical: false,
      firstDifference: 1,
      summary: 'differs from token 1 of 3',
    });
    expect(compareGreedy({ tokens: [1, 2], text: 'a' }, { tokens: [1, 2, 3], text: 'a' }).summary).toBe('differs from token 2 of 3 (same text)');
  });
});
