/**
 * `canopy bench decode [--model M] [--draft D]`: every applicable decoding strategy on the
 * same prompts, greedy, against autoregressive decoding measured in the same run: tokens/s,
 * the ratio to autoregressive (median over interleaved rounds, with its range), mean
 * accepted length (tau), acceptance by draft position, the draft sizes the goodput
 * controller chose, the time split, and whether each strategy's text equals the
 * autoregressive text (it must: the strategies are lossless).
 *
 * Pairs, when ../shared/models (or CANOPY_MODELS) holds the test models:
 *   headline  stories260K inflated to TinyLlama-1.1B's shape (lib/bench/inflate.ts), F16
 *             GGUF generated once into the cache folder (~/.cache/canopy or CANOPY_CACHE),
 *             and its Q8_0 and Q4_K_M versions made from it by quantize() (cached beside it;
 *             batch 1; with --quick only when --filter names them, e.g. "Q8_0 pair"),
 *             drafted by llama2xs-281K: real acceptance rates at a 1B model's cost; batch 1
 *             (and 4 without --quick); llama.cpp (node-llama-cpp) on the same file as peers
 *             when installed: plain decoding (beside autoregressive), its draft-model
 *             speculation with the same draft written as GGUF (beside speculative) and its
 *             prompt lookup (beside lookup).
 *   tiny      stories260K / llama2xs-281K themselves, batch 1 and 4.
 * --model M [--draft D] replaces both with one pair.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { type GenerateResult, type StrategyName, generate } from '../../generate.js';
import { loadModel } from '../../model/load.js';
import { Model } from '../../model/model.js';
import { loadWeights } from '../../model/weights.js';
import { packageRoot } from '../../native/loader.js';
import { MODEL_PRESETS } from '../../model/presets.js';
import type { QuantPreset } from '../../quantize/index.js';
import { type BenchRow, type PeerResult, time } from '../harness.js';
import { TINYLLAMA_SHAPE, ggufCopy, inflatedGguf } from '../inflate.js';
import { type LlamaCppJob, runLlamaCppWorker } from '../peers/llama-cpp.js';
import { runSampledPair } from './decode-sampled.js';
import { cachedQuantizedGguf, fastRandomWeights } from './generate.js';
import type { BenchStep, DecodePair, Suite, SuiteContext } from './types.js';
import { median } from './util.js';

/** The storages of the inflated pair: F16 (the headline) and two of llama.cpp's presets made from it. */
type InflatedStorage = 'F16' | 'Q8_0' | 'Q4_K_M';

const PROMPTS = ['Once upon a time', 'The little dog', 'Tom and Sue went to the park. They', 'One day, a big bird'];

/** The shared test models folder, if present. */
export function findModelsDir(): string | undefined {
  const candidates = [process.env.CANOPY_MODELS, resolve(packageRoot, '..', 'shared', 'models'), resolve('..', 'shared', 'models')];
  return candidates.find((d): d is string => d !== undefined && existsSync(join(d, 'stories260K', 'stories260K.bin')));
}

/** One decoding configuration of a row: a strategy and its speculation settings. */
interface Variant {
  name: string;
  strategy: StrategyName;
  speculation?: { k?: number; fixed?: boolean };
}

const VARIANTS_DRAFT: Variant[] = [
  { name: 'speculative', strategy: 'speculative' },
  { name: 'speculative k=4 fixed', strategy: 'speculative', speculation: { k: 4, fixed: true } },
  { name: 'speculative k=6 fixed', strategy: 'speculative', speculation: { k: 6, fixed: true } },
  { name: 'tree', strategy: 'tree' },
];
const VARIANTS_SELF: Variant[] = [
  { name: 'lookup', strategy: 'lookup' },
  { name: 'ngram-tree', strategy: 'ngram-tree' },
  { name: 'token-recycling', strategy: 'token-recycling' },
  { name: 'jacobi', strategy: 'jacobi' },
];


function timingOf(samples: number[]): { medianMs: number; p10Ms: number; p90Ms: number; repeats: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))]!;
  return { medianMs: median(s), p10Ms: at(0.1), p90Ms: at(0.9), repeats: s.length };
}

const fmt = (x: number, d = 2) => x.toFixed(d);

