import { parseExplainMap, parseKeyInputsSummary, type CacheHit, type CacheKey, type CacheSource, type KeyInputsSummary } from '../cache/index.js';
import { TsbuildError, isAbortError } from '../errors.js';
import { expectLayerIndexes, knownLayerIndex, lazyLayerIndex, rememberLayerIndex, type LayerIndex } from '../image/index.js';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import type { CacheDocument, CacheLayer } from './cache-document.js';

/** File lists fetched ahead when a source is read: at most this many, this many bytes, this many at once. */
const PREFETCH_INDEXES = 64;
const PREFETCH_INDEX_BYTES = 8 * 1024 * 1024;
const PREFETCH_CONCURRENCY = 4;

/**
 * The blob each layer's file list came in from a cache, by store and diff ID, once it is the
 * store's record: an export lists that blob (when its target has it) instead of making the
 * file list's JSON again to learn its digest.
 */
const indexBlobs = new Map<string, { readonly digest: Digest; readonly size: number }>();
const MAX_INDEX_BLOBS = 4096;

export function noteIndexBlob(store: Store, diffId: Digest, blob: { readonly digest: Digest; readonly size: number }): void {
  if (indexBlobs.size >= MAX_INDEX_BLOBS) indexBlobs.delete(indexBlobs.keys().next().value!);
  indexBlobs.set(`${store.root}\0${diffId}`, { digest: blob.digest, size: blob.size });
}

export function knownIndexBlob(store: Store, diffId: Digest): { readonly digest: Digest; readonly size: number } | undefined {
  return indexBlobs.get(`${store.root}\0${diffId}`);
}

/** What a cache source holds once read: its document, and how one of its layers is fetched into the store. */
export interface LoadedCache {
  readonly doc: CacheDocument;
  /** Stores the layer's uncompressed form, verified (blob digest and diff ID). */
  fetchLayer(layer: Omit<CacheLayer, 'index'>, signal: AbortSignal | undefined): Promise<void>;
  /** The layer's file list from the cache (verified), when the cache has it: the hit is then lazy. */
  fetchIndex?(layer: CacheLayer, signal: AbortSignal | undefined): Promise<LayerIndex | undefined>;
  /** Remembers where the layer's compressed blob lives (a push to that registry then skips or mounts it). */
  noteRemote?(layer: CacheLayer): Promise<void>;
  /** Settles when what the source records in the store as it is read (base layers' hints) is written: lookups wait for it. */
  readonly ready?: Promise<void> | undefined;
}

export interface ImportedCacheOptions {
  /** As messages name it: `registry cache 127.0.0.1:5000/app:cache`, `local cache /ci/cache`. */
  readonly name: string;
  readonly store: Store;
  /** Reads the source; `undefined` when there is nothing there (a first CI run: a miss, no warning). */
  readonly load: (signal: AbortSignal | undefined) => Promise<LoadedCache | undefined>;
  /** A cache that cannot be used is a warning and a miss, never a failed build. */
  readonly warn: (message: string) => void;
  /** The source was read: how many entries it holds (undefined: nothing there yet). For progress. */
  readonly onLoaded?: ((entries: number | undefined) => void) | undefined;
  /** A layer fetched from the source (for progress). */
  readonly onFetched?: ((layer: CacheLayer) => void) | undefined;
}

/**
 * A cache the build imports (--cache-from): read once, on the first lookup (one manifest and
 * one document fetch for the whole build, whatever the number of steps); every key is then
 * answered from memory, so a miss never stops the lookups of later steps. A hit's layer is
 * fetched into the store (verified) before it is answered, once per layer: the CacheSource
 * contract (a hit is usable). A source that cannot be read, or a layer that cannot be
 * fetched, is a warning and a miss.
 */
export class ImportedCache implements CacheSource {
  readonly name: string;
  readonly #opts: ImportedCacheOptions;
  #loaded: Promise<LoadedCache | undefined> | undefined;
  readonly #fetches = new Map<string, Promise<boolean>>();
  readonly #indexes = new Map<string, Promise<LayerIndex | undefined>>();
  readonly #lazy = new Map<string, Promise<void>>();
  readonly #mounts = new Map<string, Promise<{ readonly diffId: Digest }>>();
  /** File lists fetched ahead (#prefetchIndexes), not yet taken by a lookup. */
  readonly #early = new Map<string, Promise<LayerIndex | undefined>>();

  /** As progress names a hit's source: `registry REF`, `local DIR`. */
  readonly label: string;
  #explain: ReadonlyMap<string, CacheKey> | undefined;
  #aliases: Map<string, CacheKey> | undefined;

