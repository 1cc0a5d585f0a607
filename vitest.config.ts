import { defineConfig } from 'vitest/config';

// Native code runs in forked processes: a crash in the addon fails one suite
// instead of taking the runner down, and CANOPY_THREADS can differ per child.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
