#!/usr/bin/env node
// dist/cmd/tsbuild.js after `npm run build`: scripts/bundle-cli.mjs copies this file there, with
// the bundle's hash filled in. It runs the bundled CLI (tsbuild.cjs, a CommonJS script made from
// cmd/tsbuild.ts) through V8's code cache (tsbuild.cjs.HASH-PLACE.cache, made by the same script),
// so that a start skips parsing and compiling most of the CLI. Node 20 has no compile cache of
// its own (module.enableCompileCache came with Node 22), but vm.Script takes V8's cached data.
//
// A cache that is missing or that V8 rejects (another Node version, other V8 flags) is written
// again when the process exits, if the directory is writable; nothing else depends on it.
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Script } from 'node:vm';

const HASH = '@BUNDLE_HASH@';
const file = fileURLToPath(new URL('./tsbuild.cjs', import.meta.url));
// Cached code keeps the file name it was compiled under (stack traces show it), so the cache's
// name has the bundle's place as well as its hash: a moved or packed dist/ makes its own.
const cacheFile = `${file}.${HASH}-${createHash('sha256').update(file).digest('hex').slice(0, 8)}.cache`;
// Pure ASCII (the bundle script checks): latin1 reads it without decoding UTF-8.
const source = readFileSync(file, 'latin1');
let cachedData;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  cachedData = undefined;
}
// CommonJS's module wrapper, plus the bundle's URL (its modules' import.meta.url). tsbuild.cjs
// has no hashbang, and no dynamic import() (the bundle script checks), which a vm.Script run
// from cached data could not resolve.
const script = new Script(`(function (exports, require, module, __filename, __dirname, __tsbuildBundleUrl) {${source}\n})`, { filename: file, cachedData });
if (cachedData === undefined || script.cachedDataRejected) {
  process.once('exit', () => {
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
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file), pathToFileURL(file).href);
