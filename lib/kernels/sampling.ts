/**
 * Native token choice over logits where they live (CPU or CUDA): argmaxRows, and the sampler
 * chain (csrc/common/sampling.h states the math once):
 *
 *   logit bias -> repetition / frequency / presence penalties (each row's own window) ->
 *   temperature (0: greedy argmax, ties to the lowest id) -> top-k -> top-p -> min-p ->
 *   a draw with a passed-in uniform (inverse CDF over ids in increasing order, sums in double
 *   in a fixed order), so the CPU, CUDA and the float64 TypeScript reference
 *   (test/helpers/sampling-reference.ts) pick the same token for the same uniform.
 *
 * Only token ids cross to JavaScript, unless the processed distribution (for speculative
 * verification: the target's p, the draft's q) or the processed logits are asked for; those
 * stay on the logits' device as Tensors.
 */
import { ArgumentError, awaitNative } from '../errors.js';
import { native } from '../native/loader.js';
import { Tensor } from '../tensor/tensor.js';
import { checkTensor } from './args.js';

/**
 * argmax of every row of logits [rows, vocab] f32: ties to the lowest id, NaN counts as -inf,
 * a row with nothing above -inf gives -1. Only the ids cross to JavaScript (CUDA: through the
 * kernel workspace, no allocation per call). Model.step does the same inside the decode step.
 */
export async function argmaxRows(logits: Tensor): Promise<Int32Array> {
  const [rows] = checkTensor(logits, 'logits', 2, '[rows, vocab]') as [number, number];
  if (logits.dtype !== 'f32') throw new ArgumentError('logits.dtype', 'f32', logits.dtype);
  const best = new Int32Array(rows);
  await awaitNative(native().argmaxRows(logits.descriptor('logits'), { data: best, dtype: 'int32', shape: [rows] }));
  return best;
}

/** The sampler chain's settings (one set for every row). */
export interface SamplerChain {
  /** 0 is greedy (argmax of the biased, penalised logits). */
  temperature: number;
  /** Keep the k most probable tokens (0: all). */
  topK: number;
  /** Keep the most probable tokens until their mass (within the top-k set) reaches topP (1: all). */
  topP: number;
  /** Drop tokens whose probability is below minP times the largest one (0: none). */
  minP: number;
  /** llama.cpp's repetition penalty: positive logits of window tokens divided by it, negative ones multiplied (1: off). */
  repeatPenalty: number;
  /** Subtracted count times from the logit of each window token (0: off). */
  frequencyPenalty: number;
  /** Subtracted once from the logit of each token in the window (0: off). */
  presencePenalty: number;
  /** The penalty window: the last penaltyLastN tokens of each row's context (-1: all of it, 0: no penalties). */
  penaltyLastN: number;
  /** Added to the logits of these tokens before anything else (-Infinity bans a token). */
  logitBias: ReadonlyMap<number, number>;
}

/** What a user may pass for a SamplerChain: every field optional; logitBias a Map or a plain object. */
export type SamplerChainOptions = Partial<Omit<SamplerChain, 'logitBias'>> & {
  logitBias?: ReadonlyMap<number, number> | Readonly<Record<number, number>>;
};

/**
 * Validates chain options (ArgumentError naming the option) and fills the defaults. `vocab`,
 * when known, bounds the logitBias token ids.
 */
