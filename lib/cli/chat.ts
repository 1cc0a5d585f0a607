/**
 * `canopy chat`: a conversation with a model in the terminal. Each line typed is a user
 * message; the reply streams back (a ChatSession, so each turn only computes its new tokens).
 * Ctrl-C during a reply stops that reply (what was generated stays in the history); Ctrl-C at
 * the prompt, Ctrl-D or /exit ends the program. /reset starts a new conversation.
 */

import { createInterface } from 'node:readline';

import { ChatSession } from '../chat/session.js';
import { loadModel } from '../model/load.js';
import type { Backend } from '../native/backend.js';
import { type ModelCliOptions, readTemplate, samplingOptions, storageOptions } from './options.js';

export interface ChatCliOptions extends ModelCliOptions {
  template?: string;
  system?: string;
  /** commander's --no-context-shift: false; default true. */
  contextShift?: boolean;
}

export async function runChatCli(o: ChatCliOptions): Promise<number> {
  const { dtype, kvDtype } = storageOptions(o);
  const template = o.template !== undefined ? readTemplate(o.template) : undefined;
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
    ...samplingOptions(o, { maxTokens: 512, temperature: 0.7 }),
    ...(kvDtype !== undefined ? { kvDtype } : {}),
    contextShift: o.contextShift !== false,
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
