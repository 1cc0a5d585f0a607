/**
 * Sampling losslessness of every strategy on a toy model (vocabulary 4): the joint
 * distribution of the first 4 generated tokens (more than the draft length 2) must match the
 * target's exact distribution (float64 reference) by a chi-square test, and the same test
 * must reject broken verifiers (always accept; bonus drawn from the draft; residual not
 * renormalised) and a proposer that misreports its draft distribution.
 */
import { describe, expect, it } from 'vitest';

import { decodeLoop } from '../../lib/decode/loop.js';
import { DraftChainProposer, DraftTreeProposer } from '../../lib/decode/proposers/draft-model.js';
import { LookupProposer, NgramTreeProposer } from '../../lib/decode/proposers/lookup.js';
import { HeadsProposer } from '../../lib/decode/proposers/heads.js';
import { JacobiProposer } from '../../lib/decode/proposers/jacobi.js';
import { randomValues } from '../../lib/bench/suites/util.js';
import { TokenRecyclingProposer } from '../../lib/decode/proposers/token-recycling.js';
import type { DraftTree, ProposeContext, Proposer } from '../../lib/decode/types.js';
import { type VerifyResult, verifySamplingBatch } from '../../lib/kernels/verify.js';
import { Model } from '../../lib/model/model.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { llamaReference } from '../helpers/llama-reference.js';
import { type ChainRef, PLAIN, probsRef } from '../helpers/sampling-reference.js';
import { randomConfig, randomWeights } from '../helpers/random-model.js';

const V = 4;
const T = 4; // the first token, then a step with a 2-token draft and its bonus: longer than the draft
const N = 12000;
const config = randomConfig({ vocabSize: V, dim: 32, hiddenDim: 48, nLayers: 1, nHeads: 2, nKvHeads: 1, headDim: 16, maxSeqLen: 32 });
const targetW = randomWeights(config, 11, 0.7);
const draftW = randomWeights(config, 29, 0.7);
const target = await Model.fromWeights({ config, tensors: targetW }, { backend: 'cpu' });
const draft = await Model.fromWeights({ config, tensors: draftW }, { backend: 'cpu' });
// A repetitive prompt so lookup, n-gram and recycling strategies find drafts to propose.
const prompt = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1];

/** Exact joint distribution of the first T tokens under a sampler chain (float64 reference; penalties from each prefix). */
function exactJoint(chain: ChainRef = PLAIN): Float64Array {
  const joint = new Float64Array(V ** T);
  const rec = (seq: number[], prob: number, depth: number, index: number) => {
    if (depth === T) {
      joint[index] = prob;
      return;
    }
    const logits = llamaReference(config, targetW, seq).at(-1)!;
    const p = probsRef(logits, chain, seq)!;
    for (let x = 0; x < V; x++) rec([...seq, x], prob * p[x]!, depth + 1, index * V + x);
  };
  rec(prompt, 1, 0, 0);
  return joint;
}
const exact = exactJoint();

/** Chi-square statistic over cells (those with expected count < 5 pooled) and its 0.999 quantile. */
function chiSquare(counts: number[], expected: Float64Array = exact): { stat: number; limit: number } {
  let stat = 0;
  let dof = -1;
  let poolObs = 0;
  let poolExp = 0;
  expected.forEach((p, i) => {
    const e = p * N;
    if (e < 5) {
      poolObs += counts[i]!;
      poolExp += e;
      return;
    }
    stat += (counts[i]! - e) ** 2 / e;
    dof++;
  });
  if (poolExp > 0) {
    stat += (poolObs - poolExp) ** 2 / poolExp;
    dof++;
  }
  const z = 3.09; // 0.999 (Wilson-Hilferty)
  const limit = dof * (1 - 2 / (9 * dof) + z * Math.sqrt(2 / (9 * dof))) ** 3;
  return { stat, limit };
}

/** Draft tokens proposed in the last sampleJoint run (shows a strategy really drafted). */
let lastDrafted = 0;

