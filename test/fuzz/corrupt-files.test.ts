/**
 * Fuzz suite (issue 16): corrupt GGUF, llama2.c and safetensors files (test/fuzz/generators.ts)
 * loaded in child processes with a timeout. Every case must end in a CanopyError with a code,
 * or load into a model whose output is checked: 8 greedy tokens, each a valid id, ending
 * 'length', 'eos' or 'error'; and when the corrupt file's config and tensor bytes equal the
 * clean file's (the corruption hit nothing that matters), exactly the clean file's tokens. A
 * crash, a hang (timeout) or any other error fails the case.
 *
 * Size: CANOPY_FUZZ_FLIPS random header bit flips per format (default 40; the structural
 * cases are all run whatever it is). The children run a transpiled copy of lib/ (TypeScript's
 * transpileModule; no build step) and batch many cases each.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

import { loadAddon } from '../../lib/native/loader.js';
import { randomConfig } from '../helpers/random-model.js';
import { hfConfigJson, syntheticTensors, toHfTensors, writeHfDir } from '../helpers/model-writers.js';
import { testModel } from '../helpers/test-models.js';
import { type FuzzCase, ggufCases, hfCases, llama2cCases } from './generators.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const gguf = testModel('stories260K/stories260K.gguf', 'fuzz');
const bin = testModel('stories260K/stories260K.bin', 'fuzz');
const FLIPS = Number(process.env.CANOPY_FUZZ_FLIPS ?? 40);
const CHILDREN = 2;
const CHILD_TIMEOUT_MS = 60_000;

// The transpiled lib/ lives inside the repository so the children resolve its npm imports.
const work = join(repo, `.canopy-fuzz-${process.pid}`);
const files = mkdtempSync(join(tmpdir(), 'canopy-fuzz-'));
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(files, { recursive: true, force: true });
});

function transpileLib(): string {
  const out = join(work, 'lib');
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f.endsWith('.ts') && !f.endsWith('.d.ts')) {
        const js = ts.transpileModule(readFileSync(p, 'utf8'), {
          compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
        }).outputText;
        const dest = join(out, relative(join(repo, 'lib'), p)).replace(/\.ts$/, '.js');
        mkdirSync(dirname(dest), { recursive: true });
        writeFileSync(dest, js);
      }
    }
  };
  walk(join(repo, 'lib'));
  writeFileSync(join(work, 'package.json'), JSON.stringify({ type: 'module' }));
  return out;
}

interface Outcome {
  id: number;
  outcome: 'error' | 'loaded' | 'crash' | 'timeout';
  canopy?: boolean;
  code?: string;
  name?: string;
  message?: string;
  sameAsReference?: boolean;
  finishReason?: string;
  tokens?: number[];
  vocab?: number;
}

/** Runs cases in one child; on a crash or a hang, records the case it was in and resumes after it. */
async function runBatch(lib: string, references: Record<string, string>, batch: { id: number; path: string; reference: string }[], out: Map<number, Outcome>): Promise<void> {
  let rest = batch;
  while (rest.length) {
    const specPath = join(files, `spec-${rest[0]!.id}.json`);
    writeFileSync(specPath, JSON.stringify({ references, cases: rest }));
    let current: number | undefined;
    let buf = '';
    let stderr = '';
    const child: ChildProcess = spawn(process.execPath, [join(here, 'child.mjs'), specPath], {
      env: { ...process.env, FUZZ_LIB: lib, CANOPY_ADDON_PATH: loadAddon().path, CANOPY_THREADS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('START ')) current = Number(line.slice(6));
        else if (line.startsWith('RESULT ')) {
          const r = JSON.parse(line.slice(7)) as Outcome;
          out.set(r.id, r);
          current = undefined;
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, CHILD_TIMEOUT_MS);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    if (code === 0 && !timedOut) break;
    if (current === undefined) {
      // Died between cases (or before the first): blame the next case not reported.
      current = rest.find((c) => !out.has(c.id))?.id;
      if (current === undefined) break;
    }
    out.set(current, { id: current, outcome: timedOut ? 'timeout' : 'crash', message: `exit ${code}: ${stderr.slice(-600)}` });
    rest = rest.filter((c) => !out.has(c.id));
  }
}

describe.skipIf(!gguf || !bin)('fuzz: corrupt model files', () => {
  it('every case ends in a CanopyError or a model whose output is checked', async () => {
    const t0 = performance.now();
    // The clean sources: the two real files and a small synthetic Hugging Face directory.
    const hfDir = join(files, 'hf-clean');
    const c = randomConfig({ nLayers: 2, vocabSize: 40 });
    const { tensors, shapes } = syntheticTensors(c, 7);
    writeHfDir(hfDir, hfConfigJson(c, { bos_token_id: 1 }), toHfTensors(tensors, shapes, c, 'F32').st);
    const references = { gguf: gguf!, llama2c: bin!, hf: hfDir };
    const cases: FuzzCase[] = [
      ...ggufCases(readFileSync(gguf!), FLIPS, 1),
      ...llama2cCases(readFileSync(bin!), FLIPS, 2),
      ...hfCases(readFileSync(join(hfDir, 'config.json'), 'utf8'), readFileSync(join(hfDir, 'model.safetensors')), FLIPS, 3),
    ];
    const cleanIds = { gguf: cases.length, llama2c: cases.length + 1, hf: cases.length + 2 };
    const all = [
      ...cases.map((k, id) => ({ id, path: k.write(files), reference: k.reference })),
      { id: cleanIds.gguf, path: gguf!, reference: 'gguf' },
      { id: cleanIds.llama2c, path: bin!, reference: 'llama2c' },
      { id: cleanIds.hf, path: hfDir, reference: 'hf' },
    ];
    const lib = transpileLib();
    const out = new Map<number, Outcome>();
    const per = Math.ceil(all.length / CHILDREN);
    await Promise.all(Array.from({ length: CHILDREN }, (_, k) => runBatch(lib, references, all.slice(k * per, (k + 1) * per), out)));

    const clean = (ref: keyof typeof cleanIds) => out.get(cleanIds[ref]);
    for (const ref of ['gguf', 'llama2c', 'hf'] as const) {
      expect(clean(ref)?.outcome, `clean ${ref}: ${clean(ref)?.message}`).toBe('loaded');
      expect(clean(ref)?.sameAsReference).toBe(true);
    }
    const failures: string[] = [];
    const tally = { error: 0, loaded: 0, identical: 0 };
    cases.forEach((k, id) => {
      const r = out.get(id);
      const bad = (why: string) => failures.push(`${k.label}: ${why}`);
      if (!r) return bad('no outcome');
      if (r.outcome === 'crash' || r.outcome === 'timeout') return bad(`${r.outcome} ${r.message}`);
      if (r.outcome === 'error') {
        tally.error++;
        if (!r.canopy || !/^ERR_CANOPY_/.test(r.code ?? '')) bad(`${r.name} (code ${r.code}): ${r.message}`);
        return;
      }
      tally.loaded++;
      // 'context': a small llama.context_length is enforced (the sequence ends before maxTokens, 8).
      if (!['length', 'eos', 'error', 'context'].includes(r.finishReason!)) bad(`finishReason ${r.finishReason}`);
      if (r.finishReason === 'context' && r.tokens!.length >= 8) bad(`finishReason context after ${r.tokens!.length} tokens`);
      if (!r.tokens!.every((t) => Number.isInteger(t) && t >= 0 && t < r.vocab!)) bad(`tokens ${r.tokens!.join(',')}`);
      if (r.sameAsReference) {
        tally.identical++;
        const want = clean(k.reference)!.tokens!;
        if (r.tokens!.join() !== want.join()) bad(`identical weights but tokens ${r.tokens!.join(',')} != ${want.join(',')}`);
      }
    });
    console.log(
      `[fuzz] ${cases.length} cases (${FLIPS} bit flips per format) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ` +
        `${tally.error} CanopyErrors, ${tally.loaded} loaded (${tally.identical} identical to the clean file), ${failures.length} failures`,
    );
    expect(failures).toEqual([]);
    expect(cases.length).toBeGreaterThanOrEqual(300);
  }, 600_000);
});
