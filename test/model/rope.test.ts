/**
 * RoPE scaling math (lib/model/rope.ts) against the float64 reference of
 * test/helpers/rope-reference.ts (written in ggml's form) and against numbers worked out by hand
 * for real configurations (Llama 3.1 8B, Qwen2.5 with YaRN): inverse frequencies, the YaRN ramp
 * and attention factor, and the rotation of a vector at hand-picked positions up to 131071.
 */
import { describe, expect, it } from 'vitest';

import type { ModelConfig, RopeScaling } from '../../lib/model/config.js';
import { ropeParameters, yarnCorrectionRange, yarnMscale } from '../../lib/model/rope.js';
import { randomConfig } from '../helpers/random-model.js';
import { llama3FreqFactors, referenceAttentionFactor, referenceFrequency } from '../helpers/rope-reference.js';

const yarn = (o: Partial<Extract<RopeScaling, { type: 'yarn' }>> = {}): RopeScaling => ({
  type: 'yarn',
  factor: 4,
  originalMaxPositionEmbeddings: 32768,
  betaFast: 32,
  betaSlow: 1,
  attentionFactor: yarnMscale(4),
  truncate: true,
  ...o,
});

const cases: Array<[string, ModelConfig]> = [
  ['no scaling, head 128, theta 10000', randomConfig({ headDim: 128, nHeads: 1, nKvHeads: 1 })],
  ['linear factor 4', randomConfig({ headDim: 64, nHeads: 1, nKvHeads: 1, ropeScaling: { type: 'linear', factor: 4 } })],
  ['llama3 (Llama 3.1 8B)', randomConfig({ headDim: 128, nHeads: 1, nKvHeads: 1, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } })],
  ['yarn (Qwen2.5, factor 4 over 32768)', randomConfig({ headDim: 128, nHeads: 1, nKvHeads: 1, ropeTheta: 1000000, ropeScaling: yarn() })],
  ['yarn without truncation (gpt-oss style)', randomConfig({ headDim: 64, nHeads: 1, nKvHeads: 1, ropeTheta: 150000, ropeScaling: yarn({ factor: 32, originalMaxPositionEmbeddings: 4096, truncate: false, attentionFactor: yarnMscale(32) }) })],
  ['GGUF rope_freqs factors then yarn', randomConfig({ headDim: 8, nHeads: 1, nKvHeads: 1, ropeFreqFactors: [1, 2, 3, 4], ropeScaling: yarn({ originalMaxPositionEmbeddings: 256 }) })],
];

describe('ropeParameters against the float64 reference', () => {
  it.each(cases)('%s: every frequency is the reference rounded to f32', (_name, config) => {
    const { invFreq, attentionFactor } = ropeParameters(config);
    expect(invFreq.length).toBe(config.headDim / 2);
    const bad: string[] = [];
    for (let j = 0; j < invFreq.length; j++) {
      const ref = referenceFrequency(config, j);
      // float64 results of two formulations can differ in the last bits; rounding to f32 may then
      // land one ulp apart, never more.
      if (Math.abs(invFreq[j]! - ref) > Math.abs(ref) * 2 ** -23) bad.push(`j ${j}: ${invFreq[j]} vs ${ref}`);
    }
    expect(bad).toEqual([]);
    expect(attentionFactor).toBe(referenceAttentionFactor(config));
  });

  it.each(cases)('%s: rotating a vector at positions 0, 1, 7, 4095, 32767, 131071 matches the reference', (_name, config) => {
    const { invFreq, attentionFactor } = ropeParameters(config);
    const half = config.headDim / 2;
    const v = Array.from({ length: config.headDim }, (_, i) => Math.sin(i + 1));
    for (const pos of [0, 1, 7, 4095, 32767, 131071]) {
      for (let j = 0; j < half; j++) {
        // The kernel's angle: the position times the f32 frequency, in double.
        const angle = pos * invFreq[j]!;
        const refAngle = pos * referenceFrequency(config, j);
        // The angle differs by at most the f32 rounding of the frequency times the position.
        expect(Math.abs(angle - refAngle)).toBeLessThanOrEqual(pos * Math.abs(referenceFrequency(config, j)) * 2 ** -23 + 1e-12);
        const [a, b] = [v[j]!, v[j + half]!];
        const m = referenceAttentionFactor(config);
        const rot = [attentionFactor * (a * Math.cos(angle) - b * Math.sin(angle)), attentionFactor * (a * Math.sin(angle) + b * Math.cos(angle))];
        const ref = [m * (a * Math.cos(refAngle) - b * Math.sin(refAngle)), m * (a * Math.sin(refAngle) + b * Math.cos(refAngle))];
        const tol = 2 * Math.abs(angle - refAngle) + 1e-12;
        expect(Math.abs(rot[0]! - ref[0]!)).toBeLessThanOrEqual(tol * m * 2);
        expect(Math.abs(rot[1]! - ref[1]!)).toBeLessThanOrEqual(tol * m * 2);
      }
    }
  });
});

