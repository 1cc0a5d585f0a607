/**
 * Tables of bad inputs: each case must throw (or reject) with a message naming
 * the argument, never crash the process. Two runners: the TypeScript API (a
 * CanopyError with a code and a stack from the calling test file) and the raw
 * native addon (an Error with an ERR_CANOPY_ code).
 */
import { describe, expect, it } from 'vitest';

import { ArgumentError, CanopyError, DisposedError } from '../../lib/errors.js';

export type BadInputCase = [name: string, run: () => unknown, message: RegExp];

async function capture(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (e) {
    return e;
  }
  return undefined;
}

/**
 * Cases against the TypeScript API. The error's stack must reach back to the caller (this
 * helper's `capture`): native failures are rethrown with a JavaScript stack.
 */
export function describeBadInputs(title: string, cases: BadInputCase[]): void {
  describe(title, () => {
    it.each(cases)('%s', async (_name, run, message) => {
      const error = await capture(run);
      expect(error).toBeInstanceOf(CanopyError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).stack).toMatch(/helpers[\\/]bad-inputs\.ts/);
      if (error instanceof ArgumentError) expect(error.code).toBe('ERR_CANOPY_INVALID_ARGUMENT');
      if (error instanceof DisposedError) expect(error.code).toBe('ERR_CANOPY_DISPOSED');
    });
  });
}

/** Cases sent straight to the native addon, bypassing the TypeScript checks. */
export function describeNativeBadInputs(title: string, cases: BadInputCase[]): void {
  describe(title, () => {
    it.each(cases)('%s', async (_name, run, message) => {
      const error = await capture(run);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(message);
      expect((error as { code?: string }).code).toMatch(/^ERR_CANOPY_/);
    });
  });
}
