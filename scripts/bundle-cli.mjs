#!/usr/bin/env node
// Bundles the CLI for a fast start (issue 5): `npm run build` runs `tsc` (type check, and
// dist/src for the tests that import it) and then this script, which replaces tsc's
// dist/cmd/tsbuild.js with an esbuild bundle of cmd/tsbuild.ts, its packages included.
//
// Why: a cached build spends most of its time loading ~130 ES modules one by one (resolve,
// read, compile, link); one file and a few chunks load in a fraction of that. Lazy
// `import()`s stay lazy: they become chunks in dist/cmd/ loaded on first use, so a cached
// build still loads neither the sandbox nor the layer code. pino stays outside (it is loaded
// with createRequire on the first log line). Source maps (dist/cmd/*.js.map) point at src/*.ts;
// render-error turns them on for internal errors.
//
// `npx tsc -p .` alone writes the unbundled dist/cmd/tsbuild.js back: that runs the same code,
// only slower to start, so a stale bundle is never left in front of fresh sources.
//
//   node scripts/bundle-cli.mjs [OUTDIR]   (npm run build / prepare run it after tsc;
//                                          OUTDIR, default dist/cmd, is for experiments)
import { build } from 'esbuild';
import { cp, readdir, rm } from 'node:fs/promises';
import { createRequire, isBuiltin } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.resolve(process.argv[2] ?? path.join(repo, 'dist', 'cmd'));

// yargs' ESM entry (lib/platform-shims/esm.mjs) imports cliui and string-width at start-up,
// and string-width builds an Intl.Segmenter and large Unicode regexes when it loads (~10 ms
// idle, far more on a loaded machine); both serve only help text and its wrapping. Here they
// become lazy: the imports are replaced by stubs that load the real module (still bundled,
// wrapped by esbuild so it runs on first require) the first time yargs calls it. y18n gets the
// directory of yargs' locale files, copied next to the bundle (the shim would look for them
// relative to its own file, which the bundle moved).
const YARGS_SHIM = /[\\/]yargs[\\/]lib[\\/]platform-shims[\\/]esm\.mjs$/;
const STUBS = {
  cliui: `const load = () => { const m = require('cliui'); return typeof m === 'function' ? m : m.default; };
export default function cliui(opts) { return load()(opts); }`,
  'string-width': `const load = () => { const m = require('string-width'); return typeof m === 'function' ? m : m.default; };
export default function stringWidth(text, opts) { return load()(text, opts); }`,
  y18n: `import y18n from 'y18n';
import { fileURLToPath } from 'node:url';
export default function localized(opts) { return y18n({ ...opts, directory: fileURLToPath(new URL('./yargs-locales/', import.meta.url)) }); }`,
};
const yargsLazyHelp = {
  name: 'yargs-lazy-help',
  setup(b) {
    const stubbed = new Set();
    b.onResolve({ filter: /^(cliui|string-width|y18n)$/ }, (args) => {
      if (!YARGS_SHIM.test(args.importer)) return undefined;
      stubbed.add(args.path);
      return { path: args.path, namespace: 'yargs-lazy-help', pluginData: { resolveDir: args.resolveDir } };
    });
    b.onLoad({ filter: /.*/, namespace: 'yargs-lazy-help' }, (args) => ({ contents: STUBS[args.path], resolveDir: args.pluginData.resolveDir, loader: 'js' }));
    b.onEnd((result) => {
      // If a yargs release stops importing one of these from its shim, the bundle still works
      // (only slower to start); say so rather than fail the build.
      if (result.errors.length === 0 && stubbed.size !== Object.keys(STUBS).length) {
        console.warn(`bundle-cli: yargs' shim no longer imports ${Object.keys(STUBS).filter((s) => !stubbed.has(s)).join(', ')}; check the yargs-lazy-help plugin`);
      }
    });
  },
};

// `await import('tar-stream')` in Node gives the CommonJS package's named exports (`extract`);
// esbuild, splitting, gives a chunk whose only export is `default` (module.exports). So a
// dynamic import of a CommonJS package goes through a small ES module that names them, the
// names read here by loading the package once (Node finds them with a lexer instead).
const dynamicPackageImports = {
  name: 'dynamic-package-imports',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.kind !== 'dynamic-import' || isBuiltin(args.path)) return undefined;
      let names;
      try {
        names = Object.keys(createRequire(path.join(args.resolveDir, 'x.js'))(args.path));
      } catch {
        return undefined; // an ES module package: esbuild keeps its exports as they are
      }
      return { path: args.path, namespace: 'dynamic-package-import', pluginData: { resolveDir: args.resolveDir, names } };
    });
    b.onLoad({ filter: /.*/, namespace: 'dynamic-package-import' }, (args) => {
      const names = args.pluginData.names.filter((n) => /^[A-Za-z_$][\w$]*$/.test(n) && n !== 'default');
      return {
        contents: `import pkg from ${JSON.stringify(args.path)};\nexport default pkg;\nexport const { ${names.join(', ')} } = pkg;\n`,
        resolveDir: args.pluginData.resolveDir,
        loader: 'js',
      };
    });
  },
};

// Chunks of an earlier run would pile up (their names are content hashes).
for (const f of await readdir(outdir).catch(() => [])) {
  if (/^chunk-.*\.js(\.map)?$/.test(f)) await rm(path.join(outdir, f));
}

await build({
  absWorkingDir: repo,
  entryPoints: {
    tsbuild: 'cmd/tsbuild.ts',
    // src/build/rootless.ts starts it as ./namespace-worker.js next to its own module, which
    // in the bundle is a chunk in dist/cmd/: so entry points and chunks share one directory.
    'namespace-worker': 'src/build/namespace-worker.ts',
  },
  outdir,
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Bundled CommonJS packages (undici, tar-stream) call require() for Node's built-ins.
  banner: { js: "import { createRequire as __tsbuildCreateRequire } from 'node:module'; const require = __tsbuildCreateRequire(import.meta.url);" },
  sourcemap: 'linked',
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [yargsLazyHelp, dynamicPackageImports],
});
const yargsDir = path.dirname(createRequire(import.meta.url).resolve('yargs/package.json'));
await cp(path.join(yargsDir, 'locales'), path.join(outdir, 'yargs-locales'), { recursive: true });
