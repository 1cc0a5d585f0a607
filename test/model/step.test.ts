/** Model.step on the CPU (test/helpers/step-suite.ts): one native call equals forward + verify + commit, greedy and sampled. */
import { defineSampledStepSuites, defineStepSuites } from '../helpers/step-suite.js';

defineStepSuites('cpu', ['f32', 'f16', 'int8', 'int4', 'fp8']);
defineSampledStepSuites('cpu');
