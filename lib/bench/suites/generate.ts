/**
 * `canopy bench generate`: end-to-end decoding, batch 1.
 *
 *   decode   random models of standard shapes (no download), one forward per token from
 *            in-memory weights: decode tokens/s, time to first token, and the weight
 *            bandwidth the decode achieves (bytes of weights read per token x tokens/s)
 *            against the machine's copy bandwidth.
 *   greedy   generate() from a GGUF file, greedy, fixed prompt and length: a random model of
 *            a standard shape that the bench writes itself (lib/model/formats/gguf-writer.ts),
 *            ../shared/models/stories260K/stories260K.gguf when found (CANOPY_MODELS), and
 *            any model given with --model. Peers: llama.cpp (node-llama-cpp, CPU) on the
 *            same file, prompt ids and length, with whether its greedy output matches
 *            canopy's; on CUDA, transformers generate() (plain and assisted) on a random
 *            model of the same shape.
 */
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { ArgumentError } from '../../errors.js';
import { generate } from '../../generate.js';
import { expectedShapes, type ModelConfig } from '../../model/config.js';
import { syntheticVocabMetadata, writeLlamaGguf } from '../../model/formats/gguf-writer.js';
import { readGguf } from '../../model/formats/gguf.js';
import { loadModel } from '../../model/load.js';
import { Model } from '../../model/model.js';
import { MODEL_PRESETS, weightBytesPerToken } from '../../model/presets.js';
import { Tensor } from '../../tensor/tensor.js';
import { dtypeSize, type FloatDType } from '../../tensor/dtype.js';
import { quantize, type QuantPreset } from '../../quantize/index.js';
import { type BenchRow, type PeerResult, type Timing, time } from '../harness.js';
import { benchCacheDir } from '../inflate.js';
import { findBenchModel } from '../models.js';
import { type LlamaCppOutput, compareGreedy, runLlamaCppWorker } from '../peers/llama-cpp.js';
import type { TorchGenerateJob } from '../peers/torch.js';
import type { BenchStep, Suite, SuiteContext } from './types.js';
import { randomValues } from './util.js';

/** Weights filled fast: a random block repeated (values do not matter for speed). */
export function fastRandomWeights(preset: string): Map<string, Tensor> {
  const config = MODEL_PRESETS[preset]!;
  const block = randomValues(1 << 16, 1).map((v) => v * 0.02);
  const tensors = new Map<string, Tensor>();
  for (const [name, shape] of expectedShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    if (name.endsWith('Norm') || name === 'norm') a.fill(1);
    else {
      a.set(block.subarray(0, Math.min(n, block.length)));
      for (let filled = Math.min(n, block.length); filled < n; filled *= 2) a.copyWithin(filled, 0, Math.min(filled, n - filled));
    }
    tensors.set(name, Tensor.from(a, { shape }));
  }
  return tensors;
}

/** FNV-1a of a name: a per-tensor seed. */
function seedOf(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/**
 * Writes a random model of `config` as GGUF: every matrix its own seeded uniform values in
 * [-0.05, 0.05) (so greedy decoding wanders through the vocabulary instead of repeating one
 * token, and a disagreement between two engines shows), norms 1, a made-up vocabulary.
 */
export function writeRandomGguf(path: string, config: ModelConfig, type: 0 | 1): void {
  const tensors = [...expectedShapes(config)].map(([name, shape]): [string, () => Float32Array] => [
    name,
    () => {
      const n = shape.reduce((a, b) => a * b, 1);
      if (shape.length === 1) return new Float32Array(n).fill(1);
      const v = randomValues(n, seedOf(name));
      for (let i = 0; i < n; i++) v[i]! *= 0.05;
      return v;
    },
  ]);
  writeLlamaGguf(path, config, tensors, { type, extraMetadata: syntheticVocabMetadata(config.vocabSize) });
}

async function benchPreset(ctx: SuiteContext, preset: string, dtype: FloatDType, promptLen: number, steps: number): Promise<BenchRow> {
  const config = MODEL_PRESETS[preset]!;
  const tensors = fastRandomWeights(preset);
  const model = await Model.fromWeights({ config, tensors }, { backend: ctx.device, dtype });
  tensors.forEach((t) => t.dispose());
  const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919) % config.vocabSize);
  let cache = model.createCache({ capacity: promptLen + steps + 8 });
  // Time to first token: the prefill of the prompt (median of a few).
  const ttft = await time(
    async () => {
      cache.truncate(0, 0);
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: prompt }]);
      logits.dispose();
    },
    { budgetMs: ctx.budgetMs / 2, warmup: 1, minRepeats: 2, maxRepeats: 5 },
  );
  // Decode: one token per step on top of the prompt.
  let token = 1;
  const decode = await time(
    async () => {
      if (cache.free(0) < 1) cache.truncate(0, promptLen);
      const { logits } = await model.forward(cache, [{ sequence: 0, tokens: [token] }]);
      token = (token * 31 + 7) % config.vocabSize;
      logits.dispose();
    },
    { budgetMs: ctx.budgetMs, warmup: 2, minRepeats: Math.min(steps, 5), maxRepeats: steps },
  );
  cache.dispose();
  model.dispose();
  cache = undefined as never;
  const tokensPerSecond = 1000 / decode.medianMs;
  const bytes = weightBytesPerToken(config, dtypeSize(dtype));
  return {
    suite: 'generate',
    name: 'decode',
    backend: ctx.backend,
    config: { model: preset, dtype, prompt: promptLen, batch: 1 },
    timing: decode,
    metric: 'GB/s',
    value: (bytes * tokensPerSecond) / 1e9,
    formula: 'bytes of weights read per token (every matrix once, output head included) * tokens/s',
    limit: { value: ctx.limits.copyGBps, what: 'copy bandwidth' },
    peers: [],
    notes: { 'tokens/s': tokensPerSecond, 'TTFT ms': ttft.medianMs, 'prefill tokens/s': (promptLen * 1000) / ttft.medianMs },
  };
}

