import { OCI_IMAGE_CONFIG, OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST, OCI_LAYER_TAR, canonicalJson } from '../oci/index.js';
import type { Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Platform } from '../oci/index.js';
import type { Store } from './store.js';

/**
 * The vocabulary of images in the local store, one shape for every way an image gets there
 * (built and sealed, imported from a rootfs, pulled, loaded from an archive) and every reader
 * (push, export, inspect, FROM). It lives in store/ because the store writes it (archive
 * load, `writeStoreManifest`) and store/ sits below image/ and registry/; image/ re-exports it.
 */

/** A layer of an image in the local store: kept uncompressed, so its digest is its diff ID. */
export interface StoredLayer {
  readonly diffId: Digest;
  readonly size: number;
}

/**
 * An image of the local store with its documents parsed: the manifest (uncompressed layers,
 * OCI media types) and the config, each with the descriptor naming its blob. The image ID is
 * `configDescriptor.digest`, as in Docker.
 */
export interface StoredImage {
  readonly manifest: ImageManifest;
  readonly manifestDescriptor: Descriptor;
  readonly config: ImageConfig;
  readonly configDescriptor: Descriptor;
}

/**
 * Writes the store's manifest for a config blob already in the store and layers already stored
 * uncompressed, as canonical JSON (STYLE.md 13). The one place a store manifest is made: OCI
 * media types whatever the source used (a Docker config blob is the same JSON), so an image
 * has one store manifest however it arrived.
 */
export async function writeStoreManifest(
  store: Store,
  image: { readonly config: ImageConfig; readonly configBlob: { readonly digest: Digest; readonly size: number }; readonly layers: readonly StoredLayer[]; readonly annotations?: Readonly<Record<string, string>> },
  opts: { readonly signal?: AbortSignal | undefined } = {},
): Promise<StoredImage> {
  const configDescriptor: Descriptor = { mediaType: OCI_IMAGE_CONFIG, digest: image.configBlob.digest, size: image.configBlob.size };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_MANIFEST,
    config: configDescriptor,
    layers: image.layers.map((l) => ({ mediaType: OCI_LAYER_TAR, digest: l.diffId, size: l.size })),
    ...(image.annotations !== undefined ? { annotations: { ...image.annotations } } : {}),
  };
  const info = await store.blobs.putBytes(canonicalJson(manifest), { signal: opts.signal });
  return { manifest, manifestDescriptor: { mediaType: OCI_IMAGE_MANIFEST, digest: info.digest, size: info.size }, config: image.config, configDescriptor };
}

/** One image of a store index and the platform it is listed for. */
export interface StoredIndexEntry {
  readonly manifestDescriptor: Descriptor;
  readonly platform: Platform;
  readonly annotations?: Readonly<Record<string, string>> | undefined;
}

/**
 * Writes a store index (OCI image index, canonical JSON) naming store manifests already in the
 * store, one per platform, in the given order. How a multi-platform image is kept under a tag:
 * the tag's descriptor is this index's (store reachability follows index -> manifests).
 */
export async function writeStoreIndex(
  store: Store,
  entries: readonly StoredIndexEntry[],
  opts: { readonly annotations?: Readonly<Record<string, string>> | undefined; readonly signal?: AbortSignal | undefined } = {},
): Promise<{ readonly index: ImageIndex; readonly descriptor: Descriptor }> {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_INDEX,
    manifests: entries.map((e) => ({
      mediaType: OCI_IMAGE_MANIFEST,
      digest: e.manifestDescriptor.digest,
      size: e.manifestDescriptor.size,
      ...(e.annotations !== undefined && Object.keys(e.annotations).length > 0 ? { annotations: { ...e.annotations } } : {}),
      platform: e.platform,
    })),
    ...(opts.annotations !== undefined && Object.keys(opts.annotations).length > 0 ? { annotations: { ...opts.annotations } } : {}),
  };
  const info = await store.blobs.putBytes(canonicalJson(index), { signal: opts.signal });
  return { index, descriptor: { mediaType: OCI_IMAGE_INDEX, digest: info.digest, size: info.size } };
}
