import type { CacheHit, CacheKey, CacheSource } from '../cache/index.js';
import { TsbuildError, isAbortError } from '../errors.js';
import { layerIndexOf } from '../image/index.js';
import type { Store } from '../store/index.js';
import type { CacheDocument, CacheLayer } from './cache-document.js';

/** What a cache source holds once read: its document, and how one of its layers is fetched into the store. */
export interface LoadedCache {
  readonly doc: CacheDocument;
  /** Stores the layer's uncompressed form, verified (blob digest and diff ID). */
  fetchLayer(layer: CacheLayer, signal: AbortSignal | undefined): Promise<void>;
}

export interface ImportedCacheOptions {
  /** As messages name it: `registry cache 127.0.0.1:5000/app:cache`, `local cache /ci/cache`. */
  readonly name: string;
  readonly store: Store;
  /** Reads the source; `undefined` when there is nothing there (a first CI run: a miss, no warning). */
  readonly load: (signal: AbortSignal | undefined) => Promise<LoadedCache | undefined>;
  /** A cache that cannot be used is a warning and a miss, never a failed build. */
  readonly warn: (message: string) => void;
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

  constructor(opts: ImportedCacheOptions) {
    this.name = opts.name;
    this.#opts = opts;
  }

  /** Starts reading the source (the build calls this before its first step, so the fetch overlaps planning). */
  prefetch(signal: AbortSignal | undefined): void {
    this.#load(signal).catch(() => undefined);
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
    return { kind: 'layer', layer: { diffId: layer.diffId, size: layer.diffSize }, index: await layerIndexOf(store, layer.diffId, { signal: opts.signal }) };
  }

  #load(signal: AbortSignal | undefined): Promise<LoadedCache | undefined> {
    return (this.#loaded ??= this.#opts.load(signal).catch((e: unknown) => {
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
