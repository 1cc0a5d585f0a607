/**
 * The step loop every strategy shares (see lib/decode/types.ts for the protocol).
 *
 * Prefill: every prompt in one causal forward; the first token of each sequence is sampled
 * from its last logits and becomes its pending token. Then, per step and for all active
 * sequences at once: propose, one target forward (causal when no sequence has a draft, a
 * tree step otherwise), verify (greedy or SpecInfer sampling, natively), commit the pending
 * token and the accepted nodes to the KV cache, emit the accepted tokens and the next token
 * one by one (EOS, stop strings and maxTokens can cut a run anywhere). Each sequence accepts
 * its own number of tokens (ragged).
 *
 * Losslessness: greedy verification emits exactly the tokens greedy autoregressive decoding
 * would (the target's argmax after every accepted prefix); sampling verification draws from
 * the target's processed distribution. The uniforms come from a per-sequence seeded generator.
 */

import { type CanopyError, InternalError } from '../errors.js';
import { argmaxRows } from '../kernels/sampling.js';
import { type VerifyResult, verifyGreedyBatch, verifySamplingBatch } from '../kernels/verify.js';
import type { KvCache, KvCacheDtype } from '../model/kv-cache.js';
import type { Model } from '../model/model.js';
import { Tensor } from '../tensor/tensor.js';
import { GoodputController, type GoodputOptions, type StepObservation } from './controller.js';
import { ContextShifter } from './context-shift.js';
import { LogprobRecorder, type TokenLogprob } from './logprobs.js';
import { Emitter, type FinishReason, type Seq, type StreamingTokenizer } from './emit.js';
import { SpeculationMetrics } from './metrics.js';
import { argmax, processedDistribution, sampleFrom } from './sampling.js';
import type { DraftTree, Proposer, SpeculationStats } from './types.js';
import { EMPTY_DRAFT } from './types.js';

export type { FinishReason, StreamingTokenizer } from './emit.js';

export interface LoopOptions {
  model: Model;
  prompts: number[][];
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  eos: Set<number>;
  stops: string[];
  tokenizer?: StreamingTokenizer;
  signal?: AbortSignal;
  onText?: (piece: string, token: number, sequence: number) => void;
  proposer?: Proposer;
  /**
   * Draft sizes chosen each step by the goodput controller (lib/decode/controller.ts), per
   * sequence, 0 included. Absent: every step offers the proposer its whole budget (a fixed k).
   */
  goodput?: GoodputOptions;
  /** KV cache storage: f32 (default), f16, bf16, or quantized int8 / int4 / fp8. */
  cacheDtype?: KvCacheDtype;
  /**
   * The most tokens a sequence may hold (prompt + generated): the model's context length
   * (default model.config.maxSeqLen). A sequence that reaches it finishes with 'context'.
   */
  contextLength?: number;
  /**
   * Continue in a KV cache the caller owns (chat sessions; one sequence): its first `reuse`
   * rows already hold the first `reuse` tokens of prompts[0] (reuse < the prompt's length), so
   * only the rest is prefilled. Rows past `reuse` are dropped first; the cache is grown as
   * needed (float caches) and not disposed.
   */
  session?: { cache: KvCache; reuse: number };
  /**
   * Replaces the sampling verifier (tests only: negative controls such as "always accept"
   * must make the distribution tests fail). Arguments as verifySamplingBatch's.
   */
  samplingVerifier?: typeof verifySamplingBatch;
  /**
   * Context shift (lib/decode/context-shift.ts): a sequence whose cache reaches the context
   * keeps its first keep[s] tokens, drops the oldest half of the rest and continues.
   */
  contextShift?: { keep: number[] };
  /** Record each emitted token's logprob and top-n alternatives (lib/decode/logprobs.ts). */
  logprobs?: { n: number; onEntry?: (sequence: number, entry: TokenLogprob) => void };
}

export interface LoopSequenceResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  /** Why the sequence ended with finishReason 'error'. */
  error?: CanopyError;
  /** With contextShift: the shifts made, and the tokens the cache rows hold at the end. */
  contextShifts?: number;
  cachedTokens?: number[];
  /** With logprobs: one entry per token of `tokens`. */
  logprobs?: TokenLogprob[];
}

export interface LoopResult {
  sequences: LoopSequenceResult[];
  targetPasses: number;
  timeToFirstTokenMs: number;
  decodeMs: number;
  totalMs: number;
  speculation?: SpeculationStats;
}

