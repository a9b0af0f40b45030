import { canonicalJson } from '../oci/index.js';
import { OCI_IMAGE_CONFIG, OCI_IMAGE_MANIFEST, OCI_LAYER_TAR } from '../oci/index.js';
import type { Descriptor, ImageConfig, ImageManifest } from '../oci/index.js';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';

/** A layer of an image in the local store: kept uncompressed, so its digest is its diff ID. */
export interface StoredLayer {
  readonly diffId: Digest;
  readonly size: number;
}

export interface SealedImage {
  readonly manifest: ImageManifest;
  readonly manifestDescriptor: Descriptor;
  readonly configDescriptor: Descriptor;
  readonly config: ImageConfig;
}

/**
 * Writes the config and manifest of an image whose layers are already in the store, as
 * canonical JSON (STYLE.md 13), and returns their descriptors. The image ID is the config
 * digest, as in Docker. Store manifests list uncompressed layers (DESIGN.md: compress late).
 */
export async function sealImage(store: Store, config: ImageConfig, layers: readonly StoredLayer[], opts: { signal?: AbortSignal | undefined } = {}): Promise<SealedImage> {
  const configBytes = canonicalJson(config);
  const configInfo = await store.blobs.putBytes(configBytes, { signal: opts.signal });
  const configDescriptor: Descriptor = { mediaType: OCI_IMAGE_CONFIG, digest: configInfo.digest, size: configInfo.size };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_MANIFEST,
    config: configDescriptor,
    layers: layers.map((l) => ({ mediaType: OCI_LAYER_TAR, digest: l.diffId, size: l.size })),
  };
  const manifestInfo = await store.blobs.putBytes(canonicalJson(manifest), { signal: opts.signal });
  return {
    manifest,
    config,
    configDescriptor,
    manifestDescriptor: { mediaType: OCI_IMAGE_MANIFEST, digest: manifestInfo.digest, size: manifestInfo.size },
  };
}
