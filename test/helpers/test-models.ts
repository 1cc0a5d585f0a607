/**
 * The real tiny test models (see ../shared/models/README.md): found at ../shared/models
 * relative to the repository root, or at the path in CANOPY_TEST_MODELS. Suites that need
 * them skip, printing why, when the folder is absent.
 */

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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
