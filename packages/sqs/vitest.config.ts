import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One in-process SQS per file, and 2 shared cores: files run one after the other.
    fileParallelism: false,
  },
});
