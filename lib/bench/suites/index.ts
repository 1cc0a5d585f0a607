/** The benchmark suites `canopy bench` knows, by name. */
import { attentionSuite } from './attention.js';
import { decodeSuite } from './decode.js';
import { generateSuite } from './generate.js';
import { kvquantSuite } from './kvquant.js';
import { linearQuantSuite } from './linear-quant.js';
import { linearSuite } from './linear.js';
import { prefixSuite } from './prefix.js';
import { samplingSuite } from './sampling.js';
import { treeSuite } from './tree.js';
import type { Suite } from './types.js';

export const SUITES: Suite[] = [attentionSuite, treeSuite, prefixSuite, kvquantSuite, generateSuite, decodeSuite, linearSuite, linearQuantSuite, samplingSuite];
export type { Suite, SuiteContext } from './types.js';
