import { TsbuildError } from '../errors.js';
import { KEY_SCHEME, formatExplainMap, type CacheKey } from '../cache/index.js';
import { OCI_IMAGE_MANIFEST, canonicalJson, isDigest, sha256Digest, type Descriptor, type Digest, type ImageManifest } from '../oci/index.js';

/**
 * The build cache format (docs/remote-cache.md): one OCI image manifest per cache ref, whose
 * config is a document of this media type mapping cache keys to the layers of the steps, and
 * whose layers are the cache blobs (compressed as in an image, so shared with it by digest).
 * A registry ref and a local directory (OCI image layout) hold the same manifest.
 */
export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.tsbuild.cache.v1+json';

/** Cache documents are small JSON (a line per step); anything larger is not one. */
export const MAX_CACHE_DOCUMENT_BYTES = 16 * 1024 * 1024;

/** A step's layer as the cache holds it: the compressed blob and what it decompresses to. */
export interface CacheLayer {
  /** The uncompressed tar's digest (the store's layer, the image's diff ID). */
  readonly diffId: Digest;
  /** The uncompressed size. */
  readonly diffSize: number;
  /** The blob in the cache manifest's layers. */
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
  /**
   * The layer's file list (a LayerIndex as canonical JSON, LAYER_INDEX_MEDIA_TYPE), listed in the
   * manifest's layers too: an importer plans later steps with it and fetches the layer itself
   * only when its bytes are needed (lazy hits).
   */
  readonly index?: { readonly digest: Digest; readonly size: number } | undefined;
}

export const LAYER_INDEX_MEDIA_TYPE = 'application/vnd.tsbuild.layer-index.v1+json';

/** Layer indexes are one line per file; a bigger one is not read (the layer is fetched instead). */
export const MAX_LAYER_INDEX_BYTES = 64 * 1024 * 1024;

export interface CacheEntry {
  /** The step's layer; undefined: the step changed no file (no layer). */
  readonly layer: CacheLayer | undefined;
  /** The number of the export that last used (wrote) the entry. */
  readonly exportedAt: number;
  /** When a build last used the entry (RFC 3339). */
  readonly usedAt: string;
  /** Free-form: what the step's key was made of, when the step record carries it. */
  readonly inputs?: unknown;
  /**
   * The copy aliases of the step (engine/copy-step.ts copyAlias: a COPY --from or an ADD of
   * archives by the states and archives it reads, hex): an importer finds the step's key by
   * them without unpacking the source stage, image or archive to hash what it copies.
   */
  readonly aliases?: readonly string[] | undefined;
}

/** Aliases kept per entry (newest first); more than one when the step was reached from several sources. */
export const MAX_ENTRY_ALIASES = 8;
const ALIAS_RE = /^[0-9a-f]{64}$/;

/** An entry's optional fields, each present only when it says something (no empty alias list). */
export function entryExtras(e: { readonly inputs?: unknown; readonly aliases?: readonly string[] | undefined }): { inputs?: unknown; aliases?: readonly string[] } {
  return { ...(e.inputs !== undefined ? { inputs: e.inputs } : {}), ...(e.aliases !== undefined && e.aliases.length > 0 ? { aliases: e.aliases } : {}) };
}

export interface CacheDocument {
  /** How many exports made this document (each merge adds one). */
  readonly exports: number;
  readonly entries: ReadonlyMap<CacheKey, CacheEntry>;
  /** Free-form, kept as it is through merges: explanations of misses. */
  readonly explain?: unknown;
  /** Exported cache mounts (`--cache-to ...,mounts=`), at most one per id. */
  readonly mounts?: readonly CacheMountEntry[];
  /** Compressed forms of the exported images' layers that no step made (their base images'), at most one per diff ID. */
  readonly baseLayers?: readonly CacheBaseLayer[];
}

/**
 * A layer of an exported image that no step of the build made (a layer of its base image), as
 * the registry holds it compressed, with its file list: an importer that pushes to that
 * registry finds the blob there (or mounts it) instead of compressing and uploading the layer
 * again, and plans on the file list instead of reading the whole layer to make it.
 */
export interface CacheBaseLayer {
  readonly layer: CacheLayer;
  readonly exportedAt: number;
  readonly usedAt: string;
}

/** Base layer records beyond this many are not read. */
export const MAX_BASE_LAYERS = 256;

/**
 * A `RUN --mount=type=cache` directory the cache carries: its id (the mount's `id`, by default
 * its target), the blob (a tar of the directory, compressed as a layer) and when it was written.
 */
