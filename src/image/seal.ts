import { canonicalJson } from '../oci/index.js';
import type { ImageConfig } from '../oci/index.js';
import { writeStoreManifest, type Store, type StoredImage, type StoredLayer } from '../store/index.js';

/**
 * Writes the config and manifest of an image whose layers are already in the store, as
 * canonical JSON (STYLE.md 13). The image ID is the config digest, as in Docker. Store
 * manifests list uncompressed layers (DESIGN.md: compress late).
 */
export async function sealImage(store: Store, config: ImageConfig, layers: readonly StoredLayer[], opts: { signal?: AbortSignal | undefined; annotations?: Readonly<Record<string, string>> | undefined } = {}): Promise<StoredImage> {
  const configBlob = await store.blobs.putBytes(canonicalJson(config), { signal: opts.signal });
  const annotations = opts.annotations !== undefined && Object.keys(opts.annotations).length > 0 ? opts.annotations : undefined;
  return writeStoreManifest(store, { config, configBlob, layers, ...(annotations ? { annotations } : {}) }, { signal: opts.signal });
}
