/**
 * Tree verification: greedy against an obvious reference; sampling proved
 * lossless by exact enumeration (float64, 1e-12) with negative controls that
 * must fail, and the native kernel matched token for token against the
 * enumerated reference verifier under the documented uniforms convention.
 */
import { describe, expect, it } from 'vitest';

import { verifyGreedy, verifyGreedyBatch, verifySampling, verifySamplingBatch } from '../../lib/kernels/verify.js';
import { native } from '../../lib/native/loader.js';
import { type BadInputCase, describeBadInputs, describeNativeBadInputs } from '../helpers/bad-inputs.js';
import { decodeFloats, encodeFloats } from '../../lib/tensor/dtype.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import {
  flatten,
  greedyCase,
  type GreedyCase,
  randomParents,
  randomProbRow,
  referenceBatch,
  rowsOf,
  runNativeBatch,
  sampleFrom,
  samplingCase,
} from '../helpers/verify-cases.js';
import {
  type Model,
  type Tree,
  type VerifierBug,
  UniformDecider,
  argmaxRef,
  chainParents,
  emittedKey,
  enumerateVerifier,
  enumerateWithSampledDrafts,
  greedyReference,
  inverseCdf,
  jointDiscrepancy,
  maxDepth,
  randomModel,
  rng,
  runSamplingVerifier,
  treeRows,
} from '../helpers/verify-reference.js';

// ---- greedy ----------------------------------------------------------------------

