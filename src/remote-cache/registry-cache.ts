import { Readable } from 'node:stream';
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
  layerCompression,
  layerMediaType,
  sha256Digest,
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
import { hasLayerIndex, layerIndexOf, parseLayerIndexRecord, rememberLayerIndex, type LayerIndex } from '../image/index.js';
import { readLayerVariants, recordLayerVariant } from '../registry/store-layers.js';
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
import { knownIndexBlob, noteIndexBlob, type LoadedCache } from './imported-cache.js';

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

export interface CacheExportOptions extends SignalOption {
  readonly compression: 'gzip' | 'uncompressed';
  readonly bounds: CacheBounds;
  readonly now: Date;
  readonly warn: (message: string) => void;
  /** The key each step of the build ended with, by step identity: the document's `explain` map. */
  readonly explainSteps?: ReadonlyMap<string, CacheKey> | undefined;
  /** Cache mounts to carry, by id: each packed into a blob of the store (engine/cache-mount-blob.ts). */
  readonly mounts?: ReadonlyMap<string, { readonly diffId: Digest; readonly size: number }> | undefined;
  /** The built image's layers (in the store): those no entry holds are exported as base layers. */
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
  let listed: ReadonlySet<Digest> = new Set();
  try {
    const found = await readRegistryCache(client, ref, opts);
    if (found?.inline === true) opts.warn(`${name} holds an image; --cache-to replaces it with a build cache`);
    else if (found !== undefined) {
      old = found.doc;
      listed = new Set(found.manifest.layers.map((l) => l.digest));
    }
  } catch (e) {
    if (e instanceof TsbuildError && e.code === 'MANIFEST_INVALID') opts.warn(`${e.message}; it is replaced by the exported cache`);
    else throw e;
  }
  const send = (layers: Descriptor[]): Promise<Descriptor[]> => pushLayers(client, store, ref, layers, { compression: opts.compression, signal: opts.signal });
  const have = listedBlobs(store, listed, opts.compression, opts.signal);
  const [fresh, base] = await Promise.all([
    freshLayers(store, entries, send, (bytes) => pushBlobBytes(client, ref, bytes, opts), opts.signal, have),
    freshBaseLayers(store, entries, opts.imageLayers, (layers) => sendUnlisted(layers, send, have), (bytes) => pushBlobBytes(client, ref, bytes, opts), have, opts.signal),
  ]);
  const mounts = await freshMounts(opts.mounts, send);
  const doc = mergeCacheDocument(old, fresh, opts.bounds, opts.now, opts.explainSteps, mounts, base);
  const docBytes = formatCacheDocument(doc);
  // A new document (its use times are new), so no HEAD first: one session, one PUT.
  await client.uploadBlob({ repo: ref, digest: sha256Digest(docBytes), size: docBytes.byteLength, source: async (start, end) => Readable.from([docBytes.subarray(start, end)]), signal: opts.signal });
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

/**
 * What the export's target holds already: the blobs its current manifest lists (a registry keeps
 * every blob a manifest names, so these need no HEAD), and the compressed form of a layer among
 * them that the store knows holds it (a variant the store recorded from a push, a pull or an
 * imported cache: the same knowledge a push trusts before its HEAD).
 */
export interface ListedBlobs {
  readonly digests: ReadonlySet<Digest>;
  layer(diffId: Digest, size: number): Promise<Descriptor | undefined>;
}

function listedBlobs(store: Store, digests: ReadonlySet<Digest>, compression: 'gzip' | 'uncompressed', signal: AbortSignal | undefined): ListedBlobs {
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
export async function freshBaseLayers(
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
export async function freshLayers(
  store: Store,
  entries: ReadonlyMap<CacheKey, ExportEntry>,
  send: (layers: Descriptor[]) => Promise<Descriptor[]>,
  sendBytes: (bytes: Buffer) => Promise<{ digest: Digest; size: number }>,
  signal: AbortSignal | undefined,
  listed?: ListedBlobs,
): Promise<Map<CacheKey, { layer: CacheLayer | undefined; inputs?: unknown }>> {
  const distinct = new Map<Digest, number>();
  for (const e of entries.values()) if (e.layer !== undefined) distinct.set(e.layer.diffId, e.layer.size);
  const stored = [...distinct].map(([diffId, size]): Descriptor => ({ mediaType: OCI_LAYER_TAR, digest: diffId, size }));
  // Each layer's file list goes along (small), so an importer can hit lazily; made and sent
  // while the layers go.
  const [wire, indexList] = await Promise.all([sendUnlisted(stored, send, listed), limited(stored, 4, (s) => indexBlob(store, s.digest, sendBytes, listed, signal))]);
  const byDiffId = new Map<Digest, Descriptor>(stored.map((s, i) => [s.digest, wire[i]!]));
  const indexes = new Map<Digest, { digest: Digest; size: number }>(stored.map((s, i) => [s.digest, indexList[i]!]));
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
