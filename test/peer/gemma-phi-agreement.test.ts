/**
 * Gemma 2, Gemma 3 and Phi-3 against llama.cpp (node-llama-cpp, test/helpers/llama-peer.ts):
 * small random-weight F32 GGUF files in each architecture's real layout and metadata
 * (test/helpers/arch-models.ts: sliding windows of 8, soft-capping, q/k norms, local / global
 * RoPE bases, fused Phi-3 matrices and LongRoPE factors), teacher-forced greedy next tokens on
 * 240 positions: canopy and llama.cpp must agree on >= 97% of them (both with f32 KV caches).
 * Phi-3 runs twice: with a context past the original one (long factors) and within it (short
 * factors; canopy is told the context llama.cpp runs with, as llama.cpp picks by it).
 * Skipped, with the reason printed, where node-llama-cpp is not installed (CI installs it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { ModelConfig } from '../../lib/model/config.js';
import { Model } from '../../lib/model/model.js';
import { loadWeights } from '../../lib/model/weights.js';
import { type ArchName, archConfig, archTensors, writeArchGguf } from '../helpers/arch-models.js';
import { LlamaPeer, type PeerGreedy, compareGreedyRuns, describeAgreement, llamaPeerAvailable, modelGreedy } from '../helpers/llama-peer.js';

const peerOk = llamaPeerAvailable('Gemma / Phi-3 agreement with llama.cpp');
const N = 240;

/** canopy's teacher-forced greedy run with an explicit context length (LongRoPE's choice). */
async function canopyRun(path: string, tokens: number[], contextLength?: number, edit: (c: ModelConfig) => ModelConfig = (c) => c): Promise<PeerGreedy> {
  const weights = loadWeights(path);
  const model = await Model.fromWeights({ ...weights, config: edit(weights.config) }, { backend: 'cpu', dtype: 'f32', ...(contextLength ? { contextLength } : {}) });
  try {
    return await modelGreedy(model, tokens);
  } finally {
    model.dispose();
    weights.dispose();
  }
}

/** The largest |canopy - llama.cpp| of the winning logit over the positions, relative to max(1, |logit|). */
function maxTopGap(a: PeerGreedy, b: PeerGreedy): number {
  let gap = 0;
  for (let i = 0; i < a.top.length; i++) gap = Math.max(gap, Math.abs(a.top[i]! - b.top[i]!) / Math.max(1, Math.abs(b.top[i]!)));
  return gap;
}
const LOGIT_TOL = 1e-3;

const CASES: Array<{ name: string; arch: ArchName; overrides?: Partial<ModelConfig>; contextLength?: number }> = [
  { name: 'gemma2 (windows of 8 on alternate layers, soft-capping 5 / 3)', arch: 'gemma2' },
  { name: 'gemma3 (5 local layers of window 8, base 10k / 1M with linear 8, q/k norms)', arch: 'gemma3' },
  { name: 'phi3 (fused qkv / gate_up, LongRoPE long factors: context past the original 32)', arch: 'phi3' },
  {
    name: 'phi3 (LongRoPE short factors: context within the original 4096)',
    arch: 'phi3',
    overrides: {
      maxSeqLen: 131072,
      ropeScaling: {
        type: 'longrope',
        longFactors: Array.from({ length: 8 }, (_, j) => Math.fround(1 + j * 0.9)),
        shortFactors: Array.from({ length: 8 }, (_, j) => Math.fround(1 + j * 0.3)),
        originalMaxPositionEmbeddings: 4096,
        attentionFactor: Math.fround(Math.sqrt(1 + Math.log(131072 / 4096) / Math.log(4096))),
      },
    },
    // The peer worker's context: max(n + 1, 32) tokens, within 4096.
    contextLength: N + 1,
  },
];

describe.runIf(peerOk)('Gemma 2 / 3 and Phi-3: canopy agrees with llama.cpp (teacher-forced greedy and logits, F32 files)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-arch-peer-'));
  let peer: LlamaPeer;
  beforeAll(async () => {
    peer = await LlamaPeer.start();
  }, 60_000);
  afterAll(async () => {
    await peer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(CASES)('$name', async (c) => {
    const config = archConfig(c.arch, c.overrides ?? {});
    const path = join(dir, `${c.arch}-${CASES.indexOf(c)}.gguf`);
    writeArchGguf(path, config, archTensors(config, 21 + CASES.indexOf(c), 0.5));
    // Tokens 3..vocab-1 (no BOS / EOS / unknown), a fixed pseudo-random sequence.
    const tokens = Array.from({ length: N }, (_, i) => 3 + ((i * 7919 + 13) % (config.vocabSize - 3)));
    const llama = await peer.greedy(path, tokens);
    const canopy = await canopyRun(path, tokens, c.contextLength);
    const a = compareGreedyRuns(canopy, llama);
    console.log(`${describeAgreement(`${c.name}, canopy vs llama.cpp`, a)} (llama.cpp ${peer.version.llamaCpp})`);
    expect(a.positions).toBe(N);
    expect(a.fraction).toBeGreaterThanOrEqual(0.97);
    // Same f32 weights, f32 KV caches: the winning logits themselves are close (a stronger check
    // than the greedy choice, which a random model's dominant tokens can keep without a window).
    const gap = maxTopGap(canopy, llama);
    console.log(`  largest top-logit difference ${gap.toExponential(2)}`);
    expect(gap).toBeLessThan(LOGIT_TOL);
  }, 120_000);

  it('negative controls: without its window, its soft-caps, one RoPE base or the other LongRoPE factors, canopy fails the check', async () => {
    const controls: Array<[number, string, (c: ModelConfig) => ModelConfig, number | undefined]> = [
      [0, 'gemma2 without sliding windows', (c) => ({ ...c, layerWindows: undefined }), undefined],
      [0, 'gemma2 without soft-capping', (c) => ({ ...c, attnSoftcap: undefined, finalSoftcap: undefined }), undefined],
      [1, 'gemma3 with one RoPE base for every layer', (c) => ({ ...c, ropeThetaLocal: undefined }), undefined],
      [3, 'phi3 with the long factors where llama.cpp uses the short ones', (c) => c, undefined],
    ];
    for (const [i, what, edit, ctx] of controls) {
      const c = CASES[i]!;
      const config = archConfig(c.arch, c.overrides ?? {});
      const path = join(dir, `control-${i}.gguf`);
      writeArchGguf(path, config, archTensors(config, 21 + i, 0.5));
      const tokens = Array.from({ length: N }, (_, k) => 3 + ((k * 7919 + 13) % (config.vocabSize - 3)));
      const canopy = await canopyRun(path, tokens, ctx, edit);
      const llama = await peer.greedy(path, tokens);
      const a = compareGreedyRuns(canopy, llama);
      const gap = maxTopGap(canopy, llama);
      console.log(`[control] ${what}: ${(a.fraction * 100).toFixed(1)}% agree, top-logit difference up to ${gap.toExponential(2)}`);
      expect(a.fraction < 0.97 || gap >= LOGIT_TOL, what).toBe(true);
    }
  }, 120_000);
});