describe('verifyGreedy', () => {
  it.each(['f32', 'f16', 'bf16'] as const)('random ragged batches (%s) equal the obvious reference', async (dtype) => {
    const r = rng(dtype === 'f32' ? 1 : dtype === 'f16' ? 2 : 3);
    for (const [vocab, levels] of [[1, 0], [7, 2], [37, 0], [113, 1], [1000, 0]] as const) {
      const cases: GreedyCase[] = [];
      for (let b = 0; b < 40; b++) cases.push(greedyCase(r, Math.floor(r() * 14), vocab, 0.75, levels));
      // The kernel sees the rows rounded to the dtype; the reference sees the same decoded values,
      // and the draft tokens are chosen (mostly) to match the decoded rows' argmax.
      const encoded = encodeFloats(cases.flatMap((c) => flatten(c.rows)), dtype);
      const decoded = decodeFloats(encoded, dtype);
      let off = 0;
      for (const c of cases) {
        c.rows = rowsOf(decoded.subarray(off), c.rows.length, vocab);
        off += c.rows.length * vocab;
        c.tree.tokens = c.tree.parents.map((p) => (r() < 0.75 ? argmaxRef(c.rows[p + 1]!) : Math.floor(r() * vocab)));
      }
      const indptr = [0];
      for (const c of cases) indptr.push(indptr[indptr.length - 1]! + c.tree.tokens.length);
      const logits = Tensor.from(encoded, { dtype, shape: [indptr[indptr.length - 1]! + cases.length, vocab] });
      const got = await verifyGreedyBatch(
        indptr,
        cases.flatMap((c) => c.tree.tokens),
        cases.flatMap((c) => c.tree.parents),
        logits,
      );
      const want = cases.map((c) => greedyReference(c.tree, c.rows));
      expect(got).toEqual(want);
      // The cases are not trivial: some accept several nodes, some none.
      if (vocab > 1) {
        expect(want.some((w) => w.acceptedNodes.length >= 3)).toBe(true);
        expect(want.some((w) => w.acceptedNodes.length === 0)).toBe(true);
      }
    }
  });

  it('chain: full acceptance emits the bonus argmax; no acceptance emits the correction', async () => {
    const r = rng(11);
    const vocab = 17;
    const n = 5;
    const rows = Array.from({ length: n + 1 }, () => Array.from({ length: vocab }, () => Math.fround(r())));
    const argmaxes = rows.map(argmaxRef);
    const logits = Float32Array.from(flatten(rows));
    const full = await verifyGreedy(argmaxes.slice(0, n), chainParents(n), logits);
    expect(full).toEqual({ acceptedNodes: [0, 1, 2, 3, 4], nextToken: argmaxes[n] });
    const wrong = argmaxes.slice(0, n).map((t) => (t + 1) % vocab);
    expect(await verifyGreedy(wrong, chainParents(n), logits)).toEqual({ acceptedNodes: [], nextToken: argmaxes[0] });
    const partial = [argmaxes[0]!, argmaxes[1]!, (argmaxes[2]! + 1) % vocab, argmaxes[3]!, argmaxes[4]!];
    expect(await verifyGreedy(partial, chainParents(n), logits)).toEqual({ acceptedNodes: [0, 1], nextToken: argmaxes[2] });
  });

  it('N = 1 and N = 0', async () => {
    const logits = Float32Array.of(0, 2, 1, /* node 0 */ 5, 0, 0);
    expect(await verifyGreedy([1], [-1], logits)).toEqual({ acceptedNodes: [0], nextToken: 0 });
    expect(await verifyGreedy([2], [-1], logits)).toEqual({ acceptedNodes: [], nextToken: 1 });
    expect(await verifyGreedy([], [], Float32Array.of(0, 2, 1))).toEqual({ acceptedNodes: [], nextToken: 1 });
  });

  it('ties go to the lowest token id; NaN counts as -inf; an all-NaN row gives -1 (no token)', async () => {
    const rows = Float32Array.of(1, 5, 5, 2, /* node 0 */ NaN, 3, NaN, 3, /* node 1 */ NaN, NaN, NaN, NaN);
    expect(await verifyGreedy([2, 1], [-1, 0], rows)).toEqual({ acceptedNodes: [], nextToken: 1 });
    expect(await verifyGreedy([1, 1], [-1, 0], rows)).toEqual({ acceptedNodes: [0, 1], nextToken: -1 });
    expect(await verifyGreedy([1, 3], [-1, 0], rows)).toEqual({ acceptedNodes: [0], nextToken: 1 });
  });

  it('siblings with the same token: the longest path wins, then the lowest index', async () => {
    // root argmax 0; nodes 0 and 1 both carry 0; only node 1 has an accepted child (node 2).
    const v = 3;
    const row = (t: number) => Array.from({ length: v }, (_, y) => (y === t ? 1 : 0));
    const rows = [row(0), row(2), row(1), row(2)];
    const logits = Float32Array.from(rows.flat());
    expect(await verifyGreedy([0, 0, 1], [-1, -1, 1], logits)).toEqual({ acceptedNodes: [1, 2], nextToken: 2 });
    // Same depth: the lowest index.
    expect(await verifyGreedy([0, 0, 0], [-1, -1, 1], logits)).toEqual({ acceptedNodes: [0], nextToken: 2 });
    expect(greedyReference({ tokens: [0, 0, 1], parents: [-1, -1, 1] }, rows)).toEqual({ acceptedNodes: [1, 2], nextToken: 2 });
  });

  it('the tensor path (f16 on the CPU) and the Float32Array path agree', async () => {
    const r = rng(5);
    const c = greedyCase(r, 9, 50, 0.8);
    const f32 = Float32Array.from(flatten(c.rows));
    const t = Tensor.from(f32, { shape: [10, 50] });
    expect(await verifyGreedy(c.tree.tokens, c.tree.parents, t)).toEqual(await verifyGreedy(c.tree.tokens, c.tree.parents, f32));
    expect(await verifyGreedy(c.tree.tokens, c.tree.parents, f32)).toEqual(greedyReference(c.tree, c.rows));
  });
});

// ---- sampling: exact enumeration -------------------------------------------------

const TOL = 1e-12;

function checkSampledDrafts(parents: number[], vocab: number, target: Model, draft: Model, bug: VerifierBug = 'none'): number {
  const outputs = enumerateWithSampledDrafts(parents, vocab, target, draft, bug);
  return jointDiscrepancy(outputs, target, vocab, maxDepth(parents) + 1).maxDiff;
}

function checkFixedTokens(tree: Tree, vocab: number, target: Model, draft: Model | null, bug: VerifierBug = 'none'): number {
  const t = treeRows(target, tree);
  const d = draft ? treeRows(draft, tree) : null;
  const outputs = enumerateVerifier((dec) => emittedKey(tree, runSamplingVerifier(tree, t, d, dec, bug)));
  return jointDiscrepancy(outputs, target, vocab, maxDepth(tree.parents) + 1).maxDiff;
}