/**
 * Every variant on one pair, greedy, same prompts (the first `batch` of PROMPTS). The rounds
 * interleave the variants so a slow spell of a shared machine hits all of them alike; each
 * row reports the median over rounds of its time and of its ratio to autoregressive in the
 * same round, with the ratio's range.
 */
export async function runDecodePair(ctx: SuiteContext, pair: DecodePair): Promise<BenchRow[]> {
  const { model, tokenizer } = await loadModel(pair.modelPath, { backend: ctx.device });
  const draft = pair.draftPath ? await Model.fromWeights(loadWeights(pair.draftPath), { backend: ctx.device }) : undefined;
  const prompts = Array.from({ length: pair.batch }, (_, i) => PROMPTS[i % PROMPTS.length]!);
  const variants: Variant[] = [{ name: 'autoregressive', strategy: 'autoregressive' }, ...(draft ? VARIANTS_DRAFT : []), ...VARIANTS_SELF];
  const times = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  const ratios = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  const last = new Map<string, GenerateResult[]>();
  const run = async (v: Variant): Promise<number> => {
    const t0 = performance.now();
    const r = await generate({
      model, tokenizer, prompt: prompts, maxTokens: pair.maxTokens, temperature: 0, stopAtEos: false, strategy: v.strategy,
      ...(draft && (v.strategy === 'speculative' || v.strategy === 'tree') ? { draft } : {}),
      ...(v.speculation ? { speculation: v.speculation } : {}),
    });
    const ms = performance.now() - t0;
    last.set(v.name, r);
    return ms;
  };
  try {
    await generate({ model, tokenizer, prompt: prompts, maxTokens: 8, temperature: 0 }); // warm-up (pages in mapped weights)
    for (let round = 0; round < pair.rounds; round++) {
      let arMs = 0;
      for (const v of variants) {
        const ms = await run(v);
        if (v.strategy === 'autoregressive') arMs = ms;
        times.get(v.name)!.push(ms);
        ratios.get(v.name)!.push(arMs / ms);
      }
    }
  } finally {
    model.dispose();
    draft?.dispose();
  }
  const arTokens = last.get('autoregressive')!.map((r) => r.tokens);
  const arMedian = median(times.get('autoregressive')!);
  return variants.map((v) => {
    const results = last.get(v.name)!;
    const timing = timingOf(times.get(v.name)!);
    const rs = ratios.get(v.name)!;
    const emitted = results.reduce((a, r) => a + r.tokens.length, 0);
    const same = results.every((r, i) => r.tokens.join() === arTokens[i]!.join());
    const sp = results[0]!.stats.speculation;
    const usesDraft = draft !== undefined && (v.strategy === 'speculative' || v.strategy === 'tree');
    const notes: Record<string, string | number> = {
      ...(v.strategy === 'autoregressive' ? {} : { 'x autoregressive': median(rs), 'x range': `${fmt(Math.min(...rs))}-${fmt(Math.max(...rs))}` }),
      ...(sp
        ? {
            tau: sp.meanAcceptedLength,
            'accept by position': sp.perPositionAcceptance.slice(0, 8).map((a) => fmt(a)).join(' '),
            ...(sp.draftSizes ? { 'draft sizes (size:steps)': Object.entries(sp.draftSizes).map(([k, n]) => `${k}:${n}`).join(' ') } : {}),
            'ms control/propose/target/host': [sp.timeMs.control, sp.timeMs.propose, sp.timeMs.forward + sp.timeMs.verify, sp.timeMs.host].map((x) => fmt(x, 1)).join('/'),
          }
        : {}),
      'target passes': results[0]!.stats.targetPasses,
      'text = autoregressive': same ? 'yes' : 'NO',
    };
    return {
      suite: 'decode',
      name: v.name,
      backend: ctx.backend,
      config: { model: pair.label, ...(usesDraft ? { draft: pair.draftPath!.split(/[\\/]/).slice(-2).join('/') } : {}), batch: pair.batch, maxTokens: pair.maxTokens, greedy: 'yes', rounds: pair.rounds },
      timing,
      metric: 'tokens/s',
      value: (emitted * 1000) / timing.medianMs,
      formula: 'generated tokens of the batch / median time of the whole generate() call (prefill included)',
      peers: v.strategy === 'autoregressive' ? [] : [{ name: 'autoregressive', medianMs: arMedian, speedup: median(rs) }],
      notes,
    };
  });
}

