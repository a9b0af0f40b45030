import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: keep file-level parallelism modest; heavy e2e files mark themselves sequential.
    maxWorkers: 2,
  },
});
