import { defineConfig } from 'vitest/config';

// Browser tests: playwright-core drives Debian's chromium against the built app served by `blocklab serve`
// (started once by the global set-up on a free port). One file at a time: the machine has 2 cores.
export default defineConfig({
  test: {
    include: ['tests/e2e/**/*.e2e.ts'],
    environment: 'node',
    globalSetup: ['tests/e2e/global-setup.ts'],
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 90_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
