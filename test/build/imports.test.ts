/**
 * No import cycle among lib/ modules (type-only imports included: they still tie the
 * modules' designs together). Reads every lib/**.ts file's relative imports and exports
 * and searches the graph depth-first; a cycle is reported as its chain of files.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect, it } from 'vitest';

const lib = resolve(dirname(fileURLToPath(import.meta.url)), '../../lib');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The relative imports of a source file, as absolute .ts paths. */
export function importsOf(path: string, text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+['"](\.[^'"]+)['"]/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(resolve(dirname(path), m[1]!.replace(/\.js$/, '.ts')));
  return out;
}

/** A cycle in the graph (as a list of nodes, first repeated last), or undefined. */
export function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 'open') return [...stack.slice(stack.indexOf(m)), m];
      if (!state.has(m)) {
        const c = visit(m);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const n of graph.keys()) {
    if (!state.has(n)) {
      const c = visit(n);
      if (c) return c;
    }
  }
  return undefined;
}

it('the cycle finder finds a planted cycle and passes an acyclic graph', () => {
  expect(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', []]]))).toBeUndefined();
  expect(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]]))).toEqual(['a', 'b', 'c', 'a']);
  expect(importsOf('/x/a.ts', "import type { A } from './b.js';\nexport { c } from '../c.js';\nimport x from 'node:fs';")).toEqual(['/x/b.ts', '/c.ts']);
});

it('lib/ has no import cycle', () => {
  const graph = new Map<string, string[]>();
  for (const f of files(lib)) graph.set(f, importsOf(f, readFileSync(f, 'utf8')));
  const cycle = findCycle(graph);
  expect(cycle?.map((f) => relative(lib, f)).join(' -> ')).toBeUndefined();
});
