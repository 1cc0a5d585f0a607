import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { testModelsDir } from '../helpers/test-models.js';

const root = join(import.meta.dirname, '..', '..');
const cli = join(root, 'dist', 'cli', 'index.js');
const models = testModelsDir('canopy generate CLI');

describe.runIf(models && existsSync(cli))('canopy generate', () => {
  const model = join(models ?? '', 'stories260K', 'stories260K.bin');
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'generate', ...args], { encoding: 'utf8' });

  it('streams a greedy story to stdout and stats to stderr', () => {
    const r = run('--model', model, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '40', '--backend', 'cpu');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
    expect(r.stderr).toMatch(/prompt 5 tokens, generated 40 \(length\)/);
  });

  it('--json prints {text, tokens, finishReason, stats}', () => {
    const r = run('--model', model, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '10', '--json', '--backend', 'cpu');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { text: string; tokens: number[]; finishReason: string; stats: { generatedTokens: number } };
    expect(out.tokens).toHaveLength(10);
    expect(out.stats.generatedTokens).toBe(10);
    expect(out.text).toMatch(/^, there was a little girl/);
  });

  it('--draft with the speculative strategy prints the same text as without, and its stats', () => {
    const draft = join(models ?? '', 'llama2xs-281K', 'model.bin');
    const args = ['--model', model, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '60', '--backend', 'cpu'];
    const plain = run(...args);
    const spec = run(...args, '--draft', draft, '--strategy', 'speculative');
    expect(spec.status, spec.stderr).toBe(0);
    expect(spec.stdout).toBe(plain.stdout);
    expect(spec.stderr).toMatch(/\[speculative\] drafted \d+, accepted \d+ .*mean accepted length/);
  });

  it('names the bad argument', () => {
    const bad = run('--model', join(models ?? '', 'nope.bin'), '--prompt', 'x');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/nope\.bin/);
    const strat = run('--model', model, '--prompt', 'x', '--strategy', 'medusa');
    expect(strat.stderr).toMatch(/--strategy must be one of autoregressive, speculative/);
  });
});
