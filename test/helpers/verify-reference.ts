/**
 * Slow, obvious float64 references for tree verification and KV commit
 * (csrc/common/verify.h, csrc/common/kv_commit.h), and the exact-enumeration
 * machinery that proves the sampling verifier lossless.
 *
 * The sampling verifier is written once (runSamplingVerifier) against a
 * Decider that makes its random choices:
 *   - UniformDecider replays the kernels' uniforms convention, so the native
 *     kernels must return the same tokens token for token;
 *   - enumerateVerifier drives it through EVERY sequence of choices, each
 *     weighted by its exact probability (acceptance min(1, p/q), samples
 *     p(y)/sum p), giving the verifier's output distribution analytically.
 * So the enumeration proves the very code whose decisions the kernels match.
 * `bug` switches in deliberately wrong verifiers for negative controls.
 */

// ---- trees and models ------------------------------------------------------

export interface Tree {
  tokens: number[];
  /** Local parent of each node, -1 for a child of the root; parents[i] < i. */
  parents: number[];
}

export function chainParents(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i - 1);
}

export function depthOf(parents: readonly number[], i: number): number {
  let d = 0;
  for (let c = i; c >= 0; c = parents[c]!) d++;
  return d;
}

export function maxDepth(parents: readonly number[]): number {
  let m = 0;
  for (let i = 0; i < parents.length; i++) m = Math.max(m, depthOf(parents, i));
  return m;
}

/** Root-to-node path of node i (node indices). */
export function pathTo(parents: readonly number[], i: number): number[] {
  const path: number[] = [];
  for (let c = i; c >= 0; c = parents[c]!) path.unshift(c);
  return path;
}

/** A deterministic PRNG (mulberry32) returning numbers in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hashString(s: string, seed: number): number {
  let h = (2166136261 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** A language model over a small vocabulary: context (tokens after the committed prefix) -> distribution. */
export type Model = (context: readonly number[]) => Float64Array;

/**
 * A pseudo-random model: each context gets its own random distribution,
 * with roughly `zeroFraction` of the entries set to 0 (at least one kept), so
 * supports differ between contexts and between models.
 */
export function randomModel(vocab: number, seed: number, zeroFraction = 0.25): Model {
  const cache = new Map<string, Float64Array>();
  return (context) => {
    const key = context.join(',');
    let p = cache.get(key);
    if (!p) {
      const r = rng(hashString(key, seed));
      p = new Float64Array(vocab);
      let sum = 0;
      for (let y = 0; y < vocab; y++) {
        const w = r() < zeroFraction ? 0 : 0.05 + r();
        p[y] = w;
        sum += w;
      }
      if (sum === 0) {
        p[Math.floor(r() * vocab)] = 1;
        sum = 1;
      }
      for (let y = 0; y < vocab; y++) p[y]! /= sum;
      cache.set(key, p);
    }
    return p;
  };
}

/** The rows a model gives a tree: row 0 at the root, row i+1 at node i (context = the path's tokens). */
export function treeRows(model: Model, tree: Tree): Float64Array[] {
  const rows = [model([])];
  for (let i = 0; i < tree.tokens.length; i++) rows.push(model(pathTo(tree.parents, i).map((c) => tree.tokens[c]!)));
  return rows;
}

// ---- greedy ------------------------------------------------------------------

/** Argmax with ties to the lowest id; NaN counts as -Infinity; -1 when no value is above -Infinity. */
export function argmaxRef(row: ArrayLike<number>): number {
  let best = -1;
  let bestV = -Infinity;
  for (let y = 0; y < row.length; y++) {
    const v = Number.isNaN(row[y]!) ? -Infinity : row[y]!;
    if (v > bestV) {
      bestV = v;
      best = y;
    }
  }
  return best;
}

export interface VerifyOutcome {
  acceptedNodes: number[];
  nextToken: number;
}

