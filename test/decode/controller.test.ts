/**
 * lib/decode/controller.ts on simulated machines: a target pass whose cost is flat, steep or
 * linear in the rows it verifies, a draft step of a given cost, drafts accepted with a given
 * probability per position. The controller sees only what a real loop would show it (times
 * and accepted counts) and must settle on the size a computation of the true goodput picks:
 * 0 when drafts never pass or verification is as dear as decoding each token, the largest
 * size when verification is free, the true optimum in between, per sequence in a batch.
 */
import { describe, expect, it } from 'vitest';

import { CostCurve, GoodputController } from '../../lib/decode/controller.js';
import { probeSizes } from '../../lib/decode/controller-search.js';
import type { SharedAcceptance } from '../../lib/decode/controller-types.js';
import { Random } from '../../lib/decode/sampling.js';

interface Sim {
  verify: (rows: number) => number;
  /** ms per drafted position (the draft runs its largest size for the whole batch). */
  draftStep: number;
  /** Per-position acceptance of each sequence. */
  accept: number[];
}

/** Runs `steps` simulated steps; returns the sizes planned in the last `tail` steps, per sequence. */
function simulate(c: GoodputController, sim: Sim, steps: number, tail = 40): number[][] {
  const rnd = new Random(7);
  const seqs = sim.accept.map((_, i) => i);
  const last: number[][] = seqs.map(() => []);
  for (let step = 0; step < steps; step++) {
    const ks = c.plan(seqs);
    const K = Math.max(...ks);
    const sequences = seqs.map((s, i) => {
      let accepted = 0;
      while (accepted < ks[i]! && rnd.next() < sim.accept[i]!) accepted++;
      return { sequence: s, budget: ks[i]!, drafted: ks[i]!, depth: ks[i]!, accepted };
    });
    const rows = ks.reduce((a, k) => a + k + 1, 0);
    const jitter = 1 + 0.05 * (rnd.next() - 0.5);
    c.observe({ rows, verifyMs: sim.verify(rows) * jitter, draftMs: K * sim.draftStep * jitter, draftBudget: K, sequences });
    if (step >= steps - tail) ks.forEach((k, i) => last[i]!.push(k));
  }
  return last;
}

/** The size maximising the true expected goodput of one sequence. */
function trueBest(sim: Sim, maxK: number): { k: number; goodput: (k: number) => number } {
  const a = sim.accept[0]!;
  const goodput = (k: number) => {
    let e = 1;
    for (let i = 1; i <= k; i++) e += a ** i;
    return e / (k * sim.draftStep + sim.verify(k + 1));
  };
  let k = 0;
  for (let j = 1; j <= maxK; j++) if (goodput(j) > goodput(k)) k = j;
  return { k, goodput };
}

const mode = (xs: number[]) => {
  const n = new Map<number, number>();
  xs.forEach((x) => n.set(x, (n.get(x) ?? 0) + 1));
  return [...n].sort((a, b) => b[1] - a[1])[0]![0];
};

