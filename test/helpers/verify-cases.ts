/**
 * Random test cases for the verify kernels (trees, logits, probability rows)
 * and batch runners shared by the CPU and GPU suites.
 */
import { verifySamplingBatch } from '../../lib/kernels/verify.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { type Tree, UniformDecider, argmaxRef, runSamplingVerifier } from './verify-reference.js';

export function randomParents(r: () => number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.floor(r() * (i + 1)) - 1);
}

export function rowsOf(flat: ArrayLike<number>, rows: number, vocab: number): number[][] {
  return Array.from({ length: rows }, (_, i) => Array.from({ length: vocab }, (_, y) => flat[i * vocab + y]!));
}

/** A random probability row in f32 (normalised in double, then rounded), with about `zeros` of its entries 0. */
export function randomProbRow(r: () => number, vocab: number, zeros = 0.2, peak = 1): Float32Array {
  const w = new Float64Array(vocab);
  let s = 0;
  for (let y = 0; y < vocab; y++) {
    w[y] = r() < zeros ? 0 : r() ** peak;
    s += w[y]!;
  }
  if (s === 0) {
    w[Math.floor(r() * vocab)] = 1;
    s = 1;
  }
  return Float32Array.from(w, (x) => x / s);
}

export function sampleFrom(r: () => number, p: ArrayLike<number>): number {
  let t = r();
  for (let y = 0; y < p.length; y++) {
    t -= p[y]!;
    if (t < 0 && p[y]! > 0) return y;
  }
  for (let y = p.length - 1; y >= 0; y--) if (p[y]! > 0) return y;
  return 0;
}

export interface GreedyCase {
  tree: Tree;
  rows: number[][]; // decoded values
}

/** Random tree whose tokens match the parent's argmax with probability pMatch; `levels` > 0 quantises logits to force ties. */
export function greedyCase(r: () => number, n: number, vocab: number, pMatch: number, levels = 0): GreedyCase {
  const rows = Array.from({ length: n + 1 }, () =>
    Array.from({ length: vocab }, () => {
      const x = r() * 6 - 3;
      return levels > 0 ? Math.round(x * levels) / levels : Math.fround(x);
    }),
  );
  const parents = randomParents(r, n);
  const tokens = parents.map((p) => (r() < pMatch ? argmaxRef(rows[p + 1]!) : Math.floor(r() * vocab)));
  return { tree: { tokens, parents }, rows };
}

export function flatten(rows: number[][]): number[] {
  return rows.flat();
}

export interface SamplingCase {
  tree: Tree;
  target: Float32Array[];
  draft: Float32Array[];
}

export function samplingCase(r: () => number, n: number, vocab: number, sampled: boolean): SamplingCase {
  const parents = randomParents(r, n);
  // Peaked rows (a few likely tokens, like an LLM's) so that paths get accepted even for large vocabularies.
  const peak = Math.max(3, vocab / 3);
  const target = Array.from({ length: n + 1 }, () => randomProbRow(r, vocab, 0.2, peak));
  // Drafts resemble the target (so paths get accepted) but differ.
  const draft = target.map((row) => {
    const noisy = Float64Array.from(row, (x) => (r() < 0.1 ? 0 : x + 0.3 * r() * (r() < 0.5 ? x : 1 / vocab)));
    let s = 0;
    for (const x of noisy) s += x;
    return s > 0 ? Float32Array.from(noisy, (x) => x / s) : randomProbRow(r, vocab);
  });
  // Sampled drafts draw each child from its parent's draft row; deterministic drafts (top-k-like)
  // mostly take likely tokens too, sometimes arbitrary ones.
  const tokens = parents.map((p) => (sampled || r() < 0.7 ? sampleFrom(r, draft[p + 1]!) : Math.floor(r() * vocab)));
  return { tree: { tokens, parents }, target, draft };
}

/** Runs the native sampling verifier over a batch of cases on `device` ('cpu' or a CUDA device). */
export async function runNativeBatch(
  cases: SamplingCase[],
  vocab: number,
  withDraft: boolean,
  uniforms: Float64Array | Float32Array,
  device: 'cpu' | `cuda:${number}` = 'cpu',
) {
  const indptr = [0];
  for (const c of cases) indptr.push(indptr[indptr.length - 1]! + c.tree.tokens.length);
  const rows = indptr[indptr.length - 1]! + cases.length;
  const target = new Float32Array(rows * vocab);
  const draft = new Float32Array(rows * vocab);
  let off = 0;
  for (const c of cases) {
    for (let i = 0; i < c.target.length; i++) {
      target.set(c.target[i]!, off);
      draft.set(c.draft[i]!, off);
      off += vocab;
    }
  }
  const targetT = await Tensor.from(target, { shape: [rows, vocab] }).to(device);
  const draftT = withDraft ? await Tensor.from(draft, { shape: [rows, vocab] }).to(device) : null;
  try {
    return await verifySamplingBatch(
      indptr,
      cases.flatMap((c) => c.tree.tokens),
      cases.flatMap((c) => c.tree.parents),
      targetT,
      draftT,
      uniforms,
    );
  } finally {
    if (device !== 'cpu') {
      targetT.dispose();
      draftT?.dispose();
    }
  }
}

/** The reference verifier over the same batch and uniforms. */
export function referenceBatch(cases: SamplingCase[], withDraft: boolean, uniforms: ArrayLike<number>) {
  let base = 0;
  return cases.map((c) => {
    const u = Array.from({ length: c.tree.tokens.length + 1 }, (_, i) => uniforms[base + i]!);
    base += c.tree.tokens.length + 1;
    return runSamplingVerifier(c.tree, c.target, withDraft ? c.draft : null, new UniformDecider(u));
  });
}

