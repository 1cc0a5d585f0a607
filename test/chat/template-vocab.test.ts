/**
 * A real template with a real vocabulary: DeepSeek V3.1's template over the deepseek-llm GGUF
 * vocabulary (whose BOS is <｜begin▁of▁sentence｜>, added by default). The template writes
 * bos_token itself: the prompt ids start with exactly one BOS, the special-token text becomes
 * its token, and the ids are what the rendered text encodes to.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect, it } from 'vitest';

import { chatPromptIds, chatTemplateFor } from '../../lib/chat/session.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import { ggufVocabulary } from '../../lib/model/load.js';
import { GgufTokenizer } from '../../lib/model/tokenizer/gguf.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const vocabPath = join(process.env.CANOPY_TEST_VOCAB ?? resolve(repoRoot, '../shared/vocab'), 'ggml-vocab-deepseek-llm.gguf');
const templatePath = join(process.env.CANOPY_TEST_TEMPLATES ?? resolve(repoRoot, '../shared/chat-templates'), 'deepseek-ai-DeepSeek-V3.1.jinja');
const present = existsSync(vocabPath) && existsSync(templatePath);
if (!present) console.warn(`[skip] template with a vocabulary: ${vocabPath} or ${templatePath} not found`);

it.skipIf(!present)('DeepSeek V3.1 template on the deepseek-llm vocabulary: one BOS, special tokens matched', () => {
  const tok = new GgufTokenizer(ggufVocabulary(readGguf(vocabPath).metadata, vocabPath)!);
  const bos = tok.bosId!;
  expect(tok.idToToken(bos)).toBe('<｜begin▁of▁sentence｜>');
  expect(tok.addBosByDefault).toBe(true);
  const template = chatTemplateFor(tok, readFileSync(templatePath, 'utf8'));
  const text = template.render([
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi there' },
  ]);
  expect(text.startsWith('<｜begin▁of▁sentence｜>Be brief.')).toBe(true);
  const ids = chatPromptIds(tok, text);
  expect(ids[0]).toBe(bos);
  expect(ids.filter((id) => id === bos)).toHaveLength(1);
  expect(ids).toEqual(tok.encode(text, { bos: false, special: true }));
  // The rest is the text after the BOS token (BOS, a control token, decodes to nothing).
  expect(tok.decode(ids)).toBe(text.slice('<｜begin▁of▁sentence｜>'.length));
  // Without special: true the BOS text is plain text (several tokens, no BOS id).
  expect(tok.encode(text, { bos: false })).not.toContain(bos);
});
