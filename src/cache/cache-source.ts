import type { StoredLayer } from '../image/index.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { CacheKey } from './cache-key.js';

/**
 * A step's result found in a cache: the layer it made (with its entry index), or `empty` for a
 * step that changed nothing (a RUN that wrote no file adds no layer, as BuildKit's exporter
 * drops empty layers).
 *
 * A layer hit with `fetch` is remote and lazy: its index is known (so later steps can plan
 * against the files it holds), its bytes are not in the store yet. Whoever reads the layer's
 * bytes (a RUN on top, COPY --from, an output, a local tag) calls `fetch` first: it downloads,
 * verifies and stores the blob once, however often it is called. The build session does this
 * through claim(); nothing else needs to know.
 */
export type CacheHit =
  | { readonly kind: 'layer'; readonly layer: StoredLayer; readonly index: LayerIndex; readonly fetch?: (() => Promise<void>) | undefined }
  | { readonly kind: 'empty' };

/**
 * A place step results can be found: the local step cache first (LocalStepCache), then others
 * (a registry cache) in the order the build lists them. A lookup is a query: it never writes,
 * never holds anything; what a hit must hold (the build's lease, a download) is the caller's.
 * A hit is usable: the layer's blob is in the store when it is answered, or fetched by `fetch`.
 */
export interface CacheSource {
  /** For messages: "local step cache", "registry cache example.com/app:cache". */
  readonly name: string;
  lookup(key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheHit | undefined>;
}

/** The first hit of `sources`, asked in order. */
export async function lookupInOrder(sources: readonly CacheSource[], key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheHit | undefined> {
  for (const source of sources) {
    const hit = await source.lookup(key, opts);
    if (hit) return hit;
  }
  return undefined;
}
