/**
 * Every architecture fixture (test/helpers/arch-fixtures.ts: Llama 3.1 / 3.2 with rope_freqs,
 * Qwen2.5 with and without YaRN, Qwen3 with q/k norms, Mistral with an explicit head size,
 * SmolLM2, linear RoPE scaling), as the F32 GGUF file the project's writer makes, run by canopy
 * and by llama.cpp (node-llama-cpp, f32 KV cache): teacher-forced greedy next tokens agree on
 * >= 97% of 256 positions, and the logits themselves are close. llama.cpp must load every file:
 * a refusal is a failure, not a skip. Skipped, with the reason printed, where node-llama-cpp is
 * not installed (CI installs it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ARCH_FIXTURES, ARCH_VOCAB, writeArchFixture } from '../helpers/arch-fixtures.js';
import { LlamaPeer, agreement, describeAgreement, llamaPeerAvailable } from '../helpers/llama-peer.js';

const peerOk = llamaPeerAvailable('llama.cpp agreement per architecture');

// 256 positions: BOS, then a fixed pseudo-random walk over the vocabulary (teacher forcing: the
// sequence is fed as is; position i's choice is the argmax after tokens[0..i]).
const POSITIONS = 256;
const tokens = [1];
for (let i = 1; i < POSITIONS; i++) tokens.push(3 + ((tokens[i - 1]! * 131 + i * 29) % (ARCH_VOCAB - 3)));

describe.runIf(peerOk)('canopy and llama.cpp agree on every architecture', () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-arch-peer-'));
  let peer: LlamaPeer;
  beforeAll(async () => {
    peer = await LlamaPeer.start();
  }, 60_000);
  afterAll(async () => {
    await peer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const fixture of ARCH_FIXTURES) it(`${fixture.name}: >= 97% of 256 teacher-forced greedy tokens agree, logits within 1e-4`, async () => {
    const { gguf } = writeArchFixture(fixture, dir);
    const a = await agreement(gguf, tokens, { peer, logits: true });
    await peer.unload(gguf);
    // Same f32 weights and f32 KV cache on both sides: the logits are close, not just their argmax.
    let worst = 0;
    for (let i = 0; i < a.positions; i++) {
      const c = a.canopy.logits![i]!;
      const l = a.llama.logits![i]!;
      for (let v = 0; v < c.length; v++) worst = Math.max(worst, Math.abs(c[v]! - l[v]!) / Math.max(1, Math.abs(l[v]!)));
    }
    console.log(`${describeAgreement(`${fixture.name} (${fixture.model})`, a)}; largest logit difference ${worst.toExponential(2)} (llama.cpp ${peer.version.llamaCpp})`);
    expect(a.positions).toBe(POSITIONS);
    expect(a.fraction).toBeGreaterThanOrEqual(0.97);
    expect(worst, `largest logit difference (relative, floor 1) of ${fixture.name}`).toBeLessThan(1e-4);
  }, 120_000);
});
