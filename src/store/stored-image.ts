import { OCI_IMAGE_CONFIG, OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST, OCI_LAYER_TAR, canonicalJson, layerCompression, layerMediaType } from '../oci/index.js';
import type { Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Platform } from '../oci/index.js';
import type { Store } from './store.js';

/**
 * The vocabulary of images in the local store, one shape for every way an image gets there
 * (built and sealed, imported from a rootfs, pulled, loaded from an archive) and every reader
 * (push, export, inspect, FROM). It lives in store/ because the store writes it (archive
 * load, `writeStoreManifest`) and store/ sits below image/ and registry/; image/ re-exports it.
 */

/**
 * A layer of an image in the local store: kept uncompressed, so its digest is its diff ID; or,
 * with `packed`, held only as the compressed blob a `pull --no-unpack` downloaded (verified
 * against its digest), which is decompressed and checked against the diff ID when something
 * first reads the image's layers (adopt-layers.ts unpackStoredImage). `size` is then unknown
 * and unused.
 */
export interface StoredLayer {
  readonly diffId: Digest;
  readonly size: number;
  readonly packed?: { readonly digest: Digest; readonly size: number; readonly mediaType: string } | undefined;
}

/**
 * Whether a store manifest's layer descriptor names a compressed blob (a packed layer of a
 * `pull --no-unpack`) rather than the uncompressed layer itself.
 */
export function isPackedLayer(layer: Descriptor): boolean {
  const c = layerCompression(layer.mediaType);
  return c === 'gzip' || c === 'zstd';
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
 * uncompressed (or packed: see StoredLayer), as canonical JSON (STYLE.md 13). The one place a
 * store manifest is made: OCI media types whatever the source used (a Docker config blob is the
 * same JSON), so an image has one store manifest however it arrived. A manifest with packed
 * layers is still a valid OCI image manifest (its blobs are in the layout), so skopeo and umoci
 * read such an image from the store as they read any other.
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
    layers: image.layers.map((l) =>
      l.packed !== undefined
        ? { mediaType: layerMediaType('oci', layerCompression(l.packed.mediaType) ?? 'gzip'), digest: l.packed.digest, size: l.packed.size }
        : { mediaType: OCI_LAYER_TAR, digest: l.diffId, size: l.size },
    ),
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
