import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { engineSource } from './plugins/engine-source.ts';
import { lessons } from './plugins/lessons.ts';

const webDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(webDir, '..');

// `npm run dev` proxies /api to a running `blocklab serve` (BLOCKLAB_API, default http://127.0.0.1:8080).
export default defineConfig({
  plugins: [svelte(), engineSource(repoRoot), lessons(repoRoot)],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1200 },
  server: {
    proxy: { '/api': { target: process.env.BLOCKLAB_API ?? 'http://127.0.0.1:8080', changeOrigin: false } },
  },
});