export interface CacheMountEntry {
  readonly id: string;
  readonly layer: Omit<CacheLayer, 'index'>;
  readonly exportedAt: number;
  readonly usedAt: string;
}

/** Cache mount ids are short names or paths; longer ones are not read. */
export const MAX_CACHE_MOUNT_ID = 4096;

export const EMPTY_CACHE: CacheDocument = { exports: 0, entries: new Map() };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(where: string, why: string): TsbuildError {
  return new TsbuildError('MANIFEST_INVALID', `${where} is not a tsbuild build cache: ${why}`, { hint: 'export to it again with --cache-to, or name another ref' });
}

/**
 * Reads a cache document. A document that is not one (not JSON, another scheme) throws
 * MANIFEST_INVALID naming `where`; an entry that is malformed is left out (counted in `dropped`).
 */
export function parseCacheDocument(bytes: Buffer, where: string): { doc: CacheDocument; dropped: number } {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid(where, 'its config is not JSON');
  }
  if (!isRecord(value)) throw invalid(where, 'its config is not a JSON object');
  if (value['mediaType'] !== CACHE_CONFIG_MEDIA_TYPE) throw invalid(where, `its config has media type ${JSON.stringify(value['mediaType'])}`);
  if (value['keyScheme'] !== KEY_SCHEME) throw invalid(where, `its keys are of scheme ${JSON.stringify(value['keyScheme'])}, this tsbuild makes ${KEY_SCHEME}`);
  const exports = value['exports'];
  const rawEntries = value['entries'];
  if (typeof exports !== 'number' || !Number.isInteger(exports) || exports < 0 || !isRecord(rawEntries)) throw invalid(where, 'it has no exports count or no entries');
  const entries = new Map<CacheKey, CacheEntry>();
  let dropped = 0;
  for (const [key, raw] of Object.entries(rawEntries)) {
    const entry = parseEntry(raw);
    if (!isDigest(key) || entry === undefined) {
      dropped++;
      continue;
    }
    entries.set(key as CacheKey, entry);
  }
  const rawMounts = value['mounts'];
  const mounts: CacheMountEntry[] = [];
  if (Array.isArray(rawMounts)) {
    const seen = new Set<string>();
    for (const raw of rawMounts) {
      const m = parseMount(raw);
      if (m === undefined || seen.has(m.id)) {
        dropped++;
        continue;
      }
      seen.add(m.id);
      mounts.push(m);
    }
  }
  const rawBase = value['baseLayers'];
  const baseLayers: CacheBaseLayer[] = [];
  if (Array.isArray(rawBase)) {
    const seen = new Set<string>();
    for (const raw of rawBase) {
      const b = parseBaseLayer(raw);
      if (b === undefined || seen.has(b.layer.diffId) || baseLayers.length >= MAX_BASE_LAYERS) {
        dropped++;
        continue;
      }
      seen.add(b.layer.diffId);
      baseLayers.push(b);
    }
  }
  return {
    doc: {
      exports,
      entries,
      ...(value['explain'] !== undefined ? { explain: value['explain'] } : {}),
      ...(mounts.length > 0 ? { mounts } : {}),
      ...(baseLayers.length > 0 ? { baseLayers } : {}),
    },
    dropped,
  };
}

function parseBaseLayer(raw: unknown): CacheBaseLayer | undefined {
  if (!isRecord(raw)) return undefined;
  const entry = parseEntry({ layers: [raw['layer']], exportedAt: raw['exportedAt'], usedAt: raw['usedAt'] });
  if (entry?.layer === undefined) return undefined;
  return { layer: entry.layer, exportedAt: entry.exportedAt, usedAt: entry.usedAt };
}

function formatBaseLayer(b: CacheBaseLayer): unknown {
  const l = b.layer;
  return { layer: { diffId: l.diffId, diffSize: l.diffSize, digest: l.digest, size: l.size, mediaType: l.mediaType, ...(l.index ? { index: l.index } : {}) }, exportedAt: b.exportedAt, usedAt: b.usedAt };
}

function parseMount(raw: unknown): CacheMountEntry | undefined {
  if (!isRecord(raw)) return undefined;
  const { id, exportedAt, usedAt } = raw;
  if (typeof id !== 'string' || id === '' || id.length > MAX_CACHE_MOUNT_ID) return undefined;
  const entry = parseEntry({ layers: [raw['layer']], exportedAt, usedAt });
  if (entry?.layer === undefined) return undefined;
  const { index: _index, ...layer } = entry.layer;
  return { id, layer, exportedAt: entry.exportedAt, usedAt: entry.usedAt };
}