describe('verifySampling is lossless (exact enumeration, float64)', () => {
  const sampledShapes: Array<[string, number[], number]> = [
    ['chain of 3', chainParents(3), 4],
    ['chain of 2, vocab 5', chainParents(2), 5],
    ['two i.i.d. root children, each with a child', [-1, -1, 0, 1], 4],
    ['three root children, depth 3', [-1, -1, -1, 0, 0, 3], 4],
    ['vocab 5, depth 3', [-1, -1, 0, 2, 1], 5],
  ];

  it.each(sampledShapes)('sampled drafts (%s): the joint distribution equals the target within 1e-12', (_name, parents, vocab) => {
    for (const seed of [1, 2, 3]) {
      const target = randomModel(vocab, 100 + seed);
      const draft = randomModel(vocab, 200 + seed);
      expect(checkSampledDrafts(parents, vocab, target, draft)).toBeLessThan(TOL);
    }
  });

  it('sampled drafts equal to the target are accepted whole and stay lossless', () => {
    const target = randomModel(4, 7);
    expect(checkSampledDrafts([-1, -1, 0], 4, target, target)).toBeLessThan(TOL);
  });

  const fixedTrees: Array<[string, Tree, number]> = [
    ['chain', { tokens: [1, 3, 0], parents: chainParents(3) }, 4],
    ['top-3 siblings with children', { tokens: [2, 0, 4, 1, 1, 3], parents: [-1, -1, -1, 0, 0, 3] }, 5],
    ['duplicate siblings', { tokens: [1, 1, 0, 2], parents: [-1, -1, 0, 1] }, 4],
    ['every token as a root child', { tokens: [0, 1, 2, 3, 2], parents: [-1, -1, -1, -1, 2] }, 4],
  ];

  it.each(fixedTrees)('deterministic drafts, draftProbs null (%s): lossless within 1e-12', (_name, tree, vocab) => {
    for (const seed of [1, 2, 3]) expect(checkFixedTokens(tree, vocab, randomModel(vocab, 300 + seed), null)).toBeLessThan(TOL);
  });

  it('deterministic drafts over many random token assignments: lossless within 1e-12', () => {
    const r = rng(77);
    for (let k = 0; k < 30; k++) {
      const vocab = 3 + Math.floor(r() * 3);
      const parents = randomParents(r, 1 + Math.floor(r() * 5));
      if (maxDepth(parents) > 3) continue;
      const tree = { tokens: parents.map(() => Math.floor(r() * vocab)), parents };
      expect(checkFixedTokens(tree, vocab, randomModel(vocab, 400 + k), null)).toBeLessThan(TOL);
    }
  });

  it('vocab 1 is trivially lossless', () => {
    expect(checkSampledDrafts(chainParents(2), 1, randomModel(1, 1), randomModel(1, 2))).toBeLessThan(TOL);
  });

  // Negative controls: the same test applied to wrong verifiers must fail.
  const controls: Array<[string, VerifierBug, 'sampled' | 'fixed', number[] | Tree, number]> = [
    ['always accept (chain, sampled drafts)', 'always-accept', 'sampled', chainParents(2), 4],
    ['always accept (tree, deterministic)', 'always-accept', 'fixed', { tokens: [2, 0, 1], parents: [-1, -1, 0] }, 4],
    ['bonus drawn from q (chain, sampled drafts)', 'bonus-from-q', 'sampled', chainParents(2), 4],
    ['residual not renormalised (tree, sampled drafts)', 'residual-not-normalised', 'sampled', [-1, -1, -1], 4],
    ['residual not renormalised (tree, deterministic)', 'residual-not-normalised', 'fixed', { tokens: [2, 0, 1], parents: [-1, -1, -1] }, 4],
    ['correction from p, not the residual (chain, sampled drafts)', 'no-residual', 'sampled', chainParents(2), 4],
  ];

  it.each(controls)('NEGATIVE CONTROL %s: the discrepancy exceeds 1e-3', (name, bug, kind, shape, vocab) => {
    const target = randomModel(vocab, 501);
    const draft = randomModel(vocab, 502);
    const diff =
      kind === 'sampled'
        ? checkSampledDrafts(shape as number[], vocab, target, draft, bug)
        : checkFixedTokens(shape as Tree, vocab, target, bug === 'bonus-from-q' ? draft : null, bug);
    console.log(`negative control "${name}": max |P_verifier - P_target| = ${diff.toExponential(3)}`);
    expect(diff).toBeGreaterThan(1e-3);
    // The correct verifier passes on the same inputs.
    const ok =
      kind === 'sampled'
        ? checkSampledDrafts(shape as number[], vocab, target, draft)
        : checkFixedTokens(shape as Tree, vocab, target, null);
    expect(ok).toBeLessThan(TOL);
  });
});

