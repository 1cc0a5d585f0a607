/**
 * The native sampler chain (CPU) against the float64 reference (test/helpers/sampling-reference.ts):
 * the same token for the same uniform on many random rows, every option alone and combined,
 * ties, -Infinity logits, NaN / +Infinity / all -Infinity rows, vocabularies 1 to 128256; the
 * processed logits bit for bit and the processed distribution within f32 rounding; argument errors.
 */
import { describe, expect, it } from 'vitest';

import { ArgumentError } from '../../lib/errors.js';
import { checkSamplerChain, penaltyCounts, samplingChain } from '../../lib/kernels/sampling.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { ROW_KINDS, chainSettings, contextFor, logitsRow } from '../helpers/sampling-cases.js';
import { type ChainRef, PLAIN, probsRef, processLogitsRef, sampleRef } from '../helpers/sampling-reference.js';
import { rng } from '../helpers/verify-reference.js';

async function compare(vocab: number, rows: number, seed: number, settings = chainSettings(vocab)) {
  for (const [name, chain] of settings) {
    const r = rng(seed + name.length * 7919);
    const kinds = Array.from({ length: rows }, (_, i) => ROW_KINDS[i % ROW_KINDS.length]!);
    const logits = kinds.map((k) => logitsRow(r, vocab, k));
    const contexts = kinds.map(() => contextFor(r, vocab));
    const uniforms = Float64Array.from(kinds, () => r());
    const t = Tensor.from(Float32Array.from(logits.flatMap((l) => Array.from(l))), { shape: [rows, vocab] });
    const res = await samplingChain(t, chain, { contexts, uniforms, probs: true, processedLogits: true });
    const probs = res.probs!.toFloat32();
    const processed = res.processedLogits!.toFloat32();
    const mismatches: string[] = [];
    for (let i = 0; i < rows; i++) {
      const want = sampleRef(logits[i]!, chain, uniforms[i]!, contexts[i]);
      if (res.tokens[i] !== want) mismatches.push(`row ${i} (${kinds[i]}): native ${res.tokens[i]}, reference ${want}`);
      const pl = processLogitsRef(logits[i]!, chain, contexts[i]);
      for (let y = 0; y < vocab; y++) {
        const a = processed[i * vocab + y]!;
        if (!Object.is(a, pl[y]!) && !(Number.isNaN(a) && Number.isNaN(pl[y]!))) {
          mismatches.push(`row ${i}: processed logit ${y} native ${a}, reference ${pl[y]}`);
          break;
        }
      }
      if (chain.temperature > 0 && vocab <= 32000) {
        const p = probsRef(logits[i]!, chain, contexts[i]);
        for (let y = 0; y < vocab; y++) {
          const want = p ? p[y]! : 1 / vocab;
          const got = probs[i * vocab + y]!;
          if (Math.abs(got - want) > 1e-7 * want + 1e-30) {
            mismatches.push(`row ${i}: p[${y}] native ${got}, reference ${want}`);
            break;
          }
        }
      }
    }
    res.probs!.dispose();
    res.processedLogits!.dispose();
    expect(mismatches.slice(0, 5), `${name}, vocab ${vocab}`).toEqual([]);
  }
}

