/**
 * Real models for `canopy bench`: the models folder is CANOPY_MODELS, else
 * ../shared/models relative to the package root, else relative to the current
 * directory (the layout of ../shared/models/README.md: stories260K/stories260K.gguf, ...).
 */

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { packageRoot } from '../native/loader.js';

export interface FoundModel {
  path?: string;
  /** Where it was looked for, when not found. */
  reason?: string;
}

/** The candidate models folders, in order. */
export function modelFolders(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string[] {
  if (env.CANOPY_MODELS) return [resolve(env.CANOPY_MODELS)];
  return [...new Set([resolve(packageRoot, '..', 'shared', 'models'), resolve(cwd, '..', 'shared', 'models')])];
}

/** `relative` (e.g. "stories260K/stories260K.gguf") in the first models folder that has it. */
export function findBenchModel(relative: string, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): FoundModel {
  const folders = modelFolders(env, cwd);
  for (const dir of folders) {
    const p = join(dir, relative);
    if (existsSync(p)) return { path: p };
  }
  return { reason: `${relative} not found in ${folders.join(' or ')} (set CANOPY_MODELS to the models folder)` };
}