// ---- sampling: native against the reference ---------------------------------------

describe('verifySampling: native kernel equals the reference token for token', () => {
  it.each([
    { name: 'sampled drafts', withDraft: true, vocab: 5 },
    { name: 'sampled drafts', withDraft: true, vocab: 37 },
    { name: 'sampled drafts, several sum chunks', withDraft: true, vocab: 700 },
    { name: 'deterministic drafts', withDraft: false, vocab: 5 },
    { name: 'deterministic drafts', withDraft: false, vocab: 113 },
    { name: 'deterministic drafts, several sum chunks', withDraft: false, vocab: 1000 },
  ])('$name (vocab $vocab), random trees and uniforms', async ({ withDraft, vocab }) => {
    const r = rng(vocab * 7 + (withDraft ? 1 : 0));
    const cases = Array.from({ length: vocab > 200 ? 150 : 300 }, () => samplingCase(r, Math.floor(r() * 9), vocab, withDraft));
    const rows = cases.reduce((a, c) => a + c.tree.tokens.length + 1, 0);
    const uniforms = Float64Array.from({ length: rows }, () => r());
    const got = await runNativeBatch(cases, vocab, withDraft, uniforms);
    const want = referenceBatch(cases, withDraft, uniforms);
    expect(got).toEqual(want);
    // Not trivial: paths of several nodes, rejections at the root, and residual samples all occur.
    expect(want.some((w) => w.acceptedNodes.length >= 2)).toBe(true);
    expect(want.some((w) => w.acceptedNodes.length === 0)).toBe(true);
  });

  it('one fixed tree under 2000 uniform vectors (f64 and f32 uniforms)', async () => {
    const r = rng(4242);
    for (const withDraft of [true, false]) {
      const base = samplingCase(r, 7, 6, withDraft);
      base.tree = { tokens: [...base.tree.tokens], parents: [-1, -1, 0, 0, 1, 2, 5] };
      base.tree.tokens = base.tree.parents.map((p) => (withDraft ? sampleFrom(r, base.draft[p + 1]!) : Math.floor(r() * 6)));
      const cases = Array.from({ length: 2000 }, () => base);
      for (const f64 of [true, false]) {
        const values = Array.from({ length: 2000 * 8 }, () => r());
        const uniforms = f64 ? Float64Array.from(values) : Float32Array.from(values);
        const got = await runNativeBatch(cases, 6, withDraft, uniforms);
        expect(got).toEqual(referenceBatch(cases, withDraft, uniforms));
        // Many distinct outcomes were exercised: paths of 0, 1, 2 and more nodes.
        expect(new Set(got.map((g) => g.acceptedNodes.length)).size).toBeGreaterThanOrEqual(3);
        expect(new Set(got.map((g) => JSON.stringify(g))).size).toBeGreaterThanOrEqual(8);
      }
    }
  });

  it('edge uniforms: 0 accepts whatever has p(x) > 0; the largest double below 1 rejects unless p(x) >= q(x)', async () => {
    const r = rng(9);
    const c = samplingCase(r, 6, 8, true);
    for (const u of [0, 1 - 2 ** -53, 0.5]) {
      const uniforms = new Float64Array(7).fill(u);
      expect(await runNativeBatch([c], 8, true, uniforms)).toEqual(referenceBatch([c], true, uniforms));
    }
  });

  it('the final sample is the inverse CDF: a uniform grid lands on each token with frequency p(y)', async () => {
    const vocab = 300; // two sum chunks
    const r = rng(31);
    const p = randomProbRow(r, vocab, 0.5);
    const G = 3000;
    const target = new Float32Array(G * vocab);
    for (let g = 0; g < G; g++) target.set(p, g * vocab);
    const uniforms = Float64Array.from({ length: G }, (_, g) => (g + 0.5) / G);
    const got = await verifySamplingBatch(
      Int32Array.from({ length: G + 1 }, () => 0),
      [],
      [],
      Tensor.from(target, { shape: [G, vocab] }),
      null,
      uniforms,
    );
    const counts = new Float64Array(vocab);
    for (const g of got) counts[g.nextToken]! += 1;
    for (let y = 0; y < vocab; y++) {
      // The grid resolves p to 1/G; rows sum to 1 only to f32 precision (the sampler scales by the sum).
      expect(Math.abs(counts[y]! / G - p[y]!)).toBeLessThanOrEqual(1 / G + 1e-6);
      if (p[y] === 0) expect(counts[y]).toBe(0);
    }
    for (let g = 0; g < G; g++) expect(got[g]!.nextToken).toBe(inverseCdf(Array.from(p), uniforms[g]!));
  });

  it('a vanished residual falls back to the draft-free target row', async () => {
    // Deterministic: p = [0.9996, 0, 0] is a valid row (sum within 1e-3); rejecting token 0 (u = 0.9999)
    // leaves no mass, so the node's own target row is used for the final sample.
    const rowsA = Float32Array.of(0.9996, 0, 0, /* node 0 */ 0, 1, 0);
    expect(await verifySampling([0], [-1], rowsA, null, [0.3, 0.9999])).toEqual({ acceptedNodes: [], nextToken: 0 });
    // Sampled: q = p + extra mass everywhere p has it: max(0, p - q) = 0.
    const target = Float32Array.of(0.9996, 0, 0, /* node 0 */ 0, 0, 1);
    const draft = Float32Array.of(1, 0, 0, /* node 0 */ 0, 0, 1);
    expect(await verifySampling([0], [-1], target, draft, [0.5, 0.99999])).toEqual({ acceptedNodes: [], nextToken: 0 });
    expect(await verifySampling([0], [-1], target, draft, [0.5, 0.2])).toEqual({ acceptedNodes: [0], nextToken: 2 });
    for (const [t, d, u] of [[rowsA, null, [0.3, 0.9999]], [target, draft, [0.5, 0.99999]]] as const) {
      const tree = { tokens: [0], parents: [-1] };
      const rows = (f: Float32Array) => [Array.from(f.subarray(0, 3)), Array.from(f.subarray(3))];
      expect(runSamplingVerifier(tree, rows(t), d ? rows(d) : null, new UniformDecider(u))).toEqual(
        await verifySampling([0], [-1], t, d, u),
      );
    }
  });

  it('vocab 1: everything is accepted and the bonus is token 0', async () => {
    const ones = new Float32Array(4).fill(1);
    expect(await verifySampling([0, 0, 0], chainParents(3), ones, ones, [0.1, 0.99, 0.5, 0.7])).toEqual({
      acceptedNodes: [0, 1, 2],
      nextToken: 0,
    });
    expect(await verifySampling([0, 0, 0], chainParents(3), ones, null, [0.1, 0.99, 0.5, 0.7])).toEqual({
      acceptedNodes: [0, 1, 2],
      nextToken: 0,
    });
  });
});

