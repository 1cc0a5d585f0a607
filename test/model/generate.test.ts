/** generate(): greedy equals the reference's argmax path, batches, sampling, stop, abort, streaming. */
import { describe, expect, it } from 'vitest';

import { Random, Sampler, processedDistribution, sampleFrom } from '../../lib/decode/sampling.js';
import { type TextTokenizer, generate, stream } from '../../lib/generate.js';
import { Model } from '../../lib/model/model.js';
import { llamaReference } from '../helpers/llama-reference.js';
import { randomConfig, randomWeights } from '../helpers/random-model.js';

const config = randomConfig({ vocabSize: 40, eosTokenIds: [39] });
const tensors = randomWeights(config, 3, 0.5);
const model = await Model.fromWeights({ config, tensors }, { backend: 'cpu' });

/** A character tokenizer over 'a'..'z', space and punctuation: id = index in ALPHABET + 1; 0 = BOS. */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz .,!?;:-\'"()';
const charTokenizer: TextTokenizer = {
  bosId: 0,
  eosIds: [39],
  encode: (text, opts) => [...(opts?.bos ? [0] : []), ...[...text].map((c) => ALPHABET.indexOf(c) + 1)],
  decode: (ids) => Array.from(ids, (i) => (i > 0 && i <= ALPHABET.length ? ALPHABET[i - 1] : '')).join(''),
  streamDecoder: () => ({ push: (id) => (id > 0 && id <= ALPHABET.length ? ALPHABET[id - 1]! : ''), flush: () => '' }),
};

function greedyReference(prompt: number[], n: number): number[] {
  const seq = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const logits = llamaReference(config, tensors, seq).at(-1)!;
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
    if (best === 39) break;
    out.push(best);
    seq.push(best);
  }
  return out;
}

describe('generate', () => {
  it('greedy decoding follows the float64 reference argmax path', async () => {
    const prompt = [0, 5, 9, 14];
    const r = await generate({ model, tokens: prompt, maxTokens: 12 });
    expect(r.tokens).toEqual(greedyReference(prompt, 12));
    expect(r.stats.promptTokens).toBe(4);
    expect(r.stats.generatedTokens).toBe(r.tokens.length);
    expect(r.stats.targetPasses).toBeGreaterThan(0);
    expect(['length', 'eos']).toContain(r.finishReason);
  });

  it('a batch of prompts gives the same tokens as one prompt at a time', async () => {
    const prompts = [[0, 1, 2], [0, 20, 21, 22, 23, 7], [0]];
    const batch = await generate({ model, tokens: prompts, maxTokens: 8 });
    for (let s = 0; s < prompts.length; s++) {
      const single = await generate({ model, tokens: prompts[s]!, maxTokens: 8 });
      expect(batch[s]!.tokens).toEqual(single.tokens);
    }
  });

  it('seeded sampling is reproducible and differs across seeds', async () => {
    const opts = { model, tokens: [0, 3, 4], maxTokens: 16, temperature: 1.5, topK: 20, topP: 0.95, stopAtEos: false };
    const a = await generate({ ...opts, seed: 42 });
    const b = await generate({ ...opts, seed: 42 });
    const c = await generate({ ...opts, seed: 43 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
  });

  it('n samples of one prompt: a batch with consecutive seeds', async () => {
    const opts = { model, tokens: [0, 3, 4], maxTokens: 10, temperature: 1, stopAtEos: false, seed: 5 };
    const many = await generate({ ...opts, n: 3 });
    expect(many).toHaveLength(3);
    for (let i = 0; i < 3; i++) expect(many[i]!.tokens).toEqual((await generate({ ...opts, seed: 5 + i })).tokens);
    await expect(generate({ ...opts, n: 0 })).rejects.toThrow(/n must be an integer in \[1, 4096\]; received 0/);
  });

  it('text prompts, streaming and stop strings', async () => {
    const full = await generate({ model, tokenizer: charTokenizer, prompt: 'hello', maxTokens: 20, stopAtEos: false });
    expect(full.text).toBe(charTokenizer.decode(full.tokens));
    const pieces: string[] = [];
    const it = stream({ model, tokenizer: charTokenizer, prompt: 'hello', maxTokens: 20, stopAtEos: false });
    for await (const p of it) pieces.push(p);
    expect(pieces.join('')).toBe(full.text);
    // Stop at a substring that occurs in the greedy text: the text ends right before it.
    if (full.text.length >= 4) {
      const stop = full.text.slice(2, 4);
      const cut = await generate({ model, tokenizer: charTokenizer, prompt: 'hello', maxTokens: 20, stop: [stop], stopAtEos: false });
      expect(cut.finishReason).toBe('stop');
      expect(cut.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
    }
  });

  it('an aborted signal stops generation within one step', async () => {
    const ctrl = new AbortController();
    let steps = 0;
    const r = await generate({
      model, tokens: [0, 1], maxTokens: 50, stopAtEos: false, tokenizer: charTokenizer,
      signal: ctrl.signal,
      onText: () => {
        steps++;
        if (steps === 3) ctrl.abort();
      },
    });
    expect(r.finishReason).toBe('abort');
    expect(r.tokens.length).toBeLessThanOrEqual(4);
  });

  it('rejects bad options by name', async () => {
    await expect(generate({ model, tokens: [0, 99] })).rejects.toThrow(/tokens\[0\]\[1\] must be a token id in \[0, 39\]; received 99/);
    await expect(generate({ model, prompt: 'hi' })).rejects.toThrow(/tokenizer must be a tokenizer to encode the prompt/);
    await expect(generate({ model, tokens: [1], temperature: -1 })).rejects.toThrow(/temperature must be a finite number >= 0; received -1/);
    await expect(generate({ model, tokens: [1], topP: 0 })).rejects.toThrow(/topP must be a number in \(0, 1\]; received 0/);
    await expect(generate({ model, tokens: [1], maxTokens: -2 })).rejects.toThrow(/maxTokens must be an integer in \[0, \d+\]; received -2/);
  });
});

describe('sampling', () => {
  it('top-k and top-p keep the right tokens and renormalise', () => {
    const logits = [2, 1, 0, 3, -1];
    const p = processedDistribution(logits, { temperature: 1, topK: 2, topP: 1 });
    expect(Array.from(p, (x) => x > 0)).toEqual([true, false, false, true, false]);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    const q = processedDistribution(logits, { temperature: 1, topK: 0, topP: 0.5 });
    expect(Array.from(q, (x) => x > 0)).toEqual([false, false, false, true, false]); // p(3) ~ 0.64 >= 0.5
  });

  it('draws follow the processed distribution (chi-square), and a wrong sampler fails the same test', () => {
    const p = [0.5, 0.3, 0.15, 0.05];
    const n = 40000;
    const chi2 = (draw: (u: number) => number) => {
      const counts = [0, 0, 0, 0];
      const r = new Random(1);
      for (let i = 0; i < n; i++) counts[draw(r.next())]!++;
      return counts.reduce((acc, c, i) => acc + (c - n * p[i]!) ** 2 / (n * p[i]!), 0);
    };
    // 3 degrees of freedom: 16.27 is the 0.999 quantile.
    expect(chi2((u) => sampleFrom(p, u))).toBeLessThan(16.27);
    expect(chi2((u) => Math.min(3, Math.floor(u * 4)))).toBeGreaterThan(16.27); // uniform: a negative control
  });

  it('greedy ties go to the lowest id', () => {
    expect(new Sampler().sample([1, 3, 3, 2])).toBe(1);
  });
});
