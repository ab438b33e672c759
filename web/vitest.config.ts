import { defineConfig } from 'vitest/config';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { lessons } from './plugins/lessons.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Unit tests of the model-free logic (src/lib), the build plugin, and the components rendered alone
// (svelte/server: data in, markup out): plain Node, no browser, no server. `virtual:lessons` is the real
// lessons/ folder's.
export default defineConfig({
  plugins: [svelte(), lessons(repoRoot)],
  test: {
    include: ['tests/unit/**/*.test.ts'],
    environment: 'node',
    pool: 'threads',
    maxWorkers: 1,
    reporters: ['default'],
  },
});
