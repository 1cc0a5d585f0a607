import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

describe.runIf(models && existsSync(cli))('canopy generate: chat and the new flags', () => {
  const model = join(models ?? '', 'stories260K', 'stories260K.bin');
  const dir = mkdtempSync(join(tmpdir(), 'canopy-chat-'));
  const template = join(dir, 'template.jinja');
  writeFileSync(template, '{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}');
  const run = (args: string[], input?: string) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  const base = ['--model', model, '--temperature', '0', '--backend', 'cpu'];

  it('--prompt - reads stdin; --stop cuts the text; no CUDA message without --verbose', () => {
    const r = run(['generate', ...base, '--prompt', '-', '--max-tokens', '40', '--stop', 'Lily'], 'Once upon a time');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('Once upon a time, there was a little girl named \n');
    expect(r.stderr).toMatch(/generated \d+ \(stop\)/);
    expect(r.stderr).not.toMatch(/CUDA not used/);
  });

  it('--n prints every sample; --kv-dtype and --speculation-k are accepted', () => {
    const r = run(['generate', ...base, '--prompt', 'Once upon a time', '--max-tokens', '8', '--n', '2', '--kv-dtype', 'int8', '--strategy', 'lookup', '--speculation-k', '3']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/--- sample 1 \(length\) ---\nOnce upon a time, there was a little girl[^\n]*\n--- sample 2 \(length\) ---\nOnce upon a time, there was a little girl/);
    const bad = run(['generate', ...base, '--prompt', 'x', '--kv-dtype', 'q4']);
    expect(bad.stderr).toMatch(/--kv-dtype must be f32, f16, bf16, int8, int4, fp8; received "q4"/);
  });

  it('--dtype q8_0 quantizes the float matrices at load; an unknown dtype names the flag', () => {
    const r = run(['generate', ...base, '--prompt', 'Once upon a time', '--max-tokens', '8', '--dtype', 'q8_0']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Once upon a time, there was a little girl/);
    const bad = run(['generate', ...base, '--prompt', 'x', '--dtype', 'q9']);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--dtype must be f32, f16, bf16, q8_0, .*iq4_xs; received "q9"/);
  });

  it('--draft alone implies the speculative strategy', () => {
    const draft = join(models ?? '', 'llama2xs-281K', 'model.bin');
    const r = run(['generate', ...base, '--prompt', 'Once upon a time', '--max-tokens', '20', '--draft', draft]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[speculative\] drafted/);
  });

  it('--chat with --template sends the prompt through the template', () => {
    const r = run(['generate', ...base, '--prompt', 'Once upon a time', '--max-tokens', '8', '--template', template, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { stats: { promptTokens: number } };
    expect(out.stats.promptTokens).toBeGreaterThan(8); // "user:Once upon a time\nassistant:" with BOS
    const none = run(['generate', ...base, '--prompt', 'x', '--chat']);
    expect(none.stderr).toMatch(/this model ships none/);
  });

  it('canopy chat keeps the conversation: each line is a turn, later turns reuse the cache', () => {
    const r = run(['chat', ...base, '--template', template, '--max-tokens', '12', '--verbose'], 'Once upon a time\nThe dog ran.\n');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(2);
    const turns = [...r.stderr.matchAll(/prompt (\d+) tokens, (\d+) reused/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(turns).toHaveLength(2);
    expect(turns[0]![1]).toBe(0);
    expect(turns[1]![1]).toBeGreaterThan(turns[0]![0]!);
  });
});

const hasTmux = spawnSync('tmux', ['-V'], { encoding: 'utf8' }).status === 0;

describe.runIf(models && existsSync(cli) && hasTmux)('canopy chat in a terminal (tmux)', () => {
  const model = join(models ?? '', 'stories260K', 'stories260K.bin');
  const dir = mkdtempSync(join(tmpdir(), 'canopy-tmux-'));
  const template = join(dir, 'template.jinja');
  writeFileSync(template, '{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}');
  const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });
  const screen = (name: string) => tmux('capture-pane', '-p', '-t', name).stdout;
  const waitFor = async (name: string, test: (s: string) => boolean, ms = 20000): Promise<string> => {
    const end = Date.now() + ms;
    for (;;) {
      const s = screen(name);
      if (test(s) || Date.now() > end) return s;
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  it('streams replies at a prompt, keeps the history, and Ctrl-C at the prompt quits', async () => {
    const name = `canopy-chat-${process.pid}`;
    const done = join(dir, 'exit-code');
    const command = `${process.execPath} ${cli} chat --model ${model} --template ${template} --temperature 0 --max-tokens 16 --backend cpu --verbose; echo $? > ${done}`;
    expect(tmux('new-session', '-d', '-s', name, '-x', '200', '-y', '50', command).status).toBe(0);
    try {
      // capture-pane drops trailing spaces: the prompt "> " shows as ">".
      expect(await waitFor(name, (s) => /^>/m.test(s))).toMatch(/^>/m);
      tmux('send-keys', '-t', name, 'Once upon a time', 'Enter');
      const first = await waitFor(name, (s) => /reused from the cache/.test(s));
      expect(first).toMatch(/prompt \d+ tokens, 0 reused from the cache/);
      tmux('send-keys', '-t', name, 'The dog ran.', 'Enter');
      const second = await waitFor(name, (s) => (s.match(/reused from the cache/g) ?? []).length >= 2);
      expect(second).toMatch(/prompt \d+ tokens, [1-9]\d* reused from the cache/);
      tmux('send-keys', '-t', name, 'C-c');
      const end = Date.now() + 10000;
      while (!existsSync(done) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect(existsSync(done)).toBe(true);
    } finally {
      tmux('kill-session', '-t', name);
    }
  });
});
