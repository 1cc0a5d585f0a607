/**
 * Model.step (one native decode step: forward, token choice, KV commit; csrc/common/decode_step.h)
 * against the same step done separately (Model.forward, argmax / verifyGreedyBatch, KvCache.commit),
 * for any backend: test/model/step.test.ts runs it on the CPU, test/gpu/step.gpu.test.ts on CUDA.
 * Plain and quantized caches; ragged batches; trees that accept nothing, part or all of a
 * branch; the logits, hidden and top-k rows it returns when asked; NaN rows give -1.
 */
import { describe, expect, it } from 'vitest';

import { topIndices } from '../../lib/decode/proposers/draft-model.js';
import { type SamplerChain, checkSamplerChain, samplingChain } from '../../lib/kernels/sampling.js';
import { verifyGreedyBatch, verifySamplingBatch } from '../../lib/kernels/verify.js';
import type { KvCacheDtype } from '../../lib/model/kv-cache.js';
import { Model } from '../../lib/model/model.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { probsRef, sampleRef } from './sampling-reference.js';
import { rng as mulberry32 } from './verify-reference.js';
import { randomConfig, randomWeights } from './random-model.js';

const config = randomConfig({ vocabSize: 41, maxSeqLen: 96 });
const prompts = [[3, 17, 5, 30, 1, 22, 9], [8, 8, 2], [12, 40, 7, 7, 19]];

const rows = (t: Tensor, width: number) => {
  const a = t.toFloat32();
  return Array.from({ length: a.length / width }, (_, i) => Array.from(a.subarray(i * width, (i + 1) * width)));
};
const argmax = (row: number[]) => row.reduce((b, x, i) => (x > row[b]! ? i : b), 0);

/** A draft tree below the pending token: a chain following `truth` for `good` tokens then wrong, plus random siblings. */
function draftTree(truth: number[], good: number, extra: number, rng: () => number): { tokens: number[]; parents: number[] } {
  const tokens: number[] = [];
  const parents: number[] = [];
  for (let i = 0; i < 4; i++) {
    tokens.push(i < good ? truth[i]! : (truth[i]! + 1 + Math.floor(rng() * 5)) % config.vocabSize);
    parents.push(i - 1);
    if (tokens.length > 1 && rng() < 0.5) {
      tokens.push(Math.floor(rng() * config.vocabSize));
      parents.push(i - 1);
    }
  }
  for (let e = 0; e < extra; e++) {
    parents.push(Math.floor(rng() * (tokens.length + 1)) - 1);
    tokens.push(Math.floor(rng() * config.vocabSize));
  }
  return { tokens, parents };
}