describe('GoodputController (chain, simulated costs)', () => {
  it('drafts never pass: settles on k = 0, drafting again (probes, forgotten failures) at most every 16 steps', () => {
    const sim: Sim = { verify: () => 10, draftStep: 1, accept: [0] };
    const probing = simulate(new GoodputController({ mode: 'chain', maxDraft: 8, probeEvery: 16 }), sim, 400, 160);
    const probes = probing[0]!.filter((k) => k > 0);
    expect(probes.every((k) => k === 1)).toBe(true);
    expect(probes.length).toBeGreaterThan(0);
    expect(probes.length).toBeLessThanOrEqual(160 / 16 + 1);
  });

  it('verification free (flat cost) and a free draft: the largest k', () => {
    const sim: Sim = { verify: () => 10, draftStep: 0, accept: [0.8] };
    const last = simulate(new GoodputController({ mode: 'chain', maxDraft: 8 }), sim, 200);
    // Every step but the plain steps that measure the baseline again (one per REFRESH steps).
    const other = last[0]!.filter((k) => k !== 8);
    expect(other.every((k) => k === 0)).toBe(true);
    expect(other.length).toBeLessThanOrEqual(Math.ceil(40 / GoodputController.REFRESH));
  });

  it('a draft as dear as the target (no size could pay even at full acceptance): k = 0, probes only after the longest wait', () => {
    const sim: Sim = { verify: (n) => 10 + 0.5 * n, draftStep: 12, accept: [1] };
    const last = simulate(new GoodputController({ mode: 'chain', maxDraft: 8, probeEvery: 4 }), sim, 300, 280)[0]!;
    const probes = last.filter((k) => k > 0);
    expect(probes.every((k) => k === 1)).toBe(true);
    expect(probes.length).toBeLessThanOrEqual(Math.ceil(280 / (16 * 4))); // not every 4, 8, 16 ... steps
  });

  it('a batch probes in common steps (one tree step per probe round), and a later generation starts at the gap vain probes reached', () => {
    // Sequences with staggered idle counts: one is due; those past half their gap join it, the others wait.
    const st = (idle: number) => ({ accept: [], weight: [], idle, steps: idle, probeGap: 16, probed: false });
    expect(probeSizes([st(16), st(9), st(3)], [0, 0, 0], 16, 1)).toEqual([1, 1, 0]);
    expect(probeSizes([st(15), st(9), st(3)], [0, 0, 0], 16, 1)).toEqual([0, 0, 0]);
    expect(probeSizes([st(16), st(9)], [0, 3], 16, 1)).toEqual([1, 3]); // a size on its merits stays
    const costs = { verify: new CostCurve(0.25, 7), draft: new CostCurve(0.25, 7), acceptance: { accept: [], weight: [], treeTokens: new Map() } as SharedAcceptance };
    const shared = new GoodputController({ mode: 'chain', maxDraft: 8, probeEvery: 8, costs });
    const probeSteps = (ctl: GoodputController, steps: number) => {
      const sizes = simulate(ctl, { verify: (n) => 10 + 2 * n, draftStep: 0.1, accept: [0, 0, 0, 0] }, steps, steps);
      return sizes.reduce((a, s) => a + s.filter((k) => k > 0).length, 0);
    };
    // Shared memory: after a generation of vain probes the next starts at a longer gap (fewer probes), at most 4x.
    const first = probeSteps(shared, 100);
    expect(costs.acceptance.probeGap).toBeGreaterThan(8);
    expect(costs.acceptance.probeGap).toBeLessThanOrEqual(32);
    const second = probeSteps(new GoodputController({ mode: 'chain', maxDraft: 8, probeEvery: 8, costs }), 100);
    expect(second).toBeLessThan(first);
    expect(second).toBeGreaterThan(0); // still probes: a changed context can bring drafting back
  });

  it('costs and acceptance shared with an earlier generation: no start-up step, the same choice at once', () => {
    const costs = { verify: new CostCurve(0.25, 7), draft: new CostCurve(0.25, 7), acceptance: { accept: [], weight: [], treeTokens: new Map() } };
    const sim: Sim = { verify: (n) => 10 + 0.5 * n, draftStep: 0.5, accept: [0.8] };
    const first = simulate(new GoodputController({ mode: 'chain', maxDraft: 8, costs }), sim, 200, 1)[0]![0]!;
    const second = new GoodputController({ mode: 'chain', maxDraft: 8, costs });
    expect(first).toBeGreaterThan(0);
    expect(second.plan([0])).toEqual([first]);
    // Drafts never pass for an expensive draft: the next generation does not draft at all.
    const dear = { verify: new CostCurve(0.25, 7), draft: new CostCurve(0.25, 7), acceptance: { accept: [], weight: [], treeTokens: new Map() } };
    simulate(new GoodputController({ mode: 'chain', maxDraft: 8, costs: dear }), { verify: () => 10, draftStep: 20, accept: [0.9] }, 120, 1);
    expect(dear.draft.observations).toBeGreaterThanOrEqual(3); // the start and the probes: enough to call it hopeless
    const again = simulate(new GoodputController({ mode: 'chain', maxDraft: 8, costs: dear }), { verify: () => 10, draftStep: 20, accept: [0.9] }, 100, 100);
    expect(again[0]!.every((k) => k === 0)).toBe(true);
  });

  it('a stale plain-step cost does not keep drafting on: a slow spell seen only by the plain steps', () => {
    // The first 100 steps the machine is 5x slower; drafting then pays (flat verification).
    const c = new GoodputController({ mode: 'chain', maxDraft: 4, probeEvery: 0 });
    let step = 0;
    const slow = (ms: number) => (step < 100 ? 5 * ms : ms);
    for (; step < 400; step++) {
      const [k] = c.plan([0]);
      c.observe({ rows: k! + 1, verifyMs: slow(k ? 10 + 8 * k! : 10), draftMs: 0, draftBudget: k!, sequences: [{ sequence: 0, budget: k!, drafted: k!, depth: k!, accepted: 0 }] });
    }
    // Drafts never pass and each row costs 0.8 of a step: k = 0 once the plain cost is measured again.
    expect(Array.from({ length: 20 }, () => c.plan([0])[0]).every((k) => k === 0)).toBe(true);
  });

  it('a busy spell seen only by the plain steps does not make a losing draft look cheap (more rows costed relative to the plain step)', () => {
    // A batch of 4: an extra row costs 0.3 of a plain step, drafts pass 20%: k = 0 pays. Then the
    // machine turns 3x slower; only plain steps see it (the drafted rows' costs are old).
    const c = new GoodputController({ mode: 'chain', maxDraft: 4, probeEvery: 0 });
    const seqs = [0, 1, 2, 3];
    const rnd = new Random(3);
    let busy = 1;
    const run = (steps: number) => {
      let drafts = 0;
      for (let t = 0; t < steps; t++) {
        const ks = c.plan(seqs);
        const rows = ks.reduce((a, k) => a + k + 1, 0);
        drafts += ks.some((k) => k > 0) ? 1 : 0;
        const sequences = ks.map((k, s) => ({ sequence: s, budget: k, drafted: k, depth: k, accepted: k > 0 && rnd.next() < 0.2 ? 1 : 0 }));
        c.observe({ rows, verifyMs: busy * (10 + 3 * (rows - 4)), draftMs: 0, draftBudget: Math.max(...ks), sequences });
      }
      return drafts;
    };
    run(200);
    // Earlier probes measured one sequence drafting one token (5 rows) in the quiet spell.
    for (let t = 0; t < 7; t++) {
      c.observe({ rows: 5, verifyMs: 13, draftMs: 0, draftBudget: 1, sequences: seqs.map((s) => ({ sequence: s, budget: s ? 0 : 1, drafted: s ? 0 : 1, depth: s ? 0 : 1, accepted: 0 })) });
      run(1);
    }
    busy = 3;
    expect(run(40)).toBe(0);
  });

  it('verification as dear as decoding each token (cost linear through 0): k = 0 even at acceptance 0.9', () => {
    const sim: Sim = { verify: (n) => 10 * n, draftStep: 0.2, accept: [0.9] };
    const last = simulate(new GoodputController({ mode: 'chain', maxDraft: 8, probeEvery: 0 }), sim, 200);
    expect(last[0]!.every((k) => k === 0)).toBe(true);
  });

  it.each([
    ['linear', (n: number) => 10 + 1.5 * (n - 1), 0.5, 0.75],
    ['steep after 4 rows', (n: number) => (n <= 4 ? 10 : 10 + 6 * (n - 4)), 0.3, 0.9],
    ['flat with a dear draft', () => 10, 2.5, 0.7],
  ])('%s verification: the true optimum (within 3%% of its goodput)', (_label, verify, draftStep, accept) => {
    const sim: Sim = { verify, draftStep, accept: [accept] };
    const best = trueBest(sim, 8);
    const chosen = mode(simulate(new GoodputController({ mode: 'chain', maxDraft: 8 }), sim, 600)[0]!);
    expect(best.goodput(chosen)).toBeGreaterThanOrEqual(0.97 * best.goodput(best.k));
    expect(best.k).toBeGreaterThan(0); // the cases are ones where drafting pays
  });

  it('per sequence in a batch: the sequence whose drafts never pass gets 0, the other drafts', () => {
    const sim: Sim = { verify: (n) => 10 + 0.2 * n, draftStep: 0.3, accept: [0.85, 0] };
    const last = simulate(new GoodputController({ mode: 'chain', maxDraft: 8 }), sim, 300);
    expect(mode(last[0]!)).toBeGreaterThanOrEqual(3);
    expect(last[1]!.filter((k) => k > 0).length).toBeLessThanOrEqual(40 / 16 + 1); // probes only
  });
});