export function checkSamplerChain(o: SamplerChainOptions, vocab?: number): SamplerChain {
  const num = (name: keyof SamplerChainOptions, fallback: number, ok: (v: number) => boolean, what: string): number => {
    const v = (o as Record<string, unknown>)[name] ?? fallback;
    if (typeof v !== 'number' || !ok(v)) throw new ArgumentError(name, what, v);
    return v;
  };
  const temperature = num('temperature', 0, (v) => Number.isFinite(v) && v >= 0, 'a finite number >= 0');
  const topK = num('topK', 0, (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 31, 'an integer >= 0 (0 keeps all tokens)');
  const topP = num('topP', 1, (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  const minP = num('minP', 0, (v) => v >= 0 && v <= 1, 'a number in [0, 1]');
  const repeatPenalty = num('repeatPenalty', 1, (v) => Number.isFinite(v) && v > 0, 'a finite number > 0 (1: off)');
  const frequencyPenalty = num('frequencyPenalty', 0, Number.isFinite, 'a finite number (0: off)');
  const presencePenalty = num('presencePenalty', 0, Number.isFinite, 'a finite number (0: off)');
  const penaltyLastN = num('penaltyLastN', 64, (v) => Number.isInteger(v) && v >= -1 && v < 2 ** 31, 'an integer >= -1 (-1: the whole context, 0: no penalties)');
  const logitBias = new Map<number, number>();
  const lb = o.logitBias;
  if (lb !== undefined) {
    const entries: Array<[unknown, unknown]> =
      lb instanceof Map ? [...lb.entries()] : lb !== null && typeof lb === 'object' ? Object.entries(lb).map(([k, v]) => [Number(k), v]) : [];
    if (!(lb instanceof Map) && (lb === null || typeof lb !== 'object')) throw new ArgumentError('logitBias', 'a Map or an object of token id -> bias', lb);
    for (const [t, v] of entries) {
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || (vocab !== undefined && t >= vocab)) {
        throw new ArgumentError('logitBias', `token ids in [0, ${vocab ?? '2^31'})`, t);
      }
      if (typeof v !== 'number' || Number.isNaN(v) || v === Infinity) throw new ArgumentError(`logitBias[${t}]`, 'a finite number or -Infinity', v);
      if (v !== 0) logitBias.set(t, v);
    }
  }
  return { temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty, penaltyLastN, logitBias };
}

/** Whether the chain penalises anything (some penalty is on and the window is not empty). */
export function chainHasPenalties(c: SamplerChain): boolean {
  return c.penaltyLastN !== 0 && (c.repeatPenalty !== 1 || c.frequencyPenalty !== 0 || c.presencePenalty !== 0);
}

/** Whether the chain changes the logits before temperature (bias or penalties). */
export function chainProcessesLogits(c: SamplerChain): boolean {
  return c.logitBias.size > 0 || chainHasPenalties(c);
}

/** The (token, count) pairs of each row's window (the last penaltyLastN tokens of its context), CSR. */
export function penaltyCounts(contexts: ReadonlyArray<ArrayLike<number>>, lastN: number): { indptr: Int32Array; tokens: Int32Array; counts: Int32Array } {
  const indptr = new Int32Array(contexts.length + 1);
  const tokens: number[] = [];
  const counts: number[] = [];
  const where = new Map<number, number>();
  contexts.forEach((ctx, r) => {
    where.clear();
    const from = lastN < 0 ? 0 : Math.max(0, ctx.length - lastN);
    for (let i = from; i < ctx.length; i++) {
      const t = ctx[i]!;
      const j = where.get(t);
      if (j === undefined) {
        where.set(t, tokens.length);
        tokens.push(t);
        counts.push(1);
      } else counts[j]!++;
    }
    indptr[r + 1] = tokens.length;
  });
  return { indptr, tokens: Int32Array.from(tokens), counts: Int32Array.from(counts) };
}

export interface ChainRequest {
  /**
   * Each row's context: the tokens before the position its logits predict (prompt, committed
   * tokens, and for a draft-tree row the node's ancestors). Required when the chain has penalties.
   */
  contexts?: ReadonlyArray<ArrayLike<number>>;
  /** One uniform in [0, 1) per row (default: 0 for every row). */
  uniforms?: Float64Array;
  /** Also return the processed distribution [rows, vocab] f32 (on the logits' device). */
  probs?: boolean;
  /** Also return the processed logits (bias and penalties applied) [rows, vocab] f32. */
  processedLogits?: boolean;
}

export interface ChainResult {
  /** The chosen token of each row; -1 where the row has no finite distribution (NaN or +Infinity logits, or all -Infinity). */
  tokens: Int32Array;
  /** The processed distribution (a one-hot row when greedy; 1/vocab where tokens is -1). */
  probs?: Tensor;
  processedLogits?: Tensor;
}

/**
 * The sampler chain over logits [rows, vocab] f32 (CPU or CUDA). The caller disposes the
 * returned tensors.
 */
export async function samplingChain(logits: Tensor, chain: SamplerChain, req: ChainRequest = {}): Promise<ChainResult> {
  const [rows, vocab] = checkTensor(logits, 'logits', 2, '[rows, vocab]') as [number, number];
  if (logits.dtype !== 'f32') throw new ArgumentError('logits.dtype', 'f32', logits.dtype);
  if (vocab < 1) throw new ArgumentError('logits.shape', '[rows, vocab >= 1]', logits.shape);
  for (const t of chain.logitBias.keys()) if (t >= vocab) throw new ArgumentError('logitBias', `token ids in [0, ${vocab})`, t);
  let pen: ReturnType<typeof penaltyCounts> | undefined;
  if (chainHasPenalties(chain)) {
    if (!req.contexts || req.contexts.length !== rows) throw new ArgumentError('contexts', `${rows} token contexts (one per row) when penalties are on`, req.contexts?.length);
    pen = penaltyCounts(req.contexts, chain.penaltyLastN);
    for (let j = 0; j < pen.tokens.length; j++) {
      const t = pen.tokens[j]!;
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new ArgumentError('contexts', `token ids in [0, ${vocab})`, t);
    }
  }
  if (req.uniforms !== undefined) {
    if (!(req.uniforms instanceof Float64Array) || req.uniforms.length !== rows) throw new ArgumentError('uniforms', `a Float64Array of ${rows} values`, req.uniforms);
    for (let i = 0; i < rows; i++) {
      const u = req.uniforms[i]!;
      if (!(u >= 0 && u < 1)) throw new ArgumentError(`uniforms[${i}]`, 'a number in [0, 1)', u);
    }
  }
  const tokens = new Int32Array(rows);
  const probs = req.probs ? Tensor.empty([rows, vocab], 'f32', { device: logits.device }) : undefined;
  const processed = req.processedLogits ? Tensor.empty([rows, vocab], 'f32', { device: logits.device }) : undefined;
  try {
    await awaitNative(
      native().samplingChain(
        logits.descriptor('logits'),
        chain,
        chain.logitBias.size ? Int32Array.from(chain.logitBias.keys()) : null,
        chain.logitBias.size ? Float64Array.from(chain.logitBias.values()) : null,
        pen ? pen.indptr : null,
        pen ? pen.tokens : null,
        pen ? pen.counts : null,
        req.uniforms ?? null,
        { data: tokens, dtype: 'int32', shape: [rows] },
        probs ? probs.descriptor('probs') : null,
        processed ? processed.descriptor('processedLogits') : null,
      ),
    );
  } catch (e) {
    probs?.dispose();
    processed?.dispose();
    throw e;
  }
  return { tokens, ...(probs ? { probs } : {}), ...(processed ? { processedLogits: processed } : {}) };
}

/** One token per row of logits (see samplingChain); -1 where a row has no finite distribution. */
export async function sampleRows(logits: Tensor, chain: SamplerChain, uniforms?: Float64Array, contexts?: ReadonlyArray<ArrayLike<number>>): Promise<Int32Array> {
  return (await samplingChain(logits, chain, { ...(uniforms ? { uniforms } : {}), ...(contexts ? { contexts } : {}) })).tokens;
}
