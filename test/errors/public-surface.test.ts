/**
 * The public surface under bad options (issue 16, defect 3): every call in the table must
 * fail promptly (a hang fails the 10 s limit) with a CanopyError carrying a code, whose
 * message names the argument and what was received; the process survives. Checked on the old
 * code: n 5000 threw a TypeError, n 1e9 hung, onText 'notfn' and tokenizer {} threw
 * TypeErrors, capacity 2**31 a RangeError, prompt [] spoke of "capacity ... -Infinity", and
 * speculation.k -1 / 1e9 / NaN and signal 'x' were accepted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CanopyError, type CanopyErrorCode } from '../../lib/errors.js';
import { type GenerateOptions, generate, stream } from '../../lib/generate.js';
import { loadModel } from '../../lib/model/load.js';
import type { Model } from '../../lib/model/model.js';
import type { Tokenizer } from '../../lib/model/tokenizer/index.js';
import { loadWeights } from '../../lib/model/weights.js';
import { testModel } from '../helpers/test-models.js';

const path = testModel('stories260K/stories260K.bin', 'public surface bad options');
let model: Model;
let draft: Model;
let tokenizer: Tokenizer;

beforeAll(async () => {
  if (!path) return;
  ({ model, tokenizer } = await loadModel(path, { backend: 'cpu' }));
  ({ model: draft } = await loadModel(path, { backend: 'cpu' }));
});
afterAll(() => {
  model?.dispose();
  draft?.dispose();
});

const INVALID = 'ERR_CANOPY_INVALID_ARGUMENT';
const OOM = 'ERR_CANOPY_OUT_OF_MEMORY';

/** [label, the call, the code, what the message must say] */
type Case = [string, () => unknown, CanopyErrorCode, RegExp];

const gen = (o: Partial<GenerateOptions>) => () => generate({ model, tokens: [1], maxTokens: 4, ...o } as GenerateOptions);
const streamAll = (o: Partial<GenerateOptions>) => async () => {
  for await (const _ of stream({ model, tokens: [1], maxTokens: 4, ...o } as Parameters<typeof stream>[0])) {
    /* drain */
  }
};