async function sampleJoint(proposer: Proposer | undefined, samplingVerifier?: typeof verifySamplingBatch, chain: ChainRef = PLAIN): Promise<number[]> {
  const r = await decodeLoop({
    model: target,
    prompts: Array.from({ length: N }, () => prompt),
    maxTokens: T,
    ...chain,
    seed: 12345,
    eos: new Set(),
    stops: [],
    ...(proposer ? { proposer } : {}),
    ...(samplingVerifier ? { samplingVerifier } : {}),
  });
  lastDrafted = r.speculation?.drafted ?? 0;
  const counts = new Array<number>(V ** T).fill(0);
  for (const s of r.sequences) counts[s.tokens.reduce((a, t) => a * V + t, 0)]!++;
  return counts;
}

// Broken verifiers for the negative controls.
const alwaysAccept: typeof verifySamplingBatch = async (indptr, tokens, parents) => {
  const ip = Array.from(indptr as ArrayLike<number>);
  const out: VerifyResult[] = [];
  for (let b = 0; b + 1 < ip.length; b++) {
    // Accept the first chain of the tree (first child at each level), then bonus token 0.
    const nodes: number[] = [];
    let cur = -1;
    for (let j = ip[b]!; j < ip[b + 1]!; j++) if ((parents as ArrayLike<number>)[j] === cur) nodes.push((cur = j - ip[b]!));
    out.push({ acceptedNodes: nodes, nextToken: (tokens as ArrayLike<number>)[ip[b]!] ?? 0 });
  }
  return out;
};
/** Correct acceptance test, but the correction/bonus drawn from the draft distribution q. */
function bonusFromDraft(): typeof verifySamplingBatch {
  return async (indptr, tokens, parents, targetProbs, draftProbs, uniforms) => {
    const res = await verifySamplingBatch(indptr, tokens, parents, targetProbs, draftProbs, uniforms);
    const q = (draftProbs as Tensor).toFloat32();
    const ip = Array.from(indptr as ArrayLike<number>);
    return res.map((r, b) => {
      const row = ip[b]! + b + (r.acceptedNodes.length ? r.acceptedNodes.at(-1)! + 1 : 0);
      const u = (uniforms as Float64Array)[ip[b]! + b]!;
      let acc = 0;
      let next = V - 1;
      for (let x = 0; x < V; x++) if (u < (acc += q[row * V + x]!)) { next = x; break; }
      return { acceptedNodes: r.acceptedNodes, nextToken: next };
    });
  };
}
/** The residual max(0, p - q) used without renormalising against the untouched p (sample from p - q, clamped, as weights of p). */
function residualNotRenormalised(): typeof verifySamplingBatch {
  return async (indptr, tokens, parents, targetProbs, draftProbs, uniforms) => {
    const res = await verifySamplingBatch(indptr, tokens, parents, targetProbs, draftProbs, uniforms);
    const p = (targetProbs as Tensor).toFloat32();
    const ip = Array.from(indptr as ArrayLike<number>);
    return res.map((r, b) => {
      const n = ip[b + 1]! - ip[b]!;
      if (r.acceptedNodes.length === n) return r; // bonus: unchanged
      // On rejection emit from p itself (as if the residual were p): the classic bug.
      const row = ip[b]! + b + (r.acceptedNodes.length ? r.acceptedNodes.at(-1)! + 1 : 0);
      const u = (uniforms as Float64Array)[ip[b]! + b]!;
      let acc = 0;
      let next = V - 1;
      for (let x = 0; x < V; x++) if (u < (acc += p[row * V + x]!)) { next = x; break; }
      return { acceptedNodes: r.acceptedNodes, nextToken: next };
    });
  };
}

/** A proposer without proposeBatch: the loop asks it once per sequence (each proposal takes its own q rows). */
class OneByOne implements Proposer {
  readonly name = 'one-by-one';
  constructor(readonly inner: DraftChainProposer) {}
  start(p: readonly (readonly number[])[], c: number) {
    this.inner.start(p, c);
  }
  propose(ctx: ProposeContext): Promise<DraftTree> {
    return this.inner.propose(ctx);
  }
  dispose() {
    this.inner.dispose();
  }
}

