import { TsbuildError } from '../errors.js';
import type { CacheKey } from '../cache/index.js';
import {
  MAX_CONFIG_BYTES,
  OCI_IMAGE_MANIFEST,
  OCI_LAYER_TAR,
  canonicalJson,
  repositoryName,
  choosePlatform,
  defaultTargetPlatform,
  isConfigMediaType,
  formatReference,
  parseManifestOrIndex,
  parseReference,
  withDefaultTag,
  type Descriptor,
  type Digest,
  type ImageManifest,
  type Reference,
} from '../oci/index.js';
import { RegistryError, fetchBlobBytes, pullLayer, pushBlobBytes, pushLayers, type RegistryClient } from '../registry/index.js';
import type { Store } from '../store/index.js';
import { layerIndexOf, parseLayerIndexRecord, type LayerIndex } from '../image/index.js';
import { recordLayerVariant } from '../registry/store-layers.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  EMPTY_CACHE,
  LAYER_INDEX_MEDIA_TYPE,
  MAX_CACHE_DOCUMENT_BYTES,
  MAX_LAYER_INDEX_BYTES,
  cacheManifest,
  formatCacheDocument,
  inlineCacheDocument,
  onlyListed,
  mergeCacheDocument,
  parseCacheDocument,
  type CacheBounds,
  type CacheDocument,
  type CacheLayer,
} from './cache-document.js';
import type { LoadedCache } from './imported-cache.js';

/** A step result the build exports: its layer in the store (undefined: no layer) and free-form key inputs. */
export interface ExportEntry {
  readonly layer: { readonly diffId: Digest; readonly size: number } | undefined;
  readonly inputs?: unknown;
}

type SignalOption = { readonly signal?: AbortSignal | undefined };

export function cacheReference(ref: string): Reference {
  try {
    return withDefaultTag(parseReference(ref));
  } catch (e) {
    throw new TsbuildError('REFERENCE_INVALID', `cache ref ${JSON.stringify(ref)} is not a valid image reference: ${(e as Error).message}`, { cause: e });
  }
}

function isAbsent(e: unknown): boolean {
  return e instanceof RegistryError && (e.code === 'REGISTRY_MANIFEST_UNKNOWN' || e.code === 'REGISTRY_NAME_UNKNOWN');
}

/**
 * The cache manifest a registry ref holds: undefined when the ref does not exist (a first CI
 * run); MANIFEST_INVALID naming the ref when it holds something else (an image, an index,
 * another tool's cache) or a document that is not ours.
 */
async function readRegistryCache(client: RegistryClient, ref: Reference, opts: SignalOption): Promise<{ manifest: ImageManifest; inline: boolean; doc: CacheDocument; dropped: number } | undefined> {
  const name = formatReference(ref);
  let fetched;
  try {
    fetched = await client.getManifest(ref, { signal: opts.signal, what: `cache manifest ${name}` });
  } catch (e) {
    if (isAbsent(e)) return undefined;
    throw e;
  }
  let parsed = parseManifestOrIndex(fetched.bytes, fetched.contentType, { what: `cache manifest ${name}` });
  if (parsed.kind === 'index') {
    // An image pushed for several platforms with inline cache: the host platform's image.
    const chosen = choosePlatform(parsed.index, defaultTargetPlatform());
    if (chosen === undefined) throw new TsbuildError('MANIFEST_INVALID', `${name} holds an image index with no image for this platform, not a tsbuild build cache`, { hint: 'name a ref written by --cache-to type=registry' });
    const child = await client.getManifest({ ...ref, digest: chosen.digest }, { signal: opts.signal, what: `manifest ${name}@${chosen.digest}` });
    parsed = parseManifestOrIndex(child.bytes, chosen.mediaType, { what: `manifest ${name}@${chosen.digest}` });
  }
  if (parsed.kind !== 'manifest') throw new TsbuildError('MANIFEST_INVALID', `${name} holds a ${parsed.kind} document, not a tsbuild build cache`, { hint: 'name a ref written by --cache-to type=registry' });
  const manifest = parsed.manifest;
  if (isConfigMediaType(manifest.config.mediaType)) {
    // An image: its inline cache, if it was built with --cache-to type=inline.
    const bytes = await fetchBlobBytes(client, ref, manifest.config, { maxBytes: MAX_CONFIG_BYTES, what: `config of ${name}`, signal: opts.signal });
    let config: unknown;
    try {
      config = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new TsbuildError('MANIFEST_INVALID', `the config of ${name} is not JSON`);
    }
    return { manifest, inline: true, ...inlineCacheDocument(config, manifest.layers, name) };
  }
  if (manifest.config.mediaType !== CACHE_CONFIG_MEDIA_TYPE) {
    throw new TsbuildError('MANIFEST_INVALID', `${name} holds ${describeConfig(manifest.config.mediaType)}, not a tsbuild build cache (config media type ${manifest.config.mediaType})`, {
      hint: 'name a ref written by --cache-to type=registry',
    });
  }
  const bytes = await fetchBlobBytes(client, ref, manifest.config, { maxBytes: MAX_CACHE_DOCUMENT_BYTES, what: `cache document of ${name}`, signal: opts.signal });
  const { doc, dropped } = parseCacheDocument(bytes, name);
  return { manifest, inline: false, ...onlyListed(doc, manifest, dropped) };
}