const FORMAT_NAMES = { gguf: 'GGUF', llama2c: 'llama2.c', hf: 'Hugging Face' } as const;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))))]!;
}

function timingOf(samples: number[]): Timing {
  const s = [...samples].sort((a, b) => a - b);
  return { medianMs: percentile(s, 0.5), p10Ms: percentile(s, 0.1), p90Ms: percentile(s, 0.9), repeats: s.length };
}

interface GreedyOptions {
  /** The row's model name. */
  model: string;
  path: string;
  /** Prompt ids, or text encoded with the model's tokenizer (BOS first when it has one). */
  prompt: { ids: number[] } | { text: string };
  maxTokens: number;
  warmup: number;
  repeats: number;
  /** Storage dtype canopy converts the weights to (default: as stored on the CPU, bf16 on CUDA). */
  dtype?: FloatDType;
  /** What the weights are, for the row's config ("random GGUF f32"; default: the file's format). */
  weights?: string;
  /** Bytes of weights read per token when the file's block types set them (ggufBytesPerToken); default: the loaded dtype's size per weight. */
  bytesPerToken?: number;
  /** Extra notes for the row (how long quantizing took). */
  notes?: Record<string, number | string>;
}

/** The llama.cpp peer on the same file, prompt and length: the best thread count's median. */
function llamaCppPeer(out: LlamaCppOutput, canopy: { medianMs: number; tokens: number[]; text: string }): PeerResult {
  const r = out.results[0];
  if (!r || r.error || !r.variants?.length) return { name: 'llama.cpp', absent: r?.error ?? 'no result' };
  const best = r.variants
    .filter((v) => v.runs.length > 0)
    .map((v) => ({ threads: v.threads, msPerToken: timingOf(v.runs.map((x) => x.msPerToken)).medianMs, ttftMs: timingOf(v.runs.map((x) => x.ttftMs)).medianMs }))
    .sort((a, b) => a.msPerToken - b.msPerToken);
  if (best.length === 0) return { name: 'llama.cpp', absent: 'no timed runs' };
  const b = best[0]!;
  const match = compareGreedy(canopy, { tokens: r.tokens ?? [], text: r.text ?? '' });
  const others = [
    ...best.slice(1).map((v) => `${v.threads}: ${(1000 / v.msPerToken).toFixed(1)}`),
    ...r.variants.filter((v) => v.abandoned).map((v) => `${v.threads}: not timed (${v.abandoned})`),
  ];
  return {
    name: 'llama.cpp',
    medianMs: b.msPerToken,
    speedup: b.msPerToken / canopy.medianMs,
    notes: { 'tokens/s': 1000 / b.msPerToken, 'TTFT ms': b.ttftMs, threads: b.threads, greedy: match.summary },
    details: {
      ...(others.length ? { 'tokens/s at other thread counts': others.join(', ') } : {}),
      'peak RSS MiB': out.maxRssMiB,
      'load ms': r.loadMs ?? NaN,
      'node-llama-cpp': out.version,
      'llama.cpp': `${out.llamaCpp} (${out.buildType})`,
    },
  };
}