/**
 * The quantity that bounds any speculative speedup: the cost of verifying N tokens (one tree
 * step over a chain or tree of N) relative to one decode step, on a random model of a
 * standard shape; with tau measured on the real pair, speedup <= tau / (verify / decode).
 */
async function verifyCost(ctx: SuiteContext, preset: string, nodes: number[], tau: number | undefined): Promise<BenchRow[]> {
  const config = MODEL_PRESETS[preset]!;
  const tensors = fastRandomWeights(preset);
  const model = await Model.fromWeights({ config, tensors }, { backend: ctx.device, dtype: ctx.backend === 'cpu' ? 'f32' : 'bf16' });
  tensors.forEach((t) => t.dispose());
  const prefix = 512;
  const cache = model.createCache({ capacity: prefix + Math.max(...nodes) + 8 });
  await model.forward(cache, [{ sequence: 0, tokens: Array.from({ length: prefix }, (_, i) => (i * 31) % config.vocabSize) }]).then((r) => r.logits.dispose());
  const stepOf = async (n: number) => {
    const parents = Array.from({ length: n }, (_, i) => (n <= 8 ? i - 1 : i < 4 ? -1 : Math.floor((i - 4) / 4)));
    const { logits } = await model.forward(cache, [{ sequence: 0, tokens: Array.from({ length: n }, (_, i) => (i * 7) % config.vocabSize), parents }], { logits: 'all' });
    logits.dispose();
  };
  const decode = await time(() => stepOf(1), { budgetMs: ctx.budgetMs, warmup: 2, minRepeats: 3, maxRepeats: 30 });
  const rows: BenchRow[] = [];
  for (const n of nodes) {
    const t = await time(() => stepOf(n), { budgetMs: ctx.budgetMs, warmup: 1, minRepeats: 3, maxRepeats: 30 });
    const ratio = t.medianMs / decode.medianMs;
    rows.push({
      suite: 'decode',
      name: `verify ${n} tokens`,
      backend: ctx.backend,
      config: { model: preset, prefix, shape: n <= 8 ? 'chain' : 'tree', dtype: ctx.backend === 'cpu' ? 'f32' : 'bf16' },
      timing: t,
      metric: 'tokens/s',
      value: (n * 1000) / t.medianMs,
      formula: 'tokens verified per second in one target tree step over the prefix',
      peers: [{ name: 'one decode step', medianMs: decode.medianMs, speedup: decode.medianMs / t.medianMs }],
      notes: { 'verify / decode': ratio, ...(tau ? { 'speedup bound at measured tau': tau / ratio } : {}) },
    });
  }
  cache.dispose();
  model.dispose();
  return rows;
}

/**
 * The llama.cpp peers on the same GGUF file and prompt, batch 1, greedy: plain decoding, its
 * draft-model speculation (node-llama-cpp's DraftSequenceTokenPredictor, default settings, the
 * draft written as GGUF) and its prompt lookup (InputLookupTokenPredictor). One child process
 * runs the three; each peer is compared with the canopy row of the same kind ('speedup':
 * llama.cpp's time per token over canopy's).
 */
