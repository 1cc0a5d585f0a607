/** Native sampling helpers: work over logits where they live (CPU or CUDA). */
import { ArgumentError, awaitNative } from '../errors.js';
import { native } from '../native/loader.js';
import type { Tensor } from '../tensor/tensor.js';
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
