// Builds dist/extension.js and dist/mode.js (ES modules OHIF imports by URL). `react` resolves
// to src/react.ts: OHIF's own React instance, found at runtime (src/ohifBuild.ts).
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const watch = process.argv.includes('--watch');

const options = {
  absWorkingDir: here,
  entryPoints: { extension: 'src/index.tsx', mode: 'src/mode/index.ts' },
  outdir: process.env.SPINEREVIEW_VIEWER_EXTENSION_DIST || 'dist',
  bundle: true,
  splitting: true, // extension.js and mode.js share one copy of the store and the build guard
  format: 'esm',
  target: 'es2020',
  jsx: 'transform',
  jsxFactory: 'React.createElement',
  jsxFragment: 'React.Fragment',
  alias: { react: './src/react.ts' },
  sourcemap: true,
  minify: false,
  logLevel: process.argv.includes('--quiet') ? 'warning' : 'info',
  chunkNames: 'chunks/[name]-[hash]',
};

if (watch) {
  const { context } = await import('esbuild');
  await (await context(options)).watch();
} else {
  await build(options);
}
