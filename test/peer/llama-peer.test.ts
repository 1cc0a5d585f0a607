/**
 * The llama.cpp agreement harness itself (test/helpers/llama-peer.ts) on the real stories260K
 * GGUF (F32, converted for llama.cpp by others): llama.cpp loads it, tokenizes as canopy does,
 * and its teacher-forced greedy tokens along stories260K's float64 reference path are the
 * reference ids, as canopy's are. A file llama.cpp cannot load is an error, not a skip.
 * Skipped, with the reason printed, where node-llama-cpp is not installed (CI installs it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel } from '../../lib/model/load.js';
import { LlamaPeer, agreement, describeAgreement, llamaPeerAvailable } from '../helpers/llama-peer.js';
import { STORIES_REFERENCE_IDS, testModelsDir } from '../helpers/test-models.js';

const dir = testModelsDir('llama.cpp agreement harness');
const peerOk = llamaPeerAvailable('llama.cpp agreement harness');

describe.runIf(dir && peerOk)('llama.cpp agreement harness on stories260K.gguf', () => {
  const gguf = join(dir ?? '', 'stories260K', 'stories260K.gguf');
  const tmp = mkdtempSync(join(tmpdir(), 'canopy-llama-peer-'));
  let peer: LlamaPeer;
  beforeAll(async () => {
    peer = await LlamaPeer.start();
  }, 60_000);
  afterAll(async () => {
    await peer?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('tokenizes like canopy, with and without special tokens', async () => {
    const { tokenizer, model } = await loadModel(gguf, { backend: 'cpu' });
    model.dispose();
    const texts = ['Once upon a time, there was a little girl named Lily.', ' two  spaces\nand a newline', '<s>Lily</s> saw a ball', ''];
    const plain = await peer.tokenize(gguf, texts, false);
    const special = await peer.tokenize(gguf, texts, true);
    texts.forEach((t, i) => {
      expect(tokenizer.encode(t, { bos: false }), JSON.stringify(t)).toEqual(plain[i]);
      expect(tokenizer.encode(t, { bos: false, special: true }), JSON.stringify(t)).toEqual(special[i]);
    });
    expect(special[2]![0]).toBe(1); // <s> read as BOS only when asked
    expect(plain[2]![0]).not.toBe(1);
  });

  it('teacher-forced greedy tokens along the reference path: both give the reference ids', async () => {
    const ids = STORIES_REFERENCE_IDS; // BOS + 48 greedy tokens (float64 reference)
    const a = await agreement(gguf, ids.slice(0, -1), { peer });
    console.log(`${describeAgreement('stories260K.gguf F32, canopy vs llama.cpp', a)} (llama.cpp ${peer.version.llamaCpp}, node-llama-cpp ${peer.version.version})`);
    expect(a.positions).toBe(48);
    expect(a.llama.argmax).toEqual(ids.slice(1));
    expect(a.canopy.argmax).toEqual(ids.slice(1));
    expect(a.fraction).toBe(1);
    // Same f32 weights, f32 KV on both sides: the logits themselves are close.
    for (let i = 0; i < a.positions; i++) expect(Math.abs(a.canopy.top[i]! - a.llama.top[i]!)).toBeLessThan(1e-3 * Math.max(1, Math.abs(a.llama.top[i]!)));
  });

  it('a file llama.cpp cannot load is an error naming why', async () => {
    const bad = join(tmp, 'zeros.gguf');
    writeFileSync(bad, Buffer.alloc(100)); // no GGUF magic
    await expect(peer.greedy(bad, [1, 2])).rejects.toThrow(/llama\.cpp/);
    // The worker survives a failed request.
    expect((await peer.greedy(gguf, [1])).argmax).toEqual([STORIES_REFERENCE_IDS[1]]);
  });
});
