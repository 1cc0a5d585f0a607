/**
 * llama.cpp as a test oracle: node-llama-cpp (never a dependency of canopy-llm) installed by
 * `canopy bench --install-peers` or scripts/install-peers.mjs (.ci/run does it, into
 * CANOPY_PEERS_DIR) and run in a child process (llama-peer-worker.mjs).
 *
 *   llamaPeerMissing()             why the peer cannot be used here (undefined when it can);
 *                                  tests skip with that reason printed. CANOPY_REQUIRE_LLAMA_PEER=1
 *                                  (CI) turns its absence into a failure instead of a skip.
 *   LlamaPeer.start()              the child process: tokenize / detokenize (vocabulary-only
 *                                  load) and teacher-forced greedy tokens with llama.cpp's logits
 *   canopyGreedy(file, tokens)     canopy's side: one prefill with logits 'all', argmax per row
 *   agreement(file, tokens)        both, compared position by position
 *
 * Teacher forcing: the sequence `tokens` is fed as is (no sampling); position i's greedy choice
 * is the argmax of the logits after tokens[0..i], so n tokens give n positions. Ties go to the
 * lowest id on both sides. Each side also reports its top-two margin at every position, so a
 * disagreement on a near tie (quantization or rounding noise) is told from a real one.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { findNodeLlamaCpp, peersDir } from '../../lib/bench/peers/llama-cpp.js';
import { Model } from '../../lib/model/model.js';
import { loadWeights } from '../../lib/model/weights.js';

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'llama-peer-worker.mjs');
const REPLY = 'LLAMA_PEER ';

/** Why llama.cpp (node-llama-cpp) cannot be used here, or undefined when it can. */
export function llamaPeerMissing(): string | undefined {
  const found = findNodeLlamaCpp(peersDir());
  return found.entry ? undefined : (found.reason ?? 'node-llama-cpp not found');
}

/**
 * For `describe.runIf(...)` / `it.skipIf(...)`: true when the peer is usable. Otherwise prints
 * `[skip] <suite>: <reason>` once, or throws when CANOPY_REQUIRE_LLAMA_PEER=1 (CI installs the
 * peer, so its absence there is a failure, not a skip).
 */
export function llamaPeerAvailable(suite: string): boolean {
  const missing = llamaPeerMissing();
  if (missing === undefined) return true;
  if (process.env.CANOPY_REQUIRE_LLAMA_PEER === '1') {
    throw new Error(`${suite}: CANOPY_REQUIRE_LLAMA_PEER=1 but llama.cpp is unavailable: ${missing}`);
  }
  console.warn(`[skip] ${suite}: ${missing}`);
  return false;
}

