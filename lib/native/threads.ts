/**
 * The CPU thread pool's size: CANOPY_THREADS at load, else the physical cores this process
 * may use; setThreads changes it for every later CPU kernel (models, generate and the
 * kernels alike). Results never depend on it: the CPU kernels give bit-identical outputs
 * for any thread count.
 */

import { ArgumentError } from '../errors.js';
import { native } from './loader.js';

/** Threads the CPU kernels use now. */
export function getThreads(): number {
  return native().cpuInfo().threads;
}

/** The default size: physical cores this process may run on. */
export function defaultThreads(): number {
  return native().cpuInfo().defaultThreads;
}

/**
 * Sets the number of threads the CPU kernels use (1..1024; 0 or undefined: the default).
 * Waits for a running CPU kernel to finish. Returns the new count.
 */
export function setThreads(threads?: number): number {
  const n = threads ?? 0;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 1024) {
    throw new ArgumentError('threads', 'an integer in [1, 1024], or 0 / undefined for the default (physical cores)', threads);
  }
  return native().setThreads(n);
}

/** Validates an optional `threads` option (loadModel, generate, the CLI); undefined leaves the pool as it is. */
export function checkThreadsOption(threads: unknown, argument = 'threads'): number | undefined {
  if (threads === undefined) return undefined;
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw new ArgumentError(argument, 'an integer in [1, 1024]', threads);
  }
  return threads;
}
