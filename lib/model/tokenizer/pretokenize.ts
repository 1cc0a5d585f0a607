/**
 * Byte-level BPE pre-tokenizers: the regex splits llama.cpp applies before the merges, by the
 * name a GGUF file stores in `tokenizer.ggml.pre`.
 *
 * How llama.cpp splits (its unicode_regex_split), which this module reproduces:
 *  - a pre-tokenizer is a LIST of regexes applied in turn; each one splits every piece left by
 *    the previous one into its matches and the unmatched gaps between them (gaps are kept as
 *    pieces too), searching each piece on its own (a lookahead never sees past the piece);
 *  - whitespace is Unicode White_Space. llama.cpp's std::regex only knows ASCII classes, so it
 *    first replaces every non-ASCII whitespace character by U+000B; we do the same (a "shadow"
 *    of the text, same length, that the regexes run on) and write `\s` as the ASCII class
 *    [\t\n\v\f\r ]. This matters where a regex lists non-ASCII characters literally (deepseek-llm's
 *    CJK ranges contain U+3000, which therefore never matches them) and keeps U+FEFF (which
 *    JavaScript's \s would take) out of the whitespace class;
 *  - `\p{L}`, `\p{N}`, `\p{P}`, `\p{S}`, `\p{M}` are Unicode general categories (llama.cpp
 *    collapses each non-ASCII character to its category, which has the same effect);
 *  - `(?i:'s|...)` is spelled out as '[sS]... (Node 20's RegExp has no inline modifiers), as
 *    llama.cpp does.
 * Lone UTF-16 surrogates cannot reach llama.cpp (text crosses into it as UTF-8); they are
 * replaced by U+FFFD first, as TextEncoder would.
 */

import { ArgumentError } from '../../errors.js';

/** ASCII whitespace as std::regex's \s sees it (non-ASCII whitespace is mapped to \v first). */
const WS = String.raw`\t\n\v\f\r `;
const S = `[${WS}]`;
const NS = `[^${WS}]`;

/** Contractions, case-insensitive spelled out (llama.cpp's adaptation of `(?i:'s|'t|...)`). */
const CONTRACTIONS_CI = String.raw`'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]`;

