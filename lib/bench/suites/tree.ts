/**
 * `canopy bench tree`: tree attention for verifying a draft tree (64 nodes over a
 * 4k prefix) against one plain decode step over the same prefix (the goal: at
 * most 1.5x its time) and the naive baseline (CPU).
 */

import { attention, treeAttention, treeDepths } from '../../kernels/attention.js';
import { dtypeSize, type FloatDType } from '../../tensor/dtype.js';
import { type BenchRow, time } from '../harness.js';
import type { TorchAttentionJob } from '../peers/torch.js';
import type { BenchStep, Suite, SuiteContext } from './types.js';
import { randomTensor } from './util.js';

/** A draft-tree shape like the dynamic trees of EAGLE-2: a few branches per level, n nodes. */
export function benchTree(n: number, branching = 4): Int32Array {
  const parents = new Int32Array(n);
  let level = [-1];
  let i = 0;
  while (i < n) {
    const next: number[] = [];
    for (const p of level) {
      for (let c = 0; c < branching && i < n; c++) {
        parents[i] = p;
        next.push(i++);
      }
    }
    level = next.slice(0, branching); // keep the top branches growing, as a top-k expansion would
  }
  return parents;
}

/** Keys each node sees summed over nodes: the prefix plus its ancestors and itself. */
function treeVisibleKeys(parents: Int32Array, prefix: number): number {
  return treeDepths(parents).reduce((total, d) => total + prefix + d + 1, 0);
}

interface TreeConfig {
  nodes: number;
  prefix: number;
  hq: number;
  hkv: number;
  d: number;
  dtype: FloatDType;
}

async function benchTreeAttention(ctx: SuiteContext, c: TreeConfig): Promise<BenchRow> {
  const parents = benchTree(c.nodes);
  const kvLen = c.prefix + c.nodes;
  const q = await randomTensor([c.nodes, c.hq, c.d], c.dtype, ctx.device, 7);
  const k = await randomTensor([kvLen, c.hkv, c.d], c.dtype, ctx.device, 8);
  const v = await randomTensor([kvLen, c.hkv, c.d], c.dtype, ctx.device, 9);
  const q1 = await randomTensor([1, c.hq, c.d], c.dtype, ctx.device, 10);
  const tree = (naive: boolean) => async () => {
    const { out } = await treeAttention(q, k, v, { parents, naive });
    out.dispose();
  };
  const timing = await time(tree(false), { budgetMs: ctx.budgetMs });
  // One decode step over the same prefix (the cost tree verification should stay close to).
  const decode = await time(
    async () => {
      const { out } = await attention(q1, k, v, { kvIndptr: [0, c.prefix] });
      out.dispose();
    },
    { budgetMs: ctx.budgetMs },
  );
  const peers = [];
  if (ctx.backend === 'cpu') {
    const naive = await time(tree(true), { budgetMs: ctx.budgetMs / 2, warmup: 0, minRepeats: 1 });
    peers.push({ name: 'naive', medianMs: naive.medianMs, speedup: naive.medianMs / timing.medianMs });
  }
  [q, k, v, q1].forEach((t) => t.dispose());
  const bytes = 2 * kvLen * c.hkv * c.d * dtypeSize(c.dtype);
  return {
    suite: 'tree',
    name: 'tree attention',
    backend: ctx.backend,
    config: { nodes: c.nodes, prefix: c.prefix, heads: `${c.hq}/${c.hkv}`, headDim: c.d, dtype: c.dtype },
    timing,
    metric: 'GB/s',
    value: bytes / (timing.medianMs * 1e-3) / 1e9,
    formula: 'bytes of prefix + tree K and V (2 * (prefix + nodes) * numKvHeads * headDim * dtype size) / time',
    limit: { value: ctx.limits.copyGBps, what: 'copy bandwidth' },
    peers,
    notes: {
      'decode step ms': decode.medianMs,
      'tree / decode': timing.medianMs / decode.medianMs,
      // Tree attention does nodes x the FLOPs of a decode step over the same KV: on a CPU
      // that makes it compute bound, so its FLOP rate says more than its GB/s.
      'GFLOP/s': (4 * c.d * c.hq * treeVisibleKeys(parents, c.prefix)) / (timing.medianMs * 1e-3) / 1e9,
    },
  };
}

export const treeSuite: Suite = {
  name: 'tree',
  description: 'tree attention for draft-tree verification against one decode step over the same prefix',
  plan(ctx) {
    const dtype: FloatDType = ctx.backend === 'cpu' ? 'f32' : 'bf16';
    const configs: TreeConfig[] = [{ nodes: 64, prefix: 4096, hq: 32, hkv: 8, d: 128, dtype }];
    if (!ctx.quick) {
      configs.push({ nodes: 16, prefix: 4096, hq: 32, hkv: 8, d: 128, dtype });
      configs.push({ nodes: 64, prefix: 16384, hq: 32, hkv: 8, d: 128, dtype });
    }
    return configs.map((c): BenchStep => {
      const step: BenchStep = { label: `tree ${c.nodes} over ${c.prefix / 1024}k`, run: () => benchTreeAttention(ctx, c) };
      if (ctx.backend === 'cuda') {
        // PyTorch has no tree kernel: SDPA's memory-efficient backend with the ancestor mask.
        const job: TorchAttentionJob = {
          id: `tree:${c.nodes}:${c.prefix}`,
          kind: 'attention',
          mode: 'tree',
          batch: 1,
          qLen: c.nodes,
          kvLen: c.prefix + c.nodes,
          numQoHeads: c.hq,
          numKvHeads: c.hkv,
          headDim: c.d,
          dtype: c.dtype === 'f32' ? 'f32' : c.dtype,
          parents: Array.from(benchTree(c.nodes)),
        };
        step.torch = [job];
      }
      return step;
    });
  },
};
