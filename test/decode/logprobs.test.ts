/**
 * logprobs on stories260K: each emitted token's logprob and top-n alternatives equal a
 * float64 log-softmax (after temperature) of the logits the decoding saw, recomputed here by
 * stepping the model token by token (the same computation as the loop); streams carry them;
 * a speculative strategy reports the same tokens; bad values are ArgumentErrors.
 */
import { describe, expect, it } from 'vitest';

import { generate, stream } from '../../lib/generate.js';
import { loadModel } from '../../lib/model/load.js';
import type { Model } from '../../lib/model/model.js';
import { testModel } from '../helpers/test-models.js';

const bin = testModel('stories260K/stories260K.bin', 'logprobs on stories260K');

/** The logits rows before each generated token: prefill of the prompt, then one token per step. */
async function stepRows(model: Model, prompt: number[], tokens: number[]): Promise<Float32Array[]> {
  const cache = model.createCache({ capacity: prompt.length + tokens.length + 1 });
  try {
    const rows: Float32Array[] = [];
    let out = await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
    for (let i = 0; i < tokens.length; i++) {
      rows.push(Float32Array.from(out.logits.toFloat32()));
      out.logits.dispose();
      if (i + 1 < tokens.length) out = await model.forward(cache, [{ sequence: 0, tokens: [tokens[i]!] }]);
    }
    return rows;
  } finally {
    cache.dispose();
  }
}

/** float64 log-softmax of row / T, and the indices sorted by it (ties: lower id). */
function reference(row: Float32Array, temperature: number): { lp: Float64Array; order: number[] } {
  const inv = temperature > 0 ? 1 / temperature : 1;
  const z = Float64Array.from(row, (x) => x * inv);
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0));
  const lp = z.map((x) => x - lse);
  const order = [...lp.keys()].sort((a, b) => lp[b]! - lp[a]! || a - b);
  return { lp, order };
}

describe.skipIf(!bin)('logprobs', async () => {
  const { model, tokenizer } = await loadModel(bin!, { backend: 'cpu' });
  const prompt = tokenizer.encode('Once upon a time', { bos: true });

  it.each([
    ['greedy', 0],
    ['sampled at temperature 0.7', 0.7],
  ] as const)('%s: every token has its logprob and the top 5 of softmax(logits / T)', async (_, temperature) => {
    const r = await generate({ model, tokenizer, tokens: prompt, maxTokens: 24, temperature, seed: 11, logprobs: 5, stopAtEos: false });
    expect(r.logprobs).toHaveLength(r.tokens.length);
    const rows = await stepRows(model, prompt, r.tokens);
    r.logprobs!.forEach((e, i) => {
      const { lp, order } = reference(rows[i]!, temperature);
      expect(e.token).toBe(r.tokens[i]);
      expect(e.logprob).toBeCloseTo(lp[e.token]!, 9);
      expect(e.top.map((t) => t.token)).toEqual(order.slice(0, 5));
      e.top.forEach((t) => expect(t.logprob).toBeCloseTo(lp[t.token]!, 9));
      if (temperature === 0) expect(e.top[0]!.token).toBe(e.token);
    });
    const sum = r.logprobs!.reduce((a, e) => a + Math.exp(e.top[0]!.logprob), 0);
    expect(sum).toBeLessThanOrEqual(r.tokens.length);
  });

  it('logprobs: 0 gives the token logprob alone; without the option there are none', async () => {
    const r = await generate({ model, tokenizer, tokens: prompt, maxTokens: 6, temperature: 0, logprobs: 0 });
    expect(r.logprobs!.every((e) => e.top.length === 0 && e.logprob <= 0)).toBe(true);
    expect((await generate({ model, tokenizer, tokens: prompt, maxTokens: 6, temperature: 0 })).logprobs).toBeUndefined();
  });

  it('streams carry the logprobs of the tokens each piece completes (one sequence and a batch)', async () => {
    const gen = stream({ model, tokenizer, tokens: prompt, maxTokens: 20, temperature: 0, logprobs: 2 });
    const got = [];
    let n = await gen.next();
    while (!n.done) {
      got.push(...(n.value.logprobs ?? []));
      n = await gen.next();
    }
    expect(got).toEqual(n.value.logprobs);
    const perSeq: unknown[][] = [[], []];
    const batch = stream({ model, tokenizer, prompt: ['Lily', 'Tom'], maxTokens: 12, temperature: 0, logprobs: 1 });
    let b = await batch.next();
    while (!b.done) {
      perSeq[b.value.sequence]!.push(...(b.value.logprobs ?? []));
      b = await batch.next();
    }
    expect(perSeq).toEqual(b.value.map((r) => r.logprobs));
  });

  it('a speculative strategy (lookup) reports the same tokens and logprobs as autoregressive decoding', async () => {
    const tokens = tokenizer.encode('Lily had a ball. Lily had a ball. Lily had', { bos: true });
    const a = await generate({ model, tokenizer, tokens, maxTokens: 30, temperature: 0, logprobs: 3 });
    const b = await generate({ model, tokenizer, tokens, maxTokens: 30, temperature: 0, logprobs: 3, strategy: 'lookup' });
    expect(b.tokens).toEqual(a.tokens);
    expect(b.stats.speculation!.accepted).toBeGreaterThan(0);
    b.logprobs!.forEach((e, i) => {
      const ref = a.logprobs![i]!;
      expect(e.top.map((t) => t.token)).toEqual(ref.top.map((t) => t.token));
      // Tree-step logits are computed in another order than single-token steps: f32 rounding.
      expect(Math.abs(e.logprob - ref.logprob)).toBeLessThan(1e-4);
    });
  });

  it('refuses bad values with ArgumentErrors', async () => {
    for (const bad of [-1, 21, 1.5, '3']) {
      await expect(generate({ model, tokenizer, tokens: prompt, maxTokens: 2, logprobs: bad as number })).rejects.toThrow(/logprobs must be an integer in \[0, 20\]/);
    }
  });
});