/** Samples from the draft but reports a uniform q (misreported draft distribution). */
class LyingProposer implements Proposer {
  readonly name = 'lying';
  readonly #inner: DraftChainProposer;
  constructor() {
    this.#inner = new DraftChainProposer(draft, { k: 2, fixed: true, temperature: 1, seed: 5 });
  }
  start(p: readonly (readonly number[])[], c: number) {
    this.#inner.start(p, c);
  }
  async propose(ctx: ProposeContext): Promise<DraftTree> {
    const d = await this.#inner.propose(ctx);
    // Host rows win over the draft's native q (DraftTree.q): report a uniform q for every row.
    return d.tokens.length ? { ...d, draftProbs: Array.from({ length: d.tokens.length + 1 }, () => new Float32Array(V).fill(1 / V)) } : d;
  }
  dispose() {
    this.#inner.dispose();
  }
}

describe('sampling losslessness (chi-square on the joint of 4 tokens, vocabulary 4)', () => {
  const strategies: Array<[string, () => Proposer | undefined]> = [
    ['autoregressive', () => undefined],
    ['speculative (sampled drafts, k = 2)', () => new DraftChainProposer(draft, { k: 2, fixed: true, temperature: 1, seed: 7 })],
    ['speculative, one propose() per sequence (native q rows of separate proposals)', () => new OneByOne(new DraftChainProposer(draft, { k: 2, fixed: true, temperature: 1, seed: 7 }))],
    ['tree (deterministic top-k siblings)', () => new DraftTreeProposer(draft, { nodes: 6, depth: 2, topK: 2, width: 3 })],
    ['lookup', () => new LookupProposer({ k: 2 })],
    ['ngram-tree', () => new NgramTreeProposer({ k: 2, nodes: 6 })],
    ['token-recycling', () => new TokenRecyclingProposer(V, { k: 2, nodes: 6, depth: 2 })],
    ['jacobi (blockwise, n-gram pool)', () => new JacobiProposer(V, { k: 2, n: 3 })],
    ['heads (random heads: deterministic trees)', () => new HeadsProposer({ count: 2, dim: config.dim, vocab: V, weights: [randomValues(V * config.dim, 41), randomValues(V * config.dim, 42)], biases: [new Float32Array(V), new Float32Array(V)] }, { topK: [2, 2], nodes: 6 })],
  ];

  it.each(strategies)('%s matches the target distribution', async (name, make) => {
    const { stat, limit } = chiSquare(await sampleJoint(make()));
    console.log(`[info] ${name}: chi-square ${stat.toFixed(1)} (0.999 quantile ${limit.toFixed(1)}), ${lastDrafted} draft tokens`);
    if (name !== 'autoregressive') expect(lastDrafted).toBeGreaterThan(N / 2);
    expect(stat, `chi-square ${stat.toFixed(1)} vs 0.999 quantile ${limit.toFixed(1)}`).toBeLessThan(limit);
  });

  it.each([
    ['always accept', () => alwaysAccept],
    ['bonus drawn from the draft', bonusFromDraft],
    ['residual not renormalised (correction from p)', residualNotRenormalised],
  ] as const)('negative control: %s is rejected by the same test', async (name, make) => {
    const { stat, limit } = chiSquare(await sampleJoint(new DraftChainProposer(draft, { k: 2, fixed: true, temperature: 1, seed: 7 }), make()));
    console.log(`[info] control ${name}: chi-square ${stat.toFixed(1)} (0.999 quantile ${limit.toFixed(1)})`);
    expect(stat, `chi-square ${stat.toFixed(1)} vs 0.999 quantile ${limit.toFixed(1)}`).toBeGreaterThan(limit);
  });

  it('negative control: a proposer misreporting its draft distribution is rejected', async () => {
    const { stat, limit } = chiSquare(await sampleJoint(new LyingProposer()));
    expect(stat).toBeGreaterThan(limit);
  });
});

/** Penalties strong enough to reshape a 4-token vocabulary, with top-k and min-p on top. */
const PENALISED: ChainRef = { ...PLAIN, repeatPenalty: 1.6, frequencyPenalty: 0.35, presencePenalty: 0.25, penaltyLastN: 6, topK: 3, minP: 0.02, logitBias: new Map([[2, 0.4]]) };
const exactPenalised = exactJoint(PENALISED);

