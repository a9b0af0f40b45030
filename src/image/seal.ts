import { canonicalJson } from '../oci/index.js';
import type { ImageConfig } from '../oci/index.js';
import { writeStoreManifest, type Store, type StoredImage, type StoredLayer } from '../store/index.js';

/**
 * Writes the config and manifest of an image whose layers are already in the store, as
 * canonical JSON (STYLE.md 13). The image ID is the config digest, as in Docker. Store
 * manifests list uncompressed layers (DESIGN.md: compress late).
 */
export async function sealImage(store: Store, config: ImageConfig, layers: readonly StoredLayer[], opts: { signal?: AbortSignal | undefined } = {}): Promise<StoredImage> {
  const configBlob = await store.blobs.putBytes(canonicalJson(config), { signal: opts.signal });
  return writeStoreManifest(store, { config, configBlob, layers }, { signal: opts.signal });
}
