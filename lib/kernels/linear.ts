/**
 * Linear layer (csrc/common/linear.h): y[n][o] = sum_i x[n][i] * w[o][i] (+ bias[o]).
 *
 * x [rows, in] f32; w [out, in] f32, f16 or bf16 (PyTorch layout: y = x w^T); bias [out] f32;
 * y [rows, out] f32, new or given (`out`), overwritten or added to (`accumulate`).
 * Accumulation is f32. On the CPU each output element is computed the same way whatever the
 * number of rows and threads, so a row's result is bit-identical whether it is computed alone
 * (decode) or inside a batch (verification): speculative decoding's exact greedy equality
 * rests on this.
 */

import { ArgumentError, awaitNative } from '../errors.js';
import { native } from '../native/loader.js';
import { Tensor } from '../tensor/tensor.js';
import { checkFloat, checkTensor, shapeText } from './args.js';

export interface LinearOptions {
  /** [out] f32 added to every row. */
  bias?: Tensor;
  /** Write into this [rows, out] f32 tensor instead of a new one. */
  out?: Tensor;
  /** Add into `out` instead of overwriting it (residual connections). */
  accumulate?: boolean;
}

/** y = x w^T (+ bias); returns y (`options.out` when given). */
export async function linear(x: Tensor, w: Tensor, options: LinearOptions = {}): Promise<Tensor> {
  const [rows, inX] = checkTensor(x, 'x', 2, '[rows, in]') as [number, number];
  if (x.dtype !== 'f32') throw new ArgumentError('x.dtype', 'f32', x.dtype);
  const [outDim, inW] = checkTensor(w, 'w', 2, '[out, in]') as [number, number];
  checkFloat(w, 'w');
  if (inW !== inX) throw new ArgumentError('w.shape', `[out, ${inX}] (in of x)`, shapeText(w.shape));
  if (inX < 1) throw new ArgumentError('x.shape', '[rows, in] with in >= 1', shapeText(x.shape));
  if (outDim < 1) throw new ArgumentError('w.shape', '[out, in] with out >= 1', shapeText(w.shape));
  if (w.device !== x.device) throw new ArgumentError('w', `on the device of x (${x.device})`, w.device);
  const { bias, out, accumulate = false } = options;
  if (typeof accumulate !== 'boolean') throw new ArgumentError('accumulate', 'a boolean', accumulate);
  if (bias !== undefined) {
    checkTensor(bias, 'bias', 1, '[out]');
    if (bias.dtype !== 'f32') throw new ArgumentError('bias.dtype', 'f32', bias.dtype);
    if (bias.shape[0] !== outDim) throw new ArgumentError('bias.shape', `[${outDim}]`, shapeText(bias.shape));
    if (bias.device !== x.device) throw new ArgumentError('bias', `on the device of x (${x.device})`, bias.device);
  }
  if (out !== undefined) {
    checkTensor(out, 'out', 2, '[rows, out]');
    if (out.dtype !== 'f32') throw new ArgumentError('out.dtype', 'f32', out.dtype);
    if (out.shape[0] !== rows || out.shape[1] !== outDim) throw new ArgumentError('out.shape', `[${rows}, ${outDim}]`, shapeText(out.shape));
    if (out.device !== x.device) throw new ArgumentError('out', `on the device of x (${x.device})`, out.device);
    if (out === x) throw new ArgumentError('out', 'a different tensor from x', 'x itself');
  } else if (accumulate) {
    throw new ArgumentError('out', 'a tensor to add into when accumulate is true', out);
  }
  const y = out ?? Tensor.empty([rows, outDim], 'f32', { device: x.device });
  try {
    await awaitNative(
      native().linear({
        x: x.descriptor('x'),
        w: w.descriptor('w'),
        ...(bias ? { bias: bias.descriptor('bias') } : {}),
        y: y.descriptor('out'),
        accumulate,
      }),
    );
  } catch (e) {
    if (!out) y.dispose();
    throw e;
  }
  return y;
}
