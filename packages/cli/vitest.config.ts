import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each test spawns the built `parley` against the shared brokers: one file at a time on a 2-core machine.
    fileParallelism: false,
  },
});