/**
 * Draws with the penalised chain (as the target's p is penalised) but tells the verifier the
 * draft's UNPENALISED q: penalties applied on the target's side only. (A draft that samples
 * without penalties and reports that q truthfully stays lossless: the theorem holds for any q.)
 */
class PenaltiesOnlyOnPProposer implements Proposer {
  readonly name = 'penalties-only-on-p';
  readonly #inner = new DraftChainProposer(draft, { k: 2, fixed: true, sampler: PENALISED, seed: 5 });
  readonly #plain: ChainRef = { ...PENALISED, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0 };
  readonly #q = new Map<string, Float32Array>();
  start(p: readonly (readonly number[])[], c: number) {
    this.#inner.start(p, c);
  }
  async propose(ctx: ProposeContext): Promise<DraftTree> {
    const d = await this.#inner.propose(ctx);
    if (d.tokens.length === 0) return d;
    const q = (j: number) => {
      const seq = [...ctx.tokens, ...d.tokens.slice(0, j)];
      const key = seq.join(',');
      if (!this.#q.has(key)) this.#q.set(key, Float32Array.from(probsRef(llamaReference(config, draftW, seq).at(-1)!, this.#plain, seq)!));
      return this.#q.get(key)!;
    };
    // Host rows win over the draft's native (penalised) q.
    return { ...d, draftProbs: Array.from({ length: d.tokens.length + 1 }, (_, j) => q(Math.min(j, d.tokens.length - 1))) };
  }
  dispose() {
    this.#inner.dispose();
  }
}

describe('sampling losslessness with penalties, logit bias, top-k and min-p (through the native chain)', () => {
  const strategies: Array<[string, () => Proposer | undefined]> = [
    ['autoregressive', () => undefined],
    ['speculative (drafts drawn through the same penalised chain, k = 2)', () => new DraftChainProposer(draft, { k: 2, fixed: true, sampler: PENALISED, seed: 7 })],
    ['speculative (drafts drawn WITHOUT penalties, q reported truthfully)', () => new DraftChainProposer(draft, { k: 2, fixed: true, temperature: 1, seed: 7 })],
    ['tree (deterministic top-k siblings: each node penalised from its own path)', () => new DraftTreeProposer(draft, { nodes: 6, depth: 2, topK: 2, width: 3 })],
    ['ngram-tree', () => new NgramTreeProposer({ k: 2, nodes: 6 })],
  ];

  it.each(strategies)('%s matches the target distribution', async (name, make) => {
    const { stat, limit } = chiSquare(await sampleJoint(make(), undefined, PENALISED), exactPenalised);
    console.log(`[info] penalised ${name}: chi-square ${stat.toFixed(1)} (0.999 quantile ${limit.toFixed(1)}), ${lastDrafted} draft tokens`);
    if (name !== 'autoregressive') expect(lastDrafted).toBeGreaterThan(N / 2);
    expect(stat, `chi-square ${stat.toFixed(1)} vs 0.999 quantile ${limit.toFixed(1)}`).toBeLessThan(limit);
  });

  it('the penalised distribution differs from the plain one (the penalties are really on)', () => {
    let tv = 0;
    exactPenalised.forEach((p, i) => (tv += Math.abs(p - exact[i]!) / 2));
    expect(tv).toBeGreaterThan(0.2);
  });

  it('negative control: penalties applied only to p (the verifier sees the unpenalised q) is rejected', async () => {
    const { stat, limit } = chiSquare(await sampleJoint(new PenaltiesOnlyOnPProposer(), undefined, PENALISED), exactPenalised);
    console.log(`[info] control penalties only on p: chi-square ${stat.toFixed(1)} (0.999 quantile ${limit.toFixed(1)})`);
    expect(stat).toBeGreaterThan(limit);
  });

  it('negative control: sampling without penalties is rejected against the penalised target', async () => {
    const { stat, limit } = chiSquare(await sampleJoint(new DraftChainProposer(draft, { k: 2, fixed: true, temperature: 1, seed: 7 })), exactPenalised);
    expect(stat).toBeGreaterThan(limit);
  });
});