/** GPT-2's regex (llama.cpp drops its final `|\s+`: a lone whitespace left over becomes a gap piece, the same split). */
const GPT2 = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^${WS}\p{L}\p{N}]+|${S}+(?!${NS})`;
const LLAMA3 = String.raw`${CONTRACTIONS_CI}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^${WS}\p{L}\p{N}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const QWEN2 = String.raw`${CONTRACTIONS_CI}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^${WS}\p{L}\p{N}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const QWEN35 = String.raw`${CONTRACTIONS_CI}|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^${WS}\p{L}\p{M}\p{N}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
/** Letters that are not a-z / not A-Z (Tekken and o200k's case-aware words; non-ASCII letters count as both). */
const UPPERISH = String.raw`(?:(?=\p{L})[^a-z])`;
const LOWERISH = String.raw`(?:(?=\p{L})[^A-Z])`;
const TEKKEN = String.raw`[^\r\n\p{L}\p{N}]?${UPPERISH}*${LOWERISH}+|[^\r\n\p{L}\p{N}]?${UPPERISH}+${LOWERISH}*|\p{N}| ?[^${WS}\p{L}\p{N}]+[\r\n/]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const GPT4O = String.raw`[^\r\n\p{L}\p{N}]?${UPPERISH}*${LOWERISH}+(?:${CONTRACTIONS_CI})?|[^\r\n\p{L}\p{N}]?${UPPERISH}+${LOWERISH}*(?:${CONTRACTIONS_CI})?|\p{N}{1,3}| ?[^${WS}\p{L}\p{N}]+[\r\n/]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
/** deepseek-llm's letter class (Unicode's cased letters), written as code points. */
const DEEPSEEK_LLM_LETTERS = [
  'A-Za-z\\u00B5\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u01BA\\u01BC-\\u01BF\\u01C4-\\u0293\\u0295-\\u02AF',
  '\\u0370-\\u0373\\u0376\\u0377\\u037B-\\u037D\\u037F\\u0386\\u0388-\\u038A\\u038C\\u038E-\\u03A1\\u03A3-\\u03F5',
  '\\u03F7-\\u0481\\u048A-\\u052F\\u0531-\\u0556\\u10A0-\\u10C5\\u13A0-\\u13F5\\u13F8-\\u13FD\\u1C90-\\u1CBA',
  '\\u1CBD-\\u1CBF\\u1D00-\\u1D2B\\u1D6B-\\u1D77\\u1D79-\\u1D9A\\u1E00-\\u1F15\\u1F18-\\u1F1D\\u1F20-\\u1F45',
  '\\u1F48-\\u1F4D\\u1F50-\\u1F57\\u1F59\\u1F5B\\u1F5D\\u1F5F-\\u1F7D\\u1F80-\\u1FB4\\u1FB6-\\u1FBC\\u1FBE',
  '\\u1FC2-\\u1FC4\\u1FC6-\\u1FCC\\u1FD0-\\u1FD3\\u1FD6-\\u1FDB\\u1FE0-\\u1FEC\\u1FF2-\\u1FF4\\u1FF6-\\u1FFC',
  '\\u2102\\u2107\\u210A-\\u2113\\u2115\\u2119-\\u211D\\u2124\\u2126\\u2128\\u212A-\\u212D\\u212F-\\u2134\\u2139',
  '\\u213C-\\u213F\\u2145-\\u2149\\u214E\\u2183\\u2184\\u2C00-\\u2C7B\\u2C7E-\\u2CE4\\u2CEB-\\u2CEE\\u2CF2\\u2CF3',
  '\\uA640-\\uA66D\\uA680-\\uA69B\\uA722-\\uA76F\\uA771-\\uA787\\uA78B-\\uA78E\\uAB70-\\uABBF\\uFB00-\\uFB06',
  '\\uFB13-\\uFB17\\uFF21-\\uFF3A\\uFF41-\\uFF5A\\u{10400}-\\u{1044F}\\u{104B0}-\\u{104D3}\\u{104D8}-\\u{104FB}',
  '\\u{10C80}-\\u{10CB2}\\u{10CC0}-\\u{10CF2}\\u{118A0}-\\u{118DF}\\u{1E900}-\\u{1E943}',
].join('');
/** deepseek's CJK class [一-龥ࠀ-一가-퟿] as code points (U+3000 and the other whitespace in it never match: see the module comment). */
 /** DeepSeek V3's (and AFMoE's) main split. */
const DEEPSEEK_V3_MAIN =
  String.raw`[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + '`' + String.raw`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`;
const CJK_DEEPSEEK = '[\\u4E00-\\u9FA5\\u0800-\\u4E00\\uAC00-\\uD7FF]+';
/** Poro / BLOOM: [^(\s|.,!?…。，、।۔،)] (the parentheses and | are literal members of the class). */
const NOT_PORO_PUNCT = `[^(${WS}|.,!?\\u2026\\u3002\\uFF0C\\u3001\\u0964\\u06D4\\u060C)]`;

/** Han characters as llama.cpp's unicode_cpt_is_han lists them (CJK ideograph blocks). */
const HAN = '\\u4E00-\\u9FFF\\u3400-\\u4DBF\\u{20000}-\\u{2A6DF}\\u{2A700}-\\u{2EBEF}\\uF900-\\uFAFF\\u{2F800}-\\u{2FA1F}';
/**
 * Kimi K2 (llama.cpp splits it by hand, not with its regex): Han runs; words of non-Han letters
 * (case ignored, marks not included) with an optional leading non-letter and an optional
 * contraction; digits by three; then Llama 3's punctuation and whitespace rules.
 */