describe('RoPE scaling: numbers worked out by hand', () => {
  it('llama3 (Llama 3.1 8B: theta 500000, d 128, factor 8, low 1, high 4, original 8192): kept, blended and divided bands', () => {
    const c = cases[2]![1];
    const { invFreq, attentionFactor } = ropeParameters(c);
    const f32 = (x: number) => Math.fround(x);
    // Pair j's unscaled frequency is 500000^(-j/64); wavelength 2 pi / f.
    expect(invFreq[0]).toBe(1); // wavelength 6.28 < 8192 / 4: kept
    expect(invFreq[20]).toBe(f32(0.016560440080994446)); // wavelength 379: kept
    expect(invFreq[30]! / f32(0.0013718935677611381)).toBeCloseTo(1, 6); // wavelength 2948: blended (s = 0.6929)
    expect(invFreq[31]! / f32(0.0008567514129196321)).toBeCloseTo(1, 6); // wavelength 3619: blended
    expect(invFreq[40]! / f32(3.428102195952591e-5)).toBeCloseTo(1, 6); // wavelength 22910 > 8192: divided by 8
    expect(invFreq[63]! / f32(3.068925988914511e-7)).toBeCloseTo(1, 6);
    expect(attentionFactor).toBe(1);
  });

  it("llama3 from config.json equals llama.cpp's rope_freqs.weight divisors (how GGUF stores Llama 3.1)", () => {
    const hf = cases[2]![1];
    const factors = llama3FreqFactors(128, 500000, 8, 1, 4, 8192).map(Math.fround);
    const gguf: ModelConfig = { ...hf, ropeScaling: undefined, ropeFreqFactors: factors };
    delete gguf.ropeScaling;
    const a = ropeParameters(hf).invFreq;
    const b = ropeParameters(gguf).invFreq;
    expect(factors[0]).toBe(1);
    expect(factors[63]).toBe(8);
    for (let j = 0; j < 64; j++) expect(Math.abs(a[j]! - b[j]!)).toBeLessThanOrEqual(Math.abs(a[j]!) * 2 ** -21);
  });

  it('yarn (Qwen2.5: theta 1e6, d 128, original 32768, beta 32 / 1): ramp over pairs 23..40, attention factor 0.1 ln 4 + 1', () => {
    // corr(r) = 128 ln(32768 / (2 pi r)) / (2 ln 1e6): corr(32) = 23.596 -> 23, corr(1) = 39.651 -> 40.
    expect(yarnCorrectionRange(128, 1e6, 32768, 32, 1, true)).toEqual([23, 40]);
    const [lo, hi] = yarnCorrectionRange(128, 1e6, 32768, 32, 1, false);
    expect(lo).toBeCloseTo(23.5959476083381, 10);
    expect(hi).toBeCloseTo(39.6508807104171, 10);
    const { invFreq, attentionFactor } = ropeParameters(cases[3]![1]);
    const base = (j: number) => 1e6 ** (-j / 64);
    expect(invFreq[0]).toBe(1); // below the ramp: kept
    expect(invFreq[23]).toBe(Math.fround(base(23))); // ramp 0 at its start
    expect(invFreq[40]).toBe(Math.fround(base(40) / 4)); // ramp 1 at its end
    expect(invFreq[63]).toBe(Math.fround(base(63) / 4));
    // Halfway (pair 31.5 would be ramp 0.5): pair 30 has ramp 7 / 17.
    expect(invFreq[30]! / ((base(30) / 4) * (7 / 17) + base(30) * (10 / 17))).toBeCloseTo(1, 6);
    expect(attentionFactor).toBe(1.138629436111989);
    expect(yarnMscale(40)).toBeCloseTo(1.3688879454113936, 14);
    expect(yarnMscale(1)).toBe(1);
    expect(yarnMscale(0.5)).toBe(1);
  });

  it('linear: every frequency divided by the factor (positions / factor)', () => {
    const c = cases[1]![1];
    const plain = ropeParameters({ ...c, ropeScaling: undefined }).invFreq;
    const { invFreq } = ropeParameters(c);
    for (let j = 0; j < invFreq.length; j++) expect(invFreq[j]).toBe(Math.fround(plain[j]! / 4));
  });

  it('ramp ends that meet (high == low) do not divide by zero', () => {
    // corr(betaFast) and corr(betaSlow) round to the same pair when beta_fast is barely above beta_slow.
    const c = randomConfig({ headDim: 16, nHeads: 1, nKvHeads: 1, ropeScaling: yarn({ originalMaxPositionEmbeddings: 4096, betaFast: 1.0001, betaSlow: 1, truncate: false }) });
    const { invFreq } = ropeParameters(c);
    expect(Array.from(invFreq).every((x) => Number.isFinite(x) && x > 0)).toBe(true);
    for (let j = 0; j < 8; j++) expect(Math.abs(invFreq[j]! - referenceFrequency(c, j))).toBeLessThanOrEqual(referenceFrequency(c, j) * 2 ** -23);
  });
});