/** Everything one generation's steps share. */
interface Run {
  o: LoopOptions;
  model: Model;
  proposer: Proposer | undefined;
  cache: KvCache;
  /** The most rows a sequence's cache may grow to (prompt, new tokens and one draft tree, within the context). */
  capacity: number;
  seqs: Seq[];
  emitter: Emitter;
  metrics: SpeculationMetrics | undefined;
  controller: GoodputController | undefined;
  sampling: boolean;
  wantsHidden: boolean;
  passes: number;
  shifter: ContextShifter | undefined;
  logprobs: LogprobRecorder | undefined;
}

/** A live sequence of this step: its state and index in the batch. */
type Live = Array<{ st: Seq; s: number }>;

const vocabOf = (r: Run) => r.model.config.vocabSize;
const dimOf = (r: Run) => r.model.config.dim;

/** Whether a logits row can be decoded: some value above -inf, and (sampling) no NaN. */
function usableLogits(row: Float32Array, sampling: boolean): boolean {
  let any = false;
  for (let i = 0; i < row.length; i++) {
    const x = row[i]!;
    if (x > -Infinity) any = true;
    else if (sampling && x !== x) return false;
  }
  return any;
}

/**
 * A token from a logits row: argmax, or a draw from the processed distribution; -1 (the
 * emitter ends the sequence with 'error') when the row has nothing to choose from: greedy
 * needs a value above -inf (NaN never is), sampling a finite distribution (no NaN, no +Infinity).
 */
function pick(r: Run, row: Float32Array, s: number): number {
  const { temperature, topK, topP } = r.o;
  if (!usableLogits(row, r.sampling)) return -1;
  if (!r.sampling) return argmax(row);
  const p = processedDistribution(row, { temperature, topK, topP });
  return finiteRow(p) ? sampleFrom(p, r.seqs[s]!.random.next()) : -1; // +Infinity logits: no distribution
}

/** Emits a token chosen from logits `row` (host; needed only with logprobs), recording its logprob when it is kept. */
function emitFrom(r: Run, st: Seq, s: number, token: number, row: ArrayLike<number> | undefined): boolean {
  // Recorded first (a kept token: not an error, not end-of-generation), so a stream's piece finds its logprobs.
  if (r.logprobs && !st.done && token >= 0 && !r.o.eos.has(token)) r.logprobs.record(s, row!, token);
  return r.emitter.emit(st, s, token);
}

/**
 * Prefill: each distinct prompt once (n samples of one prompt share it; the other sequences
 * get a copy of its KV by fork and sample their first token from the same logits).
 */
async function prefill(r: Run): Promise<void> {
  const { cache, seqs, proposer } = r;
  const vocab = vocabOf(r);
  const dim = dimOf(r);
  const leaderOf = new Map<string, number>();
  const leader = seqs.map((st, s) => {
    const key = cache.forkable ? st.prompt.join(',') : String(s); // quantized caches: prefill each
    if (!leaderOf.has(key)) leaderOf.set(key, s);
    return leaderOf.get(key)!;
  });
  const leaders = [...leaderOf.values()].sort((a, b) => a - b);
  const skip = r.o.session?.reuse ?? 0; // a session's cache already holds these prompt tokens
  const pre = await r.model.forward(cache, leaders.map((s) => ({ sequence: s, tokens: seqs[s]!.prompt.slice(skip) })), { hidden: r.wantsHidden });
  r.passes++;
  const preLogits = pre.logits.toFloat32();
  pre.logits.dispose();
  const preHidden = pre.hidden?.toFloat32();
  pre.hidden?.dispose();
  seqs.forEach((st, s) => {
    const row = leaders.indexOf(leader[s]!);
    if (leader[s] !== s) cache.fork(leader[s]!, s);
    if (preHidden) proposer!.observeHidden?.(s, preHidden.slice(row * dim, (row + 1) * dim));
    const rowLogits = preLogits.subarray(row * vocab, (row + 1) * vocab);
    if (!st.done) emitFrom(r, st, s, pick(r, rowLogits, s), rowLogits);
  });
}

/** Float caches start small and grow in chunks as they fill; quantized ones cannot grow. */
const growable = (dtype: KvCacheDtype | undefined): boolean => dtype === undefined || dtype === 'f32' || dtype === 'f16' || dtype === 'bf16';

/** Grows a float cache (doubling, up to the run's capacity) when a live sequence has less than one draft tree of room. */
function ensureRoom(r: Run, sequences: number[]): void {
  const { cache, capacity } = r;
  if (!growable(cache.dtype) || cache.capacity >= capacity) return;
  if (sequences.some((s) => cache.free(s) < 65)) cache.grow(Math.min(capacity, Math.max(cache.capacity * 2, cache.capacity + 65)));
}