  constructor(opts: ImportedCacheOptions) {
    this.name = opts.name;
    this.label = opts.name.replace(/^(registry|local) cache /, '$1 ');
    this.#opts = opts;
  }

  /** The key the exported build ended a step with (the document's `explain` map), to explain a miss. */
  async lastKeyFor(identity: string, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheKey | undefined> {
    const loaded = await this.#load(opts.signal);
    this.#explain ??= parseExplainMap(loaded?.doc.explain);
    return this.#explain.get(identity);
  }

  /** The key of the entry that carries copy alias `alias` (an entry's `aliases`). */
  async aliasKey(alias: string, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheKey | undefined> {
    const loaded = await this.#load(opts.signal);
    if (loaded === undefined) return undefined;
    if (this.#aliases === undefined) {
      this.#aliases = new Map();
      for (const [key, e] of loaded.doc.entries) for (const a of e.aliases ?? []) if (!this.#aliases.has(a)) this.#aliases.set(a, key);
    }
    return this.#aliases.get(alias);
  }

  /** The inputs summary an entry carries (`inputs`), to explain a miss. */
  async inputsOf(key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<KeyInputsSummary | undefined> {
    const loaded = await this.#load(opts.signal);
    return parseKeyInputsSummary(loaded?.doc.entries.get(key)?.inputs);
  }

  /**
   * Exported cache mount `id` (the document's `mounts`): its blob fetched into the store,
   * verified by digest and diff ID, once per build; undefined when the source carries none.
   * Throws when the blob cannot be fetched (the caller warns, and the mount starts empty).
   */
  async cacheMount(id: string, opts: { readonly signal?: AbortSignal | undefined }): Promise<{ readonly diffId: Digest } | undefined> {
    const loaded = await this.#load(opts.signal);
    const m = loaded?.doc.mounts?.find((x) => x.id === id);
    if (loaded === undefined || m === undefined) return undefined;
    let p = this.#mounts.get(id);
    if (!p) {
      p = (async () => {
        if (!(await this.#opts.store.blobs.hasBlob(m.layer.diffId))) await loaded.fetchLayer(m.layer, opts.signal);
        return { diffId: m.layer.diffId };
      })();
      this.#mounts.set(id, p);
      p.catch(() => this.#mounts.delete(id));
    }
    return p;
  }

  /** Starts reading the source (the build calls this before its first step, so the fetch overlaps planning). */
  prefetch(signal: AbortSignal | undefined): void {
    // The base layers' file lists the source may carry: the build's FROM waits for them rather
    // than reading a base layer the store has no list of.
    expectLayerIndexes(this.#opts.store, this.#load(signal));
  }

  /** The keys the source holds (after a prefetch or lookup). */
  async keys(signal?: AbortSignal): Promise<ReadonlySet<CacheKey>> {
    const loaded = await this.#load(signal);
    return new Set(loaded?.doc.entries.keys() ?? []);
  }

  async lookup(key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheHit | undefined> {
    const loaded = await this.#load(opts.signal);
    const entry = loaded?.doc.entries.get(key);
    if (loaded === undefined || entry === undefined) return undefined;
    const layer = entry.layer;
    if (layer === undefined) return { kind: 'empty' };
    const store = this.#opts.store;
    if (!(await store.blobs.hasBlob(layer.diffId))) {
      // Lazy: the file list now, the bytes when something reads them (CacheHit.fetch).
      const index = await this.#indexOf(loaded, layer, opts.signal);
      if (index !== undefined) {
        const fetch = async (): Promise<void> => {
          let p = this.#lazy.get(layer.diffId);
          if (!p) {
            p = (async () => {
              if (await store.blobs.hasBlob(layer.diffId)) return;
              await loaded.fetchLayer(layer, opts.signal);
              this.#opts.onFetched?.(layer);
            })().catch((e: unknown) => {
              this.#lazy.delete(layer.diffId);
              if (isAbortError(e) || opts.signal?.aborted) throw e;
              throw new LazyFetchError(this, layer, e);
            });
            this.#lazy.set(layer.diffId, p);
          }
          return p;
        };
        return { kind: 'layer', layer: { diffId: layer.diffId, size: layer.diffSize }, index: knownLayerIndex(index), fetch };
      }
      let p = this.#fetches.get(layer.diffId);
      if (!p) {
        p = loaded.fetchLayer(layer, opts.signal).then(
          () => {
            this.#opts.onFetched?.(layer);
            return true;
          },
          (e: unknown) => {
            if (isAbortError(e) || opts.signal?.aborted) throw e;
            this.#opts.warn(`${this.name}: layer ${layer.digest} cannot be used, the step runs instead: ${messageOf(e)}`);
            return false;
          },
        );
        this.#fetches.set(layer.diffId, p);
      }
      if (!(await p)) {
        this.#fetches.delete(layer.diffId);
        return undefined;
      }
    }
    return { kind: 'layer', layer: { diffId: layer.diffId, size: layer.diffSize }, index: lazyLayerIndex(store, layer.diffId, { signal: opts.signal }) };
  }

  /** The cached file list of a layer (remembered in the store), or undefined: then the layer is fetched at once. */
  async #indexOf(loaded: LoadedCache, layer: CacheLayer, signal: AbortSignal | undefined): Promise<LayerIndex | undefined> {
    if (loaded.fetchIndex === undefined || layer.index === undefined) return undefined;
    let p = this.#indexes.get(layer.diffId);
    if (!p) {
      p = (async () => {
        const early = this.#early.get(layer.diffId);
        this.#early.delete(layer.diffId);
        const index = early !== undefined ? await early.catch(() => loaded.fetchIndex!(layer, signal)) : await loaded.fetchIndex!(layer, signal);
        if (index === undefined) return undefined;
        await rememberLayerIndex(this.#opts.store, layer.diffId, index);
        noteIndexBlob(this.#opts.store, layer.diffId, layer.index!);
        await loaded.noteRemote?.(layer);
        return index;
      })().catch((e: unknown) => {
        if (isAbortError(e) || signal?.aborted) throw e;
        this.#opts.warn(`${this.name}: the file list of layer ${layer.digest} cannot be read, the layer is fetched instead: ${messageOf(e)}`);
        return undefined;
      });
      this.#indexes.set(layer.diffId, p);
    }
    return p;
  }

  /**
   * The file lists of the entries the last builds ended their steps with (the document's
   * `explain`), fetched at once when the source is read, a few at a time: a build whose steps
   * hit one after the other then finds each list here instead of waiting for it in turn. Only
   * fetched (verified): what a lookup uses is stored by #indexOf. Bounded in count and bytes.
   */
  #prefetchIndexes(loaded: LoadedCache, signal: AbortSignal | undefined): void {
    const fetchIndex = loaded.fetchIndex;
    if (fetchIndex === undefined) return;
    const layers: CacheLayer[] = [];
    let bytes = 0;
    for (const key of new Set(parseExplainMap(loaded.doc.explain).values())) {
      const layer = loaded.doc.entries.get(key)?.layer;
      if (layer?.index === undefined || layers.some((l) => l.diffId === layer.diffId)) continue;
      if (layers.length >= PREFETCH_INDEXES || bytes + layer.index.size > PREFETCH_INDEX_BYTES) break;
      bytes += layer.index.size;
      layers.push(layer);
    }
    // Every list gets its promise now (a lookup that comes first waits for it, never fetches
    // twice), each started when one of PREFETCH_CONCURRENCY slots is free.
    let free = PREFETCH_CONCURRENCY;
    const waiting: Array<() => void> = [];
    const slot = async (): Promise<void> => {
      if (free > 0) free--;
      else await new Promise<void>((resolve) => waiting.push(resolve));
    };
    const release = (): void => {
      const w = waiting.shift();
      if (w !== undefined) w();
      else free++;
    };
    for (const layer of layers) {
      const p = slot().then(() => fetchIndex(layer, signal)).finally(release);
      p.catch(() => undefined);
      this.#early.set(layer.diffId, p);
    }
  }

  #load(signal: AbortSignal | undefined): Promise<LoadedCache | undefined> {
    return (this.#loaded ??= this.#opts.load(signal).then(async (loaded) => {
      this.#opts.onLoaded?.(loaded?.doc.entries.size);
      if (loaded !== undefined) this.#prefetchIndexes(loaded, signal);
      await loaded?.ready;
      return loaded;
    }).catch((e: unknown) => {
      if (isAbortError(e) || signal?.aborted) throw e;
      this.#opts.warn(`${this.name} cannot be used, its steps run instead: ${messageOf(e)}`);
      return undefined;
    }));
  }
}

export function messageOf(e: unknown): string {
  if (e instanceof TsbuildError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

/**
 * A lazy hit's layer could not be fetched when it was needed: the build cannot take the hit
 * back, so it is run again without this source (engine.ts), its steps then run or hit locally.
 */
export class LazyFetchError extends TsbuildError {
  readonly source: ImportedCache;
  constructor(source: ImportedCache, layer: CacheLayer, cause: unknown) {
    super('FETCH_FAILED', `${source.name}: layer ${layer.digest} cannot be fetched: ${messageOf(cause)}`, { cause });
    this.source = source;
  }
}
