import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // End-to-end tests run dist/: rebuild it first when a source is newer (a stale dist/ must
    // never make a test pass).
    globalSetup: ['test/support/fresh-dist.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: keep file-level parallelism modest; heavy e2e files mark themselves sequential.
    maxWorkers: 2,
  },
});
