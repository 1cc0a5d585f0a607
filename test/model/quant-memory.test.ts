/**
 * Memory (issue 12): a 1B-shaped Q4_K_M file loads and runs with RSS growth under 1.2x the file
 * size; the weights are mapped as stored, never copied or dequantized.
 *
 * The file: TinyLlama-1.1B's full shape (22 layers, dim 2048, hidden 5632, 32 q / 4 kv heads of
 * 64, 32000-token vocabulary, untied output) with the per-tensor types of llama.cpp's Q4_K_M
 * as canopy's quantize() chooses them (presetTensorTypes: Q4_K, Q6_K for the output and for
 * attn_v / ffn_down in the layers llama.cpp favours, F32 norms): 636 MiB, the size of the real
 * TinyLlama Q4_K_M. Written sparse (every block zero: valid, value 0), so it costs no disk and
 * no time to write; the forward step still reads every block.
 *
 * RSS is split as /proc/self/status does: pages of mapped files (RssFile + RssShmem) and
 * anonymous memory (RssAnon, where any copy, dequantized or not, would live). Measured on this
 * machine (2-core EPYC, ext4 /tmp): loading adds 2.3 MiB (1.3 anonymous); a 3-token forward step
 * maps 603.5 MiB of the file (all of it but the embedding rows not looked up) and adds 1.4 MiB of
 * anonymous memory: 0.95x the file in all. A dequantized f32 copy would add 4.1 GiB, f16 2.0 GiB,
 * Q8_0 1.1 GiB, a copy as stored 0.6 GiB: the bound (1.2x the file, in all) catches each.
 * The anonymous bound (16 MiB: 11x the measured growth, for other thread counts and allocators)
 * also catches a copy of any one layer, even as stored (24-28 MiB), or of the Q6_K output (51 MiB):
 * the test makes that last copy itself at the end and checks that the bound sees it.
 * The 1.2x check on 4 layers of another head layout stays in quant-forward.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { afterAll, describe, expect, it } from 'vitest';

import { expectedShapes } from '../../lib/model/config.js';
import { ggufName, llamaGgufMetadata, writeGguf } from '../../lib/model/formats/gguf-writer.js';
import type { GgufWeights } from '../../lib/model/formats/gguf.js';
import { Model } from '../../lib/model/model.js';
import { loadWeights } from '../../lib/model/weights.js';
import { presetTensorTypes } from '../../lib/quantize/index.js';
import { QUANT_TYPES, isQuantType } from '../../lib/tensor/quant-types.js';
import { random1bConfig } from '../helpers/random-1b.js';

const MiB = 2 ** 20;

/** Resident memory in bytes: mapped files' pages and anonymous memory (Linux /proc/self/status). */
function rss(): { file: number; anon: number; total: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { file: kb('RssFile') + kb('RssShmem'), anon: kb('RssAnon'), total: kb('VmRSS') };
}

const TINYLLAMA = random1bConfig(22, 32000);

describe.runIf(process.platform === 'linux')('memory: a 1B-shaped Q4_K_M file is mapped as stored', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'canopy-quant-memory-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;

  it('full TinyLlama shape: loading adds under 64 MiB; a forward step keeps RSS growth under 1.2x the file and anonymous memory under 16 MiB', async () => {
    const shapes = expectedShapes(TINYLLAMA);
    const entries = [...shapes].map(([name, s]) => ({ name: ggufName(name), ne: [...s].reverse() }));
    const types = presetTensorTypes('Q4_K_M', entries, TINYLLAMA);
    const path = join(tmp, 'tinyllama-shaped-Q4_K_M.gguf');
    writeGguf(path, {
      metadata: [...llamaGgufMetadata(TINYLLAMA), ['general.file_type', 'uint32', 15]],
      tensors: entries.map(({ name, ne }) => {
        const t = types.get(name)!;
        const numel = ne.reduce((a, b) => a * b, 1);
        const byteLength = isQuantType(t) ? (numel / QUANT_TYPES[t].block) * QUANT_TYPES[t].bytes : numel * (t === 'F16' ? 2 : 4);
        return { name, type: isQuantType(t) ? QUANT_TYPES[t].id : t === 'F16' ? 1 : 0, ne, data: { byteLength } };
      }),
    });
    const fileBytes = statSync(path).size;
    expect(new Set(types.values())).toEqual(new Set(['F32', 'Q4_K', 'Q6_K']));
    expect(types.get('output.weight')).toBe('Q6_K');

    gc();
    const before = rss();
    const w = loadWeights(path) as GgufWeights;
    const loaded = rss();
    expect(w.quant.get('layers.0.w2')).toBe('Q6_K');
    expect(w.quant.get('layers.3.w2')).toBe('Q4_K');
    const model = await Model.fromWeights(w, { backend: 'cpu' });
    const cache = model.createCache({ capacity: 16 });
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [1, 2, 3] }]);
    expect(Array.from(logits.toFloat32().subarray(0, 4))).toEqual([0, 0, 0, 0]); // zero blocks: zero logits
    const stepped = rss();
    const grown = (r: ReturnType<typeof rss>, key: 'file' | 'anon' | 'total') => r[key] - before[key];
    const line =
      `TinyLlama-shaped Q4_K_M file of ${(fileBytes / MiB).toFixed(0)} MiB: after loading RSS +${(grown(loaded, 'total') / MiB).toFixed(1)} MiB ` +
      `(anonymous +${(grown(loaded, 'anon') / MiB).toFixed(1)}); after a 3-token forward step +${(grown(stepped, 'total') / MiB).toFixed(1)} MiB = ` +
      `${(grown(stepped, 'total') / fileBytes).toFixed(3)}x the file (mapped file pages +${(grown(stepped, 'file') / MiB).toFixed(1)}, anonymous +${(grown(stepped, 'anon') / MiB).toFixed(1)})`;
    console.log(line);
    expect(grown(loaded, 'total'), line).toBeLessThan(64 * MiB);
    expect(grown(stepped, 'total'), line).toBeLessThan(1.2 * fileBytes);
    expect(grown(stepped, 'anon'), line).toBeLessThan(16 * MiB);
    // The negative control: a copy of the output matrix as stored (what a loader that copied one
    // tensor out of the mapping would hold) is seen by the anonymous bound.
    const copy = Uint8Array.from(w.tensors.get('output')!.toArray() as Uint8Array);
    const copied = grown(rss(), 'anon');
    console.log(`  with a copy of the ${(copy.byteLength / MiB).toFixed(1)} MiB output matrix: anonymous +${(copied / MiB).toFixed(1)} MiB`);
    expect(copied).toBeGreaterThan(16 * MiB);
    logits.dispose();
    cache.dispose();
    model.dispose();
    w.dispose();
  }, 300_000);
});
