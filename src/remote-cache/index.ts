/**
 * remote-cache/: build cache that travels (--cache-to / --cache-from): the flags
 * (cache-spec.ts), the format (cache-document.ts), registry refs (registry-cache.ts), local
 * directories (local-cache.ts), the export driver both use (cache-export.ts), and the
 * CacheSource a build imports them through (imported-cache.ts). Front door. Parsing the flags loads nothing else: the registry client
 * and the archive writer are loaded by a build that imports or exports a cache.
 */
import type { CacheKey } from '../cache/index.js';
import type { CacheExportSpec, CacheImportSpec } from './cache-spec.js';
import type { CacheExportEnv, CacheImportEnv } from './cache-io.js';
import type { CacheExportResult, ExportEntry } from './cache-export.js';

export { DEFAULT_MAX_AGE_SECONDS, DEFAULT_MAX_EXPORTS, cacheSourceName, parseCacheExport, parseCacheImport, type CacheExportSpec, type CacheImportSpec } from './cache-spec.js';
export { CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_FIELD, inlineCacheValue, type CacheDocument, type CacheEntry, type CacheLayer } from './cache-document.js';
export { ImportedCache, LazyFetchError } from './imported-cache.js';
import { ImportedCache, LazyFetchError } from './imported-cache.js';
export type { CacheExportEnv, CacheImportEnv } from './cache-io.js';
export type { CacheExportResult, ExportEntry } from './cache-export.js';

/** The cache sources of --cache-from, in order (cache-io.ts). */
export async function openCacheImports(specs: readonly CacheImportSpec[], env: CacheImportEnv): Promise<ImportedCache[]> {
  return (await import('./cache-io.js')).openCacheImports(specs, env);
}

/** Checks the --cache-to directories before the build (cache-io.ts). */
export async function checkCacheExports(specs: readonly CacheExportSpec[]): Promise<void> {
  if (specs.some((s) => s.type === 'local')) await (await import('./cache-io.js')).checkCacheExports(specs);
}

/** One --cache-to of type registry or local (cache-io.ts). */
export async function exportBuildCache(spec: Exclude<CacheExportSpec, { type: 'inline' }>, entries: ReadonlyMap<CacheKey, ExportEntry>, env: CacheExportEnv): Promise<CacheExportResult> {
  return (await import('./cache-io.js')).exportBuildCache(spec, entries, env);
}

/** The source whose lazy layer could not be fetched, if `e` (or an error it was caused by) says so. */
export function lazyFetchSource(e: unknown): ImportedCache | undefined {
  for (let c: unknown = e, depth = 0; c !== undefined && c !== null && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    if (c instanceof LazyFetchError) return c.source;
  }
  return undefined;
}
