import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The broken-driver runs (test/broken.test.ts) go concurrently: most of them wait for a timeout.
    maxConcurrency: 12,
  },
});
