/** `canopy generate`: text from a model on disk, streamed to stdout; stats on stderr. */

import { ArgumentError } from '../errors.js';
import { generate, stream } from '../generate.js';
import { loadModel } from '../model/load.js';
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
  json?: boolean;
}

function num(value: string | undefined, name: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new ArgumentError(`--${name}`, integer ? 'an integer' : 'a number', value);
  return n;
}

export async function runGenerateCli(o: GenerateCliOptions): Promise<number> {
  const strategy = o.strategy ?? 'autoregressive';
  if (strategy !== 'autoregressive') {
    throw new ArgumentError('--strategy', "'autoregressive' (speculative, tree, blockwise and lookup strategies are not in this version yet)", strategy);
  }
  if (o.draft !== undefined) throw new ArgumentError('--draft', 'absent: draft models come with the speculative strategy', o.draft);
  const dtype = o.dtype as FloatDType | undefined;
  if (dtype !== undefined && !['f32', 'f16', 'bf16'].includes(dtype)) throw new ArgumentError('--dtype', 'f32, f16 or bf16', dtype);
  const { model, tokenizer } = await loadModel(o.model, {
    backend: (o.backend ?? 'auto') as Backend,
    ...(dtype ? { dtype } : {}),
    ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
  });
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
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    model.dispose();
  }
}
