import { addHistory } from '../image/config-edit.js';
import { layerIndexOf } from '../image/layer-index-cache.js';
import type { LayerIndex } from '../layer/layer-index.js';
import { isDigest, type Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import type { StageState } from './stage-state.js';

/**
 * The step cache: meta/step.<key>.json -> the layer a step produced, or `empty` for a step
 * that changed nothing. One place for the lookup and the record, shared by COPY/ADD,
 * WORKDIR and RUN.
 */
export type CachedStep = { readonly kind: 'layer'; readonly layer: { diffId: Digest; size: number }; readonly index: LayerIndex } | { readonly kind: 'empty' };

function metaName(key: Digest): string {
  return `step.${key.slice(7)}`;
}

/**
 * A usable cache hit (its blob still in the store), or undefined. On a miss, `claim` runs
 * before this returns: the step is about to read the layers it builds on (lease-layers.ts).
 */
export async function lookupStep(
  store: Store,
  key: Digest,
  opts: { noCache: boolean; signal?: AbortSignal | undefined; claim: () => Promise<void> },
): Promise<CachedStep | undefined> {
  if (!opts.noCache) {
    const hit = (await store.readMeta(metaName(key))) as { diffId?: string; size?: number; empty?: boolean } | undefined;
    if (hit?.empty) return { kind: 'empty' };
    if (hit?.diffId && isDigest(hit.diffId) && typeof hit.size === 'number' && (await store.blobs.hasBlob(hit.diffId))) {
      return { kind: 'layer', layer: { diffId: hit.diffId, size: hit.size }, index: await layerIndexOf(store, hit.diffId, { signal: opts.signal }) };
    }
  }
  await opts.claim();
  return undefined;
}

export async function recordStep(store: Store, key: Digest, result: { diffId: Digest; size: number } | 'empty'): Promise<void> {
  await store.writeMeta(metaName(key), result === 'empty' ? { empty: true } : result);
}

/** The state after a step that added a layer, with its history entry. */
export function withLayer(state: StageState, key: string, layer: { diffId: Digest; size: number }, index: LayerIndex, history: { createdBy: string; created: string }): StageState {
  const config = addHistory(state.config, { createdBy: history.createdBy, emptyLayer: false, created: history.created });
  return {
    ...state,
    key,
    config: { ...config, rootfs: { type: 'layers', diff_ids: [...config.rootfs.diff_ids, layer.diffId] } },
    layers: [...state.layers, layer],
    indexes: [...state.indexes, index],
  };
}

/** The state after a step that added no layer. */
export function withoutLayer(state: StageState, key: string, history: { createdBy: string; created: string }): StageState {
  return { ...state, key, config: addHistory(state.config, { createdBy: history.createdBy, emptyLayer: true, created: history.created }) };
}
