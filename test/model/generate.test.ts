/** generate(): greedy equals the reference's argmax path, batches, sampling, stop, abort, streaming. */
import { describe, expect, it } from 'vitest';

import { Random, Sampler } from '../../lib/decode/sampling.js';
import { checkSamplerChain, sampleRows, samplingChain } from '../../lib/kernels/sampling.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { processLogitsRef, probsRef } from '../helpers/sampling-reference.js';
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

describe('sampling (the native sampler chain)', () => {
  it('top-k and top-p keep the right tokens and renormalise', async () => {
    const logits = Tensor.from(Float32Array.of(2, 1, 0, 3, -1), { shape: [1, 5] });
    const p = (await samplingChain(logits, checkSamplerChain({ temperature: 1, topK: 2 }), { probs: true })).probs!.toFloat32();
    expect(Array.from(p, (x) => x > 0)).toEqual([true, false, false, true, false]);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    const q = (await samplingChain(logits, checkSamplerChain({ temperature: 1, topP: 0.5 }), { probs: true })).probs!.toFloat32();
    expect(Array.from(q, (x) => x > 0)).toEqual([false, false, false, true, false]); // p(3) ~ 0.64 >= 0.5
  });

  it('draws follow the processed distribution (chi-square), and a wrong sampler fails the same test', async () => {
    const p = [0.5, 0.3, 0.15, 0.05];
    const n = 40000;
    const r = new Random(1);
    const uniforms = Float64Array.from({ length: n }, () => r.next());
    const logits = Tensor.from(Float32Array.from({ length: n * 4 }, (_, i) => Math.log(p[i % 4]!)), { shape: [n, 4] });
    const drawn = await sampleRows(logits, checkSamplerChain({ temperature: 1 }), uniforms);
    const chi2 = (draw: (i: number) => number) => {
      const counts = [0, 0, 0, 0];
      for (let i = 0; i < n; i++) counts[draw(i)]!++;
      return counts.reduce((acc, c, i) => acc + (c - n * p[i]!) ** 2 / (n * p[i]!), 0);
    };
    // 3 degrees of freedom: 16.27 is the 0.999 quantile.
    expect(chi2((i) => drawn[i]!)).toBeLessThan(16.27);
    expect(chi2((i) => Math.min(3, Math.floor(uniforms[i]! * 4)))).toBeGreaterThan(16.27); // uniform: a negative control
  });

  it('greedy ties go to the lowest id', async () => {
    expect(await new Sampler().sample([1, 3, 3, 2])).toBe(1);
    expect(await new Sampler({ temperature: 0, logitBias: { 1: -1 } }).sample([1, 3, 3, 2])).toBe(2);
  });

  it('penalties change the distribution as the reference says', async () => {
    const logits = Float32Array.of(2, 1, 0.5, -1, 3);
    const o = { temperature: 0.9, repeatPenalty: 1.3, frequencyPenalty: 0.2, presencePenalty: 0.4, penaltyLastN: 4 };
    const chain = checkSamplerChain(o);
    const context = [4, 4, 3, 0, 4, 1];
    const res = await samplingChain(Tensor.from(logits, { shape: [1, 5] }), chain, { contexts: [context], probs: true, processedLogits: true });
    expect(Array.from(res.processedLogits!.toFloat32())).toEqual(Array.from(processLogitsRef(logits, chain, context)));
    const want = probsRef(logits, chain, context)!;
    res.probs!.toFloat32().forEach((v, y) => expect(v).toBeCloseTo(want[y]!, 6));
  });
});

describe('generate() with the full sampler chain', () => {
  const opts = { model, tokens: [0, 3, 4, 3, 4], maxTokens: 12, stopAtEos: false, temperature: 0.9, topK: 20, topP: 0.95, minP: 0.01, repeatPenalty: 1.2, frequencyPenalty: 0.1, presencePenalty: 0.1, penaltyLastN: 8, logitBias: { 5: 1.5, 6: -Infinity } };
  it('seeded generation is reproducible (autoregressive and speculative), and a banned token never appears', async () => {
    const a = await generate({ ...opts, seed: 11 });
    const b = await generate({ ...opts, seed: 11 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens.length).toBe(12);
    expect(a.tokens).not.toContain(6);
    const draft = await Model.fromWeights({ config, tensors: randomWeights(config, 9, 0.5) }, { backend: 'cpu' });
    const s1 = await generate({ ...opts, draft, seed: 11, speculation: { k: 3, fixed: true } });
    const s2 = await generate({ ...opts, draft, seed: 11, speculation: { k: 3, fixed: true } });
    expect(s1.tokens).toEqual(s2.tokens);
    expect(s1.tokens).not.toContain(6);
    // (fixed sizes: under the goodput controller the draft sizes, hence the uniforms consumed, follow measured times)
    const t1 = await generate({ ...opts, draft, strategy: 'tree', seed: 11, speculation: { nodes: 6, fixed: true } });
    expect((await generate({ ...opts, draft, strategy: 'tree', seed: 11, speculation: { nodes: 6, fixed: true } })).tokens).toEqual(t1.tokens);
  });

  it('greedy with penalties: speculative and tree equal autoregressive exactly', async () => {
    const g = { ...opts, temperature: 0, maxTokens: 16 };
    const ar = await generate(g);
    const draft = await Model.fromWeights({ config, tensors: randomWeights(config, 9, 0.5) }, { backend: 'cpu' });
    for (const strategy of ['speculative', 'tree', 'lookup', 'ngram-tree'] as const) {
      const r = await generate({ ...g, ...(strategy === 'speculative' || strategy === 'tree' ? { draft } : {}), strategy });
      expect(r.tokens, strategy).toEqual(ar.tokens);
    }
    // ... and differ from greedy without them (the penalties do something here).
    expect((await generate({ model, tokens: opts.tokens, maxTokens: 16, stopAtEos: false })).tokens).not.toEqual(ar.tokens);
  });

  it('rejects bad chain options by name', async () => {
    await expect(generate({ model, tokens: [1], minP: 2 })).rejects.toThrow(/minP must be a number in \[0, 1\]; received 2/);
    await expect(generate({ model, tokens: [1], repeatPenalty: 0 })).rejects.toThrow(/repeatPenalty must be/);
    await expect(generate({ model, tokens: [1], penaltyLastN: 1.5 })).rejects.toThrow(/penaltyLastN must be/);
    await expect(generate({ model, tokens: [1], logitBias: { 40: 1 } })).rejects.toThrow(/logitBias must be token ids in \[0, 40\)/);
  });
});
