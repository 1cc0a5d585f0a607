/**
 * chat() and ChatSession on the real stories260K model (llama2.c tokenizer) with a small
 * template: the prompt ids, a session's turn reusing its cache (forward tokens counted) and
 * giving the same tokens as a fresh call on the whole conversation, strategies inside a
 * session, stream cancellation, and the context guard.
 */
import { describe, expect, it } from 'vitest';

import { ChatSession, chat, chatPromptIds, chatTemplateFor } from '../../lib/chat/session.js';
import { generate, stream } from '../../lib/generate.js';
import { loadModel } from '../../lib/model/load.js';
import { Model } from '../../lib/model/model.js';
import { loadWeights } from '../../lib/model/weights.js';
import { testModel } from '../helpers/test-models.js';

const TEMPLATE = '{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}';
const bin = testModel('stories260K/stories260K.bin', 'chat sessions on stories260K');

/** Counts the tokens and passes of every forward pass of `model` (Model.forward, and Model.step: greedy decoding). */
function countForward(model: Model): { tokens: number; passes: number; reset(): void } {
  const counter = { tokens: 0, passes: 0, reset: () => ((counter.tokens = 0), (counter.passes = 0)) };
  const original = model.forward.bind(model);
  model.forward = (async (cache, step, options) => {
    counter.passes++;
    counter.tokens += step.reduce((n, s) => n + s.tokens.length, 0);
    return original(cache, step, options);
  }) as Model['forward'];
  const originalStep = model.step.bind(model);
  model.step = (async (cache, step, options) => {
    counter.passes++;
    counter.tokens += step.reduce((n, s) => n + s.tokens.length + (s.draft?.tokens.length ?? 0), 0);
    return originalStep(cache, step, options);
  }) as Model['step'];
  return counter;
}