const KIMI_K2 = String.raw`[${HAN}]+|[^
\p{L}\p{N}]?(?:(?![${HAN}])\p{L})+(?:${CONTRACTIONS_CI})?|\p{N}{1,3}| ?[^${WS}\p{L}\p{N}]+[
]*|${S}*[
]+|${S}+(?!${NS})|${S}+`;
/** Marks the AFMoE digit split (not a regex; see afmoeDigits). */
const AFMOE_DIGITS = '<afmoe digits>';
const AFMOE_SCRIPTS =
  '[\\u4E00-\\u9FFF\\u3400-\\u4DBF\\uF900-\\uFAFF\\u3040-\\u309F\\u30A0-\\u30FF\\uFF65-\\uFF9F\\u2F00-\\u2FDF\\u0E00-\\u0E7F\\u0E80-\\u0EFF' +
  '\\u1780-\\u17FF\\u1000-\\u109F\\uAA60-\\uAA7F\\uA9E0-\\uA9FF\\uAC00-\\uD7AF\\u1100-\\u11FF]+';

export interface PreTokenizer {
  /** The regexes, applied in turn (see the module comment). */
  regexes: string[];
  /** A word that is itself a token is encoded as that token without merging (llama.cpp's ignore_merges). */
  ignoreMerges: boolean;
  /** llama.cpp's default for add_bos with this pre-tokenizer (tokenizer.ggml.add_bos_token overrides). */
  addBos: boolean;
}

const p = (regexes: string[], ignoreMerges = false, addBos = false): PreTokenizer => ({ regexes, ignoreMerges, addBos });

const KINDS = {
  default: p([String.raw`[\p{P}$+<=>^~|]+`, GPT2, String.raw`\p{N}+`, '[0-9][0-9][0-9]']),
  llama3: p([LLAMA3], true, true),
  deepseekLlm: p([
    '[\r\n]',
    `${S}?[${DEEPSEEK_LLM_LETTERS}]+`,
    // U+3000 (ideographic space) is whitespace, so llama.cpp never matches it literally here.
    `${S}?[!-/:-~\\uFF01-\\uFF0F\\uFF1A-\\uFF5E\\u2018-\\u201F\\u3001-\\u3002]+`,
    `${S}+$`,
    CJK_DEEPSEEK,
    String.raw`\p{N}+`,
  ]),
  deepseekV3: p([
    String.raw`\p{N}{1,3}`,
    '[\\u4E00-\\u9FA5\\u3040-\\u309F\\u30A0-\\u30FF]+',
    DEEPSEEK_V3_MAIN,
  ]),
  deepseekCoder: p(['[\r\n]', String.raw`${S}?\p{L}+`, String.raw`${S}?\p{P}+`, CJK_DEEPSEEK, String.raw`\p{N}`]),
  falcon: p([String.raw`[\p{P}$+<=>^~|` + '`]+', GPT2, '[0-9][0-9][0-9]']),
  starcoder: p([String.raw`\p{N}`, GPT2]),
  gpt2: p([GPT2]),
  qwen2: p([QWEN2]),
  qwen35: p([QWEN35]),
  poro: p([` ?${NOT_PORO_PUNCT}+`]),
  chatglm4: p([LLAMA3]),
  viking: p([` ?${NOT_PORO_PUNCT}+`, String.raw`\p{N}`]),
  tekken: p([TEKKEN], true, true),
  chameleon: p(
    [
      '<sentinel:[0-9]+>',
      '(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z',
      '([\\t\\n]|    |  )',
      String.raw`\p{N}`,
      String.raw`[\p{P}!-/:-@\[-` + '`{-~]',
      GPT2,
    ],
    false,
    true,
  ),
  gpt4o: p([GPT4O]),
  superbpe: p([String.raw`\p{N}+`, String.raw`(?=(\d{3})+(?!\d))`]),
  bailingmoe: p([String.raw`'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^${WS}\p{L}\p{N}]+[\r\n]*|${S}*[\r\n]|${S}+(?!${NS})|${S}+`]),
  kimiK2: p([KIMI_K2]),
  afmoe: p([AFMOE_DIGITS, AFMOE_SCRIPTS, DEEPSEEK_V3_MAIN]),
  seedCoder: p([String.raw`${CONTRACTIONS_CI}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^${WS}\p{L}\p{N}\r\n]+|${S}*[\r\n]+|${S}+(?!${NS})|${S}+`]),
} satisfies Record<string, PreTokenizer>;

