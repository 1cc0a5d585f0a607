/**
 * Chat templates: the real templates in ../shared/chat-templates (or CANOPY_TEST_TEMPLATES)
 * render every conversation of a small set (system + user, multi-turn, a lone user message,
 * with and without the generation prompt), and five families render exactly the text their
 * format defines, written out by hand here. Skipped, saying why, when the folder is absent.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { type ChatMessage, ChatTemplate, ChatTemplateError, strftime } from '../../lib/chat/template.js';
import { CanopyError } from '../../lib/errors.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DIR = process.env.CANOPY_TEST_TEMPLATES ?? resolve(repoRoot, '../shared/chat-templates');
const present = existsSync(DIR);
if (!present) console.warn(`[skip] chat templates: ${DIR} not found (set CANOPY_TEST_TEMPLATES)`);
const read = (name: string): string => readFileSync(join(DIR, `${name}.jinja`), 'utf8');

const CONVERSATIONS: Record<string, ChatMessage[]> = {
  'system + user': [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Hi' },
  ],
  'multi-turn': [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello! How can I help?' },
    { role: 'user', content: 'Name a color.' },
  ],
  'system + multi-turn': [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Name a color.' },
  ],
  'lone user': [{ role: 'user', content: 'Hi' }],
};

/** A tool in both common shapes (OpenAI function schema; Command R's parameter_definitions). */
const TOOL = {
  type: 'function',
  name: 'get_weather',
  description: 'The weather in a city',
  parameter_definitions: { city: { description: 'The city', type: 'str', required: true } },
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', description: 'The city' } }, required: ['city'] },
  },
};
/** Templates that exist only for tool use and require tools (as with Hugging Face). */
const NEEDS_TOOLS = /tool_use|functionary-medium-v3\.1|firefunction/;
/** Templates @huggingface/jinja cannot run, with the reason (checked to fail with a ChatTemplateError). */
const UNSUPPORTED: Record<string, RegExp> = {
  // {0: 0, 512: 128, ...}: the library only allows string keys in dict literals.
  'ByteDance-Seed-OSS': /Object keys must be strings/,
};

describe.skipIf(!present)('real chat templates', () => {
  const names = present ? readdirSync(DIR).filter((n) => n.endsWith('.jinja')).map((n) => n.slice(0, -6)).sort() : [];

  it('the folder holds the real families', () => {
    expect(names.length).toBeGreaterThanOrEqual(50);
  });

  it.each(names)('%s renders every conversation, with and without the generation prompt', (name) => {
    const template = new ChatTemplate(read(name), { bosToken: '<BOS>', eosToken: '<EOS>' });
    for (const [label, messages] of Object.entries(CONVERSATIONS)) {
      for (const addGenerationPrompt of [true, false]) {
        const render = () =>
          template.render(messages, {
            addGenerationPrompt,
            ...(NEEDS_TOOLS.test(name) ? { tools: [TOOL] } : {}),
            variables: { functions: '[]', datetime: '2024-07-26' },
          });
        if (UNSUPPORTED[name]) {
          expect(render).toThrow(UNSUPPORTED[name]!);
          continue;
        }
        const text = render();
        expect(typeof text, `${label} ${addGenerationPrompt}`).toBe('string');
        // Every message's content reaches the prompt.
        for (const m of messages) expect(text, `${name}: ${label}: ${m.role}`).toContain(m.content);
      }
    }
  });

  const conv = CONVERSATIONS['system + multi-turn']!;
  const expected: Array<[string, string, string, string]> = [
    [
      'meta-llama-Llama-3.1-8B-Instruct',
      '<|begin_of_text|>',
      '<|eot_id|>',
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    ],
    [
      'Qwen-Qwen2.5-7B-Instruct',
      '',
      '<|im_end|>',
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n' +
        '<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n',
    ],
    [
      // Gemma 2 refuses a system role; it is folded into the first user message.
      'google-gemma-2-2b-it',
      '<bos>',
      '<eos>',
      '<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nName a color.<end_of_turn>\n<start_of_turn>model\n',
    ],
    [
      'microsoft-Phi-3.5-mini-instruct',
      '<s>',
      '<|endoftext|>',
      '<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nName a color.<|end|>\n<|assistant|>\n',
    ],
    [
      // Mistral Nemo puts the system message into the last user turn.
      'mistralai-Mistral-Nemo-Instruct-2407',
      '<s>',
      '</s>',
      '<s>[INST]Hi[/INST]Hello!</s>[INST]Be brief.\n\nName a color.[/INST]',
    ],
  ];
  it.each(expected)('%s renders exactly the hand-written prompt', (name, bosToken, eosToken, want) => {
    expect(new ChatTemplate(read(name), { bosToken, eosToken }).render(conv)).toBe(want);
  });

  it('Qwen2.5 without the generation prompt ends after the last message', () => {
    const text = new ChatTemplate(read('Qwen-Qwen2.5-7B-Instruct'), { eosToken: '<|im_end|>' }).render(CONVERSATIONS['lone user']!, { addGenerationPrompt: false });
    expect(text).toBe('<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n');
  });

  it('Gemma 2 refuses the system role when asked not to fold it', () => {
    const t = new ChatTemplate(read('google-gemma-2-2b-it'), { bosToken: '<bos>' });
    expect(() => t.render(conv, { systemFallback: false })).toThrow(/refused the conversation: System role not supported/);
  });
});

describe('ChatTemplate on small templates', () => {
  it('gives bos_token, eos_token, add_generation_prompt, tools, raise_exception and strftime_now', () => {
    const t = new ChatTemplate(
      "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if tools %}T{{ tools|length }}{% endif %}{% if add_generation_prompt %}>{% endif %}{{ eos_token }}|{{ strftime_now('%Y') }}",
      { bosToken: 'B', eosToken: 'E' },
    );
    const year = String(new Date().getFullYear());
    expect(t.render([{ role: 'user', content: 'x' }])).toBe(`B[user]x>E|${year}`);
    expect(t.render([{ role: 'user', content: 'x' }], { addGenerationPrompt: false, tools: [1, 2] })).toBe(`B[user]xT2E|${year}`);
    const raising = new ChatTemplate("{{ raise_exception('only user messages') }}");
    expect(() => raising.render([{ role: 'user', content: 'x' }])).toThrow(ChatTemplateError);
    expect(() => raising.render([{ role: 'user', content: 'x' }])).toThrow(/only user messages/);
  });

  it('bad templates and conversations are CanopyErrors naming the problem', () => {
    expect(() => new ChatTemplate('{% for %}')).toThrow(/does not parse/);
    expect(() => new ChatTemplate('')).toThrow(/source must be a non-empty Jinja chat template/);
    const t = new ChatTemplate('{{ messages[0].content }}');
    expect(() => t.render([])).toThrow(/messages must be a non-empty array/);
    expect(() => t.render([{ role: 'user', content: 3 } as never])).toThrow(/messages\[0\]\.content must be a string; received 3/);
    try {
      t.render([{ role: '', content: '' }]);
    } catch (e) {
      expect(e).toBeInstanceOf(CanopyError);
    }
  });

  it('strftime formats the directives templates use', () => {
    const d = new Date(2024, 6, 5, 9, 3, 7);
    expect(strftime('%d %b %Y', d)).toBe('05 Jul 2024');
    expect(strftime('%A %B %e %H:%M:%S %y %j %%', d)).toBe('Friday July  5 09:03:07 24 187 %');
  });
});
