/**
 * stream() over a batch yields every sequence's pieces tagged with its index, and returns the
 * results generate() gives; the overloads of generate() and stream() type their results as
 * they are returned (type tests with expectTypeOf, checked by tsc and at run time).
 */
import { describe, expect, expectTypeOf, it } from 'vitest';

import { type GenerateResult, type StreamPiece, generate, stream } from '../../lib/generate.js';
import { loadModel } from '../../lib/model/load.js';
import { testModel } from '../helpers/test-models.js';

const bin = testModel('stories260K/stories260K.bin', 'batch streaming on stories260K');

describe.skipIf(!bin)('stream() of a batch', async () => {
  const { model, tokenizer } = await loadModel(bin!, { backend: 'cpu' });

  it('yields every sequence with its index; the text per sequence equals generate() of the batch', async () => {
    const opts = { model, tokenizer, prompt: ['Once upon a time', 'Tom had a dog'], maxTokens: 24, temperature: 0 };
    const texts = ['', ''];
    const seen = new Set<number>();
    const gen = stream(opts);
    let next = await gen.next();
    while (!next.done) {
      const p: StreamPiece = next.value;
      expect(typeof p.text).toBe('string');
      seen.add(p.sequence);
      texts[p.sequence] += p.text;
      next = await gen.next();
    }
    const results = next.value;
    expect([...seen].sort()).toEqual([0, 1]);
    const plain = await generate(opts);
    expect(results.map((r) => r.tokens)).toEqual(plain.map((r) => r.tokens));
    expect(texts).toEqual(plain.map((r) => r.text));
  });

  it('n samples stream as a batch (n: 1 included), with sequence indices 0 .. n - 1', async () => {
    const seqs = new Set<number>();
    for await (const p of stream({ model, tokenizer, prompt: 'Lily', n: 3, maxTokens: 8, temperature: 0.9, seed: 3 })) seqs.add(p.sequence);
    expect([...seqs].sort()).toEqual([0, 1, 2]);
    const one = await generate({ model, tokenizer, prompt: 'Lily', n: 1, maxTokens: 4, temperature: 0 });
    expect(Array.isArray(one)).toBe(true);
    expect(one).toHaveLength(1);
  });

  it('breaking out of a batch stream stops the work (forward passes counted)', async () => {
    let passes = 0;
    const original = model.forward.bind(model);
    model.forward = (async (...args: Parameters<typeof original>) => (passes++, original(...args))) as typeof model.forward;
    try {
      let n = 0;
      for await (const _ of stream({ model, tokenizer, prompt: ['a', 'b'], maxTokens: 300, temperature: 0, stopAtEos: false })) if (++n === 4) break;
      expect(n).toBe(4);
      // Two sequences: four pieces need at most the prefill and two steps, plus one in flight.
      expect(passes).toBeLessThanOrEqual(4);
      const after = passes;
      await new Promise((r) => setTimeout(r, 50));
      expect(passes).toBe(after);
    } finally {
      model.forward = original;
    }
  });

  it('the result types match what is returned', async () => {
    const single = await generate({ model, tokenizer, prompt: 'a', maxTokens: 2 });
    expectTypeOf(single).toEqualTypeOf<GenerateResult>();
    expect(Array.isArray(single)).toBe(false);
    const byN = await generate({ model, tokenizer, prompt: 'a', n: 1, maxTokens: 2 });
    expectTypeOf(byN).toEqualTypeOf<GenerateResult[]>();
    expect(Array.isArray(byN)).toBe(true);
    const byPrompts = await generate({ model, tokenizer, prompt: ['a', 'b'], maxTokens: 2 });
    expectTypeOf(byPrompts).toEqualTypeOf<GenerateResult[]>();
    expect(byPrompts).toHaveLength(2);
    const byTokens = await generate({ model, tokens: [[1, 2], [1]], maxTokens: 2 });
    expectTypeOf(byTokens).toEqualTypeOf<GenerateResult[]>();
    const oneTokens = await generate({ model, tokens: [1, 2], maxTokens: 2 });
    expectTypeOf(oneTokens).toEqualTypeOf<GenerateResult>();
    // A prompt whose type is a union: the result type says it may be either.
    const either = ['a'] as string | string[];
    const r = await generate({ model, tokenizer, prompt: either, maxTokens: 2 });
    expectTypeOf(r).toEqualTypeOf<GenerateResult | GenerateResult[]>();
    expect(Array.isArray(r)).toBe(true);
    expectTypeOf(stream({ model, tokenizer, prompt: 'a' })).toEqualTypeOf<AsyncGenerator<string, GenerateResult, undefined>>();
    expectTypeOf(stream({ model, tokenizer, prompt: ['a'] })).toEqualTypeOf<AsyncGenerator<StreamPiece, GenerateResult[], undefined>>();
    expectTypeOf(stream({ model, tokenizer, prompt: 'a', n: 2 })).toEqualTypeOf<AsyncGenerator<StreamPiece, GenerateResult[], undefined>>();
    expectTypeOf(stream({ model, tokenizer, prompt: either })).toEqualTypeOf<AsyncGenerator<string | StreamPiece, GenerateResult | GenerateResult[], undefined>>();
  });
});
