import { Readable } from 'node:stream';
import { TsbuildError } from '../errors.js';
import type { CacheKey } from '../cache/index.js';
import {
  MAX_CONFIG_BYTES,
  OCI_IMAGE_MANIFEST,
  repositoryName,
  choosePlatform,
  defaultTargetPlatform,
  isConfigMediaType,
  isManifestMediaType,
  formatReference,
  sha256Digest,
  parseManifestOrIndex,
  parseReference,
  withDefaultTag,
  type Descriptor,
  type Digest,
  type ImageIndex,
  type ImageManifest,
  type Reference,
} from '../oci/index.js';
import { RegistryError, fetchBlobBytes, pullLayer, pushBlobBytes, pushLayers, type RegistryClient } from '../registry/index.js';
import type { Store } from '../store/index.js';
import { hasLayerIndex, parseLayerIndexRecord, rememberLayerIndex, type LayerIndex } from '../image/index.js';
import { recordLayerVariant } from '../registry/store-layers.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  LAYER_INDEX_MEDIA_TYPE,
  MAX_CACHE_DOCUMENT_BYTES,
  MAX_LAYER_INDEX_BYTES,
  inlineCacheDocument,
  onlyListed,
  parseCacheDocument,
  type CacheDocument,
  type CacheEntry,
  type CacheLayer,
} from './cache-document.js';
import { exportCache, type CacheExportOptions, type CacheExportResult, type CacheExportTarget, type ExportEntry } from './cache-export.js';
import { noteIndexBlob, type LoadedCache } from './imported-cache.js';

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
  const parsed = parseManifestOrIndex(fetched.bytes, fetched.contentType, { what: `cache manifest ${name}` });
  if (parsed.kind === 'index') return inlineCacheOfIndex(client, ref, parsed.index, opts);
  const manifest = parsed.manifest;
  // An image: its inline cache, if it was built with --cache-to type=inline.
  if (isConfigMediaType(manifest.config.mediaType)) return { manifest, inline: true, ...(await inlineCacheOfImage(client, ref, manifest, name, opts)) };
  if (manifest.config.mediaType !== CACHE_CONFIG_MEDIA_TYPE) {
    throw new TsbuildError('MANIFEST_INVALID', `${name} holds ${describeConfig(manifest.config.mediaType)}, not a tsbuild build cache (config media type ${manifest.config.mediaType})`, {
      hint: 'name a ref written by --cache-to type=registry',
    });
  }
  const { doc, dropped } = await readCacheDocument(client, ref, manifest.config, name, opts);
  return { manifest, inline: false, ...onlyListed(doc, manifest, dropped) };
}

/**
 * Documents read by this process, by their digest: an export to the ref a build imported finds
 * the document it read (the manifest unchanged since) without fetching it again. Content
 * addressed (the bytes were verified against the digest when fetched), so never stale.
 */
const readDocuments = new Map<Digest, { readonly doc: CacheDocument; readonly dropped: number }>();
const MAX_READ_DOCUMENTS = 8;

async function readCacheDocument(client: RegistryClient, ref: Reference, config: Descriptor, name: string, opts: SignalOption): Promise<{ doc: CacheDocument; dropped: number }> {
  const known = readDocuments.get(config.digest);
  if (known !== undefined) return known;
  const bytes = await fetchBlobBytes(client, ref, config, { maxBytes: MAX_CACHE_DOCUMENT_BYTES, what: `cache document of ${name}`, signal: opts.signal });
  const parsed = parseCacheDocument(bytes, name);
  if (readDocuments.size >= MAX_READ_DOCUMENTS) readDocuments.delete(readDocuments.keys().next().value!);
  readDocuments.set(config.digest, parsed);
  return parsed;
}

/** The inline cache an image's config carries; MANIFEST_INVALID naming `where` when it has none. */
async function inlineCacheOfImage(client: RegistryClient, ref: Reference, manifest: ImageManifest, where: string, opts: SignalOption): Promise<{ doc: CacheDocument; dropped: number }> {
  const bytes = await fetchBlobBytes(client, ref, manifest.config, { maxBytes: MAX_CONFIG_BYTES, what: `config of ${where}`, signal: opts.signal });
  let config: unknown;
  try {
    config = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new TsbuildError('MANIFEST_INVALID', `the config of ${where} is not JSON`);
  }
  return inlineCacheDocument(config, manifest.layers, where);
}

/**
 * An image pushed for several platforms with inline cache: each platform's image carries the
 * keys of its own steps (their keys name the platform), so together they serve a build of any
 * of them. The host platform's image first (its entries win a shared key); an image without
 * inline cache is passed over, and when none has any, the first one's error is the answer.
 */