async function llamaCppPeers(
  ctx: SuiteContext,
  path: string,
  draftGguf: string | undefined,
  maxTokens: number,
  canopyMsPerToken: { autoregressive: number; speculative?: number; lookup?: number },
): Promise<{ plain: PeerResult; draft: PeerResult; lookup: PeerResult }> {
  const absent = (detail: string) => ({ plain: { name: 'llama.cpp', absent: detail }, draft: { name: 'llama.cpp draft speculation', absent: detail }, lookup: { name: 'llama.cpp prompt lookup', absent: detail } });
  if (!ctx.peers.llamaCpp.available) return absent(ctx.peers.llamaCpp.detail);
  const { model, tokenizer } = await loadModel(path, { backend: 'cpu' });
  model.dispose();
  const prompt = tokenizer.encode(PROMPTS[0]!, { bos: true });
  const threads = [...new Set([1, ctx.threads])];
  const job = { modelPath: path, prompt, maxTokens, warmup: 1, repeats: 3 };
  const jobs: LlamaCppJob[] = [
    { id: 'plain', ...job },
    ...(draftGguf ? [{ id: 'draft', ...job, predictor: { type: 'draft' as const, draftModelPath: draftGguf } }] : []),
    { id: 'lookup', ...job, predictor: { type: 'lookup' } },
  ];
  const run = await runLlamaCppWorker({ threads, jobs }, 60_000 + canopyMsPerToken.autoregressive * maxTokens * 20 * 4 * threads.length * jobs.length);
  if (!run.output) return absent(run.reason ?? 'no output');
  const byId = new Map(run.output.results.map((r) => [r.id, r]));
  const plainTokens = byId.get('plain')?.tokens;
  let plainMs: number | undefined;
  const peer = (id: string, name: string, canopyMs: number | undefined): PeerResult => {
    const r = byId.get(id);
    if (!r) return { name, absent: id === 'draft' ? 'no draft model given' : 'no result' };
    if (r.error || !r.variants?.length) return { name, absent: r.error ?? 'no result' };
    const best = r.variants.filter((v) => v.runs.length).map((v) => ({ threads: v.threads, ms: median(v.runs.map((x) => x.msPerToken)) })).sort((a, b) => a.ms - b.ms)[0];
    if (!best) return { name, absent: 'no timed runs' };
    if (id === 'plain') plainMs = best.ms;
    const p = r.predictions;
    const notes: Record<string, string | number> = {
      'tokens/s': 1000 / best.ms,
      threads: best.threads,
      ...(id !== 'plain' && plainMs !== undefined ? { 'x llama.cpp plain': plainMs / best.ms } : {}),
      ...(p ? { 'predictions validated/refuted': `${p.validated}/${p.refuted}` } : {}),
      ...(id !== 'plain' && plainTokens ? { 'tokens = llama.cpp plain': r.tokens?.join() === plainTokens.join() ? 'yes' : 'NO' } : {}),
    };
    return { name, medianMs: best.ms, ...(canopyMs !== undefined ? { speedup: best.ms / canopyMs } : {}), notes };
  };
  return {
    plain: peer('plain', 'llama.cpp (plain)', canopyMsPerToken.autoregressive),
    draft: peer('draft', 'llama.cpp draft speculation', canopyMsPerToken.speculative),
    lookup: peer('lookup', 'llama.cpp prompt lookup', canopyMsPerToken.lookup),
  };
}

