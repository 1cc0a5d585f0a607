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

import { argmaxRows } from '../kernels/sampling.js';
import { verifyGreedyBatch, verifySamplingBatch } from '../kernels/verify.js';
import type { KvCache, KvCacheDtype } from '../model/kv-cache.js';
import type { Model } from '../model/model.js';
import { Tensor } from '../tensor/tensor.js';
import { GoodputController, type GoodputOptions } from './controller.js';
import { Random, argmax, processedDistribution, sampleFrom } from './sampling.js';
import type { DraftTree, Proposer, SpeculationStats } from './types.js';
import { EMPTY_DRAFT } from './types.js';

export type FinishReason = 'length' | 'eos' | 'stop' | 'abort' | 'context';

export interface StreamingTokenizer {
  streamDecoder(context?: ArrayLike<number>): { push(id: number): string; flush(): string };
}

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
   * Replaces the sampling verifier (tests only: negative controls such as "always accept"
   * must make the distribution tests fail). Arguments as verifySamplingBatch's.
   */
  samplingVerifier?: typeof verifySamplingBatch;
}

export interface LoopSequenceResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
}

export interface LoopResult {
  sequences: LoopSequenceResult[];
  targetPasses: number;
  timeToFirstTokenMs: number;
  decodeMs: number;
  totalMs: number;
  speculation?: SpeculationStats;
}

interface Seq {
  prompt: number[];
  all: number[]; // prompt + emitted tokens; the pending token is the last
  out: number[];
  text: string;
  pending: string;
  decoder: { push(id: number): string; flush(): string } | undefined;
  done: FinishReason | undefined;
  random: Random;
}

/** Longest suffix of `text` that is a proper prefix of some stop string (held back while streaming). */
function heldBack(text: string, stops: string[]): number {
  let keep = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > keep; k--) {
      if (text.endsWith(s.slice(0, k))) {
        keep = k;
        break;
      }
    }
  }
  return keep;
}

