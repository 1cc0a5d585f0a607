/**
 * Every strategy is lossless under greedy decoding: on stories260K its tokens equal greedy
 * autoregressive tokens exactly (f32, CPU), batch 1 and ragged batches, with EOS and
 * maxTokens cutting accepted runs; the draft pair reaches the expected acceptance.
 */
import { describe, expect, it } from 'vitest';

import { generate } from '../../lib/generate.js';
import { STORY_PROMPTS, defineStoryPairTests } from '../helpers/strategy-suite.js';
import { testModelsDir } from '../helpers/test-models.js';

const dir = testModelsDir('decoding strategies on stories260K');

describe.runIf(dir)('greedy losslessness of every strategy (stories260K)', () => defineStoryPairTests(dir ?? '', 'cpu', ['int8', 'int4'], (pair) => {
  it('maxTokens cuts an accepted run exactly, and EOS inside a run ends the sequence', async () => {
    const { target, draft } = pair();
    const base = { model: target.model, tokenizer: target.tokenizer, temperature: 0 };
    for (const maxTokens of [1, 2, 7, 13]) {
      const ar = await generate({ ...base, prompt: 'Once upon a time', maxTokens });
      const sp = await generate({ ...base, prompt: 'Once upon a time', maxTokens, draft: draft.model, speculation: { k: 6, fixed: true, autoDisable: false } });
      expect(sp.tokens).toEqual(ar.tokens);
      expect(sp.tokens.length).toBe(maxTokens);
    }
    // A long greedy run reaches EOS (a story ends); speculative must stop at the same place.
    const ar = await generate({ ...base, prompt: 'Once upon a time', maxTokens: 400 });
    const sp = await generate({ ...base, prompt: 'Once upon a time', maxTokens: 400, draft: draft.model, speculation: { k: 6, fixed: true, autoDisable: false } });
    expect(sp.tokens).toEqual(ar.tokens);
    expect(sp.finishReason).toBe(ar.finishReason);
  });

  it('stop strings end a run inside an accepted draft', async () => {
    const { target, draft } = pair();
    const base = { model: target.model, tokenizer: target.tokenizer, temperature: 0, maxTokens: 80 };
    const ar = await generate({ ...base, prompt: 'Once upon a time', stop: ['park'] });
    const sp = await generate({ ...base, prompt: 'Once upon a time', stop: ['park'], draft: draft.model, speculation: { autoDisable: false } });
    expect(sp.text).toBe(ar.text);
    expect(sp.finishReason).toBe('stop');
  });

  it('llama2xs-281K drafting for stories260K at k = 4 (greedy): mean accepted length >= 2.6', async () => {
    const { target, draft } = pair();
    const r = await generate({
      model: target.model, tokenizer: target.tokenizer, prompt: STORY_PROMPTS, maxTokens: 120, temperature: 0,
      draft: draft.model, speculation: { k: 4, fixed: true, autoDisable: false },
    });
    const spec = r[0]!.stats.speculation!;
    console.log(`[info] speculative k=4: mean accepted length ${spec.meanAcceptedLength.toFixed(2)}, acceptance ${spec.acceptanceRate.toFixed(3)}, per position ${spec.perPositionAcceptance.map((x) => x.toFixed(2)).join(' ')}`);
    expect(spec.meanAcceptedLength).toBeGreaterThanOrEqual(2.6);
    // Agreement at the first draft position is the per-token greedy match rate (README: about 0.71).
    expect(spec.perPositionAcceptance[0]).toBeGreaterThan(0.6);
  });

  it('the goodput controller reports its sizes within [0, kMax]; a fixed k drafts k every step and reports none', async () => {
    const { target, draft } = pair();
    const base = { model: target.model, tokenizer: target.tokenizer, prompt: 'Once upon a time', maxTokens: 60, temperature: 0, stopAtEos: false, draft: draft.model };
    const auto = await generate({ ...base, speculation: { kMax: 5 } });
    const sizes = auto.stats.speculation!.draftSizes!;
    expect(Object.keys(sizes).length).toBeGreaterThan(0);
    expect(Object.keys(sizes).every((k) => Number(k) >= 0 && Number(k) <= 5)).toBe(true);
    // One plan per step after prefill: every step is counted once.
    expect(Object.values(sizes).reduce((a, b) => a + b, 0)).toBe(auto.stats.targetPasses - 1);
    const fixed = await generate({ ...base, speculation: { k: 3, fixed: true } });
    expect(fixed.stats.speculation!.draftSizes).toBeUndefined();
    // Chains of 3 every step (fewer only near maxTokens, where the budget runs out).
    const steps = fixed.stats.targetPasses - 1;
    expect(fixed.stats.speculation!.drafted).toBeLessThanOrEqual(3 * steps);
    expect(fixed.stats.speculation!.drafted).toBeGreaterThanOrEqual(3 * (steps - 2));
  });
}));
