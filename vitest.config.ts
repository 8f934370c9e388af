import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start jobs of up to 8 ranks on a 2-core machine:
    // one file at a time keeps their timing honest.
    fileParallelism: false,
    pool: 'forks',
  },
});
