import { TsbuildError } from '../errors.js';
import type { CacheKey } from '../cache/index.js';
import { OCI_LAYER_TAR, canonicalJson, type Descriptor, type Digest, type ImageManifest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { layerIndexOf } from '../image/index.js';
import { EMPTY_CACHE, cacheManifest, formatCacheDocument, mergeCacheDocument, type CacheBounds, type CacheDocument, type CacheLayer } from './cache-document.js';

/**
 * The one export driver of `--cache-to type=registry` and `type=local` (docs/remote-cache.md,
 * "Export"): read what the target holds, send this build's layers, their file lists and the
 * cache mounts, merge the entries with the previous document under the bounds, then commit the
 * document and its manifest. The targets (registry-cache.ts, local-cache.ts) only say how each
 * of those is read or written there.
 */

/** A step result the build exports: its layer in the store (undefined: no layer) and free-form key inputs. */
export interface ExportEntry {
  readonly layer: { readonly diffId: Digest; readonly size: number } | undefined;
  readonly inputs?: unknown;
}

export interface CacheExportOptions {
  readonly compression: 'gzip' | 'uncompressed';
  readonly bounds: CacheBounds;
  readonly now: Date;
  readonly warn: (message: string) => void;
  readonly signal?: AbortSignal | undefined;
  /** The key each step of the build ended with, by step identity: the document's `explain` map. */
  readonly explainSteps?: ReadonlyMap<string, CacheKey> | undefined;
  /** Cache mounts to carry, by id: each packed into a blob of the store (engine/cache-mount-blob.ts). */
  readonly mounts?: ReadonlyMap<string, { readonly diffId: Digest; readonly size: number }> | undefined;
}

export interface CacheExportResult {
  readonly digest: Digest;
  /** Entries the cache holds after the export, and those this build wrote. */
  readonly entries: number;
  readonly written: number;
  readonly layers: number;
  /** Cache mounts this export wrote. */
  readonly mounts: number;
}

/** Where an export writes: a registry ref or a local directory. */
export interface CacheExportTarget {
  /** What the target holds now; undefined when nothing (a first export). */
  previous(): Promise<CacheDocument | undefined>;
  /**
   * A `previous()` failure that means "something else is there" (not a tsbuild cache, a
   * malformed one): a warning, and the export replaces it. Any other failure fails the export.
   */
  replaceable(e: TsbuildError): boolean;
  /** Sends layers of the store (by diff ID) as the target keeps them; their descriptors there, in order. */
  sendLayers(layers: Descriptor[]): Promise<Descriptor[]>;
  /** Sends a small blob (a layer's file list). */
  sendBytes(bytes: Buffer): Promise<{ digest: Digest; size: number }>;
  /**
   * Writes the document, then the manifest naming it: the write that makes the export visible,
   * so until it the target keeps its previous content.
   */
  commit(docBytes: Buffer, manifest: { readonly manifest: ImageManifest; readonly bytes: Buffer; readonly digest: Digest }): Promise<void>;
}

export async function exportCache(target: CacheExportTarget, store: Store, entries: ReadonlyMap<CacheKey, ExportEntry>, opts: CacheExportOptions): Promise<CacheExportResult> {
  let old: CacheDocument = EMPTY_CACHE;
  try {
    old = (await target.previous()) ?? EMPTY_CACHE;
  } catch (e) {
    if (!(e instanceof TsbuildError && target.replaceable(e))) throw e;
    opts.warn(`${e.message}; it is replaced by the exported cache`);
  }
  const send = (layers: Descriptor[]): Promise<Descriptor[]> => target.sendLayers(layers);
  const fresh = await freshLayers(store, entries, send, (bytes) => target.sendBytes(bytes), opts.signal);
  const mounts = await freshMounts(opts.mounts, send);
  const doc = mergeCacheDocument(old, fresh, opts.bounds, opts.now, opts.explainSteps, mounts);
  const docBytes = formatCacheDocument(doc);
  const m = cacheManifest(doc, docBytes);
  await target.commit(docBytes, m);
  return { digest: m.digest, entries: doc.entries.size, written: fresh.size, layers: m.manifest.layers.length, mounts: mounts.size };
}

/** The cache mounts' blobs sent as layers are (compressed once, skipped or mounted when the target has them). */
async function freshMounts(mounts: CacheExportOptions['mounts'], send: (layers: Descriptor[]) => Promise<Descriptor[]>): Promise<Map<string, Omit<CacheLayer, 'index'>>> {
  const out = new Map<string, Omit<CacheLayer, 'index'>>();
  if (mounts === undefined || mounts.size === 0) return out;
  const ids = [...mounts.keys()];
  const stored = ids.map((id): Descriptor => ({ mediaType: OCI_LAYER_TAR, digest: mounts.get(id)!.diffId, size: mounts.get(id)!.size }));
  const wire = await send(stored);
  ids.forEach((id, i) => out.set(id, { diffId: stored[i]!.digest, diffSize: stored[i]!.size, digest: wire[i]!.digest, size: wire[i]!.size, mediaType: wire[i]!.mediaType }));
  return out;
}

/** This build's entries with their layers in compressed form (each distinct layer sent once to `send`). */
async function freshLayers(
  store: Store,
  entries: ReadonlyMap<CacheKey, ExportEntry>,
  send: (layers: Descriptor[]) => Promise<Descriptor[]>,
  sendBytes: (bytes: Buffer) => Promise<{ digest: Digest; size: number }>,
  signal: AbortSignal | undefined,
): Promise<Map<CacheKey, { layer: CacheLayer | undefined; inputs?: unknown }>> {
  const distinct = new Map<Digest, number>();
  for (const e of entries.values()) if (e.layer !== undefined) distinct.set(e.layer.diffId, e.layer.size);
  const stored = [...distinct].map(([diffId, size]): Descriptor => ({ mediaType: OCI_LAYER_TAR, digest: diffId, size }));
  const wire = await send(stored);
  const byDiffId = new Map<Digest, Descriptor>(stored.map((s, i) => [s.digest, wire[i]!]));
  // Each layer's file list goes along (small), so an importer can hit lazily.
  const indexes = new Map<Digest, { digest: Digest; size: number }>();
  for (const s of stored) indexes.set(s.digest, await sendBytes(canonicalJson(await layerIndexOf(store, s.digest, { signal }))));
  const out = new Map<CacheKey, { layer: CacheLayer | undefined; inputs?: unknown }>();
  for (const [key, e] of entries) {
    const extra = e.inputs !== undefined ? { inputs: e.inputs } : {};
    if (e.layer === undefined) {
      out.set(key, { layer: undefined, ...extra });
      continue;
    }
    const w = byDiffId.get(e.layer.diffId)!;
    out.set(key, { layer: { diffId: e.layer.diffId, diffSize: e.layer.size, digest: w.digest, size: w.size, mediaType: w.mediaType, index: indexes.get(e.layer.diffId) }, ...extra });
  }
  return out;
}