const cases = (): Case[] => [
  ['generate n 5000', gen({ n: 5000 }), INVALID, /n must be an integer in \[1, 4096\]; received 5000/],
  ['generate n 1e9', gen({ n: 1e9 }), INVALID, /n must be an integer in \[1, 4096\]; received 1000000000/],
  ['generate n 0', gen({ n: 0 }), INVALID, /n must be an integer in \[1, 4096\]; received 0/],
  ['generate n NaN', gen({ n: NaN }), INVALID, /n must be .*received NaN/],
  ['generate n 3000 x 2 prompts', gen({ tokens: [[1], [1]], n: 3000 }), INVALID, /n must be at most 2048 samples for 2 prompts/],
  ['generate maxTokens -1', gen({ maxTokens: -1 }), INVALID, /maxTokens must be an integer in \[0, \d+\]; received -1/],
  ['generate maxTokens 1.5', gen({ maxTokens: 1.5 }), INVALID, /maxTokens .*received 1\.5/],
  ['generate onText "notfn"', gen({ onText: 'notfn' as never }), INVALID, /onText must be a function .*received "notfn"/],
  ['stream onText 42', streamAll({ onText: 42 as never }), INVALID, /onText must be a function .*received 42/],
  ['generate tokenizer {}', gen({ tokenizer: {} as never, prompt: 'x', tokens: undefined }), INVALID, /tokenizer must be a tokenizer .*missing encode, decode, streamDecoder, eosIds/],
  ['generate tokenizer null', gen({ tokenizer: null as never }), INVALID, /tokenizer must be a tokenizer/],
  ['generate prompt []', () => generate({ model, tokenizer, prompt: [], maxTokens: 4 }), INVALID, /prompt must be a string or an array of 1 to 4096 strings; received \[\]/],
  ['generate prompt 42', () => generate({ model, tokenizer, prompt: 42 as never }), INVALID, /prompt must be a string or an array of strings; received 42/],
  ['generate tokens []', gen({ tokens: [] }), INVALID, /tokens must be a non-empty array/],
  ['generate tokens [[]]', gen({ tokens: [[]] }), INVALID, /tokens\[0\] must be a non-empty array/],
  ['generate token 1e9', gen({ tokens: [1e9] }), INVALID, /tokens\[0\]\[0\] must be a token id in \[0, 511\]; received 1000000000/],
  ['generate signal "x"', gen({ signal: 'x' as never }), INVALID, /signal must be an AbortSignal; received "x"/],
  ['generate signal {}', gen({ signal: { aborted: false } as never }), INVALID, /signal must be an AbortSignal/],
  ['speculation.k -1', gen({ strategy: 'lookup', speculation: { k: -1 } }), INVALID, /speculation\.k must be an integer in \[1, 256\]; received -1/],
  ['logprobs 21', gen({ logprobs: 21 }), INVALID, /logprobs must be an integer in \[0, 20\]; received 21/],
  ['logprobs NaN', gen({ logprobs: NaN }), INVALID, /logprobs must be an integer in \[0, 20\]; received NaN/],
  ['contextShift 1', gen({ contextShift: 1 as never }), INVALID, /contextShift must be a boolean or \{ keep: number \}; received 1/],
  ['contextShift.keep 1e9', gen({ contextShift: { keep: 1e9 } }), INVALID, /contextShift\.keep must be at most 510/],
  ['contextShift with a draft', gen({ contextShift: true, draft: undefined, strategy: 'speculative' }), INVALID, /strategy must be .* with contextShift/],
  ['speculation.k 1e9', gen({ draft, speculation: { k: 1e9 } }), INVALID, /speculation\.k must be an integer in \[1, 256\]; received 1000000000/],
  ['speculation.k NaN', gen({ strategy: 'jacobi', speculation: { k: NaN } }), INVALID, /speculation\.k must be .*received NaN/],
  ['speculation.kMax 0', gen({ draft, speculation: { kMax: 0 } }), INVALID, /speculation\.kMax must be an integer in \[1, 256\]; received 0/],
  ['speculation.k > kMax', gen({ draft, speculation: { k: 9, kMax: 4 } }), INVALID, /speculation\.k must be at most speculation\.kMax \(4\); received 9/],
  ['speculation.nodes 1e6', gen({ strategy: 'ngram-tree', speculation: { nodes: 1e6 } }), INVALID, /speculation\.nodes must be an integer in \[1, 4096\]/],
  ['speculation.fixed "yes"', gen({ draft, speculation: { fixed: 'yes' as never } }), INVALID, /speculation\.fixed must be a boolean; received "yes"/],
  ['speculation "fast"', gen({ speculation: 'fast' as never }), INVALID, /speculation must be an object/],
  ['temperature -1', gen({ temperature: -1 }), INVALID, /temperature must be a finite number >= 0; received -1/],
  ['topP 2', gen({ topP: 2 }), INVALID, /topP must be a number in \(0, 1\]; received 2/],
  ['stop [""]', gen({ stop: [''] }), INVALID, /stop must be an array of non-empty strings/],
  ['addBos "no"', gen({ addBos: 'no' as never }), INVALID, /addBos must be a boolean; received "no"/],
  ['strategy "fastest"', gen({ strategy: 'fastest' as never }), INVALID, /strategy must be one of autoregressive/],
  ['options null', () => generate(null as never), INVALID, /options must be an object; received null/],
  ['model {}', () => generate({ model: {} as never, tokens: [1] }), INVALID, /model must be a Model/],
  ['createCache capacity 2**31', () => model.createCache({ capacity: 2 ** 31 }), OOM, /KV cache of 2147483648 rows .* more than the machine has/],
  ['createCache capacity 2**40 x 2**12 sequences', () => model.createCache({ capacity: 2 ** 40, sequences: 2 ** 12 }), OOM, /KV cache/],
  ['createCache capacity 0', () => model.createCache({ capacity: 0 }), INVALID, /capacity must be a positive integer; received 0/],
  ['createCache capacity -Infinity', () => model.createCache({ capacity: -Infinity }), INVALID, /capacity must be a positive integer; received -Infinity/],
  ['createCache dtype "f64"', () => model.createCache({ dtype: 'f64' as never }), INVALID, /dtype must be one of/],
  ['forward with a non-cache', () => model.forward({} as never, [{ sequence: 0, tokens: [1] }]), INVALID, /cache must be a KvCache/],
  ['loadWeights validate "yes"', () => loadWeights(path!, { validate: 'yes' as never }), INVALID, /options\.validate must be a boolean; received "yes"/],
  ['loadWeights format "onnx"', () => loadWeights(path!, { format: 'onnx' as never }), INVALID, /options\.format must be one of llama2c, gguf, hf; received "onnx"/],
];

describe.skipIf(!path)('bad options on the public surface', () => {
  it('every case fails promptly with a CanopyError that has a code and names the argument', async () => {
    const failures: string[] = [];
    for (const [label, run, code, message] of cases()) {
      let err: unknown;
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('timed out (a hang)')), 10_000).unref());
      try {
        await Promise.race([Promise.resolve().then(run), timeout]);
      } catch (e) {
        err = e;
      }
      if (!(err instanceof CanopyError)) failures.push(`${label}: ${err === undefined ? 'no error' : String(err)}`);
      else if (err.code !== code) failures.push(`${label}: code ${err.code} (${err.message}), expected ${code}`);
      else if (!message.test(err.message)) failures.push(`${label}: message "${err.message}" does not match ${message}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);

  it('after the walk the model still generates the reference tokens', async () => {
    const r = await generate({ model, tokens: [1], maxTokens: 8 });
    expect(r.tokens.length).toBe(8);
    expect(r.finishReason).toBe('length');
  });
});
