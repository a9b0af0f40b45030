import type { LazyLayerIndex, StoredLayer } from '../image/index.js';
import type { CacheKey } from './cache-key.js';
import type { KeyInputsSummary } from './key-explain.js';

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
  | { readonly kind: 'layer'; readonly layer: StoredLayer; readonly index: LazyLayerIndex; readonly fetch?: (() => Promise<void>) | undefined }
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
  /** How progress names a hit's source (`local`, `registry REF`, `local DIR`); default: `name`. */
  readonly label?: string | undefined;
  lookup(key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheHit | undefined>;
  /**
   * Optional, to explain a miss (key-explain.ts): the key this source holds for a step identity
   * (stepIdentityText; an exported cache's `explain` map), and the inputs summary of a key (an
   * exported entry's `inputs`). Asked only on a miss the local step cache cannot explain.
   */
  lastKeyFor?(identity: string, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheKey | undefined>;
  inputsOf?(key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<KeyInputsSummary | undefined>;
  /**
   * Optional: the blob of an exported `RUN --mount=type=cache` directory by id (an imported
   * cache's `mounts`), fetched into the store and verified; undefined when the source has none.
   * Asked by the first RUN of a build that mounts the id while the local mount is empty.
   */
  cacheMount?(id: string, opts: { readonly signal?: AbortSignal | undefined }): Promise<{ readonly diffId: StoredLayer['diffId'] } | undefined>;
  /**
   * Optional: the key of the step an exported cache holds under a copy alias (an entry's
   * `aliases`; engine/copy-step.ts copyAlias), so that a COPY --from or an ADD of archives is
   * looked up without unpacking what it reads. Asked when the local store has no such alias.
   */
  aliasKey?(alias: string, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheKey | undefined>;
}

/** The first hit of `sources`, asked in order. */
export async function lookupInOrder(sources: readonly CacheSource[], key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheHit | undefined> {
  return (await firstHit(sources, key, opts))?.hit;
}

/** The first hit of `sources`, asked in order, with the source that answered it. */
export async function firstHit(sources: readonly CacheSource[], key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<{ readonly hit: CacheHit; readonly source: CacheSource } | undefined> {
  for (const source of sources) {
    const hit = await source.lookup(key, opts);
    if (hit) return { hit, source };
  }
  return undefined;
}
