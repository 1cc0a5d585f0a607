/**
 * Model.step on CUDA (test/helpers/step-suite.ts, shared with the CPU tests): the native step
 * (forward, argmax, the sampler chain, greedy or sampling tree verification, KV commit in one call) equals the same step done
 * separately, over plain and quantized caches. CANOPY_GPU_SUITES_ON_CPU=1 runs it on the CPU
 * backend: a check of this file's own logic on a machine without a GPU, nothing more.
 */
import { describe } from 'vitest';

import { gpuGate } from '../helpers/gpu.js';
import { defineSampledStepSuites, defineStepSuites } from '../helpers/step-suite.js';

const onCpu = process.env.CANOPY_GPU_SUITES_ON_CPU === '1';
const gate = onCpu ? { available: true, reason: '' } : gpuGate('CUDA decode step');
const backend = onCpu ? 'cpu' : 'cuda';

describe.runIf(gate.available)(`the native decode step on ${backend}`, () => defineStepSuites(backend, ['f32', 'f16', 'bf16', 'int8', 'int4', 'fp8']));
describe.runIf(gate.available)(`the native sampled decode step on ${backend}`, () => defineSampledStepSuites(backend));
