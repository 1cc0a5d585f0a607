/** `canopy generate`: text from a model on disk, streamed to stdout; stats on stderr. */

import { ArgumentError } from '../errors.js';
import { STRATEGIES, type StrategyName, generate, stream } from '../generate.js';
import { loadModel } from '../model/load.js';
import { Model } from '../model/model.js';
import { loadWeights } from '../model/weights.js';
import type { Backend } from '../native/backend.js';
import type { FloatDType } from '../tensor/dtype.js';

export interface GenerateCliOptions {
  model: string;
  prompt: string;
  tokenizer?: string;
  draft?: string;
  strategy?: string;
  maxTokens?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed?: string;
  backend?: string;
  dtype?: string;
  threads?: string;
  json?: boolean;
}

function num(value: string | undefined, name: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new ArgumentError(`--${name}`, integer ? 'an integer' : 'a number', value);
  return n;
}

export async function runGenerateCli(o: GenerateCliOptions): Promise<number> {
  const strategy = (o.strategy ?? (o.draft ? 'speculative' : 'autoregressive')) as StrategyName;
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new ArgumentError('--strategy', `one of ${STRATEGIES.join(', ')}`, strategy);
  if ((strategy === 'speculative' || strategy === 'tree') && o.draft === undefined) {
    throw new ArgumentError('--draft', `a draft model path for --strategy ${strategy}`, undefined);
  }
  const dtype = o.dtype as FloatDType | undefined;
  if (dtype !== undefined && !['f32', 'f16', 'bf16'].includes(dtype)) throw new ArgumentError('--dtype', 'f32, f16 or bf16', dtype);
  const threads = num(o.threads, 'threads', true);
  if (threads !== undefined && (threads < 1 || threads > 1024)) throw new ArgumentError('--threads', 'an integer in [1, 1024]', o.threads);
  const { model, tokenizer } = await loadModel(o.model, {
    backend: (o.backend ?? 'auto') as Backend,
    ...(threads !== undefined ? { threads } : {}),
    ...(dtype ? { dtype } : {}),
    ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
  });
  // The draft shares the target's tokenizer: only its weights are loaded.
  const draft = o.draft ? await Model.fromWeights(loadWeights(o.draft), { backend: model.device, ...(dtype ? { dtype } : {}) }) : undefined;
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once('SIGINT', onSigint);
  try {
    const opts = {
      model,
      tokenizer,
      prompt: o.prompt,
      maxTokens: num(o.maxTokens, 'max-tokens', true) ?? 256,
      temperature: num(o.temperature, 'temperature', false) ?? 0.8,
      ...(o.topK !== undefined ? { topK: num(o.topK, 'top-k', true)! } : {}),
      ...(o.topP !== undefined ? { topP: num(o.topP, 'top-p', false)! } : {}),
      ...(o.seed !== undefined ? { seed: num(o.seed, 'seed', true)! } : {}),
      signal: abort.signal,
      strategy,
      ...(draft ? { draft } : {}),
    };
    if (o.json) {
      const r = await generate(opts);
      process.stdout.write(JSON.stringify({ text: r.text, tokens: r.tokens, finishReason: r.finishReason, stats: r.stats }, null, 2) + '\n');
      return 0;
    }
    process.stdout.write(o.prompt);
    const it = stream(opts);
    let next = await it.next();
    while (!next.done) {
      process.stdout.write(next.value);
      next = await it.next();
    }
    const r = next.value;
    process.stdout.write('\n');
    const s = r.stats;
    process.stderr.write(
      `\n[${model.device}${model.fallbackReason ? ` (CUDA not used: ${model.fallbackReason})` : ''}] ` +
        `prompt ${s.promptTokens} tokens, generated ${s.generatedTokens} (${r.finishReason}), ` +
        `first token ${s.timeToFirstTokenMs.toFixed(1)} ms, ${s.tokensPerSecond.toFixed(1)} tokens/s, ${s.targetPasses} forward passes\n`,
    );
    if (s.speculation) {
      const sp = s.speculation;
      process.stderr.write(
        `[${sp.strategy}] drafted ${sp.drafted}, accepted ${sp.accepted} (${(100 * sp.acceptanceRate).toFixed(1)}%), ` +
          `mean accepted length ${sp.meanAcceptedLength.toFixed(2)}, per position ${sp.perPositionAcceptance.map((x) => x.toFixed(2)).join(' ')}; ` +
          `ms: propose ${sp.timeMs.propose.toFixed(0)}, forward ${sp.timeMs.forward.toFixed(0)}, verify+commit ${sp.timeMs.verify.toFixed(0)}\n`,
      );
    }
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    model.dispose();
    draft?.dispose();
  }
}
