/**
 * The step loop every strategy shares (see lib/decode/types.ts for the protocol): policy only.
 *
 *   prefill   every prompt in one causal step; each sequence's first token (lib/decode/prefill.ts)
 *   step      per step, for all live sequences at once: control, propose, the target step, settle
 *             (lib/decode/step.ts). Greedy steps are ONE native call each (Model.step: forward,
 *             argmax or tree verification, KV commit); sampled steps verify with SpecInfer sampling.
 *             Each sequence accepts its own number of tokens (ragged).
 *   metrics   tau, acceptance per depth, the time split (lib/decode/metrics.ts)
 *
 * Losslessness: greedy verification emits exactly the tokens greedy autoregressive decoding
 * would (the target's argmax after every accepted prefix); sampling verification draws from
 * the target's processed distribution. The uniforms come from a per-sequence seeded generator.
 */
import { InternalError } from '../errors.js';
import { chainProcessesLogits, checkSamplerChain } from '../kernels/sampling.js';
import type { KvCache } from '../model/kv-cache.js';
import { Tensor } from '../tensor/tensor.js';
import { ContextShifter } from './context-shift.js';
import { GoodputController } from './controller.js';
import { Emitter } from './emit.js';
import { emitFrom } from './emit-from.js';
import { LogprobRecorder } from './logprobs.js';
import { SpeculationMetrics } from './metrics.js';
import { chooseTokens } from './pick.js';
import { growable, liveSequences, prefill } from './prefill.js';
import type { LoopOptions, LoopResult, Run } from './run.js';
import { sharedPrefixLength } from './shared-prefix.js';
import { step } from './step.js';

export type { FinishReason, StreamingTokenizer } from './emit.js';
export type { LoopOptions, LoopResult, LoopSequenceResult } from './run.js';

export async function decodeLoop(o: LoopOptions): Promise<LoopResult> {
  const { model, proposer } = o;
  const start = performance.now();
  const emitter = new Emitter({ maxTokens: o.maxTokens, eos: o.eos, stops: o.stops, ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}), ...(o.onText ? { onText: o.onText } : {}) });
  const seqs = o.prompts.map((p, s) => emitter.sequence(p, s, o.seed));
  const longest = Math.max(...o.prompts.map((p) => p.length));
  const limit = o.contextLength ?? model.config.maxSeqLen;
  // Room for the prompt, every new token, and one draft tree beyond them, within the context.
  const capacity = Math.min(limit, longest + o.maxTokens + 64);
  // A shared prompt prefix lives once in a prefix slot; each sequence's own rows hold the rest.
  const shared = sharedPrefixLength(o);
  const initial = growable(o.cacheDtype) ? Math.min(capacity, longest + Math.min(o.maxTokens, 256) + 64) - shared : capacity - shared;
  const session = o.session;
  if (session) {
    if (o.prompts.length !== 1) throw new InternalError('decodeLoop: a session continues exactly one sequence');
    const { cache: c, reuse } = session;
    if (reuse < 0 || reuse >= o.prompts[0]!.length || reuse > c.length(0)) throw new InternalError(`decodeLoop: session reuse ${reuse} out of range`);
    c.truncate(0, reuse);
    if (c.capacity < initial && growable(c.dtype)) c.grow(initial);
  }
  const cache: KvCache =
    session?.cache ??
    model.createCache({
      capacity: initial,
      sequences: seqs.length,
      ...(shared > 0 ? { prefixes: 1, prefixCapacity: shared } : {}),
      ...(o.cacheDtype ? { dtype: o.cacheDtype } : {}),
    });
  const chain = checkSamplerChain(o, model.config.vocabSize);
  const r: Run = {
    o, model, proposer, cache, capacity, shared, seqs, emitter,
    metrics: proposer ? new SpeculationMetrics(proposer.name) : undefined,
    controller: proposer && o.goodput ? new GoodputController(o.goodput) : undefined,
    chain,
    // Logprobs need every chosen token's logits row on the host: chain steps bring them (greedy tokens are the same).
    chainStep: o.temperature > 0 || chainProcessesLogits(chain) || o.logprobs !== undefined,
    sampling: o.temperature > 0,
    wantsHidden: proposer?.wantsHidden === true,
    passes: 0,
    shifter: o.contextShift ? new ContextShifter(o.contextShift.keep, limit) : undefined,
    logprobs: o.logprobs ? new LogprobRecorder(o.logprobs.n, o.temperature, seqs.length, o.logprobs.onEntry) : undefined,
  };
  const vocab = model.config.vocabSize;
  // The shifter's token choice: the same chain as every step's.
  const pickRow = async (row: Float32Array, s: number) => (await chooseTokens(r, Tensor.from(row, { shape: [1, vocab] }), [s]))[0]!;
  try {
    await proposer?.start?.(o.prompts, capacity);
    await prefill(r);
    const decodeStart = performance.now();
    for (;;) {
      if (o.signal?.aborted) seqs.forEach((st) => (st.done ??= 'abort'));
      if (r.shifter) r.passes += await r.shifter.shift(model, cache, seqs.map((st, s) => ({ st, s })).filter((x) => !x.st.done), pickRow, (st, s, t, row) => void emitFrom(r, st, s, t, row));
      const live = liveSequences(r);
      if (live.length === 0) break;
      await step(r, live);
    }
    const end = performance.now();
    return {
      sequences: seqs.map((st, s) => {
        emitter.flush(st, s);
        const lp = r.logprobs ? { logprobs: r.logprobs.perSequence[s]! } : {};
        const shifted = r.shifter ? { contextShifts: r.shifter.shifts[s]!, cachedTokens: r.shifter.cachedTokens(st, s).slice(0, cache.length(s)) } : {};
        return { text: st.text, tokens: st.out, finishReason: st.done ?? 'length', promptTokens: st.prompt.length, ...(st.error ? { error: st.error } : {}), ...shifted, ...lp };
      }),
      targetPasses: r.passes,
      timeToFirstTokenMs: emitter.firstTokenAt ? emitter.firstTokenAt - start : 0,
      decodeMs: end - decodeStart,
      totalMs: end - start,
      ...(r.metrics ? { speculation: r.metrics.finish(r.controller) } : {}),
    };
  } finally {
    if (!session) cache.dispose();
    proposer?.dispose?.();
  }
}
