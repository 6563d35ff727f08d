import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // A RabbitMQ node of the tests' own for what must not touch the shared one (restarts, lowered limits).
    globalSetup: ['test/global-setup.ts'],
    // Files restart that node and load it: they must not run at the same time.
    fileParallelism: false,
  },
});
