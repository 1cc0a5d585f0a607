/**
 * Context shift on the real stories260K model (context 512): generation continues past the
 * context by keeping the first tokens and dropping the oldest half of the rest; what follows
 * a shift equals a fresh generate() on the kept tokens (the shift re-prefills them, so greedy
 * tokens match exactly); stats count shifts; sessions shift too; bad options are errors.
 */
import { describe, expect, it } from 'vitest';

import { ChatSession } from '../../lib/chat/session.js';
import { generate } from '../../lib/generate.js';
import { loadModel } from '../../lib/model/load.js';
import { testModel } from '../helpers/test-models.js';

const bin = testModel('stories260K/stories260K.bin', 'context shift on stories260K');

/**
 * The kept tokens of each shift, recomputed independently from the sequence (prompt +
 * generated): a shift happens when the cache holds `limit` tokens; it keeps `keep`, drops
 * floor((held - keep) / 2), and the pending token follows. Returns, per shift, the kept tokens
 * (pending included) and the index in `all` of the first token generated after it.
 */
function expectedShifts(all: number[], limit: number, keep: number): Array<{ kept: number[]; next: number }> {
  const out: Array<{ kept: number[]; next: number }> = [];
  let held: number[] = all.slice(0, limit);
  let i = limit; // all[i] is the pending token when the cache is full
  while (i < all.length) {
    const discard = Math.floor((held.length - keep) / 2);
    const kept = [...held.slice(0, keep), ...held.slice(keep + discard), all[i]!];
    out.push({ kept, next: i + 1 });
    held = [...kept];
    // The cache fills again after limit - kept.length more tokens.
    const more = limit - kept.length;
    held.push(...all.slice(i + 1, i + 1 + more));
    i += 1 + more;
  }
  return out;
}