/** The sequences that can take a step (ending those out of cache room); empty when none. */
function liveSequences(r: Run): Live {
  const active = r.seqs.map((st, s) => ({ st, s })).filter((x) => !x.st.done);
  ensureRoom(r, active.map((x) => x.s));
  for (const { st, s } of active) if (r.cache.free(s) < 1) st.done = 'context';
  return active.filter((x) => !x.st.done);
}

/** Propose: each sequence's draft within its size (the controller's) and what is left. */
async function propose(r: Run, live: Live, sizes: number[]): Promise<{ drafts: DraftTree[]; budget: number }> {
  const drafts: DraftTree[] = live.map(() => EMPTY_DRAFT);
  const proposer = r.proposer;
  if (!proposer) return { drafts, budget: 0 };
  const ctxs = live
    .map(({ st, s }, i) => ({
      i,
      ctx: { sequence: s, tokens: st.all, promptLength: st.prompt.length, budget: Math.min(sizes[i]!, r.o.maxTokens - st.out.length - 1, r.cache.free(s) - 1), temperature: r.o.temperature },
    }))
    .filter((x) => x.ctx.budget > 0);
  if (proposer.proposeBatch && ctxs.length > 1) {
    const out = await proposer.proposeBatch(ctxs.map((x) => x.ctx));
    ctxs.forEach((x, j) => (drafts[x.i] = out[j]!));
  } else {
    for (const x of ctxs) drafts[x.i] = await proposer.propose(x.ctx);
  }
  return { drafts, budget: Math.max(0, ...ctxs.map((x) => x.ctx.budget)) };
}

/** A plain decoding step: the pending tokens, causally; one token per sequence. */
async function plainStep(r: Run, live: Live): Promise<void> {
  const t1 = performance.now();
  const dim = dimOf(r);
  const vocab = vocabOf(r);
  const { logits, hidden } = await r.model.forward(r.cache, live.map(({ st, s }) => ({ sequence: s, tokens: [st.all[st.all.length - 1]!] })), { hidden: r.wantsHidden });
  r.passes++;
  // Greedy: only the chosen ids leave the device; sampling needs the rows on the host.
  const best = r.sampling ? undefined : await argmaxRows(logits);
  const rows = r.sampling || r.logprobs ? logits.toFloat32() : undefined;
  logits.dispose();
  if (hidden) {
    const h = hidden.toFloat32();
    live.forEach(({ s }, i) => r.proposer!.observeHidden?.(s, h.slice(i * dim, (i + 1) * dim)));
    hidden.dispose();
  }
  r.metrics?.step(0, 0, 0, performance.now() - t1, 0);
  live.forEach(({ st, s }, i) => {
    const row = rows?.subarray(i * vocab, (i + 1) * vocab);
    emitFrom(r, st, s, best ? best[i]! : pick(r, row!, s), row);
  });
}

/** Verification of every sequence's tree against the target logits: accepted nodes and next token each. */
async function verify(r: Run, live: Live, drafts: DraftTree[], logits: Tensor, hostLogits: Float32Array | undefined) {
  const treeIndptr = [0];
  const treeTokens: number[] = [];
  const treeParents: number[] = [];
  drafts.forEach((d) => {
    treeTokens.push(...d.tokens);
    treeParents.push(...d.parents);
    treeIndptr.push(treeTokens.length);
  });
  if (!r.sampling) return verifyGreedyBatch(treeIndptr, treeTokens, treeParents, logits);
  const vocab = vocabOf(r);
  const { temperature, topK, topP } = r.o;
  const rows = treeTokens.length + live.length;
  const target = new Float32Array(rows * vocab);
  // A row whose distribution is not finite (NaN or +Infinity logits: broken numbers) gets a uniform stand-in so the verifier can
  // run; the verifier reads a node's row only when the node is accepted (or it is the root), so
  // the stand-in matters only where the path reaches it, and there unbrokenPath() ends the sequence.
  const broken = new Set<number>();
  for (let i = 0; i < rows; i++) {
    const p = processedDistribution(hostLogits!.subarray(i * vocab, (i + 1) * vocab), { temperature, topK, topP });
    if (finiteRow(p)) target.set(p, i * vocab);
    else {
      broken.add(i);
      target.fill(1 / vocab, i * vocab, (i + 1) * vocab);
    }
  }
  let draftRows: Float32Array | null = null;
  if (!drafts.every((d) => !d.draftProbs)) {
    draftRows = new Float32Array(rows * vocab);
    let i = 0;
    drafts.forEach((d) => {
      for (let j = 0; j <= d.tokens.length; j++, i++) {
        // Rows the verifier never reads (no children) still hold a valid distribution.
        draftRows!.set(d.draftProbs?.[j] ?? target.subarray(i * vocab, (i + 1) * vocab), i * vocab);
      }
    });
  }
  const uniforms = new Float64Array(rows);
  let u = 0;
  live.forEach(({ st }, i) => {
    for (let j = 0; j <= drafts[i]!.tokens.length; j++) uniforms[u++] = st.random.next();
  });
  const tTarget = Tensor.from(target, { shape: [rows, vocab] });
  const tDraft = draftRows ? Tensor.from(draftRows, { shape: [rows, vocab] }) : null;
  const results = await (r.o.samplingVerifier ?? verifySamplingBatch)(treeIndptr, treeTokens, treeParents, tTarget, tDraft, uniforms);
  return broken.size ? results.map((res, i) => unbrokenPath(res, treeIndptr[i]! + i, broken)) : results;
}

