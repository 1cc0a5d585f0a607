/**
 * Shared prompt prefixes in generate() (lib/decode/shared-prefix.ts): n samples of one prompt
 * and batches with a common system prompt hold the prefix once (a prefix slot of the cache) and
 * attend to it through prefix attention; greedy output equals forked copies token for token on
 * stories260K (drafted by llama2xs-281K), for several strategies, batch sizes, prefix lengths
 * (the whole prompt included) and KV dtypes.
 */
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { type StrategyName, generate } from '../../lib/generate.js';
import { commonPrefixLength } from '../../lib/decode/shared-prefix.js';
import type { KvCacheDtype } from '../../lib/model/kv-cache.js';
import { type LoadedModel, loadModel } from '../../lib/model/load.js';
import { testModelsDir } from '../helpers/test-models.js';

const dir = testModelsDir('shared prompt prefixes on stories260K');

describe('commonPrefixLength', () => {
  it('is the length of the longest common start', () => {
    expect(commonPrefixLength([[1, 2, 3], [1, 2, 4], [1, 2]])).toBe(2);
    expect(commonPrefixLength([[1, 2, 3], [1, 2, 3]])).toBe(3);
    expect(commonPrefixLength([[5], [1, 2]])).toBe(0);
    expect(commonPrefixLength([])).toBe(0);
  });
});

describe.runIf(dir)('shared prompt prefixes in generate (stories260K)', () => {
  let target: LoadedModel;
  let draft: LoadedModel;
  beforeAll(async () => {
    target = await loadModel(join(dir!, 'stories260K', 'stories260K.bin'));
    draft = await loadModel(join(dir!, 'llama2xs-281K', 'model.bin'), { tokenizer: join(dir!, 'stories260K', 'tok512.bin') });
  });
  afterAll(() => {
    target?.model.dispose();
    draft?.model.dispose();
  });

  const SYSTEM = 'Once upon a time, there was a little girl named Lily. She loved to play outside.';
  const PROMPTS = [`${SYSTEM} One day, she saw a cat`, `${SYSTEM} Her mom said`, SYSTEM, `${SYSTEM} One day, she saw a dog`];

  /** Runs generate twice (shared prefix forced on, and off) and returns both, checking the cache the shared run asked for. */
  async function both(options: Record<string, unknown>) {
    const spy = vi.spyOn(target.model, 'createCache');
    const base = { model: target.model, tokenizer: target.tokenizer, maxTokens: 40, temperature: 0, ...options };
    const shared = (await generate({ ...base, sharedPrefix: 1 } as Parameters<typeof generate>[0])) as Array<{ tokens: number[]; finishReason: string }>;
    const asked = spy.mock.calls.map((c) => c[0]);
    spy.mockRestore();
    const forked = (await generate({ ...base, sharedPrefix: false } as Parameters<typeof generate>[0])) as Array<{ tokens: number[]; finishReason: string }>;
    return { shared, forked, asked };
  }

  const strategies: Array<[StrategyName, boolean]> = [
    ['autoregressive', false],
    ['speculative', true],
    ['tree', true],
    ['lookup', false],
    ['jacobi', false],
    ['token-recycling', false],
  ];

  it.each(strategies)('%s: n = 2 and n = 4 samples of one prompt (the whole prompt shared) equal forked copies', async (strategy, needsDraft) => {
    for (const n of [2, 4]) {
      const { shared, forked, asked } = await both({ prompt: SYSTEM, n, strategy, ...(needsDraft ? { draft: draft.model } : {}) });
      const L = target.tokenizer.encode(SYSTEM, { bos: true }).length;
      expect(asked[0], `${strategy} n ${n}`).toMatchObject({ sequences: n, prefixes: 1, prefixCapacity: L });
      expect(shared.map((r) => r.tokens), `${strategy} n ${n}`).toEqual(forked.map((r) => r.tokens));
      expect(shared.map((r) => r.finishReason)).toEqual(forked.map((r) => r.finishReason));
    }
  });

  it.each(strategies)('%s: prompts with a common system prompt (one of them the prefix itself), batch 2 and 4, equal forked copies', async (strategy, needsDraft) => {
    for (const B of [2, 4]) {
      const prompt = PROMPTS.slice(B === 2 ? 1 : 0, B === 2 ? 3 : 4);
      const { shared, forked, asked } = await both({ prompt, strategy, ...(needsDraft ? { draft: draft.model } : {}) });
      expect(asked[0]).toMatchObject({ sequences: B, prefixes: 1 });
      expect(shared.map((r) => r.tokens), `${strategy} batch ${B}`).toEqual(forked.map((r) => r.tokens));
    }
  });

  it.each(['f16', 'bf16', 'int8', 'int4'] as KvCacheDtype[])('a %s cache: autoregressive and speculative with a shared prefix equal forked / separately prefilled copies', async (kvDtype) => {
    for (const [strategy, extra] of [['autoregressive', {}], ['speculative', { draft: draft.model }]] as const) {
      const { shared, forked, asked } = await both({ prompt: PROMPTS, strategy, kvDtype, ...extra });
      expect(asked[0]).toMatchObject({ prefixes: 1, dtype: kvDtype });
      expect(shared.map((r) => r.tokens), `${strategy} ${kvDtype}`).toEqual(forked.map((r) => r.tokens));
    }
  });

  it('up to the context length: the cache grows its own rows only and both end at the same token with "context"', async () => {
    for (const kvDtype of ['f32', 'int8'] as KvCacheDtype[]) {
      const { shared, forked, asked } = await both({ prompt: SYSTEM, n: 2, maxTokens: 600, stopAtEos: false, kvDtype });
      expect(asked[0]).toMatchObject({ prefixes: 1 });
      expect(shared.map((r) => r.finishReason)).toEqual(['context', 'context']);
      expect(shared.map((r) => r.tokens), kvDtype).toEqual(forked.map((r) => r.tokens));
      // The cache holds maxSeqLen rows; the last token emitted is never fed.
      expect(shared[0]!.tokens.length + target.tokenizer.encode(SYSTEM, { bos: true }).length).toBe(target.model.config.maxSeqLen + 1);
    }
  });

  it('sampling (temperature 0.8, seeded) picks the same tokens with a shared prefix; the default minimum keeps short prefixes forked', async () => {
    const { shared, forked } = await both({ prompt: SYSTEM, n: 3, temperature: 0.8, seed: 7 });
    expect(shared.map((r) => r.tokens)).toEqual(forked.map((r) => r.tokens));
    // The default minimum (32 tokens) is above this prompt's length: no prefix slot.
    const spy = vi.spyOn(target.model, 'createCache');
    await generate({ model: target.model, tokenizer: target.tokenizer, prompt: 'Once upon a time', n: 2, maxTokens: 4 });
    expect(spy.mock.calls[0]![0]).not.toHaveProperty('prefixes');
    spy.mockRestore();
    await expect(generate({ model: target.model, tokenizer: target.tokenizer, prompt: 'x', n: 2, sharedPrefix: 0 })).rejects.toThrow(/sharedPrefix must be an integer in \[1/);
  });
});
