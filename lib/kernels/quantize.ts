/**
 * Quantization of a float matrix into a GGUF block type, on the CPU: llama.cpp's reference
 * quantizers (ggml-quants.c quantize_row_*_ref without an importance matrix; the math is stated in
 * csrc/common/quantize.h), so the bytes are those llama.cpp's `llama-quantize` writes for the same
 * values. Rows are spread over the CPU threads; the result does not depend on how.
 *
 *   x    f32, f16 or bf16 CPU tensor [rows, cols], cols a multiple of the type's block (32 or 256)
 *   ->   uint8 CPU tensor [rows, quantRowBytes(type, cols)] of blocks (lib/tensor/quant-types.ts)
 *
 * A NaN or Infinity in x is refused (ArgumentError naming its row and column).
 */

import { ArgumentError, awaitNative } from '../errors.js';
import { native } from '../native/loader.js';
import { QUANT_TYPES, type QuantType, isQuantType, quantRowBytes } from '../tensor/quant-types.js';
import { Tensor } from '../tensor/tensor.js';
import { shapeText } from './args.js';

/** Quantizes the rows of `x` into blocks of `type`; returns the uint8 tensor [rows, row bytes]. */
export async function quantizeMatrix(x: Tensor, type: QuantType): Promise<Tensor> {
  if (!(x instanceof Tensor)) throw new ArgumentError('x', 'a Tensor', x);
  if (!isQuantType(type)) throw new ArgumentError('type', `one of ${Object.keys(QUANT_TYPES).join(', ')}`, type);
  if (!['f32', 'f16', 'bf16'].includes(x.dtype) || x.shape.length !== 2) {
    throw new ArgumentError('x', 'an f32, f16 or bf16 [rows, cols] tensor', `${x.dtype} ${shapeText(x.shape)}`);
  }
  if (x.device !== 'cpu') throw new ArgumentError('x', 'a CPU tensor (quantization runs on the CPU)', x.device);
  const [rows, cols] = x.shape as [number, number];
  const block = QUANT_TYPES[type].block;
  if (cols % block !== 0) throw new ArgumentError('x.shape[1]', `a multiple of ${type}'s block of ${block}`, cols);
  const out = Tensor.empty([rows, quantRowBytes(type, cols)], 'uint8');
  try {
    await awaitNative(native().quantizeRows(x.descriptor('x'), QUANT_TYPES[type].id, out.descriptor('out')));
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}