export function defineStepSuites(backend: 'cpu' | 'cuda', kvDtypes: readonly KvCacheDtype[]): void {
  const load = (tensors = randomWeights(config, 11)) => Model.fromWeights({ config, tensors }, { backend, dtype: 'f32' });

  describe.each(kvDtypes)(`Model.step on ${backend}, %s cache`, (dtype) => {
    it('causal steps: next tokens, logits, hidden and top-k equal forward + argmax; one native call each', async () => {
      const model = await load();
      const [a, b] = [0, 1].map(() => model.createCache({ capacity: 48, sequences: 3, dtype }));
      let pending = prompts;
      for (let step = 0; step < 6; step++) {
        const seqs = pending.map((tokens, sequence) => ({ sequence, tokens }));
        const got = await model.step(a!, seqs, { logits: true, hidden: true, topK: 3 });
        const want = await model.forward(b!, seqs, { hidden: true });
        const wantRows = rows(want.logits, config.vocabSize);
        expect(rows(got.logits!, config.vocabSize)).toEqual(wantRows);
        expect(rows(got.hidden!, config.dim)).toEqual(rows(want.hidden!, config.dim));
        expect(got.sequences.map((s) => s.nextToken)).toEqual(wantRows.map(argmax));
        expect(Array.from(got.topK!)).toEqual(wantRows.flatMap((r) => topIndices(r, 3)));
        expect([0, 1, 2].map((s) => a!.length(s))).toEqual([0, 1, 2].map((s) => b!.length(s)));
        [got.logits, got.hidden, want.logits, want.hidden].forEach((t) => t!.dispose());
        pending = got.sequences.map((s) => [s.nextToken]);
      }
      model.dispose();
    });

    it('tree steps equal forward + verifyGreedyBatch + commit (tokens, accepted nodes, lengths, the cache after)', async () => {
      const model = await load();
      const rng = mulberry32(5);
      const [a, b, truthCache] = [0, 1, 2].map(() => model.createCache({ capacity: 64, sequences: 3, dtype }));
      const first = await model.step(a!, prompts.map((tokens, sequence) => ({ sequence, tokens })));
      await model.step(b!, prompts.map((tokens, sequence) => ({ sequence, tokens })));
      let pending = first.sequences.map((s) => s.nextToken);
      const history = prompts.map((p) => [...p]); // the committed tokens of each sequence
      const accepted: number[] = [];
      for (let step = 0; step < 5; step++) {
        // The greedy continuation (8 tokens) after each sequence's history and pending token, from a third cache.
        const truth: number[][] = [];
        for (let s = 0; s < 3; s++) {
          truthCache!.truncate(s, 0);
          let r = await model.step(truthCache!, [{ sequence: s, tokens: [...history[s]!, pending[s]!] }]);
          truth.push([]);
          for (let i = 0; i < 8; i++) {
            truth[s]!.push(r.sequences[0]!.nextToken);
            r = await model.step(truthCache!, [{ sequence: s, tokens: [r.sequences[0]!.nextToken] }]);
          }
        }
        // Drafts follow the truth for a varying number of tokens; sequence 2 has none every other step.
        const drafts = [0, 1, 2].map((s) => (s === 2 && step % 2 === 1 ? { tokens: [], parents: [] } : draftTree(truth[s]!, (step + s) % 5, s, rng)));
        const seqs = drafts.map((draft, sequence) => ({ sequence, tokens: [pending[sequence]!], draft }));
        const got = await model.step(a!, seqs);
        const fwd = drafts.map((d, sequence) => ({ sequence, tokens: [pending[sequence]!, ...d.tokens], parents: [-1, ...d.parents.map((p) => p + 1)] }));
        const { logits } = await model.forward(b!, fwd, { logits: 'all' });
        const indptr = [0];
        drafts.forEach((d) => indptr.push(indptr.at(-1)! + d.tokens.length));
        const want = await verifyGreedyBatch(indptr, drafts.flatMap((d) => d.tokens), drafts.flatMap((d) => d.parents), logits);
        logits.dispose();
        await b!.commit(want.map((w, sequence) => ({ sequence, numNodes: drafts[sequence]!.tokens.length + 1, acceptedNodes: [0, ...w.acceptedNodes.map((n) => n + 1)] })));
        expect(got.sequences.map((s) => ({ acceptedNodes: s.acceptedNodes, nextToken: s.nextToken }))).toEqual(want);
        expect([0, 1, 2].map((s) => a!.length(s))).toEqual([0, 1, 2].map((s) => b!.length(s)));
        want.forEach((w, s) => {
          expect([...w.acceptedNodes.map((n) => drafts[s]!.tokens[n]!), w.nextToken]).toEqual(truth[s]!.slice(0, w.acceptedNodes.length + 1)); // greedy = autoregressive
          history[s]!.push(pending[s]!, ...w.acceptedNodes.map((n) => drafts[s]!.tokens[n]!));
          accepted.push(w.acceptedNodes.length);
        });
        pending = got.sequences.map((s) => s.nextToken);
      }
      // The caches hold the same rows: the next causal step gives the same logits, bit for bit.
      const seqs = pending.map((t, sequence) => ({ sequence, tokens: [t] }));
      const [ga, gb] = [await model.forward(a!, seqs), await model.forward(b!, seqs)];
      expect(rows(ga.logits, config.vocabSize)).toEqual(rows(gb.logits, config.vocabSize));
      if (dtype === 'f32' || dtype === 'f16' || dtype === 'bf16') expect(Array.from(a!.k.toArray())).toEqual(Array.from(b!.k.toArray()));
      expect(accepted.some((n) => n > 0)).toBe(true); // the trees did accept something
      model.dispose();
    });
  });

  it(`a NaN row gives next token -1, causal and tree (${backend})`, async () => {
    const tensors = randomWeights(config, 11);
    (tensors.get('norm')!.toArray() as Float32Array).fill(Number.NaN);
    const model = await load(tensors);
    const cache = model.createCache({ capacity: 32 });
    const r = await model.step(cache, [{ sequence: 0, tokens: prompts[0]! }]);
    expect(r.sequences[0]!.nextToken).toBe(-1);
    const t = await model.step(cache, [{ sequence: 0, tokens: [4], draft: { tokens: [5, 6], parents: [-1, 0] } }]);
    expect(t.sequences[0]).toEqual({ sequence: 0, nextToken: -1, acceptedNodes: [] });
    expect(cache.length(0)).toBe(prompts[0]!.length + 1); // the pending token is committed, nothing else
    model.dispose();
  });

  it(`rejects a tree step feeding more than the pending token, and sequences out of order (${backend})`, async () => {
    const model = await load();
    const cache = model.createCache({ capacity: 32, sequences: 2 });
    await expect(model.step(cache, [{ sequence: 0, tokens: [1, 2], draft: { tokens: [3], parents: [-1] } }])).rejects.toThrow(/exactly one \(pending\) token/);
    await expect(model.step(cache, [{ sequence: 1, tokens: [1] }, { sequence: 0, tokens: [1] }])).rejects.toThrow(/increasing order/);
    model.dispose();
  });
}

