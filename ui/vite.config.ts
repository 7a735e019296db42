import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// `testbay serve` serves dist/ at `/`; the Tauri shell loads it from its own protocol.
// Relative asset paths work for both.
export default defineConfig({
  base: './',
  plugins: [svelte()],
  clearScreen: false,
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 800 },
  server: {
    port: 5173,
    strictPort: true,
    // During `npm run dev`, forward the API to a running `testbay serve` (TESTBAY_URL).
    proxy: {
      '/api': { target: process.env.TESTBAY_URL ?? 'http://127.0.0.1:7878', ws: true },
    },
  },
});