function describeConfig(mediaType: string): string {
  if (mediaType.includes('buildkit')) return "BuildKit's cache";
  return 'another kind of artifact';
}

/** A layer index blob, or undefined when it is not one (the layer is then fetched on a hit). */
export function parseIndexBytes(bytes: Buffer): LayerIndex | undefined {
  try {
    return parseLayerIndexRecord(JSON.parse(bytes.toString('utf8')));
  } catch {
    return undefined;
  }
}

/** The loader of ImportedCache for `--cache-from type=registry,ref=REF`. */
export function registryCacheLoader(
  client: () => Promise<RegistryClient>,
  store: Store,
  refText: string,
  warn: (message: string) => void,
): (signal: AbortSignal | undefined) => Promise<LoadedCache | undefined> {
  return async (signal) => {
    const ref = cacheReference(refText);
    const c = await client();
    const found = await readRegistryCache(c, ref, { signal });
    if (found === undefined) return undefined;
    if (found.dropped > 0) warn(`registry cache ${formatReference(ref)}: ${found.dropped} malformed entries left out`);
    return {
      doc: found.doc,
      fetchIndex: async (layer: CacheLayer, s: AbortSignal | undefined) => {
        if (layer.index === undefined) return undefined;
        const bytes = await fetchBlobBytes(c, ref, { mediaType: LAYER_INDEX_MEDIA_TYPE, ...layer.index }, { maxBytes: MAX_LAYER_INDEX_BYTES, what: `index of layer ${layer.digest} in ${formatReference(ref)}`, signal: s });
        return parseIndexBytes(bytes);
      },
      noteRemote: async (layer: CacheLayer) => {
        await recordLayerVariant(store, layer.diffId, { digest: layer.digest, size: layer.size, mediaType: layer.mediaType }, repositoryName(ref));
      },
      fetchLayer: async (layer: Omit<CacheLayer, 'index'>, s: AbortSignal | undefined) => {
        await pullLayer(c, store, ref, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }, layer.diffId, { signal: s, what: `cache ${formatReference(ref)}` });
      },
    };
  };
}

export interface CacheExportOptions extends SignalOption {
  readonly compression: 'gzip' | 'uncompressed';
  readonly bounds: CacheBounds;
  readonly now: Date;
  readonly warn: (message: string) => void;
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

/**
 * `--cache-to type=registry,ref=REF`: merges this build's entries with what REF holds (stale
 * entries dropped), pushes the layers the way an image push does (skipped when the repository
 * has them, mounted from another repository of the registry, compressed once), then the
 * document, then the manifest: until that last PUT the ref keeps its previous content.
 */
export async function exportRegistryCache(client: RegistryClient, store: Store, refText: string, entries: ReadonlyMap<CacheKey, ExportEntry>, opts: CacheExportOptions): Promise<CacheExportResult> {
  const ref = cacheReference(refText);
  const name = formatReference(ref);
  let old: CacheDocument = EMPTY_CACHE;
  try {
    const found = await readRegistryCache(client, ref, opts);
    if (found?.inline === true) opts.warn(`${name} holds an image; --cache-to replaces it with a build cache`);
    else if (found !== undefined) old = found.doc;
  } catch (e) {
    if (e instanceof TsbuildError && e.code === 'MANIFEST_INVALID') opts.warn(`${e.message}; it is replaced by the exported cache`);
    else throw e;
  }
  const send = (layers: Descriptor[]): Promise<Descriptor[]> => pushLayers(client, store, ref, layers, { compression: opts.compression, signal: opts.signal });
  const fresh = await freshLayers(store, entries, send, (bytes) => pushBlobBytes(client, ref, bytes, opts), opts.signal);
  const mounts = await freshMounts(opts.mounts, send);
  const doc = mergeCacheDocument(old, fresh, opts.bounds, opts.now, opts.explainSteps, mounts);
  const docBytes = formatCacheDocument(doc);
  await pushBlobBytes(client, ref, docBytes, opts);
  const m = cacheManifest(doc, docBytes);
  await client.putManifest(ref, { reference: ref.tag ?? 'latest', bytes: m.bytes, mediaType: OCI_IMAGE_MANIFEST, signal: opts.signal });
  return { digest: m.digest, entries: doc.entries.size, written: fresh.size, layers: m.manifest.layers.length, mounts: mounts.size };
}

/** The cache mounts' blobs sent as layers are (compressed once, skipped or mounted when the target has them). */
export async function freshMounts(
  mounts: CacheExportOptions['mounts'],
  send: (layers: Descriptor[]) => Promise<Descriptor[]>,
): Promise<Map<string, Omit<CacheLayer, 'index'>>> {
  const out = new Map<string, Omit<CacheLayer, 'index'>>();
  if (mounts === undefined || mounts.size === 0) return out;
  const ids = [...mounts.keys()];
  const stored = ids.map((id): Descriptor => ({ mediaType: OCI_LAYER_TAR, digest: mounts.get(id)!.diffId, size: mounts.get(id)!.size }));
  const wire = await send(stored);
  ids.forEach((id, i) => out.set(id, { diffId: stored[i]!.digest, diffSize: stored[i]!.size, digest: wire[i]!.digest, size: wire[i]!.size, mediaType: wire[i]!.mediaType }));
  return out;
}

/** This build's entries with their layers in compressed form (each distinct layer sent once to `send`). */
export async function freshLayers(
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
