/**
 * The llama.cpp side of the agreement harness (test/helpers/llama-peer.ts), in its own process:
 * node-llama-cpp is ESM, loads its own native addon and starts its own threads, so it stays out
 * of the vitest worker that runs canopy (a crash there fails one request, not the suite).
 *
 * Protocol: one JSON request per line on stdin, one line per reply on stdout, each prefixed by
 * REPLY (node-llama-cpp's own logs go to stderr through the logger below):
 *   {id, op: 'hello'}                                  -> {version, llamaCpp, buildType}
 *   {id, op: 'tokenize', path, texts, special}         -> {ids: number[][]}
 *   {id, op: 'detokenize', path, ids, special}         -> {texts: string[]}
 *   {id, op: 'greedy', path, tokens, logits?}          -> {argmax, top, second, logits?}
 *   {id, op: 'unload', path}                           -> {}
 * Errors reply {id, error}. The process ends when stdin closes.
 *
 * `greedy` is teacher forcing: the tokens are evaluated in one sequence of a fresh context
 * (CPU, KV cache f32 for keys and values since the default f16 cache rounds, no flash
 * attention) with controlledEvaluate asking for the raw logits after every token; argmax[i] is
 * llama.cpp's greedy choice after tokens[0..i] (ties: lowest id, as canopy's argmax), top[i]
 * its logit and second[i] the runner-up's (the margin tells a near tie from a real
 * disagreement). `logits: true` also returns every row (base64 of little-endian f32).
 */
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const REPLY = 'LLAMA_PEER ';
const entry = process.argv[2];
const threads = Math.max(1, Number(process.argv[3] ?? 1) | 0);
if (!entry) {
  process.stderr.write('usage: llama-peer-worker.mjs <node-llama-cpp entry> [threads]\n');
  process.exit(2);
}

const mod = await import(pathToFileURL(entry).href);
const llama = await mod.getLlama({
  gpu: false,
  build: 'never',
  progressLogs: false,
  maxThreads: threads,
  logLevel: mod.LlamaLogLevel.warn,
  logger: (level, message) => process.stderr.write(`[llama.cpp ${level}] ${message}\n`),
});

/** Loaded models by path (and whether vocabulary only). */
const models = new Map();
async function model(path, vocabOnly) {
  const key = `${vocabOnly ? 'vocab' : 'full'}:${path}`;
  let m = models.get(key);
  if (!m) {
    m = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: true, vocabOnly, checkTensors: !vocabOnly });
    models.set(key, m);
  }
  return m;
}

async function greedy(req) {
  const m = await model(req.path, false);
  const n = req.tokens.length;
  const context = await m.createContext({
    contextSize: Math.max(n + 1, 32),
    batchSize: Math.max(n, 32),
    sequences: 1,
    threads,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  try {
    // GgmlType.F32 is 0: the cache really is f32 (the option is marked experimental).
    if (context.kvCacheKeyType !== 0 || context.kvCacheValueType !== 0) {
      throw new Error(`llama.cpp did not give an f32 KV cache (key type ${context.kvCacheKeyType}, value type ${context.kvCacheValueType})`);
    }
    const seq = context.getSequence();
    const out = await seq.controlledEvaluate(req.tokens.map((t) => [t, { generateNext: { logits: true } }]));
    const argmax = [];
    const top = [];
    const second = [];
    const rows = [];
    for (let i = 0; i < n; i++) {
      const logits = out[i]?.next?.logits;
      if (!logits) throw new Error(`llama.cpp returned no logits at position ${i}`);
      let best = -1;
      let bv = -Infinity;
      let sv = -Infinity;
      const row = req.logits ? new Float32Array(logits.size) : undefined;
      for (const [token, v] of logits) {
        if (row) row[token] = v;
        if (v > bv || (v === bv && token < best)) {
          if (best >= 0) sv = Math.max(sv, bv);
          bv = v;
          best = token;
        } else if (v > sv) sv = v;
      }
      argmax.push(best);
      top.push(bv);
      second.push(sv);
      if (row) rows.push(Buffer.from(row.buffer).toString('base64'));
    }
    return { argmax, top, second, ...(req.logits ? { logits: rows } : {}) };
  } finally {
    await context.dispose();
  }
}

async function handle(req) {
  switch (req.op) {
    case 'hello':
      return { version: mod.getModuleVersion ? await mod.getModuleVersion() : 'unknown', llamaCpp: llama.llamaCppRelease?.release ?? 'unknown', buildType: llama.buildType };
    case 'tokenize': {
      const m = await model(req.path, true);
      return { ids: req.texts.map((t) => Array.from(m.tokenize(t, !!req.special))) };
    }
    case 'detokenize': {
      const m = await model(req.path, true);
      return { texts: req.ids.map((ids) => m.detokenize(ids, !!req.special)) };
    }
    case 'greedy':
      return greedy(req);
    case 'unload': {
      for (const key of [`vocab:${req.path}`, `full:${req.path}`]) {
        const m = models.get(key);
        if (m) {
          models.delete(key);
          await m.dispose();
        }
      }
      return {};
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(req.op)}`);
  }
}

// Requests are served one at a time, in order.
let queue = Promise.resolve();
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
      const result = await handle(req);
      process.stdout.write(`${REPLY}${JSON.stringify({ id: req.id, ...result })}\n`);
    } catch (e) {
      process.stdout.write(`${REPLY}${JSON.stringify({ id: req?.id ?? null, error: e instanceof Error ? e.message : String(e) })}\n`);
    }
  });
});
rl.on('close', () => {
  queue.then(async () => {
    for (const m of models.values()) await m.dispose();
    await llama.dispose();
    process.exit(0);
  });
});
