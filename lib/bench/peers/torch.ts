/**
 * The GPU peers: PyTorch's scaled_dot_product_attention (flash and cuDNN backends; the
 * memory-efficient backend with a boolean mask for tree attention) and Hugging Face
 * transformers generate() (plain, and assisted generation with a draft model) on randomly
 * initialised models of the same standard shapes.
 *
 * They run through bench/peers/torch_peers.py with python3 (CANOPY_PYTHON overrides),
 * only on a run with the CUDA backend: the script gets the jobs as JSON on stdin and
 * prints one JSON object, {ok: true, results} or {ok: false, reason}; every failure on
 * the way (no python3, no torch, no CUDA device, a crash, a timeout, output that is not
 * that JSON) becomes a reason printed with the table.
 */

import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { packageRoot } from '../../native/loader.js';
import { runProcess } from './llama-cpp.js';

/** Attention timed by PyTorch SDPA, shaped like canopy's attention/tree rows (NHD, GQA). */
export interface TorchAttentionJob {
  id: string;
  kind: 'attention';
  /** prefill: causal over qLen = kvLen; decode: one query per sequence over kvLen keys; tree: the tree nodes over prefix + nodes keys, ancestor mask. */
  mode: 'prefill' | 'decode' | 'tree';
  batch: number;
  qLen: number;
  kvLen: number;
  numQoHeads: number;
  numKvHeads: number;
  headDim: number;
  dtype: 'f16' | 'bf16' | 'f32';
  /** Tree mode: parents of the qLen nodes (-1 = child of the prefix). */
  parents?: number[];
}

/** transformers generate() on a random Llama model of a standard shape. */
export interface TorchGenerateJob {
  id: string;
  kind: 'generate';
  /** Preset name, for the report. */
  preset: string;
  model: {
    dim: number;
    hiddenDim: number;
    nLayers: number;
    nHeads: number;
    nKvHeads: number;
    headDim: number;
    vocabSize: number;
    ropeTheta: number;
    normEps: number;
    tiedEmbeddings: boolean;
  };
  dtype: 'f16' | 'bf16' | 'f32';
  promptLen: number;
  maxTokens: number;
  /** Assisted generation: a draft with the target's first `draftLayers` layers (weights shared). */
  draftLayers?: number;
}

export type TorchJob = TorchAttentionJob | TorchGenerateJob;

/** One peer figure for one job: milliseconds per call (attention) or per generated token (generate). */
export interface TorchResult {
  id: string;
  /** "torch sdpa flash", "torch sdpa cudnn", "transformers generate", ... */
  peer: string;
  medianMs?: number;
  p10Ms?: number;
  p90Ms?: number;
  repeats?: number;
  notes?: Record<string, string | number>;
  /** Why this peer could not run this job (a backend refusing a shape, out of memory, ...). */
  error?: string;
}

export type TorchOutput =
  | { ok: true; torch: string; transformers?: string; cuda?: string; device?: string; results: TorchResult[] }
  | { ok: false; reason: string };

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Parses and checks what torch_peers.py printed (the last line that is a JSON object).
 * Anything unexpected becomes {ok: false, reason}; malformed results are dropped with the
 * count said in the reason only when none is usable.
 */
export function parseTorchPeerOutput(stdout: string): TorchOutput {
  const lines = stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('{'));
  if (lines.length === 0) return { ok: false, reason: 'torch_peers.py printed no JSON' };
  let v: unknown;
  try {
    v = JSON.parse(lines[lines.length - 1]!);
  } catch (e) {
    return { ok: false, reason: `torch_peers.py printed malformed JSON (${(e as Error).message})` };
  }
  if (typeof v !== 'object' || v === null) return { ok: false, reason: 'torch_peers.py printed JSON that is not an object' };
  const o = v as Record<string, unknown>;
  if (o.ok === false) return { ok: false, reason: typeof o.reason === 'string' && o.reason ? o.reason : 'torch_peers.py gave no reason' };
  if (o.ok !== true) return { ok: false, reason: 'torch_peers.py output has no "ok" field' };
  if (!Array.isArray(o.results)) return { ok: false, reason: 'torch_peers.py output has no "results" array' };
  const results: TorchResult[] = [];
  for (const r of o.results as unknown[]) {
    if (typeof r !== 'object' || r === null) continue;
    const x = r as Record<string, unknown>;
    if (typeof x.id !== 'string' || typeof x.peer !== 'string') continue;
    const out: TorchResult = { id: x.id, peer: x.peer };
    if (typeof x.error === 'string') out.error = x.error;
    else if (isNum(x.medianMs) && x.medianMs > 0) {
      out.medianMs = x.medianMs;
      if (isNum(x.p10Ms)) out.p10Ms = x.p10Ms;
      if (isNum(x.p90Ms)) out.p90Ms = x.p90Ms;
      if (isNum(x.repeats)) out.repeats = x.repeats;
    } else continue;
    if (typeof x.notes === 'object' && x.notes !== null) {
      const notes: Record<string, string | number> = {};
      for (const [k, nv] of Object.entries(x.notes as Record<string, unknown>)) if (typeof nv === 'string' || isNum(nv)) notes[k] = nv;
      if (Object.keys(notes).length) out.notes = notes;
    }
    results.push(out);
  }
  const str = (k: string) => (typeof o[k] === 'string' ? { [k]: o[k] as string } : {});
  return { ok: true, torch: typeof o.torch === 'string' ? o.torch : 'unknown', ...str('transformers'), ...str('cuda'), ...str('device'), results };
}

/** Where the script ships: bench/peers/torch_peers.py in the package root. */
export function torchScriptPath(): string {
  return join(packageRoot, 'bench', 'peers', 'torch_peers.py');
}

export interface RunTorchOptions {
  /** The CUDA device index the script should use. */
  device: number;
  /** Per-measurement time budget, ms. */
  budgetMs: number;
  timeoutMs: number;
  python?: string;
  script?: string;
}

/** Runs the script on the jobs; never throws (failures come back as {ok: false, reason}). */
export async function runTorchPeers(jobs: TorchJob[], o: RunTorchOptions): Promise<TorchOutput> {
  const script = o.script ?? torchScriptPath();
  if (!existsSync(script)) return { ok: false, reason: `${script} is missing from this installation` };
  const python = o.python ?? process.env.CANOPY_PYTHON ?? 'python3';
  const r = await runProcess(python, [script], { input: JSON.stringify({ device: o.device, budgetMs: o.budgetMs, jobs }), timeoutMs: o.timeoutMs });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? `${python} not found on PATH (set CANOPY_PYTHON to a Python with torch)` : `could not run ${python}: ${r.error.message}` };
  }
  if (r.timedOut) return { ok: false, reason: `torch_peers.py did not finish within ${Math.round(o.timeoutMs / 1000)} s` };
  const parsed = parseTorchPeerOutput(r.stdout);
  if (!parsed.ok && r.code !== 0) {
    const err = r.stderr.trim().split('\n').slice(-3).join(' | ');
    return { ok: false, reason: `${parsed.reason} (exit ${r.code ?? r.signal}${err ? `: ${err}` : ''})` };
  }
  return parsed;
}