// ---- bad inputs --------------------------------------------------------------------


const probs = (rows: number, vocab: number) => new Float32Array(rows * vocab).fill(1 / vocab);
const disposed = (() => {
  const t = Tensor.from(probs(2, 4), { shape: [2, 4] });
  t.dispose();
  return t;
})();

const tsCases: BadInputCase[] = [
  ['tokens not an array', () => verifyGreedy(5 as never, [-1], probs(2, 4)), /treeTokens must be an Int32Array or an array of integers; received 5/],
  ['fractional token', () => verifyGreedy([1.5], [-1], probs(2, 4)), /treeTokens\[0\] must be an int32 integer; received 1\.5/],
  ['mismatched lengths', () => verifyGreedy([1, 2], [-1], probs(3, 4)), /parents must be an array of 2 entries \(the length of treeTokens\); received \[-1\]/],
  ['parents not topological', () => verifyGreedy([1, 2], [1, -1], probs(3, 4)), /parents\[0\] must be -1 or a node index in \[0, 0\) \(parents are topologically ordered\); received 1/],
  ['parent index out of range', () => verifyGreedy([1, 2], [-1, 7], probs(3, 4)), /parents\[1\] must be -1 or a node index in \[0, 1\).*received 7/],
  ['parent below -1', () => verifyGreedy([1], [-2], probs(2, 4)), /parents\[0\] must be -1 or a node index in \[0, 0\).*received -2/],
  ['token out of vocab', () => verifyGreedy([4], [-1], probs(2, 4)), /treeTokens\[0\] must be a token id in \[0, 4\) \(the vocab of the target rows\); received 4/],
  ['negative token', () => verifySampling([-1], [-1], probs(2, 4), null, [0, 0]), /treeTokens\[0\] must be a token id in \[0, 4\).*received -1/],
  ['logits rows mismatch', () => verifyGreedy([1], [-1], Tensor.from(probs(3, 4), { shape: [3, 4] })), /targetLogits\.shape must be \[N\+B = 2, vocab >= 1\]; received "\[3, 4\]"/],
  ['logits length not a multiple', () => verifyGreedy([1], [-1], new Float32Array(7)), /targetLogits must be a Float32Array of \(N\+B = 2\) \* vocab values/],
  ['logits of the wrong type', () => verifyGreedy([1], [-1], new Float64Array(8) as never), /targetLogits must be a Tensor or a Float32Array; received Float64Array\(8\)/],
  ['int logits', () => verifyGreedy([1], [-1], Tensor.from(new Int32Array(8), { shape: [2, 4] })), /targetLogits\.dtype must be one of f32, f16, bf16; received "int32"/],
  ['f16 probabilities', () => verifySampling([1], [-1], Tensor.from(new Uint16Array(8), { dtype: 'f16', shape: [2, 4] }), null, [0, 0]), /targetProbs\.dtype must be one of f32; received "f16"/],
  ['disposed logits', () => verifyGreedy([1], [-1], disposed), /targetLogits \(a f32 tensor of shape \[2, 4\] on cpu\) was used after dispose\(\)/],
  ['disposed draft', () => verifySampling([1], [-1], probs(2, 4), disposed, [0, 0]), /draftProbs \(a f32 tensor.*\) was used after dispose\(\)/],
  ['draft vocab mismatch', () => verifySampling([1], [-1], probs(2, 4), probs(2, 5), [0, 0]), /draftProbs must be rows of the targetProbs vocab 4; received "rows of 5"/],
  ['draft undefined', () => verifySampling([1], [-1], probs(2, 4), undefined as never, [0, 0]), /draftProbs must be a Tensor, a Float32Array or null; received undefined/],
  ['uniforms too short', () => verifySampling([1], [-1], probs(2, 4), null, [0.5]), /uniforms must be 2 values \(N\+B: one per target row\); received \[0\.5\]/],
  ['uniform equal to 1', () => verifySampling([1], [-1], probs(2, 4), null, [0.5, 1]), /uniforms\[1\] must be a number in \[0, 1\); received 1/],
  ['NaN uniform', () => verifySampling([1], [-1], probs(2, 4), null, Float64Array.of(NaN, 0)), /uniforms\[0\] must be a number in \[0, 1\); received NaN/],
  ['uniforms of the wrong type', () => verifySampling([1], [-1], probs(2, 4), null, new Int32Array(2) as never), /uniforms must be a Float64Array, Float32Array or array of numbers; received Int32Array \[0, 0\]/],
  ['indptr not starting at 0', () => verifyGreedyBatch([1, 2], [0, 0], [-1, -1], probs(3, 4)), /treeIndptr\[0\] must be 0; received 1/],
  ['indptr decreasing', () => verifyGreedyBatch([0, 2, 1, 2], [0, 0], [-1, -1], probs(5, 4)), /treeIndptr\[2\] must be >= treeIndptr\[1\] = 2 \(non-decreasing\); received 1/],
  ['indptr total mismatch', () => verifyGreedyBatch([0, 1], [0, 0], [-1, -1], probs(3, 4)), /treeIndptr\[1\] must be the number of nodes 2; received 1/],
  ['parents local to their sequence', () => verifyGreedyBatch([0, 1, 2], [0, 0], [-1, 0], probs(4, 4)), /parents\[1\] must be -1 or a node index in \[0, 0\) \(parents are topologically ordered and local to their sequence\); received 0/],
  ['negative probability (native check)', () => verifySampling([1], [-1], Float32Array.of(-0.5, 1.5, 0, 0, 0.25, 0.25, 0.25, 0.25), null, [0, 0]), /verifySampling: targetProbs row 0 \(sequence 0\) must hold finite probabilities >= 0/],
  ['probabilities not summing to 1', () => verifySampling([1], [-1], Float32Array.of(0.5, 0.4, 0, 0, 0.25, 0.25, 0.25, 0.25), null, [0, 0]), /verifySampling: targetProbs row 0 \(sequence 0\) must sum to 1 \(within 1e-3\); received 0\.9/],
  ['draft row with NaN', () => verifySampling([1], [-1], probs(2, 4), Float32Array.of(NaN, 1, 0, 0, 0.25, 0.25, 0.25, 0.25), [0, 0]), /verifySampling: draftProbs row 0 \(sequence 0\) must hold finite probabilities >= 0/],
];

