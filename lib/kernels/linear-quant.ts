/**
 * Linear layer over GGUF block-quantized weights (csrc/common/quant_blocks.h), on the CPU or CUDA:
 *
 *   y[n][o] = sum_i x[n][i] W[o][i] (+ bias[o])
 *
 * x f32 [rows, in]; W the matrix [out, in] as stored: a uint8 tensor of out * (in / block) blocks
 * of `type` (lib/tensor/quant-types.ts; in a multiple of the block size), read in place. The
 * kernel quantizes x to 8-bit blocks (as ggml's q8_0 / q8_K) and computes integer dot products
 * (csrc/cpu/linear_quant.cc); each output is bit-identical whatever the number of rows or threads.
 * On CUDA (Q8_0, Q4_0, Q4_K, Q6_K; csrc/cuda/linear_quant.cu) the weights are dequantized in
 * registers and dotted with the f32 activations (no activation rounding; csrc/common/linear.h
 * states the tolerance against the CPU); x, w, bias and the output share one device.
 */

import { ArgumentError, awaitNative } from '../errors.js';
import { native } from '../native/loader.js';
import { CUDA_QUANT_TYPES, QUANT_TYPES, type QuantType, isQuantType, quantRowBytes } from '../tensor/quant-types.js';
import { Tensor } from '../tensor/tensor.js';
import { shapeText } from './args.js';

export interface LinearQuantOptions {
  /** f32 [out], added to every row. */
  bias?: Tensor;
  /** Write into this f32 [rows, out] tensor instead of a new one. */
  out?: Tensor;
  /** Add into `out` instead of overwriting it (requires out). */
  accumulate?: boolean;
}

/** y = x W^T for a block-quantized W of `outFeatures` rows; returns y (f32 [rows, outFeatures]). */
export async function linearQuant(x: Tensor, w: Tensor, type: QuantType, outFeatures: number, options: LinearQuantOptions = {}): Promise<Tensor> {
  if (!(x instanceof Tensor)) throw new ArgumentError('x', 'a Tensor', x);
  if (!(w instanceof Tensor)) throw new ArgumentError('w', 'a Tensor', w);
  if (!isQuantType(type)) throw new ArgumentError('type', `one of ${Object.keys(QUANT_TYPES).join(', ')}`, type);
  if (x.dtype !== 'f32' || x.shape.length !== 2) throw new ArgumentError('x', 'an f32 [rows, in] tensor', `${x.dtype} ${shapeText(x.shape)}`);
  if (x.device !== w.device) throw new ArgumentError('x and w', 'tensors on one device', `${x.device}, ${w.device}`);
  if (x.device !== 'cpu' && !CUDA_QUANT_TYPES.includes(type)) {
    throw new ArgumentError('type', `one of ${CUDA_QUANT_TYPES.join(', ')} on CUDA (the others run on the CPU only for now)`, type);
  }
  const [rows, inF] = x.shape as [number, number];
  const block = QUANT_TYPES[type].block;
  if (inF % block !== 0) throw new ArgumentError('x.shape[1]', `a multiple of ${type}'s block of ${block}`, inF);
  if (!Number.isInteger(outFeatures) || outFeatures <= 0) throw new ArgumentError('outFeatures', 'a positive integer', outFeatures);
  const bytes = outFeatures * quantRowBytes(type, inF);
  if (w.dtype !== 'uint8' || w.byteLength !== bytes) {
    throw new ArgumentError('w', `a uint8 tensor of ${bytes} bytes (${outFeatures} rows of ${inF} ${type} values)`, `${w.dtype} of ${w.byteLength} bytes`);
  }
  const { bias, out, accumulate = false } = options;
  if (bias !== undefined && (!(bias instanceof Tensor) || bias.dtype !== 'f32' || bias.numel !== outFeatures || bias.device !== x.device)) {
    throw new ArgumentError('options.bias', `an f32 tensor of ${outFeatures} elements on ${x.device}`, bias);
  }
  if (accumulate && out === undefined) throw new ArgumentError('options.accumulate', 'used with options.out', accumulate);
  if (out !== undefined && (!(out instanceof Tensor) || out.dtype !== 'f32' || shapeText(out.shape) !== shapeText([rows, outFeatures]) || out.device !== x.device)) {
    throw new ArgumentError('options.out', `an f32 ${shapeText([rows, outFeatures])} tensor on ${x.device}`, out);
  }
  const y = out ?? Tensor.empty([rows, outFeatures], 'f32', { device: x.device });
  try {
    await awaitNative(native().linearQuant(x.descriptor('x'), w.descriptor('w'), QUANT_TYPES[type].id, y.descriptor('y'), bias?.descriptor('bias'), accumulate));
  } catch (e) {
    if (!out) y.dispose();
    throw e;
  }
  return y;
}
