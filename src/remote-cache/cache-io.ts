/** Opening --cache-from sources and writing --cache-to exports (loaded by a build that has them). */
import { TsbuildError } from '../errors.js';
import type { CacheKey } from '../cache/index.js';
import type { Digest } from '../oci/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { Store } from '../store/index.js';
import type { CacheExportSpec, CacheImportSpec } from './cache-spec.js';
import { ImportedCache } from './imported-cache.js';
import { cacheSourceName } from './cache-spec.js';
import { checkLocalCacheDir, exportLocalCache, localCacheLoader } from './local-cache.js';
import type { CacheExportResult, ExportEntry } from './cache-export.js';
import { exportRegistryCache, registryCacheLoader } from './registry-cache.js';

export interface CacheImportEnv {
  readonly store: Store;
  readonly registry: (() => Promise<RegistryClient>) | undefined;
  readonly warn: (message: string) => void;
  /** A line of progress (what a source held). */
  readonly info?: ((message: string) => void) | undefined;
}

/**
 * The cache sources of `--cache-from`, in order. A local directory that exists but is not an
 * OCI layout is a USAGE error here, before anything runs; everything else that goes wrong
 * with a source later is a warning and a miss.
 */
export async function openCacheImports(specs: readonly CacheImportSpec[], env: CacheImportEnv): Promise<ImportedCache[]> {
  const out: ImportedCache[] = [];
  for (const spec of specs) {
    const name = cacheSourceName(spec);
    const onLoaded = (n: number | undefined): void => env.info?.(n === undefined ? `${name}: nothing there yet` : `${name}: ${n} entries`);
    if (spec.type === 'local') {
      await checkLocalCacheDir(spec.src, '--cache-from');
      out.push(new ImportedCache({ name, store: env.store, warn: env.warn, onLoaded, load: localCacheLoader(env.store, spec.src, env.warn) }));
      continue;
    }
    const registry = env.registry;
    if (registry === undefined) throw new TsbuildError('UNSUPPORTED', `--cache-from ${spec.ref}: this build has no registry access configured`);
    out.push(new ImportedCache({ name, store: env.store, warn: env.warn, onLoaded, load: registryCacheLoader(registry, env.store, spec.ref, env.warn) }));
  }
  return out;
}

/** Checks the --cache-to directories before the build: one that exists but is not an OCI layout is a USAGE error now, not after the build. */
export async function checkCacheExports(specs: readonly CacheExportSpec[]): Promise<void> {
  for (const spec of specs) if (spec.type === 'local') await checkLocalCacheDir(spec.dest, '--cache-to');
}

export interface CacheExportEnv {
  readonly store: Store;
  readonly registry: (() => Promise<RegistryClient>) | undefined;
  readonly warn: (message: string) => void;
  readonly signal?: AbortSignal | undefined;
  readonly now: Date;
  /** The key each step of the build ended with, by step identity (cache/key-explain.ts). */
  readonly explainSteps?: ReadonlyMap<string, CacheKey> | undefined;
  /** Cache mounts packed for this export, by id (`mounts=`). */
  readonly mounts?: ReadonlyMap<string, { readonly diffId: Digest; readonly size: number }> | undefined;
  /** The built image's layers: a registry export records where those no step made (the base image's) live. */
  readonly imageLayers?: ReadonlyArray<{ readonly diffId: Digest; readonly size: number }> | undefined;
}

/** One `--cache-to` (registry or local; inline is written into the image by the engine). */
export async function exportBuildCache(spec: Exclude<CacheExportSpec, { type: 'inline' }>, entries: ReadonlyMap<CacheKey, ExportEntry>, env: CacheExportEnv): Promise<CacheExportResult> {
  if (spec.compression === 'zstd') {
    // zstd layers are made by the system zstd program: missing, the export fails before it
    // starts, naming what to install (or a warning with ignore-error=true).
    const { assertZstdAvailable } = await import('../layer/index.js');
    assertZstdAvailable();
  }
  const opts = { compression: spec.compression, bounds: { maxExports: spec.maxExports, maxAgeSeconds: spec.maxAgeSeconds }, now: env.now, warn: env.warn, signal: env.signal, explainSteps: env.explainSteps, mounts: env.mounts };
  if (spec.type === 'local') return exportLocalCache(env.store, spec.dest, entries, opts);
  if (env.registry === undefined) throw new TsbuildError('UNSUPPORTED', `--cache-to ${spec.ref}: this build has no registry access configured`);
  return exportRegistryCache(await env.registry(), env.store, spec.ref, entries, { ...opts, imageLayers: env.imageLayers });
}