/**
 * Sampled steps (options.sampling: the native sampler chain inside Model.step) against the float64
 * reference sampler (causal: token for token for the same uniforms) and against the same step done
 * separately (tree: forward, samplingChain, verifySamplingBatch, commit); Model.topK against the
 * logits. Shared by the CPU tests and the CUDA suite.
 */
export function defineSampledStepSuites(backend: 'cpu' | 'cuda'): void {
  const load = () => Model.fromWeights({ config, tensors: randomWeights(config, 11) }, { backend, dtype: 'f32' });
  const chains: Array<[string, SamplerChain]> = [
    ['temperature 0.9', checkSamplerChain({ temperature: 0.9 })],
    ['top-k 7, top-p 0.8', checkSamplerChain({ temperature: 1.3, topK: 7, topP: 0.8 })],
    ['min-p, penalties and bias', checkSamplerChain({ temperature: 1.1, minP: 0.05, repeatPenalty: 1.4, frequencyPenalty: 0.3, presencePenalty: 0.2, penaltyLastN: 5, logitBias: new Map([[3, 1.5], [9, -Infinity]]) })],
    ['greedy with penalties', checkSamplerChain({ temperature: 0, repeatPenalty: 2, penaltyLastN: -1, logitBias: new Map([[4, 0.7]]) })],
  ];

  it.each(chains)(`causal sampled steps equal the float64 reference sampler token for token, q rows written where asked (${backend}, %s)`, async (_name, chain) => {
    const model = await load();
    const cache = model.createCache({ capacity: 48, sequences: 3 });
    const rand = mulberry32(17);
    const history = prompts.map((p) => [...p]);
    let pending = prompts.map((p) => [...p]);
    const q = Tensor.empty([7, config.vocabSize], 'f32', { device: model.device });
    for (let step = 0; step < 6; step++) {
      const uniforms = Float64Array.from(prompts, () => rand());
      const contexts = history.map((h) => [...h]);
      const got = await model.step(cache, pending.map((tokens, sequence) => ({ sequence, tokens })), {
        logits: true,
        sampling: { chain, uniforms, contexts, probsInto: { tensor: q, rows: [5, -1, 1] } },
      });
      const logits = rows(got.logits!, config.vocabSize);
      got.logits!.dispose();
      const want = logits.map((row, b) => sampleRef(row, chain, uniforms[b]!, contexts[b]!));
      expect(got.sequences.map((s) => s.nextToken)).toEqual(want);
      if (chain.temperature > 0) {
        const qRows = rows(q, config.vocabSize);
        [[0, 5], [2, 1]].forEach(([b, row]) => {
          const ref = probsRef(logits[b!]!, chain, contexts[b!]!)!;
          qRows[row!]!.forEach((v, y) => expect(v).toBeCloseTo(ref[y]!, 6));
        });
      }
      got.sequences.forEach((s, b) => history[b]!.push(s.nextToken));
      pending = got.sequences.map((s) => [s.nextToken]);
    }
    q.dispose();
    model.dispose();
  });

  it(`sampled tree steps equal forward + samplingChain + verifySamplingBatch + commit, with the draft's q by row (${backend})`, async () => {
    const model = await load();
    const chain = checkSamplerChain({ temperature: 1.2, topK: 12, repeatPenalty: 1.3, presencePenalty: 0.4, penaltyLastN: 6 });
    const rand = mulberry32(23);
    const [a, b] = [0, 1].map(() => model.createCache({ capacity: 64, sequences: 3 }));
    for (const c of [a!, b!]) await model.step(c, prompts.map((tokens, sequence) => ({ sequence, tokens })));
    const history = prompts.map((p) => [...p]);
    let pending = [5, 6, 7];
    let accepted = 0;
    for (let step = 0; step < 6; step++) {
      const drafts = [0, 1, 2].map((s) => (s === 1 && step % 2 ? { tokens: [], parents: [] } : draftTree([1, 2, 3, 4], 0, s, rand)));
      const n = drafts.reduce((x, d) => x + d.tokens.length + 1, 0);
      const uniforms = Float64Array.from({ length: n }, () => rand());
      // Each row's context: the sequence's tokens, the pending token, then the node's path.
      const contexts: number[][] = [];
      drafts.forEach((d, s) => {
        const base = [...history[s]!, pending[s]!];
        contexts.push(base);
        d.tokens.forEach((_, i) => {
          const path: number[] = [];
          for (let j = i; j >= 0; j = d.parents[j]!) path.unshift(d.tokens[j]!);
          contexts.push([...base, ...path]);
        });
      });
      // q: random distributions, stored in shuffled rows of a larger buffer (leaves: -1).
      const qHost = Float32Array.from({ length: (n + 3) * config.vocabSize }, () => rand() + 0.01);
      for (let r = 0; r < n + 3; r++) {
        const row = qHost.subarray(r * config.vocabSize, (r + 1) * config.vocabSize);
        const z = row.reduce((x, v) => x + v, 0);
        row.forEach((v, y) => (row[y] = v / z));
      }
      const qRows: number[] = [];
      drafts.forEach((d) => {
        const hasChildren = [d.tokens.length > 0, ...d.tokens.map((_, i) => d.parents.includes(i))];
        hasChildren.forEach((h, i) => qRows.push(h || i % 2 ? (qRows.length * 5 + 2) % (n + 3) : -1));
      });
      const qAll = await Tensor.from(qHost, { shape: [n + 3, config.vocabSize] }).to(model.device);
      const got = await model.step(a!, drafts.map((draft, sequence) => ({ sequence, tokens: [pending[sequence]!], draft })), {
        sampling: { chain, uniforms, contexts, draftProbs: { tensor: qAll, rows: qRows } },
      });
      // The same step, separately.
      const fwd = drafts.map((d, sequence) => ({ sequence, tokens: [pending[sequence]!, ...d.tokens], parents: [-1, ...d.parents.map((p) => p + 1)] }));
      const { logits } = await model.forward(b!, fwd, { logits: 'all' });
      const { probs } = await samplingChain(logits, chain, { contexts, probs: true });
      const qGathered = Float32Array.from({ length: n * config.vocabSize }, (_, i) => {
        const r = qRows[Math.floor(i / config.vocabSize)]!;
        return r < 0 ? 1 / config.vocabSize : qHost[r * config.vocabSize + (i % config.vocabSize)]!;
      });
      const qT = await Tensor.from(qGathered, { shape: [n, config.vocabSize] }).to(model.device);
      const indptr = [0];
      drafts.forEach((d) => indptr.push(indptr.at(-1)! + d.tokens.length));
      const want = await verifySamplingBatch(indptr, drafts.flatMap((d) => d.tokens), drafts.flatMap((d) => d.parents), probs!, qT, uniforms);
      [logits, probs!, qT, qAll].forEach((t) => t.dispose());
      await b!.commit(want.map((w, sequence) => ({ sequence, numNodes: drafts[sequence]!.tokens.length + 1, acceptedNodes: [0, ...w.acceptedNodes.map((x) => x + 1)] })));
      expect(got.sequences.map((s) => ({ acceptedNodes: s.acceptedNodes, nextToken: s.nextToken }))).toEqual(want);
      expect([0, 1, 2].map((s) => a!.length(s))).toEqual([0, 1, 2].map((s) => b!.length(s)));
      want.forEach((w, s) => {
        history[s]!.push(pending[s]!, ...w.acceptedNodes.map((x) => drafts[s]!.tokens[x]!));
        accepted += w.acceptedNodes.length;
      });
      pending = want.map((w) => w.nextToken);
    }
    const seqs = pending.map((t, sequence) => ({ sequence, tokens: [t] }));
    const [ga, gb] = [await model.forward(a!, seqs), await model.forward(b!, seqs)];
    expect(rows(ga.logits, config.vocabSize)).toEqual(rows(gb.logits, config.vocabSize));
    expect(accepted).toBeGreaterThan(0);
    model.dispose();
  });

  it(`topK: ids and log-probabilities of chosen rows; a tree step stays uncommitted (${backend})`, async () => {
    const model = await load();
    const [a, b] = [0, 1].map(() => model.createCache({ capacity: 48, sequences: 3 }));
    const seqs = prompts.map((tokens, sequence) => ({ sequence, tokens }));
    const got = await model.topK(a!, seqs, { k: 4 });
    const want = rows((await model.forward(b!, seqs)).logits, config.vocabSize);
    expect(Array.from(got.ids)).toEqual(want.flatMap((r) => topIndices(r, 4)));
    const lse = (r: number[]) => {
      const m = Math.max(...r);
      return m + Math.log(r.reduce((x, v) => x + Math.exp(v - m), 0));
    };
    want.forEach((r, i) => topIndices(r, 4).forEach((id, j) => expect(got.logprobs[i * 4 + j]!).toBeCloseTo(r[id]! - lse(r), 5)));
    expect([0, 1, 2].map((s) => a!.length(s))).toEqual(prompts.map((p) => p.length));
    const tree = [{ sequence: 1, tokens: [4, 9, 2], parents: [-1, 0, -1] }];
    const t = await model.topK(a!, tree, { k: 2, logits: [1, 2] });
    const tw = rows((await model.forward(b!, tree, { logits: [1, 2] })).logits, config.vocabSize);
    expect(Array.from(t.ids)).toEqual(tw.flatMap((r) => topIndices(r, 2)));
    expect(a!.length(1)).toBe(prompts[1]!.length);
    await expect(model.topK(a!, seqs, { k: 0 })).rejects.toThrow(/options\.k/);
    model.dispose();
  });

  it(`sampled steps reject bad inputs naming the argument (${backend})`, async () => {
    const model = await load();
    const cache = model.createCache({ capacity: 32, sequences: 2 });
    await model.step(cache, [{ sequence: 0, tokens: prompts[0]! }]);
    const chain = checkSamplerChain({ temperature: 1 });
    const q = Tensor.empty([2, config.vocabSize], 'f32', { device: model.device });
    const tree = [{ sequence: 0, tokens: [4], draft: { tokens: [5, 6], parents: [-1, 0] } }];
    await expect(model.step(cache, tree, { sampling: { chain, uniforms: new Float64Array(3), draftProbs: { tensor: q, rows: [0, -1, -1] } } })).rejects.toThrow(/draftRows\[1\]/);
    await expect(model.step(cache, tree, { sampling: { chain, uniforms: new Float64Array(2) } })).rejects.toThrow(/uniforms/);
    await expect(model.step(cache, tree, { sampling: { chain, uniforms: Float64Array.of(0, 0.5, 1) } })).rejects.toThrow(/uniforms\[2\]/);
    const pen = checkSamplerChain({ temperature: 1, repeatPenalty: 1.2 });
    await expect(model.step(cache, [{ sequence: 0, tokens: [3] }], { sampling: { chain: pen } })).rejects.toThrow(/contexts/);
    await expect(model.step(cache, [{ sequence: 0, tokens: [3] }], { sampling: { chain, probsInto: { tensor: q, rows: [2] } } })).rejects.toThrow(/probsRows\[0\]/);
    expect(cache.length(0)).toBe(prompts[0]!.length); // nothing ran
    q.dispose();
    model.dispose();
  });
}