async function benchGreedy(ctx: SuiteContext, o: GreedyOptions): Promise<BenchRow> {
  const t0 = performance.now();
  const dtype = o.dtype ?? (ctx.backend === 'cuda' ? 'bf16' : undefined);
  const { model, tokenizer, format } = await loadModel(o.path, { backend: ctx.device, ...(dtype ? { dtype } : {}) });
  const loadMs = performance.now() - t0;
  const config = model.config;
  const weightDtype = model.weightDtype;
  const prompt = 'ids' in o.prompt ? o.prompt.ids : tokenizer.encode(o.prompt.text, { bos: tokenizer.bosId !== undefined });
  const maxTokens = Math.min(o.maxTokens, config.maxSeqLen - prompt.length);
  const msPerToken: number[] = [];
  const ttft: number[] = [];
  let tokens: number[] = [];
  let text = '';
  try {
    for (let r = 0; r < o.warmup + o.repeats; r++) {
      const g = await generate({ model, tokenizer, tokens: prompt, maxTokens, temperature: 0, stopAtEos: false });
      if (r >= o.warmup) {
        msPerToken.push(1000 / g.stats.tokensPerSecond);
        ttft.push(g.stats.timeToFirstTokenMs);
      }
      tokens = g.tokens;
      text = g.text;
    }
  } finally {
    model.dispose();
  }
  const timing = timingOf(msPerToken);
  const peers: PeerResult[] = [];
  if (ctx.backend === 'cpu') {
    if (!o.path.toLowerCase().endsWith('.gguf')) peers.push({ name: 'llama.cpp', absent: 'llama.cpp reads GGUF files only' });
    else if (!ctx.peers.llamaCpp.available) peers.push({ name: 'llama.cpp', absent: ctx.peers.llamaCpp.detail });
    else {
      const threads = [...new Set([1, ctx.threads])]; // one thread first: the baseline a spin-waiting count must beat
      const perRun = (timing.medianMs * maxTokens + Math.max(...ttft)) * 20; // generous: llama.cpp may be 20x slower
      const run = await runLlamaCppWorker(
        { threads, jobs: [{ id: o.model, modelPath: o.path, prompt, maxTokens, warmup: o.warmup, repeats: o.repeats }] },
        Math.max(60_000, 30_000 + perRun * (o.warmup + o.repeats) * threads.length),
      );
      peers.push(run.output ? llamaCppPeer(run.output, { medianMs: timing.medianMs, tokens, text }) : { name: 'llama.cpp', absent: run.reason ?? 'no output' });
    }
  }
  const tokensPerSecond = 1000 / timing.medianMs;
  const bytes = o.bytesPerToken ?? weightBytesPerToken(config, dtypeSize(weightDtype));
  return {
    suite: 'generate',
    name: 'greedy',
    backend: ctx.backend,
    config: { model: o.model, weights: `${o.weights ?? FORMAT_NAMES[format]}${dtype ? ` as ${weightDtype}` : ''}`, prompt: prompt.length, new: maxTokens, batch: 1 },
    timing,
    metric: 'GB/s',
    value: (bytes * tokensPerSecond) / 1e9,
    formula:
      o.bytesPerToken === undefined
        ? 'bytes of weights read per token (every matrix once, output head included) * tokens/s'
        : "bytes of weights read per token (every matrix of the file once at its block type's bytes, output head included, embedding table excluded unless tied) * tokens/s",
    limit: { value: ctx.limits.copyGBps, what: 'copy bandwidth' },
    peers,
    notes: { 'tokens/s': tokensPerSecond, 'TTFT ms': timingOf(ttft).medianMs, 'load ms': loadMs, ...o.notes },
  };
}

