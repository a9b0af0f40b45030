import { TsbuildError } from '../errors.js';
import type { CacheKey } from '../cache/index.js';
import { OCI_LAYER_TAR, canonicalJson, layerCompression, layerMediaType, sha256Digest, type Descriptor, type Digest, type ImageManifest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { readLayerVariants } from '../registry/store-layers.js';
import { knownIndexBlob } from './imported-cache.js';
import { layerIndexOf } from '../image/index.js';
import { EMPTY_CACHE, cacheManifest, entryExtras, formatCacheDocument, mergeCacheDocument, type CacheBounds, type CacheDocument, type CacheLayer } from './cache-document.js';

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
  /** The step's copy aliases (CacheEntry.aliases). */
  readonly aliases?: readonly string[] | undefined;
}

export interface CacheExportOptions {
  readonly compression: 'gzip' | 'zstd' | 'uncompressed';
  readonly bounds: CacheBounds;
  readonly now: Date;
  readonly warn: (message: string) => void;
  readonly signal?: AbortSignal | undefined;
  /** The key each step of the build ended with, by step identity: the document's `explain` map. */
  readonly explainSteps?: ReadonlyMap<string, CacheKey> | undefined;
  /** Cache mounts to carry, by id: each packed into a blob of the store (engine/cache-mount-blob.ts). */
  readonly mounts?: ReadonlyMap<string, { readonly diffId: Digest; readonly size: number }> | undefined;
  /** The built images' layers (in the store): a target that keeps base layers records those no entry holds. */
  readonly imageLayers?: ReadonlyArray<{ readonly diffId: Digest; readonly size: number }> | undefined;
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
  /**
   * Blobs the target is known to keep (after `previous()`: those its current manifest lists):
   * neither asked for nor sent again.
   */
  holds?(): ReadonlySet<Digest>;
  /** Records the images' base layers (the document's `baseLayers`): a registry, where a push can find them. */
  readonly baseLayers?: boolean;
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
  const sendBytes = (bytes: Buffer): Promise<{ digest: Digest; size: number }> => target.sendBytes(bytes);
  const have = target.holds !== undefined ? listedBlobs(store, target.holds(), opts.compression, opts.signal) : undefined;
  const [fresh, base] = await Promise.all([
    freshLayers(store, entries, send, sendBytes, opts.signal, have),
    target.baseLayers === true ? freshBaseLayers(store, entries, opts.imageLayers, (layers) => sendUnlisted(layers, send, have), sendBytes, have, opts.signal) : undefined,
  ]);
  const mounts = await freshMounts(opts.mounts, send);
  const doc = mergeCacheDocument(old, fresh, opts.bounds, opts.now, opts.explainSteps, mounts, base);
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

/**
 * What the export's target holds already: the blobs its current manifest lists (a registry keeps
 * every blob a manifest names, so these need no HEAD), and the compressed form of a layer among
 * them that the store knows holds it (a variant the store recorded from a push, a pull or an
 * imported cache: the same knowledge a push trusts before its HEAD).
 */
interface ListedBlobs {
  readonly digests: ReadonlySet<Digest>;
  layer(diffId: Digest, size: number): Promise<Descriptor | undefined>;
}

function listedBlobs(store: Store, digests: ReadonlySet<Digest>, compression: 'gzip' | 'zstd' | 'uncompressed', signal: AbortSignal | undefined): ListedBlobs {
  return {
    digests,
    layer: async (diffId, size) => {
      if (digests.size === 0) return undefined;
      if (compression === 'uncompressed') return digests.has(diffId) ? { mediaType: OCI_LAYER_TAR, digest: diffId, size } : undefined;
      const v = (await readLayerVariants(store, diffId, { signal })).find((x) => layerCompression(x.mediaType) === compression && digests.has(x.digest));
      return v === undefined ? undefined : { mediaType: layerMediaType('oci', compression), digest: v.digest, size: v.size };
    },
  };
}

/** Layers (store descriptors) as the target holds them: `have`'s when listed there, else sent. */
async function sendUnlisted(stored: readonly Descriptor[], send: (layers: Descriptor[]) => Promise<Descriptor[]>, have: ListedBlobs | undefined): Promise<Descriptor[]> {
  const there = have === undefined ? stored.map(() => undefined) : await limited(stored, 8, (s) => have.layer(s.digest, s.size));
  const toSend = stored.filter((_s, i) => there[i] === undefined);
  const sent = toSend.length > 0 ? await send(toSend) : [];
  let j = 0;
  return stored.map((_s, i) => there[i] ?? sent[j++]!);
}

/** The image's layers that no entry holds (its base image's), in compressed form, by diff ID. */
async function freshBaseLayers(
  store: Store,
  entries: ReadonlyMap<CacheKey, ExportEntry>,
  imageLayers: CacheExportOptions['imageLayers'],
  send: (layers: Descriptor[]) => Promise<Descriptor[]>,
  sendBytes: (bytes: Buffer) => Promise<{ digest: Digest; size: number }>,
  listed: ListedBlobs | undefined,
  signal: AbortSignal | undefined,
): Promise<Map<Digest, CacheLayer>> {
  const out = new Map<Digest, CacheLayer>();
  const made = new Set<Digest>();
  for (const e of entries.values()) if (e.layer !== undefined) made.add(e.layer.diffId);
  const stored = new Map<Digest, Descriptor>();
  for (const l of imageLayers ?? []) if (!made.has(l.diffId)) stored.set(l.diffId, { mediaType: OCI_LAYER_TAR, digest: l.diffId, size: l.size });
  if (stored.size === 0) return out;
  const list = [...stored.values()];
  const [wire, indexes] = await Promise.all([send(list), limited(list, 4, (s) => indexBlob(store, s.digest, sendBytes, listed, signal))]);
  list.forEach((s, i) => out.set(s.digest, { diffId: s.digest, diffSize: s.size, digest: wire[i]!.digest, size: wire[i]!.size, mediaType: wire[i]!.mediaType, index: indexes[i] }));
  return out;
}

/** A layer's file list as a blob of the target (sent unless the target's manifest lists it). */
async function indexBlob(store: Store, diffId: Digest, sendBytes: (bytes: Buffer) => Promise<{ digest: Digest; size: number }>, listed: ListedBlobs | undefined, signal: AbortSignal | undefined): Promise<{ digest: Digest; size: number }> {
  const known = knownIndexBlob(store, diffId);
  if (known !== undefined && listed?.digests.has(known.digest) === true) return known;
  const bytes = canonicalJson(await layerIndexOf(store, diffId, { signal }));
  const digest = sha256Digest(bytes);
  return listed?.digests.has(digest) === true ? { digest, size: bytes.byteLength } : sendBytes(bytes);
}

/** At most `n` of `fn` at once over `items`, results in order. */
async function limited<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/**
 * This build's entries with their layers in compressed form (each distinct layer sent once to
 * `send`, unless `listed` shows the target has it), and each layer's file list (sent unless
 * listed).
 */
async function freshLayers(
  store: Store,
  entries: ReadonlyMap<CacheKey, ExportEntry>,
  send: (layers: Descriptor[]) => Promise<Descriptor[]>,
  sendBytes: (bytes: Buffer) => Promise<{ digest: Digest; size: number }>,
  signal: AbortSignal | undefined,
  listed?: ListedBlobs,
): Promise<Map<CacheKey, { layer: CacheLayer | undefined; inputs?: unknown; aliases?: readonly string[] }>> {
  const distinct = new Map<Digest, number>();
  for (const e of entries.values()) if (e.layer !== undefined) distinct.set(e.layer.diffId, e.layer.size);
  const stored = [...distinct].map(([diffId, size]): Descriptor => ({ mediaType: OCI_LAYER_TAR, digest: diffId, size }));
  // Each layer's file list goes along (small), so an importer can hit lazily; made and sent
  // while the layers go.
  const [wire, indexList] = await Promise.all([sendUnlisted(stored, send, listed), limited(stored, 4, (s) => indexBlob(store, s.digest, sendBytes, listed, signal))]);
  const byDiffId = new Map<Digest, Descriptor>(stored.map((s, i) => [s.digest, wire[i]!]));
  const indexes = new Map<Digest, { digest: Digest; size: number }>(stored.map((s, i) => [s.digest, indexList[i]!]));
  const out = new Map<CacheKey, { layer: CacheLayer | undefined; inputs?: unknown; aliases?: readonly string[] }>();
  for (const [key, e] of entries) {
    const extra = entryExtras(e);
    if (e.layer === undefined) {
      out.set(key, { layer: undefined, ...extra });
      continue;
    }
    const w = byDiffId.get(e.layer.diffId)!;
    out.set(key, { layer: { diffId: e.layer.diffId, diffSize: e.layer.size, digest: w.digest, size: w.size, mediaType: w.mediaType, index: indexes.get(e.layer.diffId) }, ...extra });
  }
  return out;
}
