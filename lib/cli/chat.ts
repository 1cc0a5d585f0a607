/**
 * `canopy chat`: a conversation with a model in the terminal. Each line typed is a user
 * message; the reply streams back (a ChatSession, so each turn only computes its new tokens).
 * Ctrl-C during a reply stops that reply (what was generated stays in the history); Ctrl-C at
 * the prompt, Ctrl-D or /exit ends the program. /reset starts a new conversation.
 */

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

import { ChatSession } from '../chat/session.js';
import { ArgumentError, IoError } from '../errors.js';
import { loadModel } from '../model/load.js';
import type { KvCacheDtype } from '../model/kv-cache.js';
import type { Backend } from '../native/backend.js';
import type { FloatDType } from '../tensor/dtype.js';

export interface ChatCliOptions {
  model: string;
  tokenizer?: string;
  template?: string;
  system?: string;
  maxTokens?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed?: string;
  backend?: string;
  dtype?: string;
  kvDtype?: string;
  verbose?: boolean;
}

export function num(value: string | undefined, name: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new ArgumentError(`--${name}`, integer ? 'an integer' : 'a number', value);
  return n;
}

export const KV_DTYPES = ['f32', 'f16', 'bf16', 'int8', 'int4', 'fp8'];

export async function runChatCli(o: ChatCliOptions): Promise<number> {
  const dtype = o.dtype as FloatDType | undefined;
  if (dtype !== undefined && !['f32', 'f16', 'bf16'].includes(dtype)) throw new ArgumentError('--dtype', 'f32, f16 or bf16', dtype);
  if (o.kvDtype !== undefined && !KV_DTYPES.includes(o.kvDtype)) throw new ArgumentError('--kv-dtype', KV_DTYPES.join(', '), o.kvDtype);
  let template: string | undefined;
  if (o.template !== undefined) {
    try {
      template = readFileSync(o.template, 'utf8');
    } catch (cause) {
      throw new IoError(`cannot read the chat template ${o.template}: ${(cause as Error).message}`, { cause });
    }
  }
  const { model, tokenizer } = await loadModel(o.model, {
    backend: (o.backend ?? 'auto') as Backend,
    ...(dtype ? { dtype } : {}),
    ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
  });
  if (o.verbose && model.fallbackReason) process.stderr.write(`[cpu] CUDA not used: ${model.fallbackReason}\n`);
  const settings = {
    model,
    tokenizer,
    ...(template !== undefined ? { template } : {}),
    ...(o.system !== undefined ? { system: o.system } : {}),
    maxTokens: num(o.maxTokens, 'max-tokens', true) ?? 512,
    temperature: num(o.temperature, 'temperature', false) ?? 0.7,
    ...(o.topK !== undefined ? { topK: num(o.topK, 'top-k', true)! } : {}),
    ...(o.topP !== undefined ? { topP: num(o.topP, 'top-p', false)! } : {}),
    ...(o.seed !== undefined ? { seed: num(o.seed, 'seed', true)! } : {}),
    ...(o.kvDtype !== undefined ? { kvDtype: o.kvDtype as KvCacheDtype } : {}),
  };
  let session = new ChatSession(settings);
  const interactive = process.stdin.isTTY === true;
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive, prompt: '> ' });
  let reply: AbortController | undefined;
  let closed = false;
  const onInterrupt = (): void => {
    if (reply) {
      reply.abort(); // stop this reply only
    } else {
      closed = true;
      rl.close();
    }
  };
  rl.on('SIGINT', onInterrupt); // terminal: Ctrl-C arrives as a keypress
  process.on('SIGINT', onInterrupt); // piped input: as a signal
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  rl.on('line', (line) => {
    lines.push(line);
    wake?.();
  });
  rl.on('close', () => {
    closed = true;
    wake?.();
  });
  try {
    if (interactive) rl.prompt();
    for (;;) {
      while (lines.length === 0 && !closed) await new Promise<void>((r) => (wake = r));
      const line = lines.shift();
      if (line === undefined) break;
      const text = line.trim();
      if (text === '/exit' || text === '/quit') break;
      if (text === '/reset') {
        session.dispose();
        session = new ChatSession(settings);
        if (interactive) rl.prompt();
        continue;
      }
      if (text === '') {
        if (interactive) rl.prompt();
        continue;
      }
      reply = new AbortController();
      try {
        for await (const piece of session.stream(line, { signal: reply.signal })) process.stdout.write(piece);
      } finally {
        reply = undefined;
      }
      process.stdout.write('\n');
      if (o.verbose) {
        const t = session.lastTurn;
        process.stderr.write(`[turn: prompt ${t.promptTokens} tokens, ${t.reusedTokens} reused from the cache]\n`);
      }
      if (interactive && !closed) rl.prompt();
    }
    return 0;
  } finally {
    process.off('SIGINT', onInterrupt);
    rl.close();
    session.dispose();
    model.dispose();
  }
}
