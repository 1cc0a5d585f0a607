/**
 * Greedy losslessness of every decoding strategy on the real model pair (stories260K, drafted
 * by llama2xs-281K), for any backend: test/decode/strategies.test.ts runs it on the CPU,
 * test/gpu/model.gpu.test.ts on CUDA. Each strategy's tokens equal greedy autoregressive tokens
 * exactly, batch 1 and a ragged batch; over quantized caches too.
 */
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { type StrategyName, generate } from '../../lib/generate.js';
import type { KvCacheDtype } from '../../lib/model/kv-cache.js';
import { type LoadedModel, loadModel } from '../../lib/model/load.js';

/** The target and its draft, loaded in the suite's beforeAll. */
export interface StoryPair {
  target: LoadedModel;
  draft: LoadedModel;
}

export const STORY_PROMPTS = ['Once upon a time', 'The little dog', 'Tom and Sue went to the park. They', 'One day, a big bird'];
const STRATEGIES: StrategyName[] = ['speculative', 'tree', 'lookup', 'ngram-tree', 'token-recycling', 'jacobi'];

/**
 * Defines, inside the caller's describe, the pair loaded from the models folder `dir` on
 * `backend` (beforeAll), the losslessness tests (quantized caches: `kvDtypes`), then the file's
 * own tests from `more`.
 */
export function defineStoryPairTests(
  dir: string,
  backend: 'cpu' | 'cuda',
  kvDtypes: readonly KvCacheDtype[],
  more: (pair: () => StoryPair) => void = () => {},
): void {
  let loaded: StoryPair | undefined;
  const pair = (): StoryPair => loaded!;
  beforeAll(async () => {
    const target = await loadModel(join(dir, 'stories260K', 'stories260K.bin'), { backend });
    const draft = await loadModel(join(dir, 'llama2xs-281K', 'model.bin'), { backend, tokenizer: join(dir, 'stories260K', 'tok512.bin') });
    loaded = { target, draft };
  });
  afterAll(() => {
    loaded?.target.model.dispose();
    loaded?.draft.model.dispose();
  });

  it.each(STRATEGIES)('%s equals autoregressive, batch 1 and a ragged batch', async (strategy) => {
    const { target, draft } = pair();
    const base = { model: target.model, tokenizer: target.tokenizer, maxTokens: 60, temperature: 0 };
    const withDraft = strategy === 'speculative' || strategy === 'tree' ? { draft: draft.model } : {};
    // Fixed sizes (every step drafts) and the goodput controller's sizes (0 included).
    for (const speculation of [{ fixed: true }, {}]) {
      for (const prompt of STORY_PROMPTS.slice(0, 2)) {
        const ar = await generate({ ...base, prompt });
        const sp = await generate({ ...base, prompt, strategy, ...withDraft, speculation });
        expect(sp.tokens).toEqual(ar.tokens);
        expect(sp.text).toBe(ar.text);
        expect(sp.finishReason).toBe(ar.finishReason);
        expect(sp.stats.speculation?.strategy).toBeDefined();
      }
      const arBatch = await generate({ ...base, prompt: STORY_PROMPTS });
      const spBatch = await generate({ ...base, prompt: STORY_PROMPTS, strategy, ...withDraft, speculation });
      expect(spBatch.map((r) => r.tokens)).toEqual(arBatch.map((r) => r.tokens));
    }
  });

  it.each(kvDtypes)('with a %s KV cache, speculative, tree and lookup equal autoregressive over the same cache format', async (kvDtype) => {
    const { target, draft } = pair();
    const base = { model: target.model, tokenizer: target.tokenizer, maxTokens: 60, temperature: 0, kvDtype };
    const ar = await generate({ ...base, prompt: STORY_PROMPTS.slice(0, 2) });
    for (const strategy of ['speculative', 'tree', 'lookup'] as const) {
      const sp = await generate({ ...base, prompt: STORY_PROMPTS.slice(0, 2), strategy, ...(strategy === 'lookup' ? {} : { draft: draft.model }), speculation: { fixed: true } });
      expect(sp.map((r) => r.tokens), strategy).toEqual(ar.map((r) => r.tokens));
    }
  });

  more(pair);
}