function formatMount(m: CacheMountEntry): unknown {
  const l = m.layer;
  return { id: m.id, layer: { diffId: l.diffId, diffSize: l.diffSize, digest: l.digest, size: l.size, mediaType: l.mediaType }, exportedAt: m.exportedAt, usedAt: m.usedAt };
}

function parseEntry(raw: unknown): CacheEntry | undefined {
  if (!isRecord(raw)) return undefined;
  const { exportedAt, usedAt, inputs } = raw;
  if (typeof exportedAt !== 'number' || !Number.isInteger(exportedAt) || typeof usedAt !== 'string' || Number.isNaN(Date.parse(usedAt))) return undefined;
  const aliases = Array.isArray(raw['aliases']) ? (raw['aliases'] as unknown[]).filter((a): a is string => typeof a === 'string' && ALIAS_RE.test(a)).slice(0, MAX_ENTRY_ALIASES) : [];
  const extra = entryExtras({ inputs, aliases });
  if (raw['empty'] === true) return { layer: undefined, exportedAt, usedAt, ...extra };
  const layers = raw['layers'];
  // One layer per step today; the list leaves room for steps that make several.
  if (!Array.isArray(layers) || layers.length !== 1) return undefined;
  const l: unknown = layers[0];
  if (!isRecord(l)) return undefined;
  const { diffId, diffSize, digest, size, mediaType } = l;
  if (typeof diffId !== 'string' || !isDigest(diffId) || typeof digest !== 'string' || !isDigest(digest)) return undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || typeof diffSize !== 'number' || !Number.isSafeInteger(diffSize) || diffSize < 0) return undefined;
  if (typeof mediaType !== 'string') return undefined;
  const ix = l['index'];
  const index = isRecord(ix) && typeof ix['digest'] === 'string' && isDigest(ix['digest']) && typeof ix['size'] === 'number' && Number.isSafeInteger(ix['size']) ? { digest: ix['digest'], size: ix['size'] } : undefined;
  return { layer: { diffId, diffSize, digest, size, mediaType, ...(index ? { index } : {}) }, exportedAt, usedAt, ...extra };
}

/** The document's bytes (canonical JSON: the same document gives the same digest). */
export function formatCacheDocument(doc: CacheDocument): Buffer {
  const entries: Record<string, unknown> = {};
  for (const key of [...doc.entries.keys()].sort()) {
    const e = doc.entries.get(key)!;
    const extra = entryExtras(e);
    entries[key] = e.layer === undefined
      ? { empty: true, exportedAt: e.exportedAt, usedAt: e.usedAt, ...extra }
      : {
          layers: [{ diffId: e.layer.diffId, diffSize: e.layer.diffSize, digest: e.layer.digest, size: e.layer.size, mediaType: e.layer.mediaType, ...(e.layer.index ? { index: e.layer.index } : {}) }],
          exportedAt: e.exportedAt,
          usedAt: e.usedAt,
          ...extra,
        };
  }
  return canonicalJson({
    mediaType: CACHE_CONFIG_MEDIA_TYPE,
    keyScheme: KEY_SCHEME,
    exports: doc.exports,
    entries,
    ...(doc.explain !== undefined ? { explain: doc.explain } : {}),
    ...(doc.mounts !== undefined && doc.mounts.length > 0 ? { mounts: [...doc.mounts].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map(formatMount) } : {}),
    ...(doc.baseLayers !== undefined && doc.baseLayers.length > 0
      ? { baseLayers: [...doc.baseLayers].sort((a, b) => (a.layer.diffId < b.layer.diffId ? -1 : a.layer.diffId > b.layer.diffId ? 1 : 0)).map(formatBaseLayer) }
      : {}),
  });
}

/** How an export keeps a cache ref bounded. */
export interface CacheBounds {
  /** Entries not used by the last this many exports are dropped. */
  readonly maxExports: number;
  /** Entries last used longer ago than this are dropped. */
  readonly maxAgeSeconds: number;
}

/**
 * The document an export writes: what the ref held, with this build's entries added or
 * refreshed (their export number and use time), and stale entries dropped (CacheBounds).
 */
