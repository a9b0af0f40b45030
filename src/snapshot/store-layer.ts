import type { LayerEntry } from '../layer/index.js';
import type { Store } from '../store/index.js';
import type { StoredLayer } from '../image/index.js';


/**
 * Writes a layer straight into the store in one pass: the tar's chunks go to putChunks, which
 * hashes them once (its digest is the diff ID) and writes them in 256 KiB pieces; the content
 * of `sourcePath` entries is read with synchronous calls into recycled buffers
 * (recycledFileReader), which the chunk-at-a-time consumer allows. An error of either side (a
 * file that cannot be read or changed size, a full disk) is the one thrown, and putChunks
 * removes its temp file.
 */
export async function writeLayerToStore(
  store: Store,
  entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>,
  opts: { readonly sourceDateEpoch?: number | undefined; readonly signal?: AbortSignal | undefined },
): Promise<StoredLayer> {
  const { layerTarChunks, recycledFileReader } = await import('../layer/index.js');
  const chunks = layerTarChunks(entries, { sourceDateEpoch: opts.sourceDateEpoch, signal: opts.signal, readFile: recycledFileReader() });
  const stored = await store.blobs.putChunks(chunks, { signal: opts.signal });
  return { diffId: stored.digest, size: stored.size };
}
