#!/usr/bin/env node
// Bundles the CLI for a fast start (issue 5): `npm run build` runs `tsc` (type check, and
// dist/src for the tests that import it) and then this script, which makes
//
//   dist/cmd/tsbuild-bundle.cjs    esbuild bundle of cmd/tsbuild.ts, packages included (not pino,
//                                  which is loaded with createRequire on the first log line)
//   dist/cmd/tsbuild-bundle.cjs.HASH-PLACE[-CMD].cache  V8's code caches for it (one for save, one
//                                  for load, one for every other command), from training runs
//   dist/cmd/tsbuild.cjs           the launcher (cmd/bundle-launcher.cjs): runs the bundle with
//                                  that cache
//   dist/cmd/tsbuild               package.json's "bin" (cmd/tsbuild.sh): starts tsbuild.cjs
//                                  without Node's start-up parse of NODE_EXTRA_CA_CERTS
//   dist/cmd/namespace-worker.js   bundle of src/snapshot/namespace-worker.ts (run by rootless builds)
//   dist/cmd/action.cjs            the GitHub Action (action.yml), cmd/action.ts with every package
//
// Why: a cached build spent most of its time loading ~130 ES modules one by one (resolve, read,
// compile, link). One script whose compiled code comes from V8's cache starts in a fraction of
// that. Lazy `import()`s stay lazy: esbuild wraps such a module in a function run on first use,
// so a cached build still runs neither the sandbox nor the layer code. The bundle is CommonJS
// because only a vm.Script takes cached data on Node 20. Source maps (*.map) point at src/*.ts;
// render-error uses them for internal errors.
//
// tsc's own dist/cmd/tsbuild.js (the CLI unbundled, an ES module) stays: after `npx tsc -p .`
// alone it is newer than the bundle, and the launcher runs it instead, so a stale bundle is
// never left in front of fresh sources.
//
//   node scripts/bundle-cli.mjs [OUTDIR]   (npm run build / prepare run it after tsc;
//                                          OUTDIR, default dist/cmd, is for experiments)
//   node scripts/bundle-cli.mjs --begin    (npm run build / prepare run it before tsc: the
//                                          build stamp, below)
import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire, isBuiltin } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// The build stamp, dist/build-stamp.json {sourcesAt}: dist/ holds the sources as they were at
// `sourcesAt` (ms since the epoch); test/support/fresh-dist.ts (vitest's globalSetup) rebuilds
// when a file under src/ or cmd/ is newer, so a stale dist/ never runs the tests. `npm run build`
// runs `bundle-cli.mjs --begin` before tsc: it drops the old stamp (a build that fails leaves
// none) and dist/src, and notes the time, before tsc reads anything; the bundling run below writes the stamp
// with that time once everything succeeded.
const stampFile = path.join(repo, 'dist', 'build-stamp.json');
const beginFile = path.join(repo, 'dist', 'build-stamp.begin.json');
if (process.argv[2] === '--begin') {
  await rm(stampFile, { force: true });
  // tsc only adds: without this, the output of a deleted or newly excluded source would linger.
  await rm(path.join(repo, 'dist', 'src'), { recursive: true, force: true });
  await mkdir(path.dirname(beginFile), { recursive: true });
  await writeFile(beginFile, `${JSON.stringify({ sourcesAt: Date.now() })}\n`);
  process.exit(0);
}
const sourcesAt = await readFile(beginFile, 'utf8').then((t) => JSON.parse(t).sourcesAt, () => Date.now());

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
  // yargs asserts its own invariants with node:assert, which is a dozen internal modules to load;
  // these throw the same errors in the same cases and load it only then.
  assert: `const load = () => require('assert');
export function notStrictEqual(actual, expected, message) { if (Object.is(actual, expected)) load().notStrictEqual(actual, expected, message); }
export function strictEqual(actual, expected, message) { if (!Object.is(actual, expected)) load().strictEqual(actual, expected, message); }`,
  // yargs' constructor guesses the app's version from the package.json above its main module's
  // directory; in a bundle that is lost and it would list the working directory and each of its
  // parents (any size), find nothing and fail an assertion. The bundle's own directory is the
  // right start (dist/cmd, below tsbuild's package.json); same search, same callback.
  'escalade/sync': `import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
export default function findUp(_start, callback) {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const found = callback(dir, readdirSync(dir));
    if (found) return join(dir, found);
    if (dirname(dir) === dir) return undefined;
  }
}`,
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
    b.onResolve({ filter: /^(assert|cliui|escalade\/sync|string-width|y18n)$/ }, (args) => {
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

// `await import('node:fs/promises')` stays a real import() in a CommonJS bundle, and a vm.Script
// run from cached data cannot resolve one (Node 20: ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING).
// Node's built-ins can be required, so such an import becomes a lazily required module.
const builtinDynamicImports = {
  name: 'builtin-dynamic-imports',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) => (args.kind === 'dynamic-import' && isBuiltin(args.path) ? { path: args.path, namespace: 'builtin-dynamic-import' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'builtin-dynamic-import' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};

// undici's HTTP/2 client (dispatcher/client-h2.js) requires node:http2 when it loads, which
// loads node:tls, node:http2's own internals and more (~5-10 ms), for every push and pull, also
// of plain-HTTP registries; tsbuild never asks undici for HTTP/2 (allowH2), so that code never
// runs. client-h2 reads only `constants` when it loads (header names, fixed by RFC 9113 and
// copied here from this Node at build time) and calls `connect` when a connection negotiates
// h2: the stub requires the real module then.
const lazyHttp2 = {
  name: 'lazy-http2',
  setup(b) {
    let stubbed = false;
    b.onResolve({ filter: /^(node:)?http2$/ }, (args) => {
      if (!/[\\/]undici[\\/]lib[\\/]dispatcher[\\/]client-h2\.js$/.test(args.importer)) return undefined;
      stubbed = true;
      return { path: 'http2', namespace: 'lazy-http2' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-http2' }, () => ({
      contents: `module.exports = { constants: ${JSON.stringify(createRequire(import.meta.url)('node:http2').constants)}, connect: (...args) => require('node:http2').connect(...args) };`,
      loader: 'js',
    }));
    b.onEnd((result) => {
      if (result.errors.length === 0 && !stubbed) console.warn("bundle-cli: undici's client-h2.js no longer requires node:http2; check the lazy-http2 plugin");
    });
  },
};

// undici's modules call node:assert only as assert(value) (an internal invariant), and requiring it
// loads a handful of internal modules (~1.5 ms of every push and pull). The stub throws what
// assert throws, from the real module, loaded only when a value is falsy; any other property
// (none is used today) comes from the real module.
const lazyAssert = {
  name: 'lazy-assert',
  setup(b) {
    let stubbed = false;
    b.onResolve({ filter: /^(node:)?assert$/ }, (args) => {
      if (!/[\\/]undici[\\/]lib[\\/]/.test(args.importer)) return undefined;
      stubbed = true;
      return { path: 'assert', namespace: 'lazy-assert' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-assert' }, () => ({
      contents: `function assert(value, message) { if (!value) require('node:assert')(value, message); }
module.exports = new Proxy(assert, { get: (target, key) => (key in target ? target[key] : require('node:assert')[key]) });`,
      loader: 'js',
    }));
    b.onEnd((result) => {
      if (result.errors.length === 0 && !stubbed) console.warn("bundle-cli: undici no longer requires node:assert; check the lazy-assert plugin");
    });
  },
};

// cmd/tsbuild.ts and its modules are ES modules; in the CommonJS bundle `import.meta.url` is the
// bundle's own URL (what it is for the one module that uses it at run time, snapshot/host-fs.ts, whose
// ./namespace-worker.js is then dist/cmd/namespace-worker.js; main.ts walks up to package.json).
const common = {
  absWorkingDir: repo,
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  keepNames: true,
  legalComments: 'none',
  // No comments, no indentation, short local names: the launcher reads 1.26 MB instead of
  // 2.2 MB, and as latin1, which is right only for pure ASCII (checked below; esbuild escapes
  // non-ASCII in code, but keeps comments, and undici's have curly quotes): no UTF-8 decoding
  // into a two-byte string (5-20 ms in a micro-measurement here). Every megabyte a start reads
  // costs twice here, as the file's bytes and as the string made of them, each in memory touched
  // for the first time (1-2 ms per MB on this machine): local names and syntax minified took a
  // cached build from 1.77 to 1.26 MB and 1.5 ms faster. Functions and classes keep their
  // names (keepNames: error names, logs), and stacks are mapped to src/*.ts anyway.
  minifyWhitespace: true,
  minifySyntax: true,
  minifyIdentifiers: true,
  logLevel: 'warning',
  metafile: true,
};

// Outputs of an earlier run would pile up (the cache's name has the bundle's hash); so would
// those of the layout before the launcher became CommonJS (tsbuild.cjs was the bundle).
for (const f of await readdir(outdir).catch(() => [])) {
  if (/^(chunk-.*\.js(\.map)?|tsbuild(-bundle)?\.cjs.*\.cache(\..*\.tmp)?|tsbuild\.cjs\.map)$/.test(f)) await rm(path.join(outdir, f));
}

const cli = await build({
  ...common,
  entryPoints: ['cmd/tsbuild.ts'],
  outfile: path.join(outdir, 'tsbuild-bundle.cjs'),
  format: 'cjs',
  // The launcher passes __tsbuildBundleUrl next to CommonJS's __filename (a banner would come
  // before esbuild's "use strict" and so turn it off).
  define: { 'import.meta.url': '__tsbuildBundleUrl' },
  plugins: [yargsLazyHelp, builtinDynamicImports, lazyHttp2, lazyAssert],
});
// Every dynamic import must have been bundled or turned into a require (see above).
const realImports = Object.values(cli.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.kind === 'dynamic-import' && i.external).map((i) => i.path));
if (realImports.length > 0) throw new Error(`bundle-cli: the CLI bundle keeps dynamic import() of ${realImports.join(', ')}`);

await build({
  ...common,
  entryPoints: ['src/snapshot/namespace-worker.ts'],
  outfile: path.join(outdir, 'namespace-worker.js'),
  format: 'esm',
  // Bundled CommonJS packages (tar-stream) call require() for Node's built-ins.
  banner: { js: "import { createRequire as __tsbuildCreateRequire } from 'node:module'; const require = __tsbuildCreateRequire(import.meta.url);" },
});

// The GitHub Action (action.yml's runs.main): one CommonJS file with every package in it, pino
// included (an action runs from its repository as checked out, without node_modules). Next to
// namespace-worker.js, which rootless builds find beside the running bundle (import.meta.url).
await build({
  ...common,
  entryPoints: ['cmd/action.ts'],
  outfile: path.join(outdir, 'action.cjs'),
  format: 'cjs',
  define: { 'import.meta.url': '__tsbuildBundleUrl' },
  banner: { js: "var __tsbuildBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  plugins: [builtinDynamicImports],
});

const bundleFile = path.join(outdir, 'tsbuild-bundle.cjs');
// The bundle runs inside a function (CommonJS's wrapper): no hashbang line (the line stays, empty,
// so the source map still fits).
const bundle = (await readFile(bundleFile, 'utf8')).replace(/^#!.*/, '');
await writeFile(bundleFile, bundle);
if (/[^\x00-\x7f]/.test(bundle)) throw new Error('bundle-cli: tsbuild-bundle.cjs is not pure ASCII, but the launcher reads it as latin1');
const hash = createHash('sha256').update(bundle).digest('hex').slice(0, 16);
const launcher = (await readFile(path.join(repo, 'cmd', 'bundle-launcher.cjs'), 'utf8')).replace('@BUNDLE_HASH@', hash);
await writeFile(path.join(outdir, 'tsbuild.cjs'), launcher, { mode: 0o755 });
await writeFile(path.join(outdir, 'tsbuild'), await readFile(path.join(repo, 'cmd', 'tsbuild.sh'), 'utf8'), { mode: 0o755 });
const yargsDir = path.dirname(createRequire(import.meta.url).resolve('yargs/package.json'));
await cp(path.join(yargsDir, 'locales'), path.join(outdir, 'yargs-locales'), { recursive: true });

// The code caches: V8 keeps the code of every function compiled when a cache is made, so the
// build's is made at the end of a build that takes the paths cached and incremental builds take (the
// launcher writes it when there is none), in a throwaway store: a build FROM a small imported
// image (its layer index read, as a real base's), run once to fill the step cache, then again
// with the last COPY's file changed, so that one process looks steps up, takes hits and runs a
// COPY (a layer written, an image sealed and tagged). Functions it never ran are compiled when
// first called, which cost a one-file-changed build 9% of its instructions when the cache came
// from a fully cached build FROM scratch. If this fails the CLI still works; the first run
// writes a cache then.
const run = promisify(execFile);
const train = await mkdtemp(path.join(os.tmpdir(), 'tsbuild-bundle-'));
try {
  const cli = [path.join(outdir, 'tsbuild.cjs'), '--root', path.join(train, 'store')];
  const rootfs = path.join(train, 'rootfs');
  await mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await writeFile(path.join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(path.join(rootfs, 'etc', 'group'), 'root:x:0:\n');
  await run('tar', ['-C', rootfs, '-cf', path.join(train, 'rootfs.tar'), '.']);
  await run(process.execPath, [...cli, 'import', path.join(train, 'rootfs.tar'), 'train-base:1']);
  const ctx = path.join(train, 'ctx');
  await mkdir(ctx);
  await writeFile(path.join(ctx, 'hello.txt'), 'hello\n');
  await writeFile(path.join(ctx, 'app.txt'), 'app 1\n');
  await writeFile(path.join(ctx, 'Dockerfile'), 'FROM train-base:1\nENV A=1\nWORKDIR /app\nCOPY hello.txt .\nCOPY app.txt .\nLABEL x=y\nCMD ["/app/hello.txt"]\n');
  const build = [...cli, 'build', '--progress', 'plain', '-t', 'train:1', ctx];
  await run(process.execPath, build);
  for (const f of await readdir(outdir)) if (f.startsWith(`tsbuild-bundle.cjs.${hash}-`) && f.endsWith('.cache')) await rm(path.join(outdir, f));
  await writeFile(path.join(ctx, 'app.txt'), 'app 2\n');
  await run(process.execPath, build);
  // save and load have caches of their own (cmd/bundle-launcher.cjs says why).
  await run(process.execPath, [...cli, 'save', '--format', 'oci', '-o', path.join(train, 'train.tar'), 'train:1']);
  await run(process.execPath, [...cli, 'load', '-i', path.join(train, 'train.tar')]);
} catch (err) {
  console.warn(`bundle-cli: no code cache made (the first run of the CLI makes one): ${err.message}`);
} finally {
  await rm(train, { recursive: true, force: true });
}

// Last, and only for the real dist/cmd: the build stamp (see the top).
if (outdir === path.join(repo, 'dist', 'cmd')) {
  await writeFile(stampFile, `${JSON.stringify({ sourcesAt })}\n`);
  await rm(beginFile, { force: true });
}
