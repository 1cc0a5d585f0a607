/**
 * trainHeads() fits prediction heads (lib/model/heads.ts) to a loaded model by
 * self-distillation: the model's own greedy continuations of the user's texts are the labels
 * (so heads learn what the model will say, which is what verification accepts), with softmax
 * cross-entropy and Adam, in JavaScript: small enough for the tiny test models on a CPU.
 * It sits above generate() (it generates its labels), outside lib/decode.
 */
import { ArgumentError } from '../errors.js';
import type { Model } from '../model/model.js';
import { type PredictionHeads, headLogits } from '../model/heads.js';
import { generate, type TextTokenizer } from '../generate.js';
import { Random } from '../decode/sampling.js';

export interface TrainHeadsOptions {
  model: Model;
  tokenizer: TextTokenizer;
  /** Texts to continue: their greedy continuations are the training data. */
  texts: string[];
  /** Number of heads (default 3). */
  count?: number;
  /** Greedy continuation length per text (default 128). */
  continuation?: number;
  epochs?: number;
  learningRate?: number;
  seed?: number;
}

export interface TrainHeadsReport {
  heads: PredictionHeads;
  positions: number;
  /** Final training loss and top-1 accuracy per head. */
  loss: number[];
  accuracy: number[];
}

/** Self-distillation: hidden states of the model's greedy continuations -> the tokens that follow. */
export async function trainHeads(o: TrainHeadsOptions): Promise<TrainHeadsReport> {
  const count = o.count ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 16) throw new ArgumentError('count', 'an integer in [1, 16]', count);
  if (!Array.isArray(o.texts) || o.texts.length === 0) throw new ArgumentError('texts', 'a non-empty array of strings', o.texts);
  const { dim, vocabSize: vocab } = o.model.config;
  const epochs = o.epochs ?? 30;
  const lr = o.learningRate ?? 3e-3;
  // 1. Data: each text's greedy continuation; hidden states at every position.
  const hiddens: Float32Array[] = [];
  const targets: number[][] = []; // per head: the label at each position
  for (let i = 0; i < count; i++) targets.push([]);
  for (const text of o.texts) {
    const g = await generate({ model: o.model, tokenizer: o.tokenizer, prompt: text, maxTokens: o.continuation ?? 128, temperature: 0, stopAtEos: false });
    const seq = [...o.tokenizer.encode(text, { bos: o.tokenizer.bosId !== undefined }), ...g.tokens];
    const cache = o.model.createCache({ capacity: seq.length + 1 });
    const { logits, hidden } = await o.model.forward(cache, [{ sequence: 0, tokens: seq }], { logits: 'all', hidden: true });
    logits.dispose();
    cache.dispose();
    const h = hidden!.toFloat32();
    hidden!.dispose();
    // Position t: the LM head predicts seq[t + 1]; head i predicts seq[t + 2 + i].
    for (let t = 0; t + 1 + count < seq.length; t++) {
      hiddens.push(h.slice(t * dim, (t + 1) * dim));
      for (let i = 0; i < count; i++) targets[i]!.push(seq[t + 2 + i]!);
    }
  }
  const n = hiddens.length;
  if (n === 0) throw new ArgumentError('texts', `texts long enough to give training positions (continuation > ${count + 1} tokens)`, o.texts);
  // 2. Fit each head: softmax cross-entropy, Adam, minibatches.
  const random = new Random(o.seed ?? 0);
  const heads: PredictionHeads = { count, dim, vocab, weights: [], biases: [] };
  const loss: number[] = [];
  const accuracy: number[] = [];
  for (let i = 0; i < count; i++) {
    const W = new Float32Array(vocab * dim);
    const b = new Float32Array(vocab);
    const mW = new Float32Array(W.length), vW = new Float32Array(W.length), mb = new Float32Array(vocab), vb = new Float32Array(vocab);
    const gW = new Float32Array(W.length), gb = new Float32Array(vocab);
    const order = Array.from({ length: n }, (_, j) => j);
    const batch = 32;
    let step = 0;
    const probs = new Float64Array(vocab);
    for (let e = 0; e < epochs; e++) {
      for (let j = n - 1; j > 0; j--) {
        const r = Math.floor(random.next() * (j + 1));
        [order[j], order[r]] = [order[r]!, order[j]!];
      }
      for (let s0 = 0; s0 < n; s0 += batch) {
        gW.fill(0);
        gb.fill(0);
        const s1 = Math.min(n, s0 + batch);
        for (let s = s0; s < s1; s++) {
          const x = hiddens[order[s]!]!;
          const y = targets[i]![order[s]!]!;
          let m = -Infinity;
          for (let v = 0; v < vocab; v++) {
            let z = b[v]!;
            for (let d = 0; d < dim; d++) z += W[v * dim + d]! * x[d]!;
            probs[v] = z;
            if (z > m) m = z;
          }
          let sum = 0;
          for (let v = 0; v < vocab; v++) sum += probs[v] = Math.exp(probs[v]! - m);
          for (let v = 0; v < vocab; v++) {
            const g = probs[v]! / sum - (v === y ? 1 : 0);
            if (Math.abs(g) < 1e-7) continue;
            gb[v] = gb[v]! + g;
            for (let d = 0; d < dim; d++) gW[v * dim + d] = gW[v * dim + d]! + g * x[d]!;
          }
        }
        step++;
        const scale = 1 / (s1 - s0);
        const c1 = 1 - 0.9 ** step, c2 = 1 - 0.999 ** step;
        for (let k = 0; k < W.length; k++) {
          const g = gW[k]! * scale;
          mW[k] = 0.9 * mW[k]! + 0.1 * g;
          vW[k] = 0.999 * vW[k]! + 0.001 * g * g;
          W[k] = W[k]! - (lr * (mW[k]! / c1)) / (Math.sqrt(vW[k]! / c2) + 1e-8);
        }
        for (let k = 0; k < vocab; k++) {
          const g = gb[k]! * scale;
          mb[k] = 0.9 * mb[k]! + 0.1 * g;
          vb[k] = 0.999 * vb[k]! + 0.001 * g * g;
          b[k] = b[k]! - (lr * (mb[k]! / c1)) / (Math.sqrt(vb[k]! / c2) + 1e-8);
        }
      }
    }
    heads.weights.push(W);
    heads.biases.push(b);
    // Report: loss and top-1 accuracy on the training positions.
    let l = 0;
    let hits = 0;
    for (let s = 0; s < n; s++) {
      const lg = headLogits(heads, i, hiddens[s]!);
      let m = -Infinity, arg = 0;
      for (let v = 0; v < vocab; v++) if (lg[v]! > m) (m = lg[v]!), (arg = v);
      let z = 0;
      for (let v = 0; v < vocab; v++) z += Math.exp(lg[v]! - m);
      l += -(lg[targets[i]![s]!]! - m - Math.log(z));
      if (arg === targets[i]![s]) hits++;
    }
    loss.push(l / n);
    accuracy.push(hits / n);
  }
  return { heads, positions: n, loss, accuracy };
}