export interface PeerGreedy {
  /** argmax[i]: the greedy next token after tokens[0..i]. */
  argmax: number[];
  /** The winning logit and the runner-up's, per position. */
  top: number[];
  second: number[];
  /** Every row of logits, when asked. */
  logits?: Float32Array[];
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

/** The llama.cpp child process. One request at a time is served, in order. */
export class LlamaPeer {
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  private stderr = '';
  private exited: string | undefined;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      this.stderr = (this.stderr + d).slice(-4000);
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith(REPLY)) return;
      const msg = JSON.parse(line.slice(REPLY.length)) as Record<string, unknown> & { id: number; error?: string };
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (typeof msg.error === 'string') p.reject(new Error(`llama.cpp: ${msg.error}`));
      else p.resolve(msg);
    });
    child.on('exit', (code, signal) => {
      this.exited = `the llama.cpp worker exited (${code ?? signal})${this.stderr.trim() ? `: ${this.stderr.trim().split('\n').slice(-6).join('\n')}` : ''}`;
      for (const p of this.pending.values()) p.reject(new Error(this.exited));
      this.pending.clear();
    });
  }

  /** llama.cpp's version strings (from the worker's hello). */
  version = { version: '', llamaCpp: '', buildType: '' };

  /**
   * Starts the worker with node-llama-cpp from the peers folder (throws with the reason when it
   * is missing: check {@link llamaPeerAvailable} first). `threads`: llama.cpp's thread count
   * (default: up to 4 of this machine's cores; results do not depend on it).
   */
  static async start(threads = Math.min(4, availableParallelism())): Promise<LlamaPeer> {
    const found = findNodeLlamaCpp(peersDir());
    if (!found.entry) throw new Error(found.reason ?? 'node-llama-cpp not found');
    const child = spawn(process.execPath, [WORKER, found.entry, String(threads)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const peer = new LlamaPeer(child);
    peer.version = (await peer.request({ op: 'hello' })) as LlamaPeer['version'];
    return peer;
  }

  private request(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ id, ...body })}\n`);
    });
  }

  /** llama.cpp's tokenization of each text (no BOS; `special`: special-token text becomes those tokens). */
  async tokenize(path: string, texts: string[], special = false): Promise<number[][]> {
    return (await this.request({ op: 'tokenize', path, texts, special })).ids as number[][];
  }

  /** llama.cpp's detokenization of each id list (`special`: render special tokens' text). */
  async detokenize(path: string, ids: number[][], special = false): Promise<string[]> {
    return (await this.request({ op: 'detokenize', path, ids, special })).texts as string[];
  }

  /** Teacher-forced greedy tokens (CPU, f32 KV cache, no flash attention); see the module comment. */
  async greedy(path: string, tokens: number[], options: { logits?: boolean } = {}): Promise<PeerGreedy> {
    const r = await this.request({ op: 'greedy', path, tokens, logits: !!options.logits });
    const out: PeerGreedy = { argmax: r.argmax as number[], top: r.top as number[], second: r.second as number[] };
    if (r.logits) {
      out.logits = (r.logits as string[]).map((b64) => {
        const buf = Buffer.from(b64, 'base64');
        return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
      });
    }
    return out;
  }

  /** Frees a model the worker holds. */
  async unload(path: string): Promise<void> {
    await this.request({ op: 'unload', path });
  }

  /** Ends the worker (closing its stdin) and waits for it. */
  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(timer);
  }
}

/** canopy's teacher-forced greedy tokens on `path` (CPU, one prefill with logits 'all'). */
export async function canopyGreedy(path: string, tokens: number[], options: { logits?: boolean } = {}): Promise<PeerGreedy> {
  const weights = loadWeights(path);
  const model = await Model.fromWeights(weights, { backend: 'cpu' });
  try {
    return await modelGreedy(model, tokens, options);
  } finally {
    model.dispose();
    weights.dispose();
  }
}

/** `model`'s teacher-forced greedy tokens on `tokens`: one prefill with logits 'all', each row's argmax and top-two logits. */
export async function modelGreedy(model: Model, tokens: number[], options: { logits?: boolean } = {}): Promise<PeerGreedy> {
  const vocab = model.config.vocabSize;
  const cache = model.createCache({ capacity: tokens.length });
  const { logits } = await model.forward(cache, [{ sequence: 0, tokens }], { logits: 'all' });
  const all = logits.toFloat32();
  logits.dispose();
  cache.dispose();
  const out: PeerGreedy = { argmax: [], top: [], second: [] };
  if (options.logits) out.logits = [];
  for (let r = 0; r < tokens.length; r++) {
    const row = all.subarray(r * vocab, (r + 1) * vocab);
    let best = 0;
    let second = -Infinity;
    for (let v = 1; v < vocab; v++) {
      if (row[v]! > row[best]!) {
        second = row[best]!;
        best = v;
      } else if (row[v]! > second) second = row[v]!;
    }
    out.argmax.push(best);
    out.top.push(row[best]!);
    out.second.push(second);
    if (out.logits) out.logits.push(Float32Array.from(row));
  }
  return out;
}

export interface Disagreement {
  position: number;
  canopy: number;
  llama: number;
  /** Each side's top-two logit margin there. */
  canopyMargin: number;
  llamaMargin: number;
}

export interface Agreement {
  /** Positions where both pick the same next token, as a fraction of all positions. */
  fraction: number;
  positions: number;
  /** Where they differ. */
  differ: Disagreement[];
  canopy: PeerGreedy;
  llama: PeerGreedy;
}

/**
 * Teacher-forced greedy agreement of canopy and llama.cpp on one GGUF file. `peer`: a running
 * worker to reuse (else one is started and closed here).
 */
export async function agreement(path: string, tokens: number[], options: { peer?: LlamaPeer; logits?: boolean } = {}): Promise<Agreement> {
  const peer = options.peer ?? (await LlamaPeer.start());
  try {
    const llama = await peer.greedy(path, tokens, { logits: !!options.logits });
    const canopy = await canopyGreedy(path, tokens, { logits: !!options.logits });
    return compareGreedyRuns(canopy, llama);
  } finally {
    if (!options.peer) await peer.close();
  }
}

/** Compares two teacher-forced greedy runs over the same tokens. */
export function compareGreedyRuns(canopy: PeerGreedy, llama: PeerGreedy): Agreement {
  if (canopy.argmax.length !== llama.argmax.length) throw new Error(`position counts differ: canopy ${canopy.argmax.length}, llama.cpp ${llama.argmax.length}`);
  const differ: Disagreement[] = [];
  canopy.argmax.forEach((c, i) => {
    const l = llama.argmax[i]!;
    if (c !== l) differ.push({ position: i, canopy: c, llama: l, canopyMargin: canopy.top[i]! - canopy.second[i]!, llamaMargin: llama.top[i]! - llama.second[i]! });
  });
  const n = canopy.argmax.length;
  return { fraction: n ? (n - differ.length) / n : 1, positions: n, differ, canopy, llama };
}

/** A one-line summary of an agreement for logs. */
export function describeAgreement(label: string, a: Agreement): string {
  const worst = a.differ
    .slice(0, 4)
    .map((d) => `@${d.position}: ${d.canopy} vs ${d.llama} (margins ${d.canopyMargin.toFixed(3)} / ${d.llamaMargin.toFixed(3)})`)
    .join(', ');
  return `${label}: ${(a.fraction * 100).toFixed(1)}% of ${a.positions} positions agree${a.differ.length ? `; differ ${worst}${a.differ.length > 4 ? ', ...' : ''}` : ''}`;
}
