/** Small randomly initialised Llama-family models for forward-pass tests. */
import { type ModelConfig, expectedShapes } from '../../lib/model/config.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { randomValues } from '../../lib/bench/suites/util.js';

export function randomConfig(overrides: Partial<ModelConfig> = {}): ModelConfig {
  return {
    architecture: 'llama',
    dim: 64,
    hiddenDim: 100, // not a multiple of the vector width: exercises the tails
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 16,
    vocabSize: 37,
    maxSeqLen: 64,
    ropeTheta: 10000,
    ropeStyle: 'interleaved',
    normEps: 1e-5,
    tiedEmbeddings: true,
    qkvBias: false,
    ...overrides,
  };
}

/** Weights uniform in [-scale, scale); norms around 1. */
export function randomWeights(config: ModelConfig, seed = 1, scale = 0.25): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  let s = seed;
  for (const [name, shape] of expectedShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = randomValues(n, s++);
    const isNorm = name.endsWith('Norm') || name === 'norm';
    for (let i = 0; i < n; i++) values[i] = isNorm ? 1 + 0.2 * values[i]! : scale * values[i]!;
    tensors.set(name, Tensor.from(values, { shape }));
  }
  return tensors;
}
