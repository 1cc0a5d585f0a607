/**
 * llama.cpp's speculation as a bench peer (lib/bench/peers/llama-cpp.ts, `predictor`), on the
 * real tiny pair: stories260K.gguf drafted by llama2xs-281K written as GGUF by canopy
 * (lib/bench/inflate.ts ggufCopy, since llama.cpp reads GGUF only). The copy is the same model
 * (canopy's teacher-forced choices on it equal those on the llama2.c file, and llama.cpp agrees
 * with canopy on it); node-llama-cpp's DraftSequenceTokenPredictor and InputLookupTokenPredictor
 * give plain decoding's greedy tokens, and the draft's predictions are checked (validated or
 * refuted). No timing is asserted (the bench reports it). The job loop runs in this process
 * (the bench runs it in a child process from the compiled package).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ggufCopy } from '../../lib/bench/inflate.js';
import { findNodeLlamaCpp, peersDir, runLlamaCppJobs } from '../../lib/bench/peers/llama-cpp.js';
import { loadModel } from '../../lib/model/load.js';
import { agreement, canopyGreedy, llamaPeerAvailable } from '../helpers/llama-peer.js';
import { testModelsDir } from '../helpers/test-models.js';

const dir = testModelsDir('llama.cpp speculation peer');
const peerOk = llamaPeerAvailable('llama.cpp speculation peer');

describe.runIf(dir && peerOk)('llama.cpp speculation peer on the tiny pair', () => {
  const cache = mkdtempSync(join(tmpdir(), 'canopy-spec-peer-'));
  const saved = process.env.CANOPY_CACHE;
  process.env.CANOPY_CACHE = cache;
  afterAll(() => {
    if (saved === undefined) delete process.env.CANOPY_CACHE;
    else process.env.CANOPY_CACHE = saved;
    rmSync(cache, { recursive: true, force: true });
  });
  const target = join(dir ?? '', 'stories260K', 'stories260K.gguf');
  const draftBin = join(dir ?? '', 'llama2xs-281K', 'model.bin');
  let draft: string;

  it('the draft written as GGUF is the same model, and llama.cpp reads it as canopy does', async () => {
    draft = ggufCopy(draftBin, target);
    expect(ggufCopy(draftBin, target)).toBe(draft); // cached
    const { tokenizer, model } = await loadModel(target, { backend: 'cpu' });
    model.dispose();
    const tokens = [1, ...tokenizer.encode('Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her big red ball.', { bos: false })];
    const fromBin = await canopyGreedy(draftBin, tokens);
    const a = await agreement(draft, tokens);
    expect(a.canopy.argmax).toEqual(fromBin.argmax);
    expect(a.fraction).toBe(1);
  });

  it('draft-model and prompt-lookup speculation give plain greedy decoding tokens', async () => {
    const entry = findNodeLlamaCpp(peersDir()).entry!;
    const { tokenizer, model } = await loadModel(target, { backend: 'cpu' });
    model.dispose();
    const prompt = tokenizer.encode('Once upon a time', { bos: true });
    const job = { modelPath: target, prompt, maxTokens: 64, warmup: 0, repeats: 1 };
    const out = await runLlamaCppJobs(entry, {
      threads: [1],
      jobs: [
        { id: 'plain', ...job },
        // minTokens 2: the tiny target would otherwise outrun its as-tiny draft and check nothing.
        { id: 'draft', ...job, predictor: { type: 'draft', draftModelPath: draft, minTokens: 2 } },
        { id: 'lookup', ...job, predictor: { type: 'lookup' } },
      ],
    });
    const [plain, spec, lookup] = out.results;
    for (const r of out.results) expect(r.error, r.id).toBeUndefined();
    expect(plain!.tokens).toHaveLength(64);
    expect(spec!.tokens).toEqual(plain!.tokens);
    expect(lookup!.tokens).toEqual(plain!.tokens);
    expect(plain!.predictions).toBeUndefined();
    const p = spec!.predictions!;
    console.log(`llama.cpp draft speculation (llama2xs-281K for stories260K, 64 tokens): ${JSON.stringify(p)}; prompt lookup: ${JSON.stringify(lookup!.predictions)}`);
    expect(p.validated + p.refuted).toBeGreaterThan(0);
    expect(p.validated).toBeGreaterThan(0); // llama2xs-281K agrees with stories260K on most tokens
  }, 60_000);
});