/** A greedy row on a random model of a standard shape, written as GGUF to a temporary folder. */
async function benchRandomGguf(ctx: SuiteContext, preset: string, type: 0 | 1, promptLen: number, maxTokens: number, repeats: number): Promise<BenchRow> {
  const config = MODEL_PRESETS[preset]!;
  const fileConfig = benchFileConfig(config);
  const dir = mkdtempSync(join(tmpdir(), 'canopy-bench-'));
  const path = join(dir, `${preset}-${type === 0 ? 'f32' : 'f16'}.gguf`);
  try {
    writeRandomGguf(path, fileConfig, type);
    return await benchGreedy(ctx, {
      model: preset,
      path,
      prompt: { ids: Array.from({ length: promptLen }, (_, i) => (i * 7919) % config.vocabSize) },
      maxTokens,
      warmup: 1,
      repeats,
      weights: `random GGUF ${type === 0 ? 'f32' : 'f16'}`,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The 1B-shaped files of the quantized rows: F16, then llama.cpp's presets made from it with quantize(). */
export const QUANT_BENCH_STORAGES = ['F16', 'Q8_0', 'Q4_0', 'Q4_K_M'] as const satisfies ReadonlyArray<'F16' | QuantPreset>;
export type BenchStorage = 'F16' | QuantPreset;

/**
 * Bytes of weights one decode step reads from a GGUF file: every tensor's stored bytes (its
 * block type's bytes per block, F32 norms included), the embedding table excluded unless it is
 * also the output head (no output.weight: tied), since decode reads one row of it.
 */
export function ggufBytesPerToken(path: string): number {
  const f = readGguf(path);
  const tied = !f.tensors.some((t) => t.name === 'output.weight');
  return f.tensors.filter((t) => tied || t.name !== 'token_embd.weight').reduce((a, t) => a + t.byteLength, 0);
}

/** The storage types of a GGUF file's tensors with their counts, most first ("Q4_K x97, Q6_K x17, F32 x33"). */
export function ggufTypeCounts(path: string): string {
  const counts = new Map<string, number>();
  for (const t of readGguf(path).tensors) counts.set(t.typeName, (counts.get(t.typeName) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]).map(([n, c]) => `${n} x${c}`).join(', ');
}

/** A random model file's cache key: the shape and the seeding scheme (r1: writeRandomGguf), so a changed shape writes a new file. */
function shapeKey(c: ModelConfig): string {
  return `d${c.dim}-h${c.hiddenDim}-l${c.nLayers}-q${c.nHeads}-kv${c.nKvHeads}-hd${c.headDim}-v${c.vocabSize}${c.tiedEmbeddings ? '-tied' : ''}-r1`;
}

/** The file config of a preset: no RoPE scaling (llama-1b's llama3 scaling would need a rope_freqs tensor), so both engines run plain RoPE, which costs the same. */
export function benchFileConfig(config: ModelConfig): ModelConfig {
  const fileConfig: ModelConfig = { ...config, ropeStyle: 'interleaved' };
  delete fileConfig.ropeScaling;
  return fileConfig;
}

export interface CachedGguf {
  path: string;
  /** How long writing (F16) or quantizing took, ms; undefined when the file came from the cache. */
  makeMs?: number;
}

/**
 * `path`, made once by `make(partial)` and reused: written under a temporary name and renamed,
 * so an interrupted run leaves no partial file under the final name.
 */
async function cachedFile(path: string, make: (partial: string) => Promise<void> | void): Promise<CachedGguf> {
  if (existsSync(path)) return { path };
  const partial = `${path}.${process.pid}.partial`;
  try {
    const t0 = performance.now();
    await make(partial);
    const makeMs = performance.now() - t0;
    renameSync(partial, path);
    return { path, makeMs };
  } finally {
    rmSync(partial, { force: true });
  }
}

/**
 * `f16Path` quantized with llama.cpp's `preset` by quantize() into `path`, made once and reused
 * (the random 1B files below and the inflated benchmark pair of the decode suite share it).
 * `path` defaults to `f16Path` with its F16 tag (`-F16.gguf`, `-f16.gguf`) replaced by the preset.
 */
export async function cachedQuantizedGguf(f16Path: string, preset: QuantPreset, path?: string): Promise<CachedGguf> {
  const out = path ?? f16Path.replace(/(-f16)?\.gguf$/i, '') + `-${preset}.gguf`;
  if (out === f16Path) throw new ArgumentError('path', 'an output path other than the F16 input', out);
  return cachedFile(out, async (partial) => {
    await quantize(f16Path, partial, { type: preset });
  });
}

/**
 * A random model of `config` as a GGUF file of `storage` in `dir`, made once and reused: F16 by
 * writeRandomGguf, a preset by cachedQuantizedGguf() from the F16 file (made first when missing).
 */
export async function cachedBenchGguf(dir: string, name: string, config: ModelConfig, storage: BenchStorage): Promise<CachedGguf> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}-${shapeKey(config)}-${storage}.gguf`);
  if (storage === 'F16') return cachedFile(path, (partial) => writeRandomGguf(partial, config, 1));
  if (existsSync(path)) return { path };
  const f16 = await cachedBenchGguf(dir, name, config, 'F16');
  return cachedQuantizedGguf(f16.path, storage, path);
}

/** A greedy row on a cached random 1B-shaped file of `storage` (F16 or a quantized preset). */
async function benchCachedGguf(ctx: SuiteContext, preset: string, storage: BenchStorage, promptLen: number, maxTokens: number, repeats: number): Promise<BenchRow> {
  const config = MODEL_PRESETS[preset]!;
  const file = await cachedBenchGguf(join(benchCacheDir(), 'bench-gguf'), preset, benchFileConfig(config), storage);
  return benchGreedy(ctx, {
    model: preset,
    path: file.path,
    prompt: { ids: Array.from({ length: promptLen }, (_, i) => (i * 7919) % config.vocabSize) },
    maxTokens,
    warmup: 1,
    repeats,
    weights: `random GGUF ${storage} (${ggufTypeCounts(file.path)})`,
    bytesPerToken: ggufBytesPerToken(file.path),
    notes: { [storage === 'F16' ? 'write ms' : 'quantize ms']: file.makeMs ?? 'cached' },
  });
}

function torchGenerateJob(id: string, preset: string, promptLen: number, maxTokens: number, draftLayers: number): TorchGenerateJob {
  const c = MODEL_PRESETS[preset]!;
  return {
    id,
    kind: 'generate',
    preset,
    model: { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim, vocabSize: c.vocabSize, ropeTheta: c.ropeTheta, normEps: c.normEps, tiedEmbeddings: c.tiedEmbeddings },
    dtype: 'bf16',
    promptLen,
    maxTokens,
    draftLayers,
  };
}

export const generateSuite: Suite = {
  name: 'generate',
  description: 'end-to-end decode: random models of standard shapes and real GGUF models, with llama.cpp and transformers as peers',
  plan(ctx) {
    const cpu = ctx.backend === 'cpu';
    const dtype: FloatDType = cpu ? 'f32' : 'bf16';
    const steps: BenchStep[] = [{ label: 'decode smollm-135m', run: () => benchPreset(ctx, 'smollm-135m', dtype, 64, 32) }];
    if (!ctx.quick) steps.push({ label: 'decode llama-1b', run: () => benchPreset(ctx, 'llama-1b', dtype, 128, 16) });

    // Greedy end to end on GGUF files. CPU: f32 for the small model (as the decode row), f16 for 1B.
    const greedy: Array<{ preset: string; type: 0 | 1; tokens: number; draft: number }> = [{ preset: 'smollm-135m', type: cpu ? 0 : 1, tokens: ctx.quick ? 32 : 64, draft: 4 }];
    // 1B: on CUDA a temporary f16 file (with its transformers peer); on the CPU the cached F16 file and its quantized presets below.
    if (!ctx.quick && !cpu) greedy.push({ preset: 'llama-1b', type: 1, tokens: 32, draft: 2 });
    for (const g of greedy) {
      const torch = cpu ? undefined : torchGenerateJob(`generate:${g.preset}`, g.preset, 64, g.tokens, g.draft);
      steps.push({
        label: `greedy ${g.preset}`,
        run: () => benchRandomGguf(ctx, g.preset, g.type, 64, g.tokens, ctx.quick ? 2 : 3),
        ...(torch ? { torch: [torch] } : {}),
      });
    }

    // 1B-shaped F16, Q8_0, Q4_0 and Q4_K_M files against llama.cpp (CPU: its peer runs there).
    // The files are cached (benchCacheDir()/bench-gguf): the first run writes and quantizes them.
    if (cpu) {
      for (const storage of QUANT_BENCH_STORAGES) {
        steps.push({ label: `greedy llama-1b ${storage}`, run: () => benchCachedGguf(ctx, 'llama-1b', storage, 64, ctx.quick ? 8 : 32, ctx.quick ? 1 : 3) });
      }
    }

    // Real models: stories260K when found, and any given with --model.
    const real: Array<{ label: string; path?: string; reason?: string }> = [];
    const stories = findBenchModel('stories260K/stories260K.gguf');
    real.push({ label: 'stories260K', ...stories });
    for (const p of ctx.models) real.push({ label: basename(p), path: p });
    for (const m of real) {
      steps.push({
        label: `greedy ${m.label}`,
        ...(m.path ? {} : { skip: m.reason ?? 'not found' }),
        run: () =>
          benchGreedy(ctx, {
            model: m.label,
            path: m.path!,
            prompt: { text: 'Once upon a time' },
            maxTokens: ctx.quick ? 128 : 256,
            warmup: 1,
            repeats: ctx.quick ? 3 : 5,
          }),
      });
    }
    return steps;
  },
};
