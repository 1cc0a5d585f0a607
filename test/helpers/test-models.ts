/**
 * The real tiny test models (see ../shared/models/README.md): found at ../shared/models
 * relative to the repository root, or at the path in CANOPY_TEST_MODELS. Suites that need
 * them skip, printing why, when the folder is absent. Also an independent, obvious reader of
 * llama2.c version-0 files used as the reference for every loader.
 */

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { layerTensorNames } from '../../lib/model/config.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Where the models folder is expected. */
export const MODELS_DIR = process.env.CANOPY_TEST_MODELS ?? resolve(repoRoot, '../shared/models');

/**
 * The path of `relative` inside the models folder, or undefined (after printing why `suite`
 * is skipped) when it is missing.
 */
export function testModel(relative: string, suite: string): string | undefined {
  const path = join(MODELS_DIR, relative);
  if (existsSync(path)) return path;
  console.warn(`[skip] ${suite}: ${path} not found (set CANOPY_TEST_MODELS to the models folder)`);
  return undefined;
}

/**
 * stories260K's reference greedy output (README "Reference output"): BOS then 48 tokens,
 * and the text of the 48 tokens after BOS.
 */
export const STORIES_REFERENCE_IDS = [
  1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292,
  411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267,
];
export const STORIES_REFERENCE_TEXT =
  ' Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to';

/** The models folder, or undefined (with the reason printed) when it is absent. */
export function testModelsDir(suite: string): string | undefined {
  const dir = process.env.CANOPY_TEST_MODELS ?? join(repoRoot, '..', 'shared', 'models');
  if (!existsSync(join(dir, 'stories260K', 'stories260K.bin'))) {
    console.warn(`[skip] ${suite}: test models not found at ${dir} (set CANOPY_TEST_MODELS)`);
    return undefined;
  }
  return dir;
}

export interface ReferenceModel {
  header: { dim: number; hiddenDim: number; nLayers: number; nHeads: number; nKvHeads: number; vocabSize: number; seqLen: number; shared: boolean };
  /** Canonical name -> values, read by walking the file in llama2.c's run.c order. */
  tensors: Map<string, Float32Array>;
}

/**
 * Reads a llama2.c v0 file the slow, obvious way: the whole file into memory,
 * then consecutive slices in run.c's memory_map_weights order.
 */
export function readLlama2cReference(path: string): ReferenceModel {
  const bytes = readFileSync(path);
  const ints = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 28));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = Array.from(ints) as number[];
  const vocabSize = Math.abs(vocabRaw!);
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 28, bytes.byteOffset + bytes.length));
  const headSize = dim! / nHeads!;
  let p = 0;
  const take = (n: number) => {
    const out = floats.slice(p, p + n);
    if (out.length !== n) throw new Error(`reference reader: ${path} is too short`);
    p += n;
    return out;
  };
  const tensors = new Map<string, Float32Array>();
  tensors.set('embed', take(vocabSize * dim!));
  const perLayer = (field: keyof ReturnType<typeof layerTensorNames>, n: number) => {
    for (let l = 0; l < nLayers!; l++) tensors.set(layerTensorNames(l)[field], take(n));
  };
  perLayer('attnNorm', dim!);
  perLayer('wq', dim! * nHeads! * headSize);
  perLayer('wk', dim! * nKvHeads! * headSize);
  perLayer('wv', dim! * nKvHeads! * headSize);
  perLayer('wo', nHeads! * headSize * dim!);
  perLayer('ffnNorm', dim!);
  perLayer('w1', dim! * hiddenDim!);
  perLayer('w2', hiddenDim! * dim!);
  perLayer('w3', dim! * hiddenDim!);
  tensors.set('norm', take(dim!));
  take(seqLen! * headSize); // freq_cis_real and freq_cis_imag: seq_len * head_size / 2 each
  if (vocabRaw! < 0) tensors.set('output', take(vocabSize * dim!));
  if (p !== floats.length) throw new Error(`reference reader: ${floats.length - p} floats left over in ${path}`);
  return {
    header: { dim: dim!, hiddenDim: hiddenDim!, nLayers: nLayers!, nHeads: nHeads!, nKvHeads: nKvHeads!, vocabSize, seqLen: seqLen!, shared: vocabRaw! > 0 },
    tensors,
  };
}