describeBadInputs('bad inputs to verifyGreedy / verifySampling', tsCases);

const addon = native();
const i32 = (...v: number[]) => ({ data: Int32Array.from(v), dtype: 'int32', shape: [v.length] });
const f32 = (rows: number, vocab: number) => ({ data: probs(rows, vocab), dtype: 'f32', shape: [rows, vocab] });
const outs = (b: number, n: number) => [i32(...new Array<number>(b).fill(0)), i32(...new Array<number>(n).fill(0)), i32(...new Array<number>(b).fill(0))];

const nativeCases: BadInputCase[] = [
  ['no arguments', () => (addon.verifyGreedy as unknown as () => unknown)(), /treeIndptr must be a tensor descriptor/],
  ['f32 tree', () => addon.verifyGreedy({ data: new Float32Array(2), dtype: 'f32', shape: [2] } as never, i32(0) as never, i32(-1) as never, f32(2, 4) as never, ...(outs(1, 1) as [never, never, never])), /treeIndptr must be an int32 tensor; received f32/],
  ['parents length', () => addon.verifyGreedy(i32(0, 1) as never, i32(0) as never, i32(-1, -1) as never, f32(2, 4) as never, ...(outs(1, 1) as [never, never, never])), /parents must have 1 elements; received 2/],
  ['parents not topological', () => addon.verifyGreedy(i32(0, 2) as never, i32(0, 0) as never, i32(1, -1) as never, f32(3, 4) as never, ...(outs(1, 2) as [never, never, never])), /verifyGreedy: parents\[0\] must be -1 or a node index in \[0, 0\).*received 1/],
  ['token out of vocab', () => addon.verifyGreedy(i32(0, 1) as never, i32(9) as never, i32(-1) as never, f32(2, 4) as never, ...(outs(1, 1) as [never, never, never])), /verifyGreedy: treeTokens\[0\] must be a token id in \[0, 4\); received 9/],
  ['logits rows', () => addon.verifyGreedy(i32(0, 1) as never, i32(0) as never, i32(-1) as never, f32(3, 4) as never, ...(outs(1, 1) as [never, never, never])), /logits must have N\+B = 2 rows; received 3/],
  ['output too small', () => addon.verifyGreedy(i32(0, 1) as never, i32(0) as never, i32(-1) as never, f32(2, 4) as never, ...(outs(1, 0) as [never, never, never])), /acceptedNodes must have 1 elements; received 0/],
  ['indptr total', () => addon.verifyGreedy(i32(0, 3) as never, i32(0) as never, i32(-1) as never, f32(2, 4) as never, ...(outs(1, 1) as [never, never, never])), /logits must have N\+B = 2 rows|treeIndptr\[1\] must equal the number of nodes 1; received 3/],
  ['uniforms not a typed array', () => addon.verifySampling(i32(0, 1) as never, i32(0) as never, i32(-1) as never, f32(2, 4) as never, null, [0, 0] as never, ...(outs(1, 1) as [never, never, never])), /uniforms must be a Float64Array or Float32Array/],
  ['uniform out of range', () => addon.verifySampling(i32(0, 1) as never, i32(0) as never, i32(-1) as never, f32(2, 4) as never, null, Float64Array.of(0, 2), ...(outs(1, 1) as [never, never, never])), /verifySampling: uniforms\[1\] must be in \[0, 1\); received 2/],
  ['draft shape', () => addon.verifySampling(i32(0, 1) as never, i32(0) as never, i32(-1) as never, f32(2, 4) as never, f32(2, 3) as never, Float64Array.of(0, 0), ...(outs(1, 1) as [never, never, never])), /draftProbs must have the vocab of targetProbs \(4\); received 3/],
];

describeNativeBadInputs('bad inputs sent straight to the native verifiers', nativeCases);