export function mergeCacheDocument(
  old: CacheDocument,
  fresh: ReadonlyMap<CacheKey, { readonly layer: CacheLayer | undefined; readonly inputs?: unknown; readonly aliases?: readonly string[] | undefined }>,
  bounds: CacheBounds,
  now: Date,
  explainSteps?: ReadonlyMap<string, CacheKey>,
  freshMounts?: ReadonlyMap<string, Omit<CacheLayer, 'index'>>,
  freshBase?: ReadonlyMap<Digest, CacheLayer>,
): CacheDocument {
  const exports = old.exports + 1;
  const usedAt = now.toISOString();
  const oldest = now.getTime() - bounds.maxAgeSeconds * 1000;
  const entries = new Map<CacheKey, CacheEntry>();
  for (const [key, e] of old.entries) {
    if (exports - e.exportedAt >= bounds.maxExports) continue;
    if (Date.parse(e.usedAt) < oldest) continue;
    entries.set(key, e);
  }
  for (const [key, e] of fresh) {
    // This build's aliases first, then those the entry had (the same step reached from other sources).
    const aliases = [...new Set([...(e.aliases ?? []), ...(old.entries.get(key)?.aliases ?? [])])].slice(0, MAX_ENTRY_ALIASES);
    entries.set(key, { layer: e.layer, exportedAt: exports, usedAt, ...entryExtras({ inputs: e.inputs, aliases }) });
  }
  // The last key per step (why a later miss missed): this build's steps over the ref's.
  const explain = explainSteps !== undefined && explainSteps.size > 0 ? { explain: formatExplainMap(explainSteps, old.explain) } : {};
  // Cache mounts: this export's over the ref's (the newest wins per id), stale ones dropped.
  const mounts = new Map<string, CacheMountEntry>();
  for (const m of old.mounts ?? []) {
    if (exports - m.exportedAt >= bounds.maxExports || Date.parse(m.usedAt) < oldest) continue;
    mounts.set(m.id, m);
  }
  for (const [id, layer] of freshMounts ?? []) mounts.set(id, { id, layer, exportedAt: exports, usedAt });
  // Base layers: as mounts, by diff ID, at most MAX_BASE_LAYERS (this export's first).
  const base = new Map<Digest, CacheBaseLayer>();
  for (const [diffId, layer] of freshBase ?? []) if (base.size < MAX_BASE_LAYERS) base.set(diffId, { layer, exportedAt: exports, usedAt });
  for (const b of old.baseLayers ?? []) {
    if (base.has(b.layer.diffId) || base.size >= MAX_BASE_LAYERS) continue;
    if (exports - b.exportedAt >= bounds.maxExports || Date.parse(b.usedAt) < oldest) continue;
    base.set(b.layer.diffId, b);
  }
  const { mounts: _old, baseLayers: _oldBase, ...rest } = old;
  return { ...rest, exports, entries, ...explain, ...(mounts.size > 0 ? { mounts: [...mounts.values()] } : {}), ...(base.size > 0 ? { baseLayers: [...base.values()] } : {}) };
}

/** The cache manifest: the document as config, each distinct blob once as a layer. */
export function cacheManifest(doc: CacheDocument, docBytes: Buffer): { manifest: ImageManifest; bytes: Buffer; digest: Digest } {
  const layers: Descriptor[] = [];
  const seen = new Set<Digest>();
  /** Each blob once, in the order first named: a layer, then its file list. */
  const add = (mediaType: string, digest: Digest, size: number): void => {
    if (seen.has(digest)) return;
    seen.add(digest);
    layers.push({ mediaType, digest, size });
  };
  const addLayer = (l: CacheLayer): void => {
    add(l.mediaType, l.digest, l.size);
    if (l.index !== undefined) add(LAYER_INDEX_MEDIA_TYPE, l.index.digest, l.index.size);
  };
  for (const key of [...doc.entries.keys()].sort()) {
    const l = doc.entries.get(key)!.layer;
    if (l !== undefined) addLayer(l);
  }
  for (const m of doc.mounts ?? []) add(m.layer.mediaType, m.layer.digest, m.layer.size);
  for (const { layer } of doc.baseLayers ?? []) addLayer(layer);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_MANIFEST,
    config: { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: sha256Digest(docBytes), size: docBytes.byteLength },
    layers,
  };
  const bytes = canonicalJson(manifest);
  return { manifest, bytes, digest: sha256Digest(bytes) };
}

/**
 * Inline cache (`--cache-to type=inline`): the image config carries, under this field, the keys
 * of the steps whose layers the image has, each by its position in rootfs.diff_ids, so the
 * pushed image is itself a cache source (`--cache-from REF`), as BuildKit's inline cache.
 */
export const INLINE_CACHE_FIELD = 'tsbuild.cache.v1';

export type InlineCacheEntry = { readonly layer: number; readonly size: number } | { readonly empty: true };

