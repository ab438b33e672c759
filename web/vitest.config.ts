import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// Unit tests of the model-free logic (src/lib), the build plugin, and the components rendered alone
// (svelte/server: data in, markup out): plain Node, no browser, no server.
export default defineConfig({
  plugins: [svelte()],
  test: {
    include: ['tests/unit/**/*.test.ts'],
    environment: 'node',
    pool: 'threads',
    maxWorkers: 1,
    reporters: ['default'],
  },
});
