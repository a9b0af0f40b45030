import { digestHex, type Digest } from '../oci/index.js';
import { indexLayer, type LayerIndex } from '../layer/layer-index.js';
import type { Store } from '../store/index.js';
import { RootfsView } from './rootfs-view.js';

const memo = new Map<string, Promise<LayerIndex>>();

function metaName(diffId: Digest): string {
  return `layer-index.${digestHex(diffId)}`;
}

/** Remembers the index of a layer this process made itself (no need to read it back). */
export async function rememberLayerIndex(store: Store, diffId: Digest, index: LayerIndex): Promise<void> {
  memo.set(`${store.root}\0${diffId}`, Promise.resolve(index));
  await store.writeMeta(metaName(diffId), index);
}

/**
 * The index of a stored (uncompressed) layer: from meta/ when known, else read once from the
 * blob and remembered. Memoised per process so parallel stages share one read.
 */
export function layerIndexOf(store: Store, diffId: Digest, opts: { signal?: AbortSignal | undefined } = {}): Promise<LayerIndex> {
  const key = `${store.root}\0${diffId}`;
  let p = memo.get(key);
  if (!p) {
    p = (async () => {
      const known = (await store.readMeta(metaName(diffId))) as LayerIndex | undefined;
      if (known && Array.isArray(known.entries)) return known;
      const index = await indexLayer(await store.blobs.openBlob(diffId, { signal: opts.signal }), opts);
      await store.writeMeta(metaName(diffId), index);
      return index;
    })();
    p.catch(() => memo.delete(key));
    memo.set(key, p);
  }
  return p;
}

/** The merged filesystem view of a stack of stored layers. */
export async function viewOfLayers(store: Store, diffIds: readonly Digest[], opts: { signal?: AbortSignal | undefined } = {}): Promise<{ view: RootfsView; indexes: LayerIndex[] }> {
  const indexes = await Promise.all(diffIds.map((d) => layerIndexOf(store, d, opts)));
  return { view: new RootfsView(indexes), indexes };
}
