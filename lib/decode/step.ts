/**
 * One step of the live sequences: control (the goodput controller's draft sizes), propose, the
 * target step (greedy: one native call; sampled: forward, verification, commit), then settle
 * (feedback, metrics, emission) and the controller's observation.
 */
import { greedyStep } from './greedy-step.js';
import type { Live, Run } from './run.js';
import { sampledStep } from './sampled-step.js';
import { settle } from './settle.js';
import type { DraftTree } from './types.js';
import { EMPTY_DRAFT } from './types.js';

/** Propose: each sequence's draft within its size (the controller's) and what is left. */
async function propose(r: Run, live: Live, sizes: number[]): Promise<{ drafts: DraftTree[]; budget: number }> {
  const drafts: DraftTree[] = live.map(() => EMPTY_DRAFT);
  const proposer = r.proposer;
  // Size 0 for every sequence (the controller's usual answer when drafting does not pay): nothing to ask.
  if (!proposer || sizes.every((k) => k <= 0)) return { drafts, budget: 0 };
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

export async function step(r: Run, live: Live): Promise<void> {
  const t0 = performance.now();
  const sizes = r.controller ? r.controller.plan(live.map(({ s }) => s)) : live.map(() => Infinity);
  const tc = performance.now();
  const { drafts, budget } = await propose(r, live, sizes);
  const t1 = performance.now();
  const out = r.chainStep ? await sampledStep(r, live, drafts) : await greedyStep(r, live, drafts);
  const t2 = performance.now();
  const { feedbackMs, ...observed } = await settle(r, live, drafts, out, sizes);
  const t3 = performance.now();
  r.controller?.observe({ ...observed, draftMs: t1 - tc + feedbackMs, draftBudget: budget });
  // The time split: controller (plan, observe), proposer (its feedback included), target step, host work (settle, emission).
  r.metrics?.time({ control: tc - t0 + performance.now() - t3, propose: t1 - tc + feedbackMs, forward: out.forwardMs, verify: out.verifyMs, host: t3 - t2 - feedbackMs });
}
