/**
 * The sampled rows of `canopy bench decode`: autoregressive, speculative and tree decoding at
 * temperature 0.8 with top-p 0.95 (seeded) on the tiny pair, so the native sampled step
 * (forward, the sampler chain, sampling verification and commit in one call; the draft's q kept
 * native) is measured as the greedy rows measure the greedy step. Sampled strategies are
 * lossless in distribution, not in text: no text check (test/decode/sampling-lossless.test.ts
 * holds them to the target's distribution). Variants interleave per round as in decode.ts; each
 * row reports the median time over rounds and the median per-round ratio to autoregressive.
 */
import { type GenerateResult, type StrategyName, generate } from '../../generate.js';
import { loadModel } from '../../model/load.js';
import { Model } from '../../model/model.js';
import { loadWeights } from '../../model/weights.js';
import type { BenchRow } from '../harness.js';
import type { DecodePair, SuiteContext } from './types.js';
import { median } from './util.js';


const SAMPLING = { temperature: 0.8, topP: 0.95, seed: 1234 };
const VARIANTS: StrategyName[] = ['autoregressive', 'speculative', 'tree'];
const PROMPTS = ['Once upon a time', 'The little dog', 'One day, Lily went to the park', 'Tom had a big red ball'];

export async function runSampledPair(ctx: SuiteContext, pair: DecodePair): Promise<BenchRow[]> {
  const { model, tokenizer } = await loadModel(pair.modelPath, { backend: ctx.device });
  const draft = pair.draftPath ? await Model.fromWeights(loadWeights(pair.draftPath), { backend: ctx.device }) : undefined;
  const prompts = Array.from({ length: pair.batch }, (_, i) => PROMPTS[i % PROMPTS.length]!);
  const variants = VARIANTS.filter((v) => v === 'autoregressive' || draft);
  const times = new Map<string, number[]>(variants.map((v) => [v, []]));
  const ratios = new Map<string, number[]>(variants.map((v) => [v, []]));
  const last = new Map<string, GenerateResult[]>();
  try {
    await generate({ model, tokenizer, prompt: prompts, maxTokens: 8, ...SAMPLING }); // warm-up
    for (let round = 0; round < pair.rounds; round++) {
      let arMs = 0;
      for (const v of variants) {
        const t0 = performance.now();
        const r = await generate({ model, tokenizer, prompt: prompts, maxTokens: pair.maxTokens, stopAtEos: false, strategy: v, ...SAMPLING, ...(v !== 'autoregressive' ? { draft } : {}) });
        const ms = performance.now() - t0;
        if (v === 'autoregressive') arMs = ms;
        last.set(v, r);
        times.get(v)!.push(ms);
        ratios.get(v)!.push(arMs / ms);
      }
    }
  } finally {
    model.dispose();
    draft?.dispose();
  }
  const arMedian = median(times.get('autoregressive')!);
  return variants.map((v) => {
    const results = last.get(v)!;
    const s = [...times.get(v)!].sort((a, b) => a - b);
    const timing = { medianMs: median(s), p10Ms: s[0]!, p90Ms: s[s.length - 1]!, repeats: s.length };
    const rs = ratios.get(v)!;
    const sp = results[0]!.stats.speculation;
    const emitted = results.reduce((a, r) => a + r.tokens.length, 0);
    return {
      suite: 'decode',
      name: `${v} sampled`,
      backend: ctx.backend,
      config: { model: pair.label, ...(v !== 'autoregressive' && pair.draftPath ? { draft: pair.draftPath.split(/[\\/]/).slice(-2).join('/') } : {}), batch: pair.batch, maxTokens: pair.maxTokens, sampling: 'T 0.8, top-p 0.95', rounds: pair.rounds },
      timing,
      metric: 'tokens/s',
      value: (emitted * 1000) / timing.medianMs,
      formula: 'generated tokens of the batch / median time of the whole generate() call (prefill included)',
      peers: v === 'autoregressive' ? [] : [{ name: 'autoregressive sampled', medianMs: arMedian, speedup: median(rs) }],
      notes: {
        ...(v === 'autoregressive' ? {} : { 'x autoregressive': median(rs), 'x range': `${Math.min(...rs).toFixed(2)}-${Math.max(...rs).toFixed(2)}` }),
        ...(sp ? { tau: sp.meanAcceptedLength, 'ms propose/forward/verify': `${sp.timeMs.propose.toFixed(0)}/${sp.timeMs.forward.toFixed(0)}/${sp.timeMs.verify.toFixed(0)}` } : {}),
        'target passes': results[0]!.stats.targetPasses,
      },
    };
  });
}
