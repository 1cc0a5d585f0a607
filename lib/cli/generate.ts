/**
 * `canopy generate`: text from a model on disk, streamed to stdout; stats on stderr.
 * --prompt - reads the prompt from stdin; --chat (or --system) sends it as a user message
 * through the model's chat template.
 */

import { readFileSync } from 'node:fs';

import { chatPromptIds, chatTemplateFor } from '../chat/session.js';
import type { ChatMessage } from '../chat/template.js';
import { ArgumentError, IoError } from '../errors.js';
import { STRATEGIES, type StrategyName, generate, stream } from '../generate.js';
import { loadModel } from '../model/load.js';
import { Model } from '../model/model.js';
import { loadWeights } from '../model/weights.js';
import type { Backend } from '../native/backend.js';
import { type ModelCliOptions, num, readTemplate, samplingOptions, storageOptions } from './options.js';

export interface GenerateCliOptions extends ModelCliOptions {
  prompt: string;
  draft?: string;
  strategy?: string;
  threads?: string;
  json?: boolean;
  stop?: string[];
  n?: string;
  speculationK?: string;
  system?: string;
  chat?: boolean;
  template?: string;
}

export async function runGenerateCli(o: GenerateCliOptions): Promise<number> {
  const strategy = (o.strategy ?? (o.draft ? 'speculative' : 'autoregressive')) as StrategyName;
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new ArgumentError('--strategy', `one of ${STRATEGIES.join(', ')}`, strategy);
  if ((strategy === 'speculative' || strategy === 'tree') && o.draft === undefined) {
    throw new ArgumentError('--draft', `a draft model path for --strategy ${strategy}`, undefined);
  }
  const { dtype, kvDtype } = storageOptions(o);
  const threads = num(o.threads, 'threads', true);
  if (threads !== undefined && (threads < 1 || threads > 1024)) throw new ArgumentError('--threads', 'an integer in [1, 1024]', o.threads);
  const n = num(o.n, 'n', true) ?? 1;
  if (n < 1) throw new ArgumentError('--n', 'an integer >= 1', o.n);
  const speculationK = num(o.speculationK, 'speculation-k', true);
  let promptText = o.prompt;
  if (promptText === '-') {
    try {
      promptText = readFileSync(0, 'utf8');
    } catch (cause) {
      throw new IoError(`cannot read the prompt from stdin: ${(cause as Error).message}`, { cause });
    }
  }
  const asChat = o.chat === true || o.system !== undefined || o.template !== undefined;
  const { model, tokenizer } = await loadModel(o.model, {
    backend: (o.backend ?? 'auto') as Backend,
    ...(threads !== undefined ? { threads } : {}),
    ...(dtype ? { dtype } : {}),
    ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
  });
  // The draft shares the target's tokenizer: only its weights are loaded.
  // The draft shares --dtype when it is a float storage; a block type (quantize at load) applies to the target only.
  const draftDtype = dtype === 'f32' || dtype === 'f16' || dtype === 'bf16' ? dtype : undefined;
  const draft = o.draft ? await Model.fromWeights(loadWeights(o.draft), { backend: model.device, ...(draftDtype ? { dtype: draftDtype } : {}) }) : undefined;
  if (o.verbose && model.fallbackReason) process.stderr.write(`[cpu] CUDA not used: ${model.fallbackReason}\n`);
  let tokens: number[] | undefined;
  if (asChat) {
    const template = chatTemplateFor(tokenizer, o.template !== undefined ? readTemplate(o.template) : undefined);
    const messages: ChatMessage[] = [...(o.system !== undefined ? [{ role: 'system', content: o.system }] : []), { role: 'user', content: promptText }];
    tokens = chatPromptIds(tokenizer, template.render(messages));
  }
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once('SIGINT', onSigint);
  try {
    const opts = {
      model,
      tokenizer,
      ...(tokens ? { tokens } : { prompt: promptText }),
      ...samplingOptions(o, { maxTokens: 256, temperature: 0.8 }),
      signal: abort.signal,
      strategy,
      ...(draft ? { draft } : {}),
      ...(o.stop && o.stop.length > 0 ? { stop: o.stop } : {}),
      ...(kvDtype !== undefined ? { kvDtype } : {}),
      ...(speculationK !== undefined ? { speculation: { k: speculationK } } : {}),
    };
    if (o.json || n > 1) {
      const results = n > 1 ? await generate({ ...opts, n }) : [await generate(opts)];
      if (o.json) {
        const rows = results.map((r) => ({ text: r.text, tokens: r.tokens, finishReason: r.finishReason, stats: r.stats }));
        process.stdout.write(JSON.stringify(n > 1 ? rows : rows[0], null, 2) + '\n');
      } else {
        results.forEach((r, i) => process.stdout.write(`--- sample ${i + 1} (${r.finishReason}) ---\n${asChat ? '' : promptText}${r.text}\n`));
      }
      return 0;
    }
    if (!asChat) process.stdout.write(promptText);
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
      `\n[${model.device}${o.verbose && model.fallbackReason ? ` (CUDA not used: ${model.fallbackReason})` : ''}] ` +
        `prompt ${s.promptTokens} tokens, generated ${s.generatedTokens} (${r.finishReason}), ` +
        `first token ${s.timeToFirstTokenMs.toFixed(1)} ms, ${s.tokensPerSecond.toFixed(1)} tokens/s, ${s.targetPasses} forward passes, seed ${s.seed}\n`,
    );
    if (s.speculation) {
      const sp = s.speculation;
      process.stderr.write(
        `[${sp.strategy}] drafted ${sp.drafted}, accepted ${sp.accepted} (${(100 * sp.acceptanceRate).toFixed(1)}%), ` +
          `mean accepted length ${sp.meanAcceptedLength.toFixed(2)}, per position ${sp.perPositionAcceptance.map((x) => x.toFixed(2)).join(' ')}; ` +
          `ms: control ${sp.timeMs.control.toFixed(0)}, propose ${sp.timeMs.propose.toFixed(0)}, forward ${sp.timeMs.forward.toFixed(0)}, verify+commit ${sp.timeMs.verify.toFixed(0)}, host ${sp.timeMs.host.toFixed(0)}\n`,
      );
    }
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    model.dispose();
    draft?.dispose();
  }
}