async function inlineCacheOfIndex(client: RegistryClient, ref: Reference, index: ImageIndex, opts: SignalOption): Promise<{ manifest: ImageManifest; inline: true; doc: CacheDocument; dropped: number }> {
  const name = formatReference(ref);
  const chosen = choosePlatform(index, defaultTargetPlatform());
  const images = [...(chosen ? [chosen] : []), ...index.manifests.filter((m) => m !== chosen && isManifestMediaType(m.mediaType))];
  if (images.length === 0) throw new TsbuildError('MANIFEST_INVALID', `${name} holds an image index with no image, not a tsbuild build cache`, { hint: 'name a ref written by --cache-to type=registry' });
  const read = await Promise.allSettled(
    images.map(async (d) => {
      const where = `${name}@${d.digest}`;
      const child = await client.getManifest({ ...ref, digest: d.digest }, { signal: opts.signal, what: `manifest ${where}` });
      const parsed = parseManifestOrIndex(child.bytes, d.mediaType, { what: `manifest ${where}` });
      if (parsed.kind !== 'manifest' || !isConfigMediaType(parsed.manifest.config.mediaType)) throw new TsbuildError('MANIFEST_INVALID', `${where} is not an image`);
      return { manifest: parsed.manifest, ...(await inlineCacheOfImage(client, ref, parsed.manifest, where, opts)) };
    }),
  );
  const found = read.filter((r): r is PromiseFulfilledResult<{ manifest: ImageManifest; doc: CacheDocument; dropped: number }> => r.status === 'fulfilled').map((r) => r.value);
  if (found.length === 0) throw (read[0] as PromiseRejectedResult).reason;
  const entries = new Map<CacheKey, CacheEntry>();
  for (const f of found) for (const [key, e] of f.doc.entries) if (!entries.has(key)) entries.set(key, e);
  return { manifest: found[0]!.manifest, inline: true, doc: { exports: 0, entries }, dropped: found.reduce((n, f) => n + f.dropped, 0) };
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
    // Where the base images' layers live in this registry (a push there skips or mounts them),
    // and their file lists (the build plans on them instead of reading each layer to make one).
    // Hints: one that cannot be had is left out.
    const repo = repositoryName(ref);
    const ready = Promise.all(
      (found.doc.baseLayers ?? []).map(async ({ layer }) => {
        await recordLayerVariant(store, layer.diffId, { digest: layer.digest, size: layer.size, mediaType: layer.mediaType }, repo, { signal }).catch(() => undefined);
        if (layer.index === undefined || (await hasLayerIndex(store, layer.diffId))) return;
        const bytes = await fetchBlobBytes(c, ref, { mediaType: LAYER_INDEX_MEDIA_TYPE, ...layer.index }, { maxBytes: MAX_LAYER_INDEX_BYTES, what: `index of base layer ${layer.digest} in ${formatReference(ref)}`, signal }).catch(
          () => undefined,
        );
        const index = bytes !== undefined ? parseIndexBytes(bytes) : undefined;
        if (index === undefined) return;
        await rememberLayerIndex(store, layer.diffId, index);
        noteIndexBlob(store, layer.diffId, layer.index);
      }).map((p) => p.catch(() => undefined)),
    ).then(() => undefined);
    return {
      doc: found.doc,
      ready,
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

/**
 * `--cache-to type=registry,ref=REF` (cache-export.ts drives it): merges this build's entries
 * with what REF holds (stale entries dropped), pushes the layers the way an image push does
 * (skipped when the repository has them, mounted from another repository of the registry,
 * compressed once), then the document, then the manifest: until that last PUT the ref keeps its
 * previous content.
 */
export async function exportRegistryCache(client: RegistryClient, store: Store, refText: string, entries: ReadonlyMap<CacheKey, ExportEntry>, opts: CacheExportOptions): Promise<CacheExportResult> {
  const ref = cacheReference(refText);
  const name = formatReference(ref);
  let listed: ReadonlySet<Digest> = new Set();
  const target: CacheExportTarget = {
    previous: async () => {
      const found = await readRegistryCache(client, ref, opts);
      if (found?.inline === true) opts.warn(`${name} holds an image; --cache-to replaces it with a build cache`);
      if (found?.inline === false) listed = new Set(found.manifest.layers.map((l) => l.digest));
      return found?.inline === false ? found.doc : undefined;
    },
    // A registry keeps every blob a manifest names: those the ref lists need no HEAD.
    holds: () => listed,
    baseLayers: true,
    replaceable: (e) => e.code === 'MANIFEST_INVALID',
    sendLayers: (layers) => pushLayers(client, store, ref, layers, { compression: opts.compression, signal: opts.signal }),
    sendBytes: (bytes) => pushBlobBytes(client, ref, bytes, opts),
    commit: async (docBytes, m) => {
      // A new document (its use times are new), so no HEAD first: one session, one PUT.
      await client.uploadBlob({ repo: ref, digest: sha256Digest(docBytes), size: docBytes.byteLength, source: async (start, end) => Readable.from([docBytes.subarray(start, end)]), signal: opts.signal });
      await client.putManifest(ref, { reference: ref.tag ?? 'latest', bytes: m.bytes, mediaType: OCI_IMAGE_MANIFEST, signal: opts.signal });
    },
  };
  return exportCache(target, store, entries, opts);
}