export async function decodeLoop(o: LoopOptions): Promise<LoopResult> {
  const { model, proposer } = o;
  const vocab = model.config.vocabSize;
  const sampling = o.temperature > 0;
  const dist = { temperature: o.temperature, topK: o.topK, topP: o.topP };
  const start = performance.now();
  let firstTokenAt = 0;
  let passes = 0;
  const seqs: Seq[] = o.prompts.map((p, s) => ({
    prompt: p,
    all: [...p],
    out: [],
    text: '',
    pending: '',
    decoder: o.tokenizer?.streamDecoder(p),
    done: o.maxTokens === 0 ? 'length' : undefined,
    random: new Random(o.seed + s),
  }));
  const longest = Math.max(...o.prompts.map((p) => p.length));
  // Room for the prompt, every new token, and one draft tree beyond them.
  const capacity = longest + o.maxTokens + 64;
  const cache: KvCache = model.createCache({ capacity, sequences: seqs.length, ...(o.cacheDtype ? { dtype: o.cacheDtype } : {}) });
  const spec: SpeculationStats | undefined = proposer
    ? { strategy: proposer.name, drafted: 0, accepted: 0, acceptanceRate: 0, meanAcceptedLength: 0, perPositionAcceptance: [], timeMs: { propose: 0, forward: 0, verify: 0 } }
    : undefined;
  const depthDrafted: number[] = [];
  const depthAccepted: number[] = [];
  let specTokens = 0;
  let specSeqSteps = 0; // (sequence, tree step) pairs: tau is per sequence

  const pick = (row: Float32Array, s: number): number =>
    sampling ? sampleFrom(processedDistribution(row, dist), seqs[s]!.random.next()) : argmax(row);

  /** Emits one token; returns false when the sequence finished on it (the token may be cut). */
  const emit = (s: number, token: number): boolean => {
    const st = seqs[s]!;
    if (!firstTokenAt) firstTokenAt = performance.now();
    if (o.eos.has(token)) {
      st.done = 'eos';
      return false;
    }
    st.out.push(token);
    st.all.push(token);
    if (st.decoder) {
      st.pending += st.decoder.push(token);
      const full = st.text + st.pending;
      const hits = o.stops.map((stop) => full.indexOf(stop, Math.max(0, st.text.length - stop.length))).filter((i) => i >= 0);
      if (hits.length) {
        const piece = full.slice(st.text.length, Math.min(...hits));
        if (piece) {
          st.text += piece;
          o.onText?.(piece, token, s);
        }
        st.pending = '';
        st.done = 'stop';
        return false;
      }
      const keep = heldBack(st.pending, o.stops);
      const piece = st.pending.slice(0, st.pending.length - keep);
      st.pending = st.pending.slice(st.pending.length - keep);
      if (piece) {
        st.text += piece;
        o.onText?.(piece, token, s);
      }
    }
    if (st.out.length >= o.maxTokens) {
      st.done = 'length';
      return false;
    }
    return true;
  };

  const controller = proposer && o.goodput ? new GoodputController(o.goodput) : undefined;
  let step = 0;

  try {
    await proposer?.start?.(o.prompts, capacity);
    // Prefill.
    const wantsHidden = proposer?.wantsHidden === true;
    const dim = model.config.dim;
    // Prefill each distinct prompt once (n samples of one prompt share it): the other sequences
    // get a copy of its KV (fork) and sample their first token from the same logits.
    const leaderOf = new Map<string, number>();
    const leader = seqs.map((st, s) => {
      const key = cache.forkable ? st.prompt.join(',') : String(s); // quantized caches: prefill each
      if (!leaderOf.has(key)) leaderOf.set(key, s);
      return leaderOf.get(key)!;
    });
    const leaders = [...leaderOf.values()].sort((a, b) => a - b);
    const pre = await model.forward(cache, leaders.map((s) => ({ sequence: s, tokens: seqs[s]!.prompt })), { hidden: wantsHidden });
    passes++;
    const preLogits = pre.logits.toFloat32();
    pre.logits.dispose();
    const preHidden = pre.hidden?.toFloat32();
    pre.hidden?.dispose();
    seqs.forEach((st, s) => {
      const r = leaders.indexOf(leader[s]!);
      if (leader[s] !== s) cache.fork(leader[s]!, s);
      if (preHidden) proposer!.observeHidden?.(s, preHidden.slice(r * dim, (r + 1) * dim));
      if (!st.done) emit(s, pick(preLogits.subarray(r * vocab, (r + 1) * vocab), s));
    });
    const decodeStart = performance.now();

    while (seqs.some((st) => !st.done)) {
      if (o.signal?.aborted) {
        seqs.forEach((st) => (st.done ??= 'abort'));
        break;
      }
      const active = seqs.map((st, s) => ({ st, s })).filter((x) => !x.st.done);
      for (const { st, s } of active) if (cache.free(s) < 1) st.done = 'context';
      const live = active.filter((x) => !x.st.done);
      if (live.length === 0) break;
      step++;
      const t0 = performance.now();
      // Propose: the controller's size per sequence (or the whole budget), within what is left.
      const sizes = controller ? controller.plan(live.map(({ s }) => s)) : live.map(() => Infinity);
      const drafts: DraftTree[] = live.map(() => EMPTY_DRAFT);
      let draftBudget = 0;
      if (proposer) {
        const ctxs = live
          .map(({ st, s }, i) => ({ i, ctx: { sequence: s, tokens: st.all, promptLength: st.prompt.length, budget: Math.min(sizes[i]!, o.maxTokens - st.out.length - 1, cache.free(s) - 1), temperature: o.temperature } }))
          .filter((x) => x.ctx.budget > 0);
        draftBudget = Math.max(0, ...ctxs.map((x) => x.ctx.budget));
        if (proposer!.proposeBatch && ctxs.length > 1) {
          const out = await proposer!.proposeBatch(ctxs.map((x) => x.ctx));
          ctxs.forEach((x, j) => (drafts[x.i] = out[j]!));
        } else {
          for (const x of ctxs) drafts[x.i] = await proposer!.propose(x.ctx);
        }
      }
      const t1 = performance.now();
      const anyDraft = drafts.some((d) => d.tokens.length > 0);
      let emitted = 0;
      if (!anyDraft) {
        // Plain decoding step: the pending tokens, causally.
        const { logits, hidden } = await model.forward(cache, live.map(({ st, s }) => ({ sequence: s, tokens: [st.all[st.all.length - 1]!] })), { hidden: wantsHidden });
        passes++;
        // Greedy: only the chosen ids leave the device; sampling needs the rows on the host.
        const best = sampling ? undefined : await argmaxRows(logits);
        const rows = sampling ? logits.toFloat32() : undefined;
        logits.dispose();
        if (hidden) {
          const h = hidden.toFloat32();
          live.forEach(({ s }, r) => proposer!.observeHidden?.(s, h.slice(r * dim, (r + 1) * dim)));
          hidden.dispose();
        }
        const t2 = performance.now();
        live.forEach(({ s }, r) => {
          emitted++;
          emit(s, best ? best[r]! : pick(rows!.subarray(r * vocab, (r + 1) * vocab), s));
        });
        if (spec) spec.timeMs.forward += t2 - t1;
        controller?.observe({
          rows: live.length,
          verifyMs: performance.now() - t1,
          draftMs: t1 - t0,
          draftBudget,
          sequences: live.map(({ s }, i) => ({ sequence: s, budget: sizes[i]!, drafted: 0, depth: 0, accepted: 0 })),
        });
      } else {
        // Tree step: [pending, ...draft] per sequence.
        const stepSeqs = live.map(({ st, s }, i) => ({
          sequence: s,
          tokens: [st.all[st.all.length - 1]!, ...drafts[i]!.tokens],
          parents: [-1, ...drafts[i]!.parents.map((p) => p + 1)],
        }));
        const { logits, hidden } = await model.forward(cache, stepSeqs, { logits: 'all', hidden: wantsHidden });
        const hostHidden = hidden ? Float32Array.from(hidden.toFloat32()) : undefined;
        hidden?.dispose();
        passes++;
        specSeqSteps += live.length;
        const t2 = performance.now();
        // Verify: the draft nodes (local parents), logits rows [pending, ...draft] per sequence.
        const treeIndptr = [0];
        const treeTokens: number[] = [];
        const treeParents: number[] = [];
        drafts.forEach((d) => {
          treeTokens.push(...d.tokens);
          treeParents.push(...d.parents);
          treeIndptr.push(treeTokens.length);
        });
        let results;
        let hostLogits: Float32Array | undefined;
        const needHost = sampling || proposer?.feedback !== undefined;
        if (needHost) hostLogits = Float32Array.from(logits.toFloat32());
        if (!sampling) {
          results = await verifyGreedyBatch(treeIndptr, treeTokens, treeParents, logits);
        } else {
          const rows = treeTokens.length + live.length;
          const target = new Float32Array(rows * vocab);
          for (let r = 0; r < rows; r++) target.set(processedDistribution(hostLogits!.subarray(r * vocab, (r + 1) * vocab), dist), r * vocab);
          const deterministic = drafts.every((d) => !d.draftProbs);
          let draftRows: Float32Array | null = null;
          if (!deterministic) {
            draftRows = new Float32Array(rows * vocab);
            let r = 0;
            drafts.forEach((d) => {
              for (let i = 0; i <= d.tokens.length; i++, r++) {
                // Rows the verifier never reads (no children) still hold a valid distribution.
                draftRows!.set(d.draftProbs?.[i] ?? target.subarray(r * vocab, (r + 1) * vocab), r * vocab);
              }
            });
          }
          const uniforms = new Float64Array(rows);
          let r = 0;
          live.forEach(({ st }, i) => {
            for (let j = 0; j <= drafts[i]!.tokens.length; j++) uniforms[r++] = st.random.next();
          });
          const tTarget = Tensor.from(target, { shape: [rows, vocab] });
          const tDraft = draftRows ? Tensor.from(draftRows, { shape: [rows, vocab] }) : null;
          results = await (o.samplingVerifier ?? verifySamplingBatch)(treeIndptr, treeTokens, treeParents, tTarget, tDraft, uniforms);
        }
        logits.dispose();
        await cache.commit(
          live.map(({ s }, i) => ({ sequence: s, numNodes: drafts[i]!.tokens.length + 1, acceptedNodes: [0, ...results[i]!.acceptedNodes.map((n) => n + 1)] })),
        );
        const t3 = performance.now();
        spec!.timeMs.propose += t1 - t0;
        spec!.timeMs.forward += t2 - t1;
        spec!.timeMs.verify += t3 - t2;
        const observed: Array<{ sequence: number; budget: number; drafted: number; depth: number; accepted: number }> = [];
        let rowBase = 0;
        for (let i = 0; i < live.length; i++) {
          const { s } = live[i]!;
          const d = drafts[i]!;
          const res = results[i]!;
          const pendingToken = stepSeqs[i]!.tokens[0]!;
          spec!.drafted += d.tokens.length;
          spec!.accepted += res.acceptedNodes.length;
          // Per depth: did the draft reach it, was a node there accepted.
          const depth: number[] = [];
          d.parents.forEach((p, n) => {
            depth[n] = p < 0 ? 0 : depth[p]! + 1;
            depthDrafted[depth[n]!] ??= 0;
          });
          new Set(depth).forEach((dd) => (depthDrafted[dd] = (depthDrafted[dd] ?? 0) + 1));
          observed.push({ sequence: s, budget: Number.isFinite(sizes[i]!) ? sizes[i]! : d.tokens.length, drafted: d.tokens.length, depth: depth.length ? Math.max(...depth) + 1 : 0, accepted: res.acceptedNodes.length });
          res.acceptedNodes.forEach((_, dd) => (depthAccepted[dd] = (depthAccepted[dd] ?? 0) + 1));
          await proposer!.feedback?.({
            sequence: s,
            pendingToken,
            draft: d,
            acceptedNodes: res.acceptedNodes,
            nextToken: res.nextToken,
            ...(hostLogits ? { targetLogits: hostLogits.subarray(rowBase * vocab, (rowBase + d.tokens.length + 1) * vocab) } : {}),
          });
          if (hostHidden) {
            // The row that produced the next token: the last accepted node's (or the pending token's).
            const row = rowBase + (res.acceptedNodes.length ? res.acceptedNodes.at(-1)! + 1 : 0);
            proposer!.observeHidden?.(s, hostHidden.slice(row * dim, (row + 1) * dim));
          }
          rowBase += d.tokens.length + 1;
          let ok = true;
          for (const n of res.acceptedNodes) {
            emitted++;
            if (!(ok = emit(s, d.tokens[n]!))) break;
          }
          if (ok) {
            emitted++;
            emit(s, res.nextToken);
          }
        }
        specTokens += emitted;
        controller?.observe({ rows: stepSeqs.reduce((a, x) => a + x.tokens.length, 0), verifyMs: t3 - t1, draftMs: t1 - t0, draftBudget, sequences: observed });
      }
    }
    const end = performance.now();
    if (spec) {
      spec.acceptanceRate = spec.drafted ? spec.accepted / spec.drafted : 0;
      spec.meanAcceptedLength = specSeqSteps ? specTokens / specSeqSteps : 0;
      spec.perPositionAcceptance = depthDrafted.map((n, dd) => (n ? (depthAccepted[dd] ?? 0) / n : 0));
      if (controller) spec.draftSizes = Object.fromEntries([...controller.chosen].sort((a, b) => a[0] - b[0]));
    }
    return {
      sequences: seqs.map((st) => {
        if (st.decoder && st.done !== 'stop') {
          const tail = st.pending + st.decoder.flush();
          if (tail) {
            st.text += tail;
            o.onText?.(tail, -1, seqs.indexOf(st));
          }
        }
        return { text: st.text, tokens: st.out, finishReason: st.done ?? 'length', promptTokens: st.prompt.length };
      }),
      targetPasses: passes,
      timeToFirstTokenMs: firstTokenAt ? firstTokenAt - start : 0,
      decodeMs: end - decodeStart,
      totalMs: end - start,
      ...(spec ? { speculation: spec } : {}),
    };
  } finally {
    cache.dispose();
    proposer?.dispose?.();
  }
}
