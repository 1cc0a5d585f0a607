/**
 * Chat templates: the Jinja source an instruct model ships (GGUF `tokenizer.chat_template`,
 * or `chat_template` in a Hugging Face tokenizer_config.json) rendered with @huggingface/jinja,
 * with the variables Hugging Face's apply_chat_template gives templates:
 *
 *   messages               the conversation: [{ role, content, ... }]
 *   bos_token, eos_token   the tokenizer's BOS / EOS token texts ('' when it has none)
 *   add_generation_prompt  true: end with the header of an assistant turn (what generation continues)
 *   tools                  tool definitions (JSON schema objects) when given, else none (as Hugging Face)
 *   raise_exception(msg)   throws a CanopyError carrying the template's message
 *   strftime_now(format)   the current local time, C strftime-formatted (Llama 3.1 writes the date)
 *
 * plus any extra variables the caller passes (e.g. enable_thinking for Qwen3).
 *
 * Templates that refuse a system message (Gemma 2 raises "System role not supported") are
 * rendered, as llama.cpp does, with the system text moved to the start of the first user
 * message instead (opt out with `systemFallback: false`).
 */

import { Environment, Interpreter, Template } from '@huggingface/jinja';

import { ArgumentError } from '../errors.js';

/** One message of a conversation. Templates may read other fields (tool_calls, name, ...). */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | (string & {});
  content: string;
  [field: string]: unknown;
}

export interface RenderOptions {
  /** End with the opening of an assistant turn (default true: the prompt for a reply). */
  addGenerationPrompt?: boolean;
  /** Tool definitions passed to the template as `tools`. */
  tools?: unknown[];
  /** More variables for the template (e.g. { enable_thinking: false }). */
  variables?: Record<string, unknown>;
  /** Move a refused system message into the first user message (default true; see the module comment). */
  systemFallback?: boolean;
}

/**
 * An error the template itself raised (raise_exception), or a Jinja error while parsing or
 * rendering: an invalid argument (the template or the conversation), code ERR_CANOPY_INVALID_ARGUMENT.
 */
export class ChatTemplateError extends ArgumentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options ?? {});
  }
}

/** Raised by the template's raise_exception(); kept apart to recognise a refused system role. */
class RaisedByTemplate extends Error {}

export class ChatTemplate {
  readonly source: string;
  readonly bosToken: string;
  readonly eosToken: string;
  private readonly template: Template;

  /**
   * @param source the Jinja template text
   * @param tokens the BOS and EOS token texts the template sees as bos_token / eos_token
   */
  constructor(source: string, tokens: { bosToken?: string; eosToken?: string } = {}) {
    if (typeof source !== 'string' || source.trim().length === 0) throw new ArgumentError('source', 'a non-empty Jinja chat template', source);
    this.source = source;
    this.bosToken = tokens.bosToken ?? '';
    this.eosToken = tokens.eosToken ?? '';
    try {
      this.template = new Template(source);
    } catch (cause) {
      throw new ChatTemplateError(`the chat template does not parse: ${(cause as Error).message}`, { cause });
    }
  }

  /** Renders `messages` (see the module comment for the variables). */
  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    checkMessages(messages);
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { addGenerationPrompt?, tools?, variables?, systemFallback? }', options);
    try {
      return this.renderOnce(messages, options);
    } catch (error) {
      const refused = error instanceof RaisedByTemplate && /system/i.test(error.message);
      if (!refused || options.systemFallback === false || messages[0]?.role !== 'system') throw wrap(error);
      return this.renderOnce(mergeSystem(messages), options);
    }
  }

  private renderOnce(messages: readonly ChatMessage[], options: RenderOptions): string {
    // Template.render would declare the library's own raise_exception (a plain Error) and
    // strftime_now (locale-dependent month names) first; build the environment here instead.
    const env = new Environment();
    const variables: Record<string, unknown> = {
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
      range: pythonRange,
      ...options.variables,
      messages: messages.map((m) => ({ ...m })),
      bos_token: this.bosToken,
      eos_token: this.eosToken,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      tools: options.tools ?? null,
      raise_exception: (message: unknown) => {
        throw new RaisedByTemplate(String(message));
      },
      strftime_now: (format: unknown) => strftime(String(format), new Date()),
    };
    try {
      for (const [name, value] of Object.entries(variables)) env.set(name, value);
      return new Interpreter(env).run(this.template.parsed).value as string;
    } catch (error) {
      if (error instanceof RaisedByTemplate) throw error;
      throw wrap(error);
    }
  }
}

function wrap(error: unknown): Error {
  if (error instanceof ChatTemplateError) return error;
  if (error instanceof RaisedByTemplate) return new ChatTemplateError(`the chat template refused the conversation: ${error.message}`, { cause: error });
  return new ChatTemplateError(`the chat template failed to render: ${(error as Error).message}`, { cause: error });
}

/** The conversation with its leading system message folded into the first user message. */
function mergeSystem(messages: readonly ChatMessage[]): ChatMessage[] {
  const [system, ...rest] = messages;
  const first = rest.findIndex((m) => m.role === 'user');
  if (first < 0) return [{ role: 'user', content: system!.content }, ...rest];
  return rest.map((m, i) => (i === first ? { ...m, content: `${system!.content}\n\n${m.content}` } : m));
}

export function checkMessages(messages: unknown, argument = 'messages'): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new ArgumentError(argument, 'a non-empty array of { role, content }', messages);
  messages.forEach((m, i) => {
    if (m === null || typeof m !== 'object') throw new ArgumentError(`${argument}[${i}]`, 'an object { role, content }', m);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof role !== 'string' || role.length === 0) throw new ArgumentError(`${argument}[${i}].role`, "a role such as 'system', 'user' or 'assistant'", role);
    if (typeof content !== 'string') throw new ArgumentError(`${argument}[${i}].content`, 'a string', content);
  });
}

/** Python's range(stop) / range(start, stop[, step]). */
function pythonRange(a: number, b?: number, step = 1): number[] {
  const [start, stop] = b === undefined ? [0, a] : [a, b];
  if (step === 0) throw new RaisedByTemplate('range() step must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/** C strftime over local time, for the directives chat templates use; unknown ones are kept as written. */
export function strftime(format: string, date: Date): string {
  const pad = (n: number, width = 2, fill = '0'): string => String(n).padStart(width, fill);
  const start = new Date(date.getFullYear(), 0, 1);
  const dayOfYear = Math.floor((date.getTime() - start.getTime()) / 86_400_000) + 1;
  const hour12 = date.getHours() % 12 === 0 ? 12 : date.getHours() % 12;
  const table: Record<string, () => string> = {
    a: () => DAYS[date.getDay()]!.slice(0, 3),
    A: () => DAYS[date.getDay()]!,
    b: () => MONTHS[date.getMonth()]!.slice(0, 3),
    h: () => MONTHS[date.getMonth()]!.slice(0, 3),
    B: () => MONTHS[date.getMonth()]!,
    d: () => pad(date.getDate()),
    e: () => pad(date.getDate(), 2, ' '),
    m: () => pad(date.getMonth() + 1),
    y: () => pad(date.getFullYear() % 100),
    Y: () => String(date.getFullYear()),
    H: () => pad(date.getHours()),
    I: () => pad(hour12),
    M: () => pad(date.getMinutes()),
    S: () => pad(date.getSeconds()),
    p: () => (date.getHours() < 12 ? 'AM' : 'PM'),
    j: () => pad(dayOfYear, 3),
    '%': () => '%',
  };
  return format.replace(/%([a-zA-Z%])/g, (all, d: string) => (table[d] ? table[d]!() : all));
}
