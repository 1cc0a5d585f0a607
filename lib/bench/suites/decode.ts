/**
 * `canopy bench decode [--model M] [--draft D]`: every applicable decoding strategy on the
 * same prompts, greedy, against autoregressive decoding measured in the same run: tokens/s,
 * mean accepted length (tau) and speedup; whether each strategy's text equals the
 * autoregressive text (it must: the strategies are lossless). Defaults to the real tiny pair
 * stories260K / llama2xs-281K when ../shared/models (or CANOPY_MODELS) holds them.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { type GenerateResult, type StrategyName, generate } from '../../generate.js';
import { loadModel } from '../../model/load.js';
import { Model } from '../../model/model.js';
import { loadWeights } from '../../model/weights.js';
import { packageRoot } from '../../native/loader.js';
import { MODEL_PRESETS } from '../../model/presets.js';
import { type BenchRow, time } from '../harness.js';
import { fastRandomWeights } from './generate.js';
import type { Suite, SuiteContext } from './types.js';

const PROMPTS = ['Once upon a time', 'The little dog', 'Tom and Sue went to the park. They', 'One day, a big bird'];

/** The shared test models folder, if present. */
export function findModelsDir(): string | undefined {
  const candidates = [process.env.CANOPY_MODELS, resolve(packageRoot, '..', 'shared', 'models'), resolve('..', 'shared', 'models')];
  return candidates.find((d): d is string => d !== undefined && existsSync(join(d, 'stories260K', 'stories260K.bin')));
}

async function runDecode(ctx: SuiteContext, modelPath: string, draftPath: string | undefined): Promise<BenchRow[]> {
  const { model, tokenizer } = await loadModel(modelPath, { backend: ctx.device });
  const draft = draftPath ? await Model.fromWeights(loadWeights(draftPath), { backend: ctx.device }) : undefined;
  const maxTokens = ctx.quick ? 96 : 256;
  const strategies: StrategyName[] = ['autoregressive', ...(draft ? (['speculative', 'tree'] as const) : []), 'lookup', 'ngram-tree', 'token-recycling', 'jacobi'];
  const rows: BenchRow[] = [];
  let arMs = 0;
  let arTokens: number[][] = [];
  try {
    for (const strategy of strategies) {
      let last: GenerateResult[] = [];
      const opts = {
        model, tokenizer, prompt: PROMPTS, maxTokens, temperature: 0, strategy,
        ...(draft && (strategy === 'speculative' || strategy === 'tree') ? { draft } : {}),
        speculation: { autoDisable: false },
      };
      const timing = await time(async () => {
        last = await generate(opts);
      }, { budgetMs: ctx.budgetMs, warmup: 1, minRepeats: 3, maxRepeats: 20 });
      const tokens = last;
      const emitted = tokens.reduce((a, r) => a + r.tokens.length, 0);
      if (strategy === 'autoregressive') {
        arMs = timing.medianMs;
        arTokens = tokens.map((r) => r.tokens);
      }
      const same = tokens.every((r, i) => r.tokens.join() === arTokens[i]!.join());
      const spec = tokens[0]!.stats.speculation;
      rows.push({
        suite: 'decode',
        name: strategy,
        backend: ctx.backend,
        config: { model: modelPath.split(/[\\/]/).slice(-2).join('/'), ...(draftPath && (strategy === 'speculative' || strategy === 'tree') ? { draft: draftPath.split(/[\\/]/).slice(-2).join('/') } : {}), batch: PROMPTS.length, maxTokens, greedy: 'yes' },
        timing,
        metric: 'tokens/s',
        value: (emitted * 1000) / timing.medianMs,
        formula: 'generated tokens of the batch / median time of the whole generate() call',
        peers: strategy === 'autoregressive' ? [] : [{ name: 'autoregressive', medianMs: arMs, speedup: arMs / timing.medianMs }],
        notes: {
          ...(spec ? { tau: spec.meanAcceptedLength, acceptance: spec.acceptanceRate } : {}),
          'text = autoregressive': same ? 'yes' : 'NO',
        },
      });
    }
  } finally {
    model.dispose();
    draft?.dispose();
  }
  return rows;
}

