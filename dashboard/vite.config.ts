// The dashboard is a static Vite app served by the host at /dashboard/ (host/dashboard.ts).
import { fileURLToPath } from 'node:url';
import preact from '@preact/preset-vite';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/dashboard/',
  plugins: [preact()],
  // Dependencies that load Node's crypto get WebCrypto instead (see src/crypto-shim.ts).
  resolve: { alias: { crypto: fileURLToPath(new URL('src/crypto-shim.ts', import.meta.url)) } },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, target: 'es2022', chunkSizeWarningLimit: 1500 },
});