/** The field's value: the steps of `used` whose layer is in `diffIds` (and those that made none). */
export function inlineCacheValue(used: ReadonlyMap<CacheKey, { readonly diffId: Digest; readonly size: number } | undefined>, diffIds: readonly Digest[]): { keyScheme: string; entries: Record<string, InlineCacheEntry> } {
  const entries: Record<string, InlineCacheEntry> = {};
  for (const key of [...used.keys()].sort()) {
    const l = used.get(key);
    if (l === undefined) {
      entries[key] = { empty: true };
      continue;
    }
    const i = diffIds.indexOf(l.diffId);
    if (i >= 0) entries[key] = { layer: i, size: l.size };
  }
  return { keyScheme: KEY_SCHEME, entries };
}

/**
 * The cache document an image's inline cache stands for: each entry's layer is the manifest's
 * layer at its position. MANIFEST_INVALID naming `where` when the config has none.
 */
export function inlineCacheDocument(config: unknown, layers: readonly Descriptor[], where: string): { doc: CacheDocument; dropped: number } {
  const diffIds = isRecord(config) && isRecord(config['rootfs']) && Array.isArray(config['rootfs']['diff_ids']) ? (config['rootfs']['diff_ids'] as unknown[]) : [];
  const value = isRecord(config) ? config[INLINE_CACHE_FIELD] : undefined;
  if (!isRecord(value)) {
    throw new TsbuildError('MANIFEST_INVALID', `${where} holds an ordinary image without inline cache, not a tsbuild build cache`, {
      hint: 'build and push it with --cache-to type=inline, or name a ref written by --cache-to type=registry',
    });
  }
  if (value['keyScheme'] !== KEY_SCHEME) throw invalid(where, `its inline cache keys are of scheme ${JSON.stringify(value['keyScheme'])}, this tsbuild makes ${KEY_SCHEME}`);
  const raw = isRecord(value['entries']) ? value['entries'] : {};
  const entries = new Map<CacheKey, CacheEntry>();
  let dropped = 0;
  const usedAt = new Date(0).toISOString();
  for (const [key, e] of Object.entries(raw)) {
    if (!isDigest(key) || !isRecord(e)) {
      dropped++;
      continue;
    }
    if (e['empty'] === true) {
      entries.set(key as CacheKey, { layer: undefined, exportedAt: 0, usedAt });
      continue;
    }
    const i = e['layer'];
    const size = e['size'];
    const desc = typeof i === 'number' && Number.isInteger(i) ? layers[i] : undefined;
    const diffId = typeof i === 'number' ? diffIds[i] : undefined;
    if (desc === undefined || typeof diffId !== 'string' || !isDigest(diffId) || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      dropped++;
      continue;
    }
    entries.set(key as CacheKey, { layer: { diffId, diffSize: size, digest: desc.digest, size: desc.size, mediaType: desc.mediaType }, exportedAt: 0, usedAt });
  }
  return { doc: { exports: 0, entries }, dropped };
}

/**
 * Entries whose blob the manifest does not list are left out (a registry need not keep such
 * blobs); an index it does not list is forgotten (the layer is then fetched on a hit).
 */
export function onlyListed(doc: CacheDocument, manifest: ImageManifest, dropped: number): { doc: CacheDocument; dropped: number } {
  const listed = new Set(manifest.layers.map((l) => l.digest));
  const entries = new Map<CacheKey, CacheEntry>();
  for (const [key, e] of doc.entries) {
    if (e.layer === undefined) entries.set(key, e);
    else if (!listed.has(e.layer.digest)) dropped++;
    else if (e.layer.index !== undefined && !listed.has(e.layer.index.digest)) entries.set(key, { ...e, layer: { ...e.layer, index: undefined } });
    else entries.set(key, e);
  }
  const mounts = (doc.mounts ?? []).filter((m) => listed.has(m.layer.digest));
  dropped += (doc.mounts?.length ?? 0) - mounts.length;
  const baseLayers = (doc.baseLayers ?? [])
    .filter((b) => listed.has(b.layer.digest))
    .map((b) => (b.layer.index !== undefined && !listed.has(b.layer.index.digest) ? { ...b, layer: { ...b.layer, index: undefined } } : b));
  dropped += (doc.baseLayers?.length ?? 0) - baseLayers.length;
  const { mounts: _all, baseLayers: _allBase, ...rest } = doc;
  return { doc: { ...rest, entries, ...(mounts.length > 0 ? { mounts } : {}), ...(baseLayers.length > 0 ? { baseLayers } : {}) }, dropped };
}
