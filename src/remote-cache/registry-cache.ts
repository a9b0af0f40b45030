import { TsbuildError } from '../errors.js';
import type { CacheKey } from '../cache/index.js';
import {
  MAX_CONFIG_BYTES,
  OCI_IMAGE_MANIFEST,
  repositoryName,
  choosePlatform,
  defaultTargetPlatform,
  isConfigMediaType,
  formatReference,
  parseManifestOrIndex,
  parseReference,
  withDefaultTag,
  type ImageManifest,
  type Reference,
} from '../oci/index.js';
import { RegistryError, fetchBlobBytes, pullLayer, pushBlobBytes, pushLayers, type RegistryClient } from '../registry/index.js';
import type { Store } from '../store/index.js';
import { parseLayerIndexRecord, type LayerIndex } from '../image/index.js';
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
  type CacheLayer,
} from './cache-document.js';
import { exportCache, type CacheExportOptions, type CacheExportResult, type CacheExportTarget, type ExportEntry } from './cache-export.js';
import type { LoadedCache } from './imported-cache.js';

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
  const target: CacheExportTarget = {
    previous: async () => {
      const found = await readRegistryCache(client, ref, opts);
      if (found?.inline === true) opts.warn(`${name} holds an image; --cache-to replaces it with a build cache`);
      return found?.inline === false ? found.doc : undefined;
    },
    replaceable: (e) => e.code === 'MANIFEST_INVALID',
    sendLayers: (layers) => pushLayers(client, store, ref, layers, { compression: opts.compression, signal: opts.signal }),
    sendBytes: (bytes) => pushBlobBytes(client, ref, bytes, opts),
    commit: async (docBytes, m) => {
      await pushBlobBytes(client, ref, docBytes, opts);
      await client.putManifest(ref, { reference: ref.tag ?? 'latest', bytes: m.bytes, mediaType: OCI_IMAGE_MANIFEST, signal: opts.signal });
    },
  };
  return exportCache(target, store, entries, opts);
}
