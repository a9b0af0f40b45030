#!/usr/bin/env node
'use strict';
// dist/cmd/tsbuild.cjs after `npm run build` (started by dist/cmd/tsbuild, package.json's "bin"):
// scripts/bundle-cli.mjs copies this file there, with the bundle's hash filled in. It runs the
// bundled CLI (tsbuild-bundle.cjs, a CommonJS script made from cmd/tsbuild.ts) through V8's code
// cache (tsbuild-bundle.cjs.HASH-PLACE[-CMD].cache, made by the same script; one for save, one
// for load, one for the rest), so that a start skips parsing
// and compiling most of the CLI. Node 20 has no compile cache of its own
// (module.enableCompileCache came with Node 22), but vm.Script takes V8's cached data.
//
// CommonJS, and no module beyond fs, path and vm: an ES module entry costs the ES module loader
// and its start-up (~5 ms of a ~120 ms cached build here).
//
// `npx tsc -p .` alone writes dist/cmd/tsbuild.js (the CLI unbundled, an ES module) but not the
// bundle: when that file is newer than the bundle, the bundle is stale and this runs tsbuild.js
// instead (slower to start, never older than the sources).
//
// A cache that is missing or that V8 rejects (another Node version, other V8 flags) is written
// again when the process exits, if the directory is writable; nothing else depends on it.
const { readFileSync, renameSync, rmSync, statSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

const HASH = '@BUNDLE_HASH@';
const file = join(__dirname, 'tsbuild-bundle.cjs');

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

if (mtime(join(__dirname, 'tsbuild.js')) > mtime(file)) {
  import('./tsbuild.js');
} else {
  // Cached code keeps the file name it was compiled under (stack traces show it), so the cache's
  // name has the bundle's place as well as its hash (FNV-1a of the path: node:crypto is a dozen
  // modules to load): a moved or packed dist/ makes its own.
  let place = 0x811c9dc5;
  for (let i = 0; i < file.length; i++) place = Math.imul(place ^ file.charCodeAt(i), 0x01000193) >>> 0;
  // One cache each for save, load, push and pull, another for every other command: V8 keeps the
  // code of the functions a process ran, and an export runs code a build never does
  // (compression, the archive), which it compiled on every run with the build's cache; a push
  // or pull runs undici's, and with the build's cache (1 MB, most of it code they never run)
  // a push of a 1 MB image took 15-20 ms longer (10 alternating runs, 141-172 ms against
  // 126-143). The command's name is the first word that is not a global option (`image save`
  // is save). The build (scripts/bundle-cli.mjs) makes the caches of builds, save and load; a
  // push's and a pull's are made by the first one run (it needs a registry).
  const argv = process.argv;
  let at = 2;
  while (at < argv.length && argv[at].startsWith('-')) at += argv[at] === '--root' || argv[at] === '--log-level' ? 2 : 1;
  const word = argv[at] === 'image' ? argv[at + 1] : argv[at];
  const group = word === 'save' || word === 'load' || word === 'push' || word === 'pull' ? word : '';
  const cacheFile = `${file}.${HASH}-${place.toString(16).padStart(8, '0')}${group === '' ? '' : `-${group}`}.cache`;
  // Pure ASCII (the bundle script checks): latin1 reads it without decoding UTF-8.
  const source = readFileSync(file, 'latin1');
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  // CommonJS's module wrapper, plus the bundle's URL (its modules' import.meta.url). The bundle
  // has no hashbang, and no dynamic import() (the bundle script checks), which a vm.Script run
  // from cached data could not resolve.
  const script = new Script(`(function (exports, require, module, __filename, __dirname, __tsbuildBundleUrl) {${source}\n})`, { filename: file, cachedData });
  if (cachedData === undefined || script.cachedDataRejected) {
    process.once('exit', () => {
      // V8 stamps cached data with a hash of its flags and rejects data made under other flags.
      // A process that changed flags while it ran (registry/undici-agent.ts: --liftoff-only)
      // left the flags that undo it (back to V8's defaults), set here first; if it was started
      // with V8 flags of its own about WebAssembly, those defaults would not be where it
      // started, and a cache every later start rejects (and rewrites) is not written.
      const undo = globalThis[Symbol.for('tsbuild.v8FlagsChanged')];
      if (undo !== undefined) {
        const started = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
        if (typeof undo !== 'string' || /liftoff|wasm/.test(started)) return;
        require('node:v8').setFlagsFromString(undo);
      }
      const temp = `${cacheFile}.${process.pid}.tmp`;
      try {
        writeFileSync(temp, script.createCachedData());
        renameSync(temp, cacheFile);
      } catch {
        // A read-only install, a full disk: run without a cache.
        try {
          rmSync(temp, { force: true });
        } catch {
          // nothing to remove
        }
      }
    });
  }
  const bundleModule = { exports: {} };
  // This file's require resolves from the bundle's directory, as the bundle's own would.
  script.runInThisContext()(bundleModule.exports, require, bundleModule, file, __dirname, require('node:url').pathToFileURL(file).href);
}
