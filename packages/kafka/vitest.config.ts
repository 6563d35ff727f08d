import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The chaos cases restart RabbitMQ itself: files must not run at the same time.
    fileParallelism: false,
  },
});
