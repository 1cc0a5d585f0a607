import type { SeqState } from './controller-types.js';

/**
 * The goodput controller's search (lib/decode/controller.ts): for a batch with per-sequence
 * tables of expected tokens, the draft sizes maximising
 *   goodput = sum_s E_s[tokens](k_s) / (draft(max_s k_s) + verify(sum_s (k_s + 1)))
 * first over one size common to the batch, then over each sequence's size given the others'
 * (coordinate search, to a local optimum; incremental: the token and row sums change by one
 * sequence's terms).
 */
export function searchSizes(candidates: readonly number[], expected: number[][], draftCost: (k: number) => number, verifyCost: (rows: number) => number): number[] {
  const B = expected.length;
  const draftMs = new Map(candidates.map((k) => [k, draftCost(k)]));
  const verifyMs = new Map<number, number>();
  const verify = (rows: number) => {
    let v = verifyMs.get(rows);
    if (v === undefined) verifyMs.set(rows, (v = verifyCost(rows)));
    return v;
  };
  const sums = (ks: readonly number[]) => ks.reduce((a, k, i) => ({ tokens: a.tokens + expected[i]![k]!, rows: a.rows + k + 1 }), { tokens: 0, rows: 0 });
  const goodput = (ks: readonly number[]) => sums(ks).tokens / (draftMs.get(Math.max(...ks))! + verify(sums(ks).rows));
  let ks = expected.map(() => 0);
  let g = goodput(ks);
  for (const K of candidates) {
    const trial = expected.map(() => K);
    const gt = goodput(trial);
    if (gt > g) {
      g = gt;
      ks = trial;
    }
  }
  let { tokens, rows } = sums(ks);
  for (let pass = 0, moved = B > 1; moved && pass < 4; pass++) {
    moved = false;
    for (let i = 0; i < B; i++) {
      let othersMax = 0;
      for (let m = 0; m < B; m++) if (m !== i) othersMax = Math.max(othersMax, ks[m]!);
      const cur = ks[i]!;
      for (const k of candidates) {
        if (k === ks[i]) continue;
        const gt = (tokens - expected[i]![cur]! + expected[i]![k]!) / (draftMs.get(Math.max(othersMax, k))! + verify(rows - cur + k));
        if (gt > g + 1e-12) {
          g = gt;
          ks[i] = k;
          moved = true;
        }
      }
      tokens += expected[i]![ks[i]!]! - expected[i]![cur]!;
      rows += ks[i]! - cur;
    }
  }
  return ks;
}

/** Whether some size k could beat plain steps for one sequence of B if every draft token passed. */
export function couldPay(candidates: readonly number[], B: number, draftCost: (k: number) => number, verifyCost: (rows: number) => number): boolean {
  const plain = B / verifyCost(B);
  return candidates.some((k) => k > 0 && (B + k) / (draftCost(k) + verifyCost(B + k)) > plain);
}

/**
 * Probes: a sequence idle for its probe gap tries the smallest size once; a probe followed by
 * size 0 again doubles the gap (up to 16x), a size chosen on its merits resets it; never
 * before `minGap` steps. In a batch a probe makes the whole step a tree step (the dearer
 * native path, paid once per step however many sequences draft): when one sequence probes,
 * every other idle sequence past half its gap probes in the same step, so a batch pays for
 * one probe step where it would pay for several staggered ones.
 */
export function probeSizes(states: SeqState[], best: readonly number[], probeEvery: number, smallest: number, minGap = 0): number[] {
  const due = (st: SeqState, share: number) => probeEvery > 0 && st.idle >= Math.max(share * st.probeGap, minGap);
  const anyDue = best.some((k, i) => k === 0 && due(states[i]!, 1));
  return best.map((k, i) => {
    const st = states[i]!;
    if (k > 0) {
      st.probed = false;
      st.probeGap = probeEvery;
      return k;
    }
    if (st.probed) st.probeGap = Math.min(16 * probeEvery, 2 * st.probeGap);
    st.probed = anyDue && due(st, 0.5);
    return st.probed ? smallest : 0;
  });
}
/** The sizes a search considers: chains every length 0..max; trees 0..8, 12, 16, 32, ... and max. */
export function sizeCandidates(mode: 'chain' | 'tree', maxDraft: number): number[] {
  const c = new Set<number>([0]);
  if (mode === 'chain') for (let k = 1; k <= maxDraft; k++) c.add(k);
  else {
    // Every budget up to 8 (small trees are chains or nearly: each length counts), then doubling.
    for (let k = 1; k <= Math.min(8, maxDraft); k++) c.add(k);
    for (let k = 12; k < maxDraft; k = k === 12 ? 16 : 2 * k) c.add(k);
    c.add(maxDraft);
  }
  return [...c].sort((a, b) => a - b);
}
