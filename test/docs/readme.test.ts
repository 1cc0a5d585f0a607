/**
 * The README's code runs: every ```sh and ```js block, and the command of every
 * transcript (an untagged block starting `$ `), is executed against the test
 * models, except blocks marked on the line before with
 *   <!-- docs-test: skip (the reason) -->
 * (GPU-only, registry installs, full benchmarks, fragments that use the reader's own
 * tensors). The marker is an HTML comment, visible in the source only.
 *
 * Blocks run in a temp folder holding stories260K.bin, tok512.bin, llama2xs-281K/model.bin
 * and a weights.bin (64 + 4 MiB), as a user would have them. JavaScript blocks import
 * 'canopy-llm' from this checkout's dist/ (built by npm install); `npx canopy` in shell
 * blocks runs dist/cli/index.js.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { testModelsDir } from '../helpers/test-models.js';

const root = join(import.meta.dirname, '..', '..');
const dist = join(root, 'dist', 'index.js');
const cli = join(root, 'dist', 'cli', 'index.js');

interface Block {
  lang: string;
  line: number; // 1-based line of the opening fence
  code: string;
  skip: string | null; // the marker's reason
}

const SKIP = /^<!--\s*docs-test:\s*skip\s*\((.+)\)\s*-->$/;

/** The fenced blocks of a Markdown text, with the skip marker (if any) on the line before each. */
function readmeBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end]!)) end++;
    const marker = i > 0 ? SKIP.exec(lines[i - 1]!.trim()) : null;
    blocks.push({ lang: open[1]!, line: i + 1, code: lines.slice(i + 1, end).join('\n'), skip: marker ? marker[1]! : null });
    i = end;
  }
  return blocks;
}

const readme = readFileSync(join(root, 'README.md'), 'utf8');
const allBlocks = readmeBlocks(readme);
// An untagged block is a transcript: its first line is the command (`$ npx canopy info`), run as sh.
const transcripts = allBlocks.filter((b) => b.lang === '' && b.code.startsWith('$ '));
const blocks = [
  ...allBlocks.filter((b) => b.lang === 'sh' || b.lang === 'js'),
  ...transcripts.map((b) => ({ ...b, lang: 'sh', code: b.code.split('\n')[0]!.slice(2) })),
].sort((a, b) => a.line - b.line);
const models = testModelsDir('README code blocks');
const haveDist = existsSync(dist) && existsSync(cli);
if (!haveDist) console.warn(`[skip] README code blocks: ${dist} not built (npm install builds it)`);

describe('README code blocks', () => {
  it('finds the blocks and the markers (the parser)', () => {
    const parsed = readmeBlocks('a\n<!-- docs-test: skip (needs a GPU) -->\n```sh\nnvidia-smi\n```\n\n```js\nconsole.log(1)\n```\n```\nplain\n```\n');
    expect(parsed).toEqual([
      { lang: 'sh', line: 3, code: 'nvidia-smi', skip: 'needs a GPU' },
      { lang: 'js', line: 7, code: 'console.log(1)', skip: null },
      { lang: '', line: 10, code: 'plain', skip: null },
    ]);
    // Every block is sh, js or a transcript: a command block without a tag would go untested.
    const other = allBlocks.filter((b) => !['sh', 'js'].includes(b.lang) && !(b.lang === '' && b.code.startsWith('$ ')));
    expect(other.map((b) => `README.md:${b.line} (${b.lang || 'untagged'})`)).toEqual([]);
    // The README keeps runnable examples: at least the quick start, the CLI and the weights.
    expect(blocks.filter((b) => !b.skip).length).toBeGreaterThanOrEqual(4);
    for (const b of blocks.filter((b) => b.skip)) expect(b.skip!.length, `README.md:${b.line}`).toBeGreaterThan(3);
  });

  const runnable = blocks.filter((b) => !b.skip);
  describe.runIf(models !== undefined && haveDist)('runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'canopy-readme-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    if (models) {
      symlinkSync(join(models, 'stories260K', 'stories260K.bin'), join(dir, 'stories260K.bin'));
      symlinkSync(join(models, 'stories260K', 'tok512.bin'), join(dir, 'tok512.bin'));
      mkdirSync(join(dir, 'llama2xs-281K'));
      symlinkSync(join(models, 'llama2xs-281K', 'model.bin'), join(dir, 'llama2xs-281K', 'model.bin'));
      writeFileSync(join(dir, 'weights.bin'), Buffer.alloc(64 + 1024 * 1024 * 4));
      // `npx canopy ...` runs this checkout's CLI; any other npx use is not runnable here.
      const bin = join(dir, '.bin');
      mkdirSync(bin);
      writeFileSync(
        join(bin, 'npx'),
        `#!/bin/sh\nif [ "$1" = canopy ]; then shift; exec "${process.execPath}" "${cli}" "$@"; fi\necho "docs test: npx $1 is not runnable here; mark the block" >&2\nexit 127\n`,
      );
      chmodSync(join(bin, 'npx'), 0o755);
    }
    const env = { ...process.env, PATH: [join(dir, '.bin'), process.env.PATH].join(delimiter) };

    for (const b of runnable) {
      it(`README.md:${b.line} (${b.lang})`, () => {
        let r;
        if (b.lang === 'js') {
          const file = join(dir, `block-${b.line}.mjs`);
          writeFileSync(file, b.code.replaceAll(`'canopy-llm'`, `'${pathToFileURL(dist).href}'`));
          r = spawnSync(process.execPath, [file], { cwd: dir, env, encoding: 'utf8', timeout: 120_000 });
        } else {
          r = spawnSync('sh', ['-e', '-c', b.code], { cwd: dir, env, encoding: 'utf8', timeout: 120_000 });
        }
        expect(r.status, `README.md:${b.line} failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
      }, 180_000);
    }
  });
});
