/** Prediction heads: file round trip, self-distillation training, lossless decoding with heads. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadHeads, saveHeads, type PredictionHeads } from '../../lib/model/heads.js';
import { trainHeads } from '../../lib/train/heads.js';
import { generate } from '../../lib/generate.js';
import { loadModel } from '../../lib/model/load.js';
import { randomValues } from '../../lib/bench/suites/util.js';
import { testModelsDir } from '../helpers/test-models.js';

const tmp = mkdtempSync(join(tmpdir(), 'canopy-heads-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('heads files', () => {
  it('save then load gives the same heads, bit for bit', () => {
    const heads: PredictionHeads = { count: 2, dim: 8, vocab: 5, weights: [randomValues(40, 1), randomValues(40, 2)], biases: [randomValues(5, 3), randomValues(5, 4)] };
    const path = join(tmp, 'h.safetensors');
    saveHeads(path, heads);
    const back = loadHeads(path);
    expect(back.count).toBe(2);
    expect(Array.from(back.weights[1]!)).toEqual(Array.from(heads.weights[1]!));
    expect(Array.from(back.biases[0]!)).toEqual(Array.from(heads.biases[0]!));
  });

  it('rejects files that are not heads, naming the file', () => {
    const path = join(tmp, 'junk.safetensors');
    writeFileSync(path, Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32]));
    expect(() => loadHeads(path)).toThrow(/junk\.safetensors: not a canopy heads file/);
  });
});

const dir = testModelsDir('prediction heads on stories260K');
describe.runIf(dir)('heads on stories260K', () => {
  it('trained by self-distillation, they propose trees whose greedy output equals autoregressive', async () => {
    const { model, tokenizer } = await loadModel(join(dir!, 'stories260K', 'stories260K.bin'), { backend: 'cpu' });
    const report = await trainHeads({ model, tokenizer, texts: ['Once upon a time', 'The little dog', 'Ben had a red ball.', 'Lily liked to sing.'], count: 2, continuation: 100, epochs: 6 });
    // Better than chance (1/512) by far: the next-next token is quite predictable in these stories.
    expect(report.accuracy[0]).toBeGreaterThan(0.3);
    const prompts = ['Once upon a time, there was a boy', 'Tim saw a big tree'];
    const ar = await generate({ model, tokenizer, prompt: prompts, maxTokens: 60, temperature: 0 });
    const hd = await generate({ model, tokenizer, prompt: prompts, maxTokens: 60, temperature: 0, strategy: 'heads', heads: report.heads, speculation: { autoDisable: false } });
    expect(hd.map((r) => r.tokens)).toEqual(ar.map((r) => r.tokens));
    const spec = hd[0]!.stats.speculation!;
    console.log(`[info] heads (2, lightly trained): tau ${spec.meanAcceptedLength.toFixed(2)}, per position ${spec.perPositionAcceptance.map((x) => x.toFixed(2)).join(' ')}`);
    expect(spec.meanAcceptedLength).toBeGreaterThan(1.3);
    model.dispose();
  });
});
