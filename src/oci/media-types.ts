import { TsbuildError } from '../errors.js';

/**
 * Media types of the documents and blobs tsbuild reads and writes.
 *
 * OCI:    https://github.com/opencontainers/image-spec/blob/main/media-types.md
 * Docker: https://github.com/distribution/distribution/blob/main/docs/content/spec/manifest-v2-2.md
 *
 * A descriptor may carry any media type (artifacts, attestations, ...), so `Descriptor.mediaType`
 * is a plain string; these constants name the ones we act on.
 */

// --- OCI image-spec ---
export const OCI_IMAGE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_IMAGE_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
/**
 * Non-distributable layers: deprecated by image-spec 1.1 (opencontainers/image-spec#965), still
 * found in Windows base images. We read them and never produce them; a push skips their blobs.
 */
export const OCI_LAYER_NONDISTRIBUTABLE_TAR = 'application/vnd.oci.image.layer.nondistributable.v1.tar';
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP =
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD =
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd';
/** The `{}` blob used as the config of artifacts (manifest.md#guidance-for-an-empty-descriptor). */
export const OCI_EMPTY_JSON = 'application/vnd.oci.empty.v1+json';

// --- Docker image manifest v2, schema 2 ---
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_IMAGE_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
/**
 * Uncompressed Docker layer. Not in the schema2 document, but containerd and BuildKit define and
 * write it (`images.MediaTypeDockerSchema2Layer`) and `docker load` accepts it.
 */
export const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';
/** Foreign layers (Windows base images): fetched from `urls`, never pushed. */
export const DOCKER_FOREIGN_LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

// --- Docker image manifest v2, schema 1: recognised only to refuse it with a clear message ---
export const DOCKER_SCHEMA1_MANIFEST = 'application/vnd.docker.distribution.manifest.v1+json';
export const DOCKER_SCHEMA1_SIGNED_MANIFEST = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

/**
 * What a client sends in `Accept` when fetching a manifest by tag, most preferred first. Schema1 is
 * left out on purpose: a registry that only has schema1 then answers 404/415 rather than a
 * document we would refuse anyway (distribution spec, "content negotiation").
 */
export const MANIFEST_ACCEPT: readonly string[] = [
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST,
];

export type LayerCompression = 'gzip' | 'zstd' | 'uncompressed';
export type MediaTypeFormat = 'oci' | 'docker';

/**
 * The bare media type of a Content-Type header value: parameters dropped, lowercased
 * (RFC 6838 media types are case-insensitive; registries add `; charset=utf-8`).
 */
export function normalizeMediaType(contentType: string): string {
  const semi = contentType.indexOf(';');
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === OCI_IMAGE_INDEX || mediaType === DOCKER_MANIFEST_LIST;
}

/** An image manifest (not an index, not schema1). */
export function isManifestMediaType(mediaType: string): boolean {
  return mediaType === OCI_IMAGE_MANIFEST || mediaType === DOCKER_MANIFEST;
}

export function isSchema1MediaType(mediaType: string): boolean {
  return mediaType === DOCKER_SCHEMA1_MANIFEST || mediaType === DOCKER_SCHEMA1_SIGNED_MANIFEST;
}

export function isConfigMediaType(mediaType: string): boolean {
  return mediaType === OCI_IMAGE_CONFIG || mediaType === DOCKER_IMAGE_CONFIG;
}

const LAYER_COMPRESSION: ReadonlyMap<string, LayerCompression> = new Map<string, LayerCompression>([
  [OCI_LAYER_TAR, 'uncompressed'],
  [OCI_LAYER_TAR_GZIP, 'gzip'],
  [OCI_LAYER_TAR_ZSTD, 'zstd'],
  [OCI_LAYER_NONDISTRIBUTABLE_TAR, 'uncompressed'],
  [OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP, 'gzip'],
  [OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD, 'zstd'],
  [DOCKER_LAYER_TAR, 'uncompressed'],
  [DOCKER_LAYER_TAR_GZIP, 'gzip'],
  [DOCKER_FOREIGN_LAYER_TAR_GZIP, 'gzip'],
]);

/**
 * Layers whose blobs must not be pushed to another registry: Docker foreign layers and OCI
 * non-distributable layers. Their descriptors keep their `urls`.
 */
export function isNondistributableLayer(mediaType: string): boolean {
  return (
    mediaType === DOCKER_FOREIGN_LAYER_TAR_GZIP ||
    mediaType === OCI_LAYER_NONDISTRIBUTABLE_TAR ||
    mediaType === OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP ||
    mediaType === OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD
  );
}

/** The compression of a layer blob, or undefined when the media type is not a layer we know. */
export function layerCompression(mediaType: string): LayerCompression | undefined {
  return LAYER_COMPRESSION.get(mediaType);
}

/**
 * The media type for a layer we write. Docker schema2 has no zstd layer type; BuildKit likewise
 * requires OCI media types for zstd (`compression=zstd` forces `oci-mediatypes=true`).
 */
export function layerMediaType(format: MediaTypeFormat, compression: LayerCompression): string {
  switch (format) {
    case 'oci':
      switch (compression) {
        case 'gzip':
          return OCI_LAYER_TAR_GZIP;
        case 'zstd':
          return OCI_LAYER_TAR_ZSTD;
        case 'uncompressed':
          return OCI_LAYER_TAR;
      }
      break;
    case 'docker':
      switch (compression) {
        case 'gzip':
          return DOCKER_LAYER_TAR_GZIP;
        case 'uncompressed':
          return DOCKER_LAYER_TAR;
        case 'zstd':
          throw new TsbuildError('UNSUPPORTED', 'zstd layers cannot be written with Docker media types', {
            hint: 'use OCI media types with zstd, or gzip compression for Docker media types',
          });
      }
  }
}