export const decodeSuite: Suite = {
  name: 'decode',
  description: 'decoding strategies against autoregressive decoding: the inflated 1B target (stories260K in TinyLlama-1.1B\'s shape; F16, Q8_0 and Q4_K_M) and the tiny pair, drafted by llama2xs-281K',
  plan(ctx) {
    const dir = findModelsDir();
    const given = ctx.models[0];
    const draftPath = ctx.draft ?? (dir && !given ? join(dir, 'llama2xs-281K', 'model.bin') : undefined);
    let tau: number | undefined;
    const steps: BenchStep[] = [];
    const pairStep = (label: string, pair: () => DecodePair, peer?: (rows: BenchRow[]) => Promise<void>) => {
      steps.push({
        label,
        run: async () => {
          const rows = await runDecodePair(ctx, pair());
          await peer?.(rows);
          return multiRow(rows);
        },
      });
    };
    if (given) {
      pairStep('strategies', () => ({ label: given.split(/[\\/]/).slice(-2).join('/'), modelPath: given, ...(draftPath ? { draftPath } : {}), batch: PROMPTS.length, maxTokens: ctx.quick ? 96 : 256, rounds: ctx.quick ? 2 : 5 }));
    } else if (dir) {
      // The headline: a target with stories260K's predictions and a 1B model's cost.
      const source = join(dir, 'stories260K', 'stories260K.gguf');
      let inflated: string | undefined;
      const f16 = () => (inflated ??= inflatedGguf(source, TINYLLAMA_SHAPE, 1));
      // The same target in llama.cpp's Q8_0 and Q4_K_M, quantized from the F16 file by quantize()
      // (cached beside it); the zero blocks quantize to zero, so the predictions stay stories260K's.
      const quantized = new Map<QuantPreset, Promise<string>>();
      const fileOf = async (storage: InflatedStorage) => {
        if (storage === 'F16') return f16();
        if (!quantized.has(storage)) quantized.set(storage, cachedQuantizedGguf(f16(), storage).then((f) => f.path));
        return quantized.get(storage)!;
      };
      // F16 stays the headline (batch 1, and 4 without --quick); the quantized pairs run at batch 1
      // (with --quick only when --filter asks for them).
      const inflatedRows: Array<[InflatedStorage, number]> = [
        ...(ctx.quick ? [1] : [1, 4]).map((b): [InflatedStorage, number] => ['F16', b]),
        ['Q8_0', 1],
        ['Q4_K_M', 1],
      ];
      for (const [storage, batch] of inflatedRows) {
        const label = `stories260K inflated to TinyLlama-1.1B shape, ${storage}`;
        // llama.cpp's three peers on the same file, batch 1 on the CPU.
        const inflatedPeers = async (rows: BenchRow[], path: string) => {
          if (batch !== 1 || ctx.backend !== 'cpu') return;
          const sp = rows.find((r) => r.name === 'speculative')?.notes?.tau;
          if (storage === 'F16') tau = typeof sp === 'number' ? sp : tau;
          const n = ctx.quick ? 48 : 100;
          const row = (name: string) => rows.find((r) => r.name === name);
          const perToken = (name: string) => {
            const r = row(name);
            return r ? r.timing.medianMs / n : undefined;
          };
          // llama.cpp reads GGUF only: the draft (llama2xs-281K's llama2.c file) is written as one.
          const draftGguf = draftPath && ctx.peers.llamaCpp.available ? ggufCopy(draftPath, source) : undefined;
          const peers = await llamaCppPeers(ctx, path, draftGguf, n, { autoregressive: perToken('autoregressive')!, speculative: perToken('speculative'), lookup: perToken('lookup') });
          row('autoregressive')!.peers.push(peers.plain);
          row('speculative')?.peers.push(peers.draft);
          row('lookup')?.peers.push(peers.lookup);
        };
        const stepLabel = `inflated ${storage} pair, batch ${batch}`;
        // --quick leaves the quantized pairs out (about 2 minutes each here) unless --filter names them.
        const left = ctx.quick && storage !== 'F16' && !(ctx.filter && `decode: ${stepLabel}`.includes(ctx.filter));
        steps.push({
          label: stepLabel,
          ...(left ? { skip: `quick run: the quantized pairs run in the full run or with --filter "${storage} pair"` } : {}),
          run: async () => {
            const path = await fileOf(storage);
            const rows = await runDecodePair(ctx, { label, modelPath: path, draftPath: draftPath!, batch, maxTokens: ctx.quick ? 48 : 100, rounds: ctx.quick ? 1 : 3 });
            await inflatedPeers(rows, path);
            return multiRow(rows);
          },
        });
      }
      for (const batch of [1, 4]) {
        pairStep(`tiny pair, batch ${batch}`, () => ({ label: 'stories260K', modelPath: join(dir, 'stories260K', 'stories260K.bin'), draftPath: draftPath!, batch, maxTokens: ctx.quick ? 96 : 256, rounds: ctx.quick ? 3 : 5 }));
      }
      // Sampled rows (decode-sampled.ts): the native sampled step, tiny pair.
      for (const batch of [1, 4]) {
        const pair: DecodePair = { label: 'stories260K', modelPath: join(dir, 'stories260K', 'stories260K.bin'), draftPath: draftPath!, batch, maxTokens: ctx.quick ? 96 : 256, rounds: ctx.quick ? 3 : 5 };
        steps.push({ label: `tiny pair sampled, batch ${batch}`, run: async () => multiRow(await runSampledPair(ctx, pair)) });
      }
    }
    steps.push({ label: 'verify cost', run: async () => multiRow(await verifyCost(ctx, ctx.quick ? 'smollm-135m' : 'llama-1b', [5, 16, 64], tau)) });
    return steps;
  },
};

/** Lets one step return several rows (the runner flattens `extraRows`). */
function multiRow(rows: BenchRow[]): BenchRow {
  const [first, ...rest] = rows;
  return Object.assign(first!, { extraRows: rest });
}