/**
 * Greedy reference, the obvious way: mark every accepted node, list the
 * root-to-node path of each, keep the longest (ties: the lexicographically
 * smallest list of node indices).
 */
export function greedyReference(tree: Tree, rows: readonly ArrayLike<number>[]): VerifyOutcome {
  const n = tree.tokens.length;
  const accepted: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const p = tree.parents[i]!;
    accepted.push((p < 0 || accepted[p]!) && tree.tokens[i] === argmaxRef(rows[p + 1]!));
  }
  let best: number[] = [];
  for (let i = 0; i < n; i++) {
    if (!accepted[i]) continue;
    const path = pathTo(tree.parents, i);
    const lexLess = (a: number[], b: number[]) => {
      for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return a[k]! < b[k]!;
      return false;
    };
    if (path.length > best.length || (path.length === best.length && lexLess(path, best))) best = path;
  }
  const last = best.length ? best[best.length - 1]! : -1;
  return { acceptedNodes: best, nextToken: argmaxRef(rows[last + 1]!) };
}

// ---- sampling ----------------------------------------------------------------

/** Chunk length of the kernels' deterministic sums (kVerifySumChunk). */
export const SUM_CHUNK = 256;

function chunkPartials(p: ArrayLike<number>): number[] {
  const partials: number[] = [];
  for (let b = 0; b < p.length; b += SUM_CHUNK) {
    let s = 0;
    for (let y = b; y < Math.min(b + SUM_CHUNK, p.length); y++) s = s + p[y]!;
    partials.push(s);
  }
  return partials;
}

/** ChunkedSum of verify.h: chunk partials left to right, then the partials left to right. */
export function chunkedSum(p: ArrayLike<number>): number {
  let s = 0;
  for (const x of chunkPartials(p)) s = s + x;
  return s;
}

/** Sample(r, u) of verify.h: the inverse CDF over token ids with chunked sums. */
export function inverseCdf(p: ArrayLike<number>, u: number): number {
  const partials = chunkPartials(p);
  let total = 0;
  for (const x of partials) total = total + x;
  const t = u * total;
  let s = 0;
  for (let k = 0; k < partials.length; k++) {
    const next = s + partials[k]!;
    if (t < next) {
      let w = 0;
      for (let y = k * SUM_CHUNK; y < Math.min((k + 1) * SUM_CHUNK, p.length); y++) {
        w = w + p[y]!;
        if (t < s + w) return y;
      }
      break;
    }
    s = next;
  }
  for (let y = p.length - 1; y >= 0; y--) if (p[y]! > 0) return y;
  return -1;
}

/** The random choices of a verifier. */
export interface Decider {
  /** Accept node `node` whose token has probability pX under p and qX under q (null: point-mass q)? */
  accept(pX: number, qX: number | null, node: number): boolean;
  /** Sample a token from weights p (not necessarily normalised). */
  sample(p: Float64Array): number;
}

/** Deliberately wrong verifiers, for negative controls. */
export type VerifierBug =
  | 'none'
  | 'always-accept' // accept every first child without a test
  | 'residual-not-normalised' // p <- max(0, p - q) (or p(x) <- 0) without dividing by the sum
  | 'bonus-from-q' // after accepting a leaf, draw the bonus token from the draft row instead of the target row
  | 'no-residual'; // on rejection keep p unchanged (sample the correction from p instead of the residual)

/**
 * The sampling verifier of verify.h, in float64, for one tree.
 * target[r], draft[r]: local rows (0 = root, 1 + i = node i).
 */
