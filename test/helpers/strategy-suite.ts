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
import { native } from '../../lib/native/loader.js';

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

  it.each([...STRATEGIES, 'autoregressive'] as StrategyName[])('%s: every greedy target step is ONE native call (no forward, verify, commit or argmax calls)', async (strategy) => {
    // Count the addon's calls: wrap its kernels and every model handle created from now on.
    const addon = native() as unknown as Record<string, unknown>;
    const calls: string[] = [];
    const saved = new Map<string, unknown>();
    for (const name of ['verifyGreedy', 'verifySampling', 'commitKv', 'kvQuantCommit', 'argmaxRows']) {
      const fn = addon[name] as (...a: unknown[]) => unknown;
      saved.set(name, fn);
      addon[name] = (...a: unknown[]) => (calls.push(name), fn(...a));
    }
    const Orig = addon.NativeModel as new (arg: unknown) => Record<string, unknown>;
    saved.set('NativeModel', Orig);
    let created = 0;
    addon.NativeModel = function (arg: unknown) {
      const h = new Orig(arg);
      const who = created++ === 0 ? 'target' : 'draft';
      return new Proxy(h, { get: (t, k) => (typeof t[k as string] === 'function' ? (...a: unknown[]) => (calls.push(`${who}.${String(k)}`), (t[k as string] as (...a: unknown[]) => unknown).apply(t, a)) : t[k as string]) });
    };
    let target: LoadedModel | undefined;
    let draft: LoadedModel | undefined;
    try {
      target = await loadModel(join(dir, 'stories260K', 'stories260K.bin'), { backend });
      draft = await loadModel(join(dir, 'llama2xs-281K', 'model.bin'), { backend, tokenizer: join(dir, 'stories260K', 'tok512.bin') });
      for (const kvDtype of ['f32', ...kvDtypes] as KvCacheDtype[]) {
        calls.length = 0;
        const withDraft = strategy === 'speculative' || strategy === 'tree' ? { draft: draft.model } : {};
        const res = await generate({ model: target.model, tokenizer: target.tokenizer, maxTokens: 40, temperature: 0, kvDtype, prompt: STORY_PROMPTS.slice(0, 2), strategy, ...withDraft });
        const count = (name: string) => calls.filter((c) => c === name).length;
        expect(count('target.step'), `${strategy}, ${kvDtype}`).toBe(res[0]!.stats.targetPasses);
        expect(calls.filter((c) => !c.startsWith('draft.')).filter((c) => c !== 'target.step'), `${strategy}, ${kvDtype}`).toEqual([]);
        // The draft's greedy chain steps are native steps too; only the tree proposer's expansions run forward().
        if (strategy === 'speculative') expect(calls.filter((c) => c.startsWith('draft.') && c !== 'draft.step')).toEqual([]);
      }
    } finally {
      for (const [name, fn] of saved) addon[name] = fn;
      target?.model.dispose();
      draft?.model.dispose();
    }
  });

  more(pair);
}