/**
 * Pre-tokenizers by tokenizer.ggml.pre value: the names llama.cpp (late 2025) accepts for a
 * byte-level BPE vocabulary. Unknown names are refused, as llama.cpp refuses them ("unknown
 * pre-tokenizer type"; it falls back to 'default' only when the key is absent). GPT-2's name is
 * 'gpt-2': llama.cpp refuses 'gpt2' (test/peer/tokenizer-agreement.test.ts checks every name here
 * against llama.cpp).
 */
export const PRE_TOKENIZERS: Readonly<Record<string, PreTokenizer>> = {
  default: KINDS.default,
  llama3: KINDS.llama3,
  'llama-v3': KINDS.llama3,
  'llama-bpe': KINDS.llama3,
  falcon3: KINDS.llama3,
  'falcon-h1': KINDS.llama3,
  pixtral: KINDS.llama3,
  'midm-2.0': KINDS.llama3,
  lfm2: KINDS.llama3,
  dbrx: p([LLAMA3]),
  'smaug-bpe': p([LLAMA3]),
  'deepseek-llm': KINDS.deepseekLlm,
  'deepseek-coder': KINDS.deepseekCoder,
  'deepseek-v3': KINDS.deepseekV3,
  'hunyuan-dense': KINDS.deepseekV3,
  falcon: KINDS.falcon,
  mpt: KINDS.gpt2,
  starcoder: KINDS.starcoder,
  refact: KINDS.starcoder,
  'command-r': KINDS.starcoder,
  smollm: KINDS.starcoder,
  codeshell: KINDS.starcoder,
  exaone: KINDS.starcoder,
  'minerva-7b': KINDS.starcoder,
  'gpt-2': KINDS.gpt2,
  'phi-2': KINDS.gpt2,
  'jina-es': KINDS.gpt2,
  'jina-de': KINDS.gpt2,
  gigachat: KINDS.gpt2,
  'jina-v2-es': KINDS.gpt2,
  'jina-v2-de': KINDS.gpt2,
  'jina-v1-en': KINDS.gpt2,
  'jina-v2-code': KINDS.gpt2,
  'roberta-bpe': KINDS.gpt2,
  'a.x-4.0': KINDS.gpt2,
  mellum: KINDS.gpt2,
  exaone4: KINDS.gpt2,
  olmo: KINDS.gpt2,
  jais: KINDS.gpt2,
  trillion: KINDS.gpt2,
  'granite-docling': KINDS.gpt2,
  qwen2: KINDS.qwen2,
  'deepseek-r1-qwen': KINDS.qwen2,
  kormo: KINDS.qwen2,
  megrez: KINDS.qwen2,
  stablelm2: KINDS.qwen2,
  hunyuan: KINDS.qwen2,
  'grok-2': KINDS.qwen2,
  qwen35: KINDS.qwen35,
  'poro-chat': KINDS.poro,
  bloom: KINDS.poro,
  'gpt3-finnish': KINDS.poro,
  viking: KINDS.viking,
  glm4: KINDS.chatglm4,
  'chatglm-bpe': KINDS.chatglm4,
  tekken: KINDS.tekken,
  chameleon: KINDS.chameleon,
  'gpt-4o': KINDS.gpt4o,
  llama4: KINDS.gpt4o,
  'minimax-m2': KINDS.gpt4o,
  superbpe: KINDS.superbpe,
  bailingmoe: KINDS.bailingmoe,
  bailingmoe2: KINDS.bailingmoe,
  'llada-moe': KINDS.bailingmoe,
  'seed-coder': KINDS.seedCoder,
  'kimi-k2': KINDS.kimiK2,
  afmoe: KINDS.afmoe,
};