/**
 * The quantity that bounds any speculative speedup: the cost of verifying N tokens (one tree
 * step over a chain or tree of N) relative to one decode step, on a random model of a
 * standard shape; with tau measured on the real pair, speedup <= tau / (verify / decode).
 */
async function verifyCost(ctx: SuiteContext, preset: string, nodes: number[], tau: number | undefined): Promise<BenchRow[]> {
  const config = MODEL_PRESETS[preset]!;
  const tensors = fastRandomWeights(preset);
  const model = await Model.fromWeights({ config, tensors }, { backend: ctx.device, dtype: ctx.backend === 'cpu' ? 'f32' : 'bf16' });
  tensors.forEach((t) => t.dispose());
  const prefix = 512;
  const cache = model.createCache({ capacity: prefix + Math.max(...nodes) + 8 });
  await model.forward(cache, [{ sequence: 0, tokens: Array.from({ length: prefix }, (_, i) => (i * 31) % config.vocabSize) }]).then((r) => r.logits.dispose());
  const stepOf = async (n: number) => {
    const parents = Array.from({ length: n }, (_, i) => (n <= 8 ? i - 1 : i < 4 ? -1 : Math.floor((i - 4) / 4)));
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: Array.from({ length: n }, (_, i) => (i * 7) % config.vocabSize), parents }], { logits: 'all' });
    logits.dispose();
  };
  const decode = await time(() => stepOf(1), { budgetMs: ctx.budgetMs, warmup: 2, minRepeats: 3, maxRepeats: 30 });
  const rows: BenchRow[] = [];
  for (const n of nodes) {
    const t = await time(() => stepOf(n), { budgetMs: ctx.budgetMs, warmup: 1, minRepeats: 3, maxRepeats: 30 });
    const ratio = t.medianMs / decode.medianMs;
    rows.push({
      suite: 'decode',
      name: `verify ${n} tokens`,
      backend: ctx.backend,
      config: { model: preset, prefix, shape: n <= 8 ? 'chain' : 'tree', dtype: ctx.backend === 'cpu' ? 'f32' : 'bf16' },
      timing: t,
      metric: 'tokens/s',
      value: (n * 1000) / t.medianMs,
      formula: 'tokens verified per second in one target tree step over the prefix',
      peers: [{ name: 'one decode step', medianMs: decode.medianMs, speedup: decode.medianMs / t.medianMs }],
      notes: { 'verify / decode': ratio, ...(tau ? { 'speedup bound at measured tau': tau / ratio } : {}) },
    });
  }
  cache.dispose();
  model.dispose();
  return rows;
}

export const decodeSuite: Suite = {
  name: 'decode',
  description: 'decoding strategies against autoregressive decoding on a real model pair',
  plan(ctx) {
    const dir = findModelsDir();
    const given = ctx.models[0];
    const model = given ?? (dir ? join(dir, 'stories260K', 'stories260K.bin') : undefined);
    const draft = ctx.draft ?? (dir && !given ? join(dir, 'llama2xs-281K', 'model.bin') : undefined);
    // Steps producing several rows: the runner appends `extraRows`.
    let tau: number | undefined;
    const steps: Array<{ label: string; run: () => Promise<BenchRow> }> = [];
    if (model) {
      steps.push({
        label: 'strategies',
        run: async () => {
          const rows = await runDecode(ctx, model, draft);
          const sp = rows.find((r) => r.name === 'speculative')?.notes?.tau;
          tau = typeof sp === 'number' ? sp : undefined;
          return multiRow(rows);
        },
      });
    }
    steps.push({ label: 'verify cost', run: async () => multiRow(await verifyCost(ctx, ctx.quick ? 'smollm-135m' : 'llama-1b', [5, 16, 64], tau)) });
    return steps;
  },
};

/** Lets one step return several rows (the runner flattens `extraRows`). */
function multiRow(rows: BenchRow[]): BenchRow {
  const [first, ...rest] = rows;
  return Object.assign(first!, { extraRows: rest });
}