describe('sampler chain (CPU) equals the float64 reference token for token', () => {
  it('vocab 1', () => compare(1, 24, 1));
  it('vocab 7', () => compare(7, 96, 2));
  it('vocab 257', () => compare(257, 40, 3));
  it('vocab 32000', () => compare(32000, 8, 4), 120_000);
  it('vocab 32003, heavy settings', () =>
    compare(32003, 8, 5, chainSettings(32003).filter(([n]) => /top-p|min-p|everything/.test(n))), 120_000);
  it('vocab 128256: top-p and min-p (bounded candidates) and top-k', () =>
    compare(128256, 3, 6, chainSettings(128256).filter(([n]) => /top-p 0.93|min-p 0.05|top-k 40|everything$/.test(n))), 120_000);

  it('ties go to the lowest id (greedy, top-k, top-p cut inside a tie)', async () => {
    const logits = Tensor.from(Float32Array.of(1, 3, 3, 2, 3), { shape: [1, 5] });
    const greedy = await samplingChain(logits, checkSamplerChain({ temperature: 0 }));
    expect(Array.from(greedy.tokens)).toEqual([1]);
    // top-k 2 keeps ids 1 and 2 (the first two of the three tied), each with probability 1/2.
    const k2 = await samplingChain(logits, checkSamplerChain({ temperature: 1, topK: 2 }), { probs: true });
    expect(Array.from(k2.probs!.toFloat32())).toEqual([0, 0.5, 0.5, 0, 0]);
    // top-p 0.34 of three equal tokens (mass 1/3 each of ~0.9) keeps the first two: 2/3 * 0.9... computed by the reference.
    const c = checkSamplerChain({ temperature: 1, topP: 0.34 });
    const p = await samplingChain(logits, c, { probs: true });
    const want = probsRef([1, 3, 3, 2, 3], { ...PLAIN, ...c })!;
    expect(Array.from(p.probs!.toFloat32())).toEqual(Array.from(want, (v) => Math.fround(v)));
    for (const t of [k2.probs, p.probs]) t!.dispose();
  });

  it('rows with no finite distribution give -1 and the uniform stand-in', async () => {
    const rows = [
      [NaN, 1, 2],
      [Infinity, 1, 2],
      [-Infinity, -Infinity, -Infinity],
    ];
    const t = Tensor.from(Float32Array.from(rows.flat()), { shape: [3, 3] });
    const res = await samplingChain(t, checkSamplerChain({ temperature: 1 }), { probs: true, uniforms: Float64Array.of(0.5, 0.5, 0.5) });
    expect(Array.from(res.tokens)).toEqual([-1, -1, -1]);
    expect(Array.from(res.probs!.toFloat32())).toEqual(new Array(9).fill(Math.fround(1 / 3)));
    res.probs!.dispose();
    // Greedy: NaN counts as -inf, +Infinity wins, all -Infinity has no token.
    const g = await samplingChain(t, checkSamplerChain({ temperature: 0 }));
    expect(Array.from(g.tokens)).toEqual([2, 0, -1]);
  });

  it('a -Infinity bias bans a token; penalties follow llama.cpp (divide positive, multiply negative)', async () => {
    const t = Tensor.from(Float32Array.of(2, -2, 1, 0.5), { shape: [1, 4] });
    const c = checkSamplerChain({ temperature: 0, logitBias: { 0: -Infinity }, repeatPenalty: 2, frequencyPenalty: 0.25, presencePenalty: 0.5 });
    const res = await samplingChain(t, c, { contexts: [[1, 1, 2]], processedLogits: true });
    // 0 banned; 1: -2 * 2 - 2 * 0.25 - 0.5 = -5; 2: 1 / 2 - 0.25 - 0.5 = -0.25; 3 untouched 0.5.
    expect(Array.from(res.processedLogits!.toFloat32())).toEqual([-Infinity, -5, -0.25, 0.5]);
    expect(Array.from(res.tokens)).toEqual([3]);
    res.processedLogits!.dispose();
  });

  it('penaltyCounts: the last penaltyLastN tokens of each context, counted', () => {
    const p = penaltyCounts([[5, 1, 1, 2], [], [3, 3]], 3);
    expect(Array.from(p.indptr)).toEqual([0, 2, 2, 3]);
    expect(Array.from(p.tokens)).toEqual([1, 2, 3]);
    expect(Array.from(p.counts)).toEqual([2, 1, 2]);
    expect(Array.from(penaltyCounts([[5, 1]], -1).tokens)).toEqual([5, 1]);
  });

  it('bad options are ArgumentErrors naming the option', async () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ temperature: -1 }, 'temperature'],
      [{ temperature: NaN }, 'temperature'],
      [{ topK: 1.5 }, 'topK'],
      [{ topP: 0 }, 'topP'],
      [{ topP: 1.1 }, 'topP'],
      [{ minP: -0.1 }, 'minP'],
      [{ minP: 2 }, 'minP'],
      [{ repeatPenalty: 0 }, 'repeatPenalty'],
      [{ frequencyPenalty: Infinity }, 'frequencyPenalty'],
      [{ presencePenalty: 'x' }, 'presencePenalty'],
      [{ penaltyLastN: -2 }, 'penaltyLastN'],
      [{ logitBias: { 3: NaN } }, 'logitBias[3]'],
      [{ logitBias: { 3: Infinity } }, 'logitBias[3]'],
      [{ logitBias: new Map([[-1, 1]]) }, 'logitBias'],
      [{ logitBias: 5 }, 'logitBias'],
    ];
    for (const [o, name] of bad) {
      let err: unknown;
      try {
        checkSamplerChain(o as never, 10);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(o)).toBeInstanceOf(ArgumentError);
      expect((err as Error).message.startsWith(name), (err as Error).message).toBe(true);
    }
    expect(() => checkSamplerChain({ logitBias: { 10: 1 } }, 10)).toThrow(ArgumentError);
    const t = Tensor.from(new Float32Array(8), { shape: [2, 4] });
    await expect(samplingChain(t, checkSamplerChain({ temperature: 1, repeatPenalty: 1.2 }))).rejects.toThrow(/contexts/);
    await expect(samplingChain(t, checkSamplerChain({ temperature: 1 }), { uniforms: Float64Array.of(0.5, 1) })).rejects.toThrow(/uniforms\[1\]/);
    await expect(samplingChain(t, checkSamplerChain({ temperature: 1, logitBias: { 4: 1 } }))).rejects.toThrow(/logitBias/);
  });
});

/** The reference settings type is the wrapper's: a compile-time check that the two stay in step. */
const sameShape: ChainRef = checkSamplerChain({});
void sameShape;
