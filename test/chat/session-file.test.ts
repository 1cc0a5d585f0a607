/**
 * ChatSession.save / ChatSession.load on stories260K: the restored session's next turn equals
 * the unsaved session's next turn token for token and reuses the restored cache (forward
 * tokens counted); a file saved with another model, a corrupt file and bad arguments are
 * CanopyErrors naming the file or the argument.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ChatSession } from '../../lib/chat/session.js';
import { loadModel } from '../../lib/model/load.js';
import type { Model } from '../../lib/model/model.js';
import { testModel } from '../helpers/test-models.js';

const TEMPLATE = '{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}';
const bin = testModel('stories260K/stories260K.bin', 'chat session files on stories260K');
const other = testModel('llama2xs-281K/model.bin', 'chat session files: model mismatch');
const dir = mkdtempSync(join(tmpdir(), 'canopy-session-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Counts the tokens of every forward pass of `model` (Model.forward, and Model.step: greedy decoding). */
function countTokens(model: Model): { tokens: number } {
  const counter = { tokens: 0 };
  const original = model.forward.bind(model);
  model.forward = (async (cache, step, options) => {
    counter.tokens += step.reduce((n, s) => n + s.tokens.length, 0);
    return original(cache, step, options);
  }) as Model['forward'];
  const originalStep = model.step.bind(model);
  model.step = (async (cache, step, options) => {
    counter.tokens += step.reduce((n, s) => n + s.tokens.length + (s.draft?.tokens.length ?? 0), 0);
    return originalStep(cache, step, options);
  }) as Model['step'];
  return counter;
}

describe.skipIf(!bin)('chat session files', async () => {
  const { model, tokenizer } = await loadModel(bin!, { backend: 'cpu' });
  const counter = countTokens(model);

  it.each(['f32', 'f16', 'int8'] as const)('a %s session restored from its file continues token for token, reusing the cache', async (kvDtype) => {
    const opts = { model, tokenizer, template: TEMPLATE, maxTokens: 24, temperature: 0, kvDtype };
    const a = new ChatSession({ ...opts, system: 'A story.' });
    const path = join(dir, `s-${kvDtype}.canopy-chat`);
    try {
      await a.send('Once upon a time, there was a little dog.');
      await a.send('The dog was happy.');
      await a.save(path);
      const b = await ChatSession.load(path, opts);
      try {
        expect(b.messages).toEqual(a.messages);
        const next = await a.send('Then it rained.');
        counter.tokens = 0;
        const restored = await b.send('Then it rained.');
        expect(restored.tokens).toEqual(next.tokens);
        expect(restored.promptTokens).toEqual(next.promptTokens);
        const expectReuse = kvDtype !== 'int8'; // quantized caches are saved without rows
        if (expectReuse) {
          expect(b.lastTurn).toEqual(a.lastTurn);
          expect(b.lastTurn.reusedTokens).toBeGreaterThan(next.promptTokens.length / 2);
          expect(counter.tokens).toBe(next.promptTokens.length - b.lastTurn.reusedTokens + next.tokens.length - (next.finishReason === 'length' ? 1 : 0));
        } else {
          expect(counter.tokens).toBe(next.promptTokens.length + next.tokens.length - (next.finishReason === 'length' ? 1 : 0));
        }
      } finally {
        b.dispose();
      }
    } finally {
      a.dispose();
    }
  });

  it('refuses a file saved with another model, a corrupt file, a missing file and bad arguments', async () => {
    const opts = { model, tokenizer, template: TEMPLATE, maxTokens: 8, temperature: 0 };
    const a = new ChatSession(opts);
    const path = join(dir, 'x.canopy-chat');
    await a.send('Hello.');
    await a.save(path);
    a.dispose();
    if (other) {
      const o = await loadModel(other, { backend: 'cpu', tokenizer: join(bin!, '..', 'tok512.bin') });
      await expect(ChatSession.load(path, { ...opts, model: o.model })).rejects.toThrow(new RegExp(`model must be the model the session in ${path.replace(/[.]/g, '\\.')} was saved with \\(config hash`));
      o.model.dispose();
    }
    const bytes = readFileSync(path);
    writeFileSync(join(dir, 'bad.canopy-chat'), bytes.subarray(0, bytes.length - 4));
    await expect(ChatSession.load(join(dir, 'bad.canopy-chat'), opts)).rejects.toThrow(/bad\.canopy-chat is not a usable canopy chat session file: .* bytes of cache rows/);
    const v2 = Buffer.from(bytes);
    v2.writeUInt32LE(2, 8);
    writeFileSync(join(dir, 'v2.canopy-chat'), v2);
    await expect(ChatSession.load(join(dir, 'v2.canopy-chat'), opts)).rejects.toThrow(/format version 2, this canopy reads version 1/);
    await expect(ChatSession.load(join(dir, 'missing'), opts)).rejects.toThrow(/cannot read the chat session file .*missing/);
    await expect(ChatSession.load(path, { ...opts, system: 'x' })).rejects.toThrow(/options must be no system or messages/);
    await expect(ChatSession.load(path, { ...opts, kvDtype: 'f16' })).rejects.toThrow(/kvDtype must be the cache type the session in .* was saved with \(f32\)/);
    const s = new ChatSession(opts);
    await expect(s.save('' as string)).rejects.toThrow(/path must be a file path/);
    s.dispose();
  });
});
