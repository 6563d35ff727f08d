import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // test/fixtures holds suites that the tests run themselves.
    include: ['test/*.test.mjs'],
    testTimeout: 60_000,
  },
});