function finiteRow(p: ArrayLike<number>): boolean {
  for (let y = 0; y < p.length; y++) if (!Number.isFinite(p[y]!)) return false;
  return true;
}

/**
 * A sequence's verification cut where its path reaches a broken row (rowBase: its root's row):
 * the nodes accepted from healthy rows stay; the next token, which would come from the broken
 * row, is -1 (the emitter ends the sequence with a NumericError).
 */
function unbrokenPath(res: VerifyResult, rowBase: number, broken: Set<number>): VerifyResult {
  const path = [0, ...res.acceptedNodes.map((n) => n + 1)];
  const j = path.findIndex((row) => broken.has(rowBase + row));
  return j < 0 ? res : { acceptedNodes: res.acceptedNodes.slice(0, j), nextToken: -1 };
}

/**
 * A tree step: [pending, ...draft] per sequence in one target forward, verification, KV
 * commit of the pending token and the accepted nodes, then feedback, metrics and emission.
 * Returns what the controller needs to know of it.
 */
async function treeStep(r: Run, live: Live, drafts: DraftTree[], sizes: number[], proposeMs: number): Promise<Pick<StepObservation, 'rows' | 'verifyMs' | 'sequences'>> {
  const t1 = performance.now();
  const dim = dimOf(r);
  const vocab = vocabOf(r);
  const stepSeqs = live.map(({ st, s }, i) => ({
    sequence: s,
    tokens: [st.all[st.all.length - 1]!, ...drafts[i]!.tokens],
    parents: [-1, ...drafts[i]!.parents.map((p) => p + 1)],
  }));
  const { logits, hidden } = await r.model.forward(r.cache, stepSeqs, { logits: 'all', hidden: r.wantsHidden });
  const hostHidden = hidden ? Float32Array.from(hidden.toFloat32()) : undefined;
  hidden?.dispose();
  r.passes++;
  const t2 = performance.now();
  const hostLogits = r.sampling || r.logprobs || r.proposer?.feedback !== undefined ? Float32Array.from(logits.toFloat32()) : undefined;
  const results = await verify(r, live, drafts, logits, hostLogits);
  logits.dispose();
  await r.cache.commit(live.map(({ s }, i) => ({ sequence: s, numNodes: drafts[i]!.tokens.length + 1, acceptedNodes: [0, ...results[i]!.acceptedNodes.map((n) => n + 1)] })));
  const t3 = performance.now();
  const observed: StepObservation['sequences'] = [];
  let emitted = 0;
  let rowBase = 0;
  for (let i = 0; i < live.length; i++) {
    const { st, s } = live[i]!;
    const d = drafts[i]!;
    const res = results[i]!;
    const depth = r.metrics!.draft(d, res.acceptedNodes.length);
    observed.push({ sequence: s, budget: Number.isFinite(sizes[i]!) ? sizes[i]! : d.tokens.length, drafted: d.tokens.length, depth, accepted: res.acceptedNodes.length });
    await r.proposer!.feedback?.({
      sequence: s,
      pendingToken: stepSeqs[i]!.tokens[0]!,
      draft: d,
      acceptedNodes: res.acceptedNodes,
      nextToken: res.nextToken,
      ...(hostLogits ? { targetLogits: hostLogits.subarray(rowBase * vocab, (rowBase + d.tokens.length + 1) * vocab) } : {}),
    });
    if (hostHidden) {
      // The row that produced the next token: the last accepted node's (or the pending token's).
      const row = rowBase + (res.acceptedNodes.length ? res.acceptedNodes.at(-1)! + 1 : 0);
      r.proposer!.observeHidden?.(s, hostHidden.slice(row * dim, (row + 1) * dim));
    }
    // Accepted node j was chosen from the row of the node before it on the path (the pending token's first).
    const path = [0, ...res.acceptedNodes.map((n) => n + 1)].map((p) => rowBase + p);
    const rowAt = (j: number) => hostLogits?.subarray(path[j]! * vocab, (path[j]! + 1) * vocab);
    rowBase += d.tokens.length + 1;
    let ok = true;
    for (const [j, n] of res.acceptedNodes.entries()) {
      emitted++;
      if (!(ok = emitFrom(r, st, s, d.tokens[n]!, rowAt(j)))) break;
    }
    if (ok) {
      emitted++;
      emitFrom(r, st, s, res.nextToken, rowAt(res.acceptedNodes.length));
    }
  }
  r.metrics!.step(emitted, live.length, proposeMs, t2 - t1, t3 - t2);
  return { rows: rowBase, verifyMs: t3 - t1, sequences: observed };
}

