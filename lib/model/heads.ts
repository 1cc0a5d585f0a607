/**
 * Prediction heads (blockwise parallel decoding, Stern et al. 2018; Medusa-style proposers):
 * head i maps the target's final-normed hidden state at a position to logits for the token
 * i + 1 places after the one the model's own LM head predicts there.
 *
 *   logits_i = W_i h + b_i          W_i [vocab, dim], b_i [vocab]   (i = 0 .. count-1)
 *
 * File format: safetensors with tensors `heads.{i}.weight` (F32 [vocab, dim]) and
 * `heads.{i}.bias` (F32 [vocab]), metadata {format: "canopy-heads", version: "1", count, dim,
 * vocab}.
 *
 * The heads are model data (this file: their type, file format and logits); the 'heads'
 * proposer (lib/decode/proposers/heads.ts) uses them, lib/train/heads.ts fits them.
 */
import { IoError } from '../errors.js';
import { readSafetensors, writeSafetensors } from './formats/safetensors.js';
import { Tensor } from '../tensor/tensor.js';

export interface PredictionHeads {
  count: number;
  dim: number;
  vocab: number;
  /** count x [vocab * dim] row-major. */
  weights: Float32Array[];
  /** count x [vocab]. */
  biases: Float32Array[];
}

export function saveHeads(path: string, heads: PredictionHeads): void {
  const entries = heads.weights.flatMap((w, i) => [
    { name: `heads.${i}.weight`, dtype: 'F32', shape: [heads.vocab, heads.dim], data: w },
    { name: `heads.${i}.bias`, dtype: 'F32', shape: [heads.vocab], data: heads.biases[i]! },
  ]);
  writeSafetensors(path, entries, { format: 'canopy-heads', version: '1', count: String(heads.count), dim: String(heads.dim), vocab: String(heads.vocab) });
}

export function loadHeads(path: string): PredictionHeads {
  const file = readSafetensors(path);
  if (file.metadata.format !== 'canopy-heads') throw new IoError(`${path}: not a canopy heads file (metadata format is ${JSON.stringify(file.metadata.format)})`);
  const count = Number(file.metadata.count);
  const dim = Number(file.metadata.dim);
  const vocab = Number(file.metadata.vocab);
  if (!(count >= 1 && dim >= 1 && vocab >= 1)) throw new IoError(`${path}: bad heads metadata (count ${file.metadata.count}, dim ${file.metadata.dim}, vocab ${file.metadata.vocab})`);
  const get = (name: string, shape: number[]): Float32Array => {
    const info = file.tensors.find((t) => t.name === name);
    if (!info) throw new IoError(`${path}: tensor ${name} is missing`);
    if (info.dtype.toUpperCase() !== 'F32' || info.shape.join() !== shape.join()) {
      throw new IoError(`${path}: tensor ${name} must be F32 [${shape.join(', ')}]; found ${info.dtype} [${info.shape.join(', ')}]`);
    }
    return Float32Array.from(Tensor.fromFile(path, { dtype: 'f32', shape, offset: info.fileOffset, mode: 'read' }).toArray() as Float32Array);
  };
  const weights: Float32Array[] = [];
  const biases: Float32Array[] = [];
  for (let i = 0; i < count; i++) {
    weights.push(get(`heads.${i}.weight`, [vocab, dim]));
    biases.push(get(`heads.${i}.bias`, [vocab]));
  }
  return { count, dim, vocab, weights, biases };
}

/** Logits of head i for one hidden state. */
export function headLogits(heads: PredictionHeads, i: number, hidden: ArrayLike<number>): Float32Array {
  const { dim, vocab } = heads;
  const w = heads.weights[i]!;
  const out = Float32Array.from(heads.biases[i]!);
  for (let v = 0; v < vocab; v++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += w[v * dim + d]! * hidden[d]!;
    out[v] = out[v]! + s;
  }
  return out;
}

