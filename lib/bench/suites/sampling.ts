/**
 * `canopy bench sampling`: one sampling step (one row of logits -> one token) through the
 * native sampler chain on a 32000 and a 128256 vocabulary, against the JavaScript sampler the
 * decode loop used before (a full sort of the vocabulary on every step; kept here verbatim as
 * the peer). Metric: bytes of logits read / time, against the machine's read bandwidth.
 *
 * The logits are heavy-tailed like a language model's (a few tokens far above the rest:
 * 12 * v^3, v uniform in [-1, 1]), so top-p keeps tens of tokens, not thousands.
 */
import { type SamplerChain, checkSamplerChain, samplingChain } from '../../kernels/sampling.js';
import { Tensor } from '../../tensor/tensor.js';
import { type BenchRow, time } from '../harness.js';
import type { BenchStep, Suite, SuiteContext } from './types.js';
import { randomValues } from './util.js';

// ---- the pre-native JavaScript sampler (the peer) ----------------------------------------

/** temperature, top-k (full sort), top-p over the full softmax, renormalised: as lib/decode/sampling.ts had it. */
function jsProcessedDistribution(logits: Float32Array, o: { temperature: number; topK: number; topP: number }): Float64Array {
  const n = logits.length;
  const p = new Float64Array(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    p[i] = Math.exp((logits[i]! - max) / o.temperature);
    sum += p[i]!;
  }
  for (let i = 0; i < n; i++) p[i] = p[i]! / sum;
  if ((o.topK > 0 && o.topK < n) || o.topP < 1) {
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
    const keep = new Uint8Array(n);
    const k = o.topK > 0 ? Math.min(o.topK, n) : n;
    let mass = 0;
    for (let r = 0; r < k; r++) {
      keep[order[r]!] = 1;
      mass += p[order[r]!]!;
      if (mass >= o.topP) break;
    }
    let kept = 0;
    for (let i = 0; i < n; i++) {
      if (!keep[i]) p[i] = 0;
      kept += p[i]!;
    }
    for (let i = 0; i < n; i++) p[i] = p[i]! / kept;
  }
  return p;
}

function jsSampleFrom(p: Float64Array, u: number): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += p[i]!;
  const target = u * total;
  let acc = 0;
  let last = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! <= 0) continue;
    acc += p[i]!;
    last = i;
    if (target < acc) return i;
  }
  return last;
}

// ---- the rows ------------------------------------------------------------------------------

interface SamplingConfig {
  vocab: number;
  label: string;
  chain: SamplerChain;
}

async function benchSampling(ctx: SuiteContext, c: SamplingConfig): Promise<BenchRow> {
  const host = Float32Array.from(randomValues(c.vocab, 17 + c.vocab), (v) => 12 * v * v * v);
  let logits = Tensor.from(host, { shape: [1, c.vocab] });
  if (ctx.device !== 'cpu') logits = await logits.to(ctx.device);
  const context = Array.from({ length: 256 }, (_, i) => (i * 7919) % c.vocab);
  let u = 0.1;
  const timing = await time(
    async () => {
      u = (u + 0.37) % 1;
      await samplingChain(logits, c.chain, { uniforms: Float64Array.of(u), contexts: [context] });
    },
    { budgetMs: ctx.budgetMs },
  );
  const js = await time(
    async () => {
      u = (u + 0.37) % 1;
      jsSampleFrom(jsProcessedDistribution(host, c.chain), u);
    },
    { budgetMs: ctx.budgetMs / 2, minRepeats: 3 },
  );
  logits.dispose();
  const bytes = c.vocab * 4;
  return {
    suite: 'sampling',
    name: 'sampler chain',
    backend: ctx.backend,
    config: { vocab: c.vocab, rows: 1, chain: c.label },
    timing,
    metric: 'GB/s',
    value: bytes / (timing.medianMs * 1e-3) / 1e9,
    formula: 'bytes of logits read (vocab * 4) / time of one sampling step (one row -> one token)',
    ...(ctx.limits.readGBps ? { limit: { value: ctx.limits.readGBps, what: 'read bandwidth' } } : { limit: { value: ctx.limits.copyGBps, what: 'copy bandwidth' } }),
    peers: [{ name: 'JS full-sort sampler (before)', medianMs: js.medianMs, speedup: js.medianMs / timing.medianMs }],
    notes: { 'JS peer settings': 'temperature, top-k, top-p only (it had no min-p or penalties)' },
  };
}

export const samplingSuite: Suite = {
  name: 'sampling',
  description: 'one sampling step through the native sampler chain against the old JavaScript full-sort sampler, vocab 32000 and 128256',
  plan(ctx) {
    const configs: SamplingConfig[] = [];
    for (const vocab of [32000, 128256]) {
      configs.push({ vocab, label: 'temperature 0.8, top-k 40, top-p 0.95', chain: checkSamplerChain({ temperature: 0.8, topK: 40, topP: 0.95 }) });
      if (!ctx.quick) {
        configs.push({
          vocab,
          label: 'temperature 0.8, top-p 0.95, min-p 0.05, repeat 1.1 / frequency 0.1 / presence 0.1 over 64',
          chain: checkSamplerChain({ temperature: 0.8, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, frequencyPenalty: 0.1, presencePenalty: 0.1 }),
        });
        configs.push({ vocab, label: 'temperature 1 (no filters)', chain: checkSamplerChain({ temperature: 1 }) });
      }
    }
    return configs.map((c): BenchStep => ({ label: `sampling ${c.vocab}: ${c.label}`, run: () => benchSampling(ctx, c) }));
  },
};