export function runSamplingVerifier(
  tree: Tree,
  target: readonly ArrayLike<number>[],
  draft: readonly ArrayLike<number>[] | null,
  decide: Decider,
  bug: VerifierBug = 'none',
): VerifyOutcome {
  const n = tree.tokens.length;
  let p = Float64Array.from(target[0]!);
  let cur = -1;
  const nodes: number[] = [];
  for (;;) {
    const row = cur + 1;
    const q = draft ? draft[row]! : null;
    let accepted = false;
    for (let c = cur + 1; c < n; c++) {
      if (tree.parents[c] !== cur) continue;
      const x = tree.tokens[c]!;
      const ok = bug === 'always-accept' ? true : decide.accept(p[x]!, q ? q[x]! : null, c);
      if (ok) {
        nodes.push(c);
        cur = c;
        p = Float64Array.from(target[c + 1]!);
        accepted = true;
        break;
      }
      if (bug === 'no-residual') continue;
      if (q) {
        for (let y = 0; y < p.length; y++) p[y] = Math.max(0, p[y]! - q[y]!);
      } else {
        p[x] = 0;
      }
      const z = chunkedSum(p);
      if (bug === 'residual-not-normalised') {
        if (!(z > 0)) p = Float64Array.from(target[row]!);
      } else if (z > 0) {
        for (let y = 0; y < p.length; y++) p[y] = p[y]! / z;
      } else {
        p = Float64Array.from(target[row]!); // the documented fallback: the draft-free distribution
      }
    }
    if (!accepted) break;
  }
  const leaf = !tree.parents.some((par) => par === cur);
  if (bug === 'bonus-from-q' && draft && leaf && nodes.length > 0) p = Float64Array.from(draft[cur + 1]!);
  return { acceptedNodes: nodes, nextToken: decide.sample(p) };
}

/** The kernels' uniforms convention for one sequence (uniforms[0]: final sample; uniforms[1 + i]: node i). */
export class UniformDecider implements Decider {
  constructor(private readonly u: ArrayLike<number>) {}
  accept(pX: number, qX: number | null, node: number): boolean {
    const u = this.u[1 + node]!;
    return qX === null ? u < pX : u * qX < pX;
  }
  sample(p: Float64Array): number {
    return inverseCdf(p, this.u[0]!);
  }
}

/** P(u * qX < pX) for u ~ U[0, 1): the exact acceptance probability of the rule above. */
export function acceptProbability(pX: number, qX: number | null): number {
  if (qX === null) return Math.min(1, Math.max(0, pX));
  if (qX > 0) return Math.min(1, pX / qX);
  return pX > 0 ? 1 : 0;
}

/** The emitted sequence of an outcome as a key: accepted tokens then the next token. */
export function emittedKey(tree: Tree, o: VerifyOutcome): string {
  return [...o.acceptedNodes.map((c) => tree.tokens[c]!), o.nextToken].join(',');
}

/**
 * The exact output distribution of `run` (a verifier calling a Decider):
 * depth-first over every sequence of choices with positive probability,
 * replaying `run` once per leaf of the choice tree. Returns emitted key -> probability.
 */
export function enumerateVerifier(run: (d: Decider) => string): Map<string, number> {
  const out = new Map<string, number>();
  const stack: number[][] = [[]];
  while (stack.length > 0) {
    const script = stack.pop()!;
    let pos = 0;
    let weight = 1;
    const choose = (weights: number[]): number => {
      let choice: number;
      if (pos < script.length) {
        choice = script[pos]!;
      } else {
        const options = weights.map((w, i) => [w, i] as const).filter(([w]) => w > 0);
        if (options.length === 0) throw new Error('enumerateVerifier: a choice with no positive option');
        choice = options[0]![1];
        for (let k = 1; k < options.length; k++) stack.push([...script.slice(0, pos), options[k]![1]]);
        script.push(choice);
      }
      pos++;
      weight *= weights[choice]!;
      return choice;
    };
    const decider: Decider = {
      accept: (pX, qX) => {
        const a = acceptProbability(pX, qX);
        return choose([a, 1 - a]) === 0;
      },
      sample: (p) => {
        const total = chunkedSum(p);
        return choose(Array.from(p, (x) => x / total));
      },
    };
    const key = run(decider);
    out.set(key, (out.get(key) ?? 0) + weight);
  }
  return out;
}