describe.skipIf(!bin)('chat on stories260K', async () => {
  const { model, tokenizer } = await loadModel(bin!, { backend: 'cpu' });
  const counter = countForward(model);

  it('chat() renders the template, encodes it with special tokens and one BOS', async () => {
    const messages = [{ role: 'user', content: 'Once upon a time' }];
    const r = await chat({ model, tokenizer, template: TEMPLATE, messages, maxTokens: 8, temperature: 0 });
    const text = 'user:Once upon a time\nassistant:';
    expect(r.promptTokens).toEqual(tokenizer.encode(text, { bos: true }));
    expect(r.promptTokens.filter((t) => t === tokenizer.bosId)).toHaveLength(1);
    // A template that writes BOS itself gets no second one.
    const withBos = chatPromptIds(tokenizer, chatTemplateFor(tokenizer, '{{ bos_token }}' + TEMPLATE).render(messages));
    expect(withBos).toEqual(r.promptTokens);
    const plain = await generate({ model, tokenizer, tokens: r.promptTokens, maxTokens: 8, temperature: 0 });
    expect(r.tokens).toEqual(plain.tokens);
    expect(r.message).toEqual({ role: 'assistant', content: plain.text });
  });

  it('a model without a template and no override is a clear error', async () => {
    await expect(chat({ model, tokenizer, messages: [{ role: 'user', content: 'x' }] })).rejects.toThrow(/template must be a chat template: this model ships none/);
  });

  it("a session's second turn reuses the cache and gives the tokens of a fresh call on the whole conversation", async () => {
    const session = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 24, temperature: 0 });
    try {
      const first = await session.send('Once upon a time, there was a little dog.');
      expect(first.tokens.length).toBeGreaterThan(0);
      counter.reset();
      const second = await session.send('The dog was happy.');
      const { promptTokens, reusedTokens } = session.lastTurn;
      // The first turn's prompt and reply (all but the reply's last token, never fed) are reused.
      expect(reusedTokens).toBeGreaterThanOrEqual(first.promptTokens.length + first.tokens.length - 1);
      expect(second.promptTokens.slice(0, first.promptTokens.length + first.tokens.length)).toEqual([...first.promptTokens, ...first.tokens]);
      // Forward work of turn 2: its new prompt tokens, then one token per generated token after the first.
      expect(counter.tokens).toBe(promptTokens - reusedTokens + Math.max(0, second.tokens.length - (second.finishReason === 'length' ? 1 : 0)));
      // The same tokens as a fresh call on the whole conversation.
      const fresh = await chat({ model, tokenizer, template: TEMPLATE, messages: session.messages.slice(0, 3), maxTokens: 24, temperature: 0 });
      expect(fresh.promptTokens).toEqual(second.promptTokens);
      expect(second.tokens).toEqual(fresh.tokens);
      expect(session.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    } finally {
      session.dispose();
    }
  });

  it.each(['lookup', 'token-recycling', 'jacobi'] as const)('strategy %s inside a session gives the greedy tokens', async (strategy) => {
    const plainSession = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 20, temperature: 0 });
    const specSession = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 20, temperature: 0, strategy });
    try {
      for (const text of ['Lily had a ball.', 'She liked to play.']) {
        const a = await plainSession.send(text);
        const b = await specSession.send(text);
        expect(b.tokens).toEqual(a.tokens);
      }
    } finally {
      plainSession.dispose();
      specSession.dispose();
    }
  });

  it('speculative decoding with a draft model inside a session gives the greedy tokens; sampling with a seed is reproducible', async () => {
    const draftPath = testModel('llama2xs-281K/model.bin', 'speculative chat session');
    if (!draftPath) return;
    const draft = await Model.fromWeights(loadWeights(draftPath), { backend: 'cpu' });
    const plain = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 20, temperature: 0 });
    const spec = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 20, temperature: 0, draft });
    const sampledA = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 12, temperature: 0.8, seed: 7 });
    const sampledB = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 12, temperature: 0.8, seed: 7 });
    try {
      for (const text of ['Lily had a ball.', 'She liked to play.']) {
        expect((await spec.send(text)).tokens).toEqual((await plain.send(text)).tokens);
        expect((await sampledB.send(text)).tokens).toEqual((await sampledA.send(text)).tokens);
      }
      expect(spec.lastTurn.reusedTokens).toBeGreaterThan(0);
    } finally {
      for (const s of [plain, spec, sampledA, sampledB]) s.dispose();
      draft.dispose();
    }
  });

  it('breaking out of a session stream stops the reply at once and keeps what was generated', async () => {
    const session = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 200, temperature: 0, stopAtEos: false });
    try {
      counter.reset();
      let pieces = 0;
      for await (const _ of session.stream('Tell me a story.')) if (++pieces === 3) break;
      // Prefill + at most the steps that produced three pieces and one in flight.
      expect(counter.passes).toBeLessThanOrEqual(pieces + 2);
      expect(session.messages).toHaveLength(2);
      const next = await session.send('More.');
      expect(next.tokens.length).toBeGreaterThan(0);
    } finally {
      session.dispose();
    }
  });

  it('breaking out of stream() stops generate at once', async () => {
    counter.reset();
    let pieces = 0;
    for await (const _ of stream({ model, tokenizer, prompt: 'Once upon a time', maxTokens: 400, temperature: 0, stopAtEos: false })) if (++pieces === 3) break;
    const passes = counter.passes;
    expect(passes).toBeLessThanOrEqual(pieces + 2);
    await new Promise((r) => setTimeout(r, 50));
    expect(counter.passes).toBe(passes);
  });

  it('the context is enforced: a long prompt is an error unless truncated; generation stops with finishReason context', async () => {
    const context = model.config.maxSeqLen;
    const long = Array.from({ length: context + 10 }, (_, i) => 300 + (i % 50));
    await expect(generate({ model, tokens: long, maxTokens: 4 })).rejects.toThrow(new RegExp(`tokens must be at most ${context - 1} tokens \\(the model's context is ${context} tokens`));
    const truncated = await generate({ model, tokenizer, tokens: [1, ...long], maxTokens: 4, truncatePrompt: true, temperature: 0 });
    expect(truncated.stats.promptTokens).toBe(context - 1);
    const tail = [1, ...long].slice(-(context - 2));
    const reference = await generate({ model, tokenizer, tokens: [1, ...tail], maxTokens: 4, temperature: 0 });
    expect(truncated.tokens).toEqual(reference.tokens);
    // maxTokens far past the context: no RangeError, the cache stops at the context.
    const r = await generate({ model, tokens: long.slice(0, context - 5), maxTokens: 1e9, stopAtEos: false, temperature: 0 });
    expect(r.finishReason).toBe('context');
    expect(r.stats.promptTokens + r.tokens.length).toBe(context + 1);
  });

  it('the cache grows as it fills: 300 greedy tokens equal a loop over a cache allocated whole', async () => {
    const r = await generate({ model, tokens: [1], maxTokens: 300, temperature: 0, stopAtEos: false });
    const cache = model.createCache({ capacity: 512 });
    const out: number[] = [];
    let next = 1;
    try {
      for (let i = 0; i < 300; i++) {
        const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [next] }]);
        const row = logits.toFloat32();
        logits.dispose();
        next = row.indexOf(Math.max(...row));
        out.push(next);
      }
    } finally {
      cache.dispose();
    }
    expect(r.tokens).toEqual(out);
  });

  it('a session whose conversation outgrows the context says so and stays usable', async () => {
    const session = new ChatSession({ model, tokenizer, template: TEMPLATE, maxTokens: 4, temperature: 0 });
    try {
      await expect(session.send('Once upon a time '.repeat(200))).rejects.toThrow(/content must be a message that keeps the conversation within the model's context of 512 tokens/);
      expect(session.messages).toHaveLength(0);
      expect((await session.send('Hi')).tokens.length).toBeGreaterThan(0);
    } finally {
      session.dispose();
    }
  });

  it('the default seed is random and reported; a given seed is reproducible', async () => {
    const opts = { model, tokenizer, prompt: 'Once upon a time', maxTokens: 12, temperature: 1 } as const;
    const a = await generate(opts);
    const b = await generate(opts);
    expect(a.stats.seed).not.toBe(b.stats.seed);
    const c = await generate({ ...opts, seed: a.stats.seed });
    expect(c.tokens).toEqual(a.tokens);
    expect(c.stats.seed).toBe(a.stats.seed);
  });

  it('llama2.c stories end at BOS: generate stops there', async () => {
    expect(tokenizer.eosIds).toContain(tokenizer.bosId);
    const all = await generate({ model, tokenizer, tokens: [1], maxTokens: 400, temperature: 0, stopAtEos: false });
    const end = all.tokens.indexOf(1);
    expect(end).toBeGreaterThan(0); // the story ends with BOS within 400 tokens
    const r = await generate({ model, tokenizer, tokens: [1], maxTokens: 400, temperature: 0 });
    expect(r.finishReason).toBe('eos');
    expect(r.tokens).toEqual(all.tokens.slice(0, end));
  });
});