describe('GoodputController (tree mode)', () => {
  it('measures tokens per node budget: a budget that gains nothing over a smaller one is not chosen', () => {
    // Trees of 8+ nodes emit 3 tokens, 4-node trees 2.5, smaller ones 1.5; verification linear.
    const c = new GoodputController({ mode: 'tree', maxDraft: 24, probeEvery: 0 });
    const tokensAt = (b: number) => (b >= 8 ? 3 : b >= 4 ? 2.5 : b > 0 ? 1.5 : 1);
    for (let step = 0; step < 200; step++) {
      const [b] = c.plan([0]);
      const accepted = Math.max(0, tokensAt(b!) - 1);
      c.observe({ rows: b! + 1, verifyMs: 10 + 0.5 * b!, draftMs: b! ? 2 : 0, draftBudget: b!, sequences: [{ sequence: 0, budget: b!, drafted: b!, depth: Math.min(b!, 3), accepted: Math.floor(accepted + (step % 2) * (accepted % 1) * 2) }] });
    }
    const picks = Array.from({ length: 20 }, () => c.plan([0])[0]);
    // 8 nodes: 3 / 16 = 0.1875 per ms; 16: 3 / 20; 24: 3 / 24; 4: 2.5 / 14 = 0.178.
    expect(mode(picks as number[])).toBe(8);
  });
});