/**
 * The verifier's output distribution with the tree's tokens drawn from the
 * draft model: children i.i.d. (with replacement) from the draft row of
 * their parent. Enumerates every token assignment, weighted by its
 * probability, and mixes the per-assignment output distributions.
 */
export function enumerateWithSampledDrafts(
  parents: readonly number[],
  vocab: number,
  target: Model,
  draft: Model,
  bug: VerifierBug = 'none',
): Map<string, number> {
  const n = parents.length;
  const out = new Map<string, number>();
  const tokens = new Array<number>(n).fill(0);
  const assign = (i: number, weight: number) => {
    if (i === n) {
      const tree: Tree = { tokens: [...tokens], parents: [...parents] };
      const t = treeRows(target, tree);
      const d = treeRows(draft, tree);
      const dist = enumerateVerifier((dec) => emittedKey(tree, runSamplingVerifier(tree, t, d, dec, bug)));
      for (const [k, w] of dist) out.set(k, (out.get(k) ?? 0) + weight * w);
      return;
    }
    const par = parents[i]!;
    const q = draft(par < 0 ? [] : pathTo(parents, par).map((c) => tokens[c]!));
    for (let x = 0; x < vocab; x++) {
      if (q[x]! === 0) continue;
      tokens[i] = x;
      assign(i + 1, weight * q[x]!);
    }
  };
  assign(0, 1);
  return out;
}

/**
 * Losslessness, exactly: complete each emitted sequence s to length L with
 * the target model itself and compare the joint distribution of the first L
 * tokens with the target's, P(z) = prod_j target(z_<j)(z_j), for every z in
 * vocab^L. Returns the largest absolute difference (and the total mass).
 */
export function jointDiscrepancy(outputs: Map<string, number>, target: Model, vocab: number, length: number): { maxDiff: number; total: number } {
  const parsed = [...outputs].map(([k, w]) => [k.split(',').map(Number), w] as const);
  let total = 0;
  for (const [, w] of parsed) total += w;
  let maxDiff = Math.abs(total - 1);
  const z = new Array<number>(length).fill(0);
  const count = vocab ** length;
  for (let idx = 0; idx < count; idx++) {
    let r = idx;
    for (let j = length - 1; j >= 0; j--) {
      z[j] = r % vocab;
      r = Math.floor(r / vocab);
    }
    // prefix probabilities under the target: pre[j] = P(z_<j)... conditional products
    const cond: number[] = [];
    for (let j = 0; j < length; j++) cond.push(target(z.slice(0, j))[z[j]!]!);
    let want = 1;
    for (const c of cond) want *= c;
    let got = 0;
    for (const [s, w] of parsed) {
      if (s.length > length) throw new Error(`an emitted sequence longer than ${length}`);
      let match = true;
      for (let j = 0; j < s.length; j++) if (s[j] !== z[j]) match = false;
      if (!match) continue;
      let tail = w;
      for (let j = s.length; j < length; j++) tail *= cond[j]!;
      got += tail;
    }
    maxDiff = Math.max(maxDiff, Math.abs(got - want));
  }
  return { maxDiff, total };
}

// ---- KV commit -----------------------------------------------------------------

/**
 * The committed cache built the obvious way: the prefix rows, then the
 * accepted nodes' rows written one by one in order (row = rowElems values).
 */
export function committedRows<T extends ArrayLike<number>>(
  region: T,
  rowElems: number,
  prefixLen: number,
  acceptedNodes: readonly number[],
): number[] {
  const rows: number[] = [];
  for (let r = 0; r < prefixLen; r++) for (let e = 0; e < rowElems; e++) rows.push(region[r * rowElems + e]!);
  for (const c of acceptedNodes) for (let e = 0; e < rowElems; e++) rows.push(region[(prefixLen + c) * rowElems + e]!);
  return rows;
}
