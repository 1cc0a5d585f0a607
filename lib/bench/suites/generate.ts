/**
 * `canopy bench generate`: end-to-end decoding of randomly initialised models of standard
 * shapes (no download): decode tokens/s, time to first token, and the weight bandwidth the
 * decode achieves (bytes of weights read per token x tokens/s) against the machine's copy
 * bandwidth. Real models join when a path is given (CANOPY_MODELS) — see lib/cli/bench.ts.
 */
import { expectedShapes } from '../../model/config.js';
import { Model } from '../../model/model.js';
import { MODEL_PRESETS, weightBytesPerToken } from '../../model/presets.js';
import { Tensor } from '../../tensor/tensor.js';
import { dtypeSize, type FloatDType } from '../../tensor/dtype.js';
import { type BenchRow, time } from '../harness.js';
import type { Suite, SuiteContext } from './types.js';
import { randomValues } from './util.js';

/** Weights filled fast: a random block repeated (values do not matter for speed). */
export function fastRandomWeights(preset: string): Map<string, Tensor> {
  const config = MODEL_PRESETS[preset]!;
  const block = randomValues(1 << 16, 1).map((v) => v * 0.02);
  const tensors = new Map<string, Tensor>();
  for (const [name, shape] of expectedShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    if (name.endsWith('Norm') || name === 'norm') a.fill(1);
    else {
      a.set(block.subarray(0, Math.min(n, block.length)));
      for (let filled = Math.min(n, block.length); filled < n; filled *= 2) a.copyWithin(filled, 0, Math.min(filled, n - filled));
    }
    tensors.set(name, Tensor.from(a, { shape }));
  }
  return tensors;
}

async function benchPreset(ctx: SuiteContext, preset: string, dtype: FloatDType, promptLen: number, steps: number): Promise<BenchRow> {
  const config = MODEL_PRESETS[preset]!;
  const tensors = fastRandomWeights(preset);
  const model = await Model.fromWeights({ config, tensors }, { backend: ctx.device, dtype });
  tensors.forEach((t) => t.dispose());
  const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919) % config.vocabSize);
  let cache = model.createCache({ capacity: promptLen + steps + 8 });
  // Time to first token: the prefill of the prompt (median of a few).
  const ttft = await time(
    async () => {
      cache.truncate(0, 0);
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
      logits.dispose();
    },
    { budgetMs: ctx.budgetMs / 2, warmup: 1, minRepeats: 2, maxRepeats: 5 },
  );
  // Decode: one token per step on top of the prompt.
  let token = 1;
  const decode = await time(
    async () => {
      if (cache.free(0) < 1) cache.truncate(0, promptLen);
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [token] }]);
      token = (token * 31 + 7) % config.vocabSize;
      logits.dispose();
    },
    { budgetMs: ctx.budgetMs, warmup: 2, minRepeats: Math.min(steps, 5), maxRepeats: steps },
  );
  cache.dispose();
  model.dispose();
  cache = undefined as never;
  const tokensPerSecond = 1000 / decode.medianMs;
  const bytes = weightBytesPerToken(config, dtypeSize(dtype));
  return {
    suite: 'generate',
    name: 'decode',
    backend: ctx.backend,
    config: { model: preset, dtype, prompt: promptLen, batch: 1 },
    timing: decode,
    metric: 'GB/s',
    value: (bytes * tokensPerSecond) / 1e9,
    formula: 'bytes of weights read per token (every matrix once, output head included) * tokens/s',
    limit: { value: ctx.limits.copyGBps, what: 'copy bandwidth' },
    peers: [],
    notes: { 'tokens/s': tokensPerSecond, 'TTFT ms': ttft.medianMs, 'prefill tokens/s': (promptLen * 1000) / ttft.medianMs },
  };
}

export const generateSuite: Suite = {
  name: 'generate',
  description: 'end-to-end decode of random models of standard shapes: tokens/s, TTFT, weight bandwidth',
  plan(ctx) {
    const dtype: FloatDType = ctx.backend === 'cpu' ? 'f32' : 'bf16';
    const steps = [{ label: 'smollm-135m', run: () => benchPreset(ctx, 'smollm-135m', dtype, 64, 32) }];
    if (!ctx.quick) steps.push({ label: 'llama-1b', run: () => benchPreset(ctx, 'llama-1b', dtype, 128, 16) });
    return steps;
  },
};