/** The pre-tokenizer of a tokenizer.ggml.pre name; an ArgumentError naming `argument` when unknown. */
export function preTokenizerFor(name: string, argument: string): PreTokenizer {
  if (!Object.hasOwn(PRE_TOKENIZERS, name)) {
    throw new ArgumentError(argument, `a pre-tokenizer llama.cpp knows (${Object.keys(PRE_TOKENIZERS).join(', ')})`, name);
  }
  return PRE_TOKENIZERS[name]!;
}

const compiled = new Map<string, RegExp>();
function compile(source: string): RegExp {
  let re = compiled.get(source);
  if (!re) {
    re = new RegExp(source, 'gu');
    compiled.set(source, re);
  }
  return re;
}

/** Non-ASCII White_Space characters, all single UTF-16 units, mapped to \v in the shadow text. */
const NON_ASCII_WS = /[\x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]/g;

/** `text` with each lone surrogate replaced by U+FFFD (what crossing into UTF-8 does). */
export function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/**
 * Splits `text` into pre-tokenizer words (see the module comment). The words concatenate to
 * `wellFormed(text)`.
 */
export function splitWords(text: string, pre: PreTokenizer): string[] {
  const clean = wellFormed(text);
  const shadow = clean.replace(NON_ASCII_WS, '\v');
  // Pieces as [start, end) in UTF-16 units.
  let pieces: Array<[number, number]> = clean.length > 0 ? [[0, clean.length]] : [];
  for (const source of pre.regexes) {
    const next: Array<[number, number]> = [];
    if (source === AFMOE_DIGITS) {
      for (const [start, end] of pieces) afmoeDigits(shadow, start, end, next);
      pieces = next;
      continue;
    }
    const re = compile(source);
    for (const [start, end] of pieces) {
      const part = shadow.slice(start, end);
      let last = 0;
      re.lastIndex = 0;
      for (const m of part.matchAll(re)) {
        // An empty match (superbpe's lookahead-only regex) only splits at its position.
        if (m.index > last) next.push([start + last, start + m.index]);
        if (m[0].length > 0) next.push([start + m.index, start + m.index + m[0].length]);
        last = m.index + m[0].length;
      }
      if (last < part.length) next.push([start + last, end]);
    }
    pieces = next;
  }
  return pieces.map(([a, b]) => clean.slice(a, b));
}

/**
 * AFMoE's digit split (llama.cpp's hand-written one): a run of n digits is cut into a first
 * group of n mod 3 digits (when not 0) and groups of three. The cuts fall only at those group
 * ends, so the text before a run stays joined to the run's first group; text after the last
 * run is one more piece.
 */
function afmoeDigits(text: string, start: number, end: number, out: Array<[number, number]>): void {
  const isDigit = /\p{N}/u;
  let prev = start;
  let pos = start;
  const cut = (at: number): void => {
    if (at > prev) out.push([prev, at]);
    prev = at;
  };
  while (pos < end) {
    const cp = text.codePointAt(pos)!;
    const width = cp > 0xffff ? 2 : 1;
    if (!isDigit.test(String.fromCodePoint(cp))) {
      pos += width;
      continue;
    }
    // Digit run: count code points, remembering where each ends.
    const ends: number[] = [];
    while (pos < end) {
      const c = text.codePointAt(pos)!;
      if (!isDigit.test(String.fromCodePoint(c))) break;
      pos += c > 0xffff ? 2 : 1;
      ends.push(pos);
    }
    const first = ends.length % 3;
    if (first > 0) cut(ends[first - 1]!);
    for (let i = first + 2; i < ends.length; i += 3) cut(ends[i]!);
  }
  cut(end);
}