describe.skipIf(!bin)('context shift on stories260K', async () => {
  const { model, tokenizer } = await loadModel(bin!, { backend: 'cpu' });
  const limit = model.config.maxSeqLen;
  const bos = tokenizer.bosId!;

  it('has the 512-token context these tests assume', () => {
    expect(limit).toBe(512);
  });

  it('generates 1500 tokens past a 512 context; after each shift the tokens equal a fresh generate() on the kept tokens', async () => {
    const prompt = tokenizer.encode('Once upon a time', { bos: true });
    const r = await generate({ model, tokenizer, tokens: prompt, maxTokens: 1500, temperature: 0, stopAtEos: false, contextShift: true, logprobs: 4 });
    expect(r.tokens).toHaveLength(1500);
    expect(r.finishReason).toBe('length');
    const all = [...prompt, ...r.tokens];
    const shifts = expectedShifts(all, limit, 1);
    expect(shifts.length).toBeGreaterThanOrEqual(4);
    expect(r.stats.contextShifts).toBe(shifts.length);
    // Passes: the prefill, one per generated token after the first, one per shift (the shift's
    // prefill gives the next token instead of a decode step, so it replaces one).
    expect(r.stats.targetPasses).toBe(1 + (1500 - 1));
    for (const { kept, next } of shifts.slice(0, 3)) {
      expect(kept[0]).toBe(bos);
      const fresh = await generate({ model, tokenizer, tokens: kept, maxTokens: 1500, temperature: 0, stopAtEos: false, logprobs: 4 });
      expect(fresh.finishReason).toBe('context');
      const continued = all.slice(next, next + fresh.tokens.length);
      expect(fresh.tokens.slice(0, continued.length)).toEqual(continued);
      // The logits after the shift are those of a fresh prefill of the kept tokens at their new
      // positions: the logprobs (and top 4) of the token chosen from them are identical.
      const at = next - prompt.length;
      expect(r.logprobs![at]).toEqual(fresh.logprobs![0]);
      expect(r.logprobs!.slice(at, at + continued.length)).toEqual(fresh.logprobs!.slice(0, continued.length));
      expect(continued.length).toBeGreaterThan(200);
    }
    // Without the shift the same call ends at the context.
    const plain = await generate({ model, tokenizer, tokens: prompt, maxTokens: 1500, temperature: 0, stopAtEos: false });
    expect(plain.finishReason).toBe('context');
    expect(plain.tokens).toEqual(r.tokens.slice(0, plain.tokens.length));
    expect(plain.stats.contextShifts).toBeUndefined();
  });

  it('keeps contextShift.keep tokens; a batch shifts each sequence', async () => {
    const prompts = [tokenizer.encode('Lily had a red ball. She', { bos: true }), tokenizer.encode('Tom was a big dog', { bos: true })];
    const keep = 5;
    const rs = await generate({ model, tokenizer, tokens: prompts, maxTokens: 700, temperature: 0, stopAtEos: false, contextShift: { keep } });
    for (const [s, r] of rs.entries()) {
      expect(r.tokens).toHaveLength(700);
      const all = [...prompts[s]!, ...r.tokens];
      const [first] = expectedShifts(all, limit, keep);
      expect(r.stats.contextShifts).toBe(1);
      expect(first!.kept.slice(0, keep)).toEqual(prompts[s]!.slice(0, keep));
      const fresh = await generate({ model, tokenizer, tokens: first!.kept, maxTokens: 64, temperature: 0, stopAtEos: false });
      expect(fresh.tokens).toEqual(all.slice(first!.next, first!.next + 64));
    }
  });

  it('works with an int8 cache (the same tokens as a fresh int8 generate) and an int4 cache (chunked re-prefill)', async () => {
    const prompt = [bos];
    const r8 = await generate({ model, tokenizer, tokens: prompt, maxTokens: 700, temperature: 0, stopAtEos: false, contextShift: true, kvDtype: 'int8' });
    expect(r8.tokens).toHaveLength(700);
    const [first] = expectedShifts([...prompt, ...r8.tokens], limit, 1);
    const fresh = await generate({ model, tokenizer, tokens: first!.kept, maxTokens: 32, temperature: 0, stopAtEos: false, kvDtype: 'int8' });
    expect(fresh.tokens).toEqual([...prompt, ...r8.tokens].slice(first!.next, first!.next + 32));
    const r4 = await generate({ model, tokenizer, tokens: prompt, maxTokens: 700, temperature: 0, stopAtEos: false, contextShift: true, kvDtype: 'int4' });
    expect(r4.tokens).toHaveLength(700);
    expect(r4.stats.contextShifts).toBe(1);
  });

  it('a lookup strategy shifts too and stays greedy-lossless', async () => {
    const prompt = [bos];
    const a = await generate({ model, tokenizer, tokens: prompt, maxTokens: 700, temperature: 0, stopAtEos: false, contextShift: true });
    const b = await generate({ model, tokenizer, tokens: prompt, maxTokens: 700, temperature: 0, stopAtEos: false, contextShift: true, strategy: 'lookup' });
    expect(b.tokens).toEqual(a.tokens);
    expect(b.stats.contextShifts).toBe(a.stats.contextShifts);
  });

  it('a chat session with contextShift keeps talking past the context, keeping the system message', async () => {
    const TEMPLATE = '{% for m in messages %}{{ m.role }}:{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}';
    const system = 'Stories about a dog.';
    const session = new ChatSession({ model, tokenizer, template: TEMPLATE, system, maxTokens: 150, temperature: 0, stopAtEos: false, contextShift: true });
    const noShift = new ChatSession({ model, tokenizer, template: TEMPLATE, system, maxTokens: 150, temperature: 0, stopAtEos: false });
    try {
      const sysIds = tokenizer.encode('system:' + system + '\n', { bos: true });
      let refused = false;
      for (let turn = 0; turn < 6; turn++) {
        const r = await session.send('Tell me more.');
        expect(r.tokens.length).toBeGreaterThan(0);
        expect(r.promptTokens.length).toBeLessThan(limit);
        expect(r.promptTokens.slice(0, sysIds.length - 1)).toEqual(sysIds.slice(0, sysIds.length - 1));
        if (!refused) await noShift.send('Tell me more.').catch((e: Error) => ((refused = true), expect(e.message).toMatch(/context of 512 tokens/)));
      }
      expect(refused).toBe(true);
      expect(session.messages).toHaveLength(13);
    } finally {
      session.dispose();
      noShift.dispose();
    }
  });

  it('refuses bad contextShift options with ArgumentErrors', async () => {
    const base = { model, tokenizer, tokens: [bos], maxTokens: 2 };
    await expect(generate({ ...base, contextShift: 'yes' as never })).rejects.toThrow(/contextShift must be a boolean or \{ keep: number \}/);
    await expect(generate({ ...base, contextShift: { keep: -1 } })).rejects.toThrow(/contextShift.keep must be an integer in \[0, /);
    await expect(generate({ ...base, contextShift: { keep: 511 } })).rejects.toThrow(/contextShift.keep must be at most 510/);
    await expect(generate({ ...base, contextShift: true, strategy: 'heads' })).rejects.toThrow(/strategy must be .* with contextShift/);
  });
});