/** One step of the live sequences: control (sizes), propose, step (plain or tree), control feedback. */
async function step(r: Run, live: Live): Promise<void> {
  const t0 = performance.now();
  const sizes = r.controller ? r.controller.plan(live.map(({ s }) => s)) : live.map(() => Infinity);
  const { drafts, budget } = await propose(r, live, sizes);
  const t1 = performance.now();
  if (!drafts.some((d) => d.tokens.length > 0)) {
    await plainStep(r, live);
    r.controller?.observe({
      rows: live.length,
      verifyMs: performance.now() - t1,
      draftMs: t1 - t0,
      draftBudget: budget,
      sequences: live.map(({ s }, i) => ({ sequence: s, budget: sizes[i]!, drafted: 0, depth: 0, accepted: 0 })),
    });
    return;
  }
  const observed = await treeStep(r, live, drafts, sizes, t1 - t0);
  r.controller?.observe({ ...observed, draftMs: t1 - t0, draftBudget: budget });
}

export async function decodeLoop(o: LoopOptions): Promise<LoopResult> {
  const { model, proposer } = o;
  const start = performance.now();
  const emitter = new Emitter({ maxTokens: o.maxTokens, eos: o.eos, stops: o.stops, ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}), ...(o.onText ? { onText: o.onText } : {}) });
  const seqs = o.prompts.map((p, s) => emitter.sequence(p, s, o.seed));
  const longest = Math.max(...o.prompts.map((p) => p.length));
  const limit = o.contextLength ?? model.config.maxSeqLen;
  // Room for the prompt, every new token, and one draft tree beyond them, within the context.
  const capacity = Math.min(limit, longest + o.maxTokens + 64);
  const initial = growable(o.cacheDtype) ? Math.min(capacity, longest + Math.min(o.maxTokens, 256) + 64) : capacity;
  const session = o.session;
  if (session) {
    if (o.prompts.length !== 1) throw new InternalError('decodeLoop: a session continues exactly one sequence');
    const { cache: c, reuse } = session;
    if (reuse < 0 || reuse >= o.prompts[0]!.length || reuse > c.length(0)) throw new InternalError(`decodeLoop: session reuse ${reuse} out of range`);
    c.truncate(0, reuse);
    if (c.capacity < initial && growable(c.dtype)) c.grow(initial);
  }
  const cache: KvCache = session?.cache ?? model.createCache({ capacity: initial, sequences: seqs.length, ...(o.cacheDtype ? { dtype: o.cacheDtype } : {}) });
  const r: Run = {
    o, model, proposer, cache, capacity, seqs, emitter,
    metrics: proposer ? new SpeculationMetrics(proposer.name) : undefined,
    controller: proposer && o.goodput ? new GoodputController(o.goodput) : undefined,
    sampling: o.temperature > 0,
    wantsHidden: proposer?.wantsHidden === true,
    passes: 0,
    shifter: o.contextShift ? new ContextShifter(o.contextShift.keep, limit) : undefined,
    logprobs: o.logprobs ? new LogprobRecorder(o.logprobs.n, o.temperature, seqs.length, o.logprobs.onEntry) : undefined,
  };
  try {
    await proposer?.start?.(o.prompts, capacity);
    await prefill(r);
    const decodeStart = performance.now();
    for (;;) {
      if (o.signal?.aborted) seqs.forEach((st) => (st.done ??= 'abort'));
      if (r.shifter) r.passes += await r.shifter.shift(model, cache, seqs.map((st, s) => ({ st, s })).filter((x) => !x.st.done), (row, s) => pick(r, row, s), (st, s, t, row) => void emitFrom(r, st, s, t, row));
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