describe('GoodputController (a proposer with nothing to propose)', () => {
  it.each(['chain', 'tree'] as const)('%s: asked for drafts and given none, it stops asking (as if nothing passed)', (m) => {
    // Verification of a few rows costs 1.4x a plain step: drafting pays only above 40% acceptance.
    const c = new GoodputController({ mode: m, maxDraft: 8, probeEvery: 0 });
    const asked: number[] = [];
    for (let step = 0; step < 200; step++) {
      const [k] = c.plan([0]);
      asked.push(k!);
      // The proposer returns an empty draft: the step is a plain one.
      c.observe({ rows: 1, verifyMs: 10, draftMs: k ? 0.01 : 0, draftBudget: k!, sequences: [{ sequence: 0, budget: k!, drafted: 0, depth: 0, accepted: 0 }] });
    }
    expect(asked.slice(-100).every((k) => k === 0)).toBe(true);
  });
});

describe('CostCurve', () => {
  it('interpolates between measured counts and extrapolates from the two largest', () => {
    const c = new CostCurve(1);
    expect(c.estimate(3)).toBeUndefined();
    c.observe(1, 10);
    expect(c.estimate(5, 0.1)).toBeCloseTo(14); // one point: the prior slope (0.1 x 10 per row)
    c.observe(5, 18);
    expect(c.estimate(3)).toBeCloseTo(14);
    expect(c.estimate(9)).toBeCloseTo(26);
    c.observe(5, 30); // alpha 1: the newest measurement
    expect(c.estimate(5)).toBe(30);
  });

  it('window > 1: the median of the last measurements (a preemption spike moves nothing); ages', () => {
    const c = new CostCurve(0.25, 5);
    for (const ms of [10, 11, 9, 200, 10]) c.observe(1, ms);
    expect(c.estimate(1)).toBe(10);
    for (const ms of [20, 20, 20]) c.observe(1, ms); // a lasting change wins once it is the majority
    expect(c.estimate(1)).toBe(20);
    c.observe(4, 30);
    expect(c.age(1)).toBe(1);
    expect(c.age(7)).toBe(Infinity);
    expect(c.estimate(8, 0, true)).toBeCloseTo(60); // proportional beyond the largest measured count
  });
});

describe('GoodputController.plan', () => {
  it('picks, for a batch, sizes whose goodput() no single-size change improves', () => {
    const c = new GoodputController({ mode: 'chain', maxDraft: 6, probeEvery: 0 });
    simulate(c, { verify: (n) => 10 + 0.8 * n, draftStep: 0.4, accept: [0.9, 0.6, 0.2] }, 300, 1);
    const seqs = [0, 1, 2];
    const ks = c.plan(seqs);
    const g = c.goodput(seqs, ks);
    for (let i = 0; i < 3; i++) {
      for (const k of c.candidates) {
        if (k > Math.max(...ks)) continue; // raising the largest size is the common-K search's job
        const t = ks.slice();
        t[i] = k;
        expect(c.goodput(seqs, t)).toBeLessThanOrEqual(g + 1e-12);
      }
    }
    expect(ks[0]).toBeGreaterThanOrEqual(ks[2]!);
  });
});
