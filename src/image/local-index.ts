import { TsbuildError } from '../errors.js';
import {
  MAX_MANIFEST_BYTES,
  choosePlatform,
  defaultTargetPlatform,
  formatPlatform,
  isManifestMediaType,
  normalizePlatform,
  parseManifestOrIndex,
  platformMatches,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type Platform,
} from '../oci/index.js';
import type { ExportImage, ExportIndex } from '../store/archive-export.js';
import type { Store } from '../store/index.js';
import { readLocalImage, type LocalImage } from './local-image.js';
import type { StoreImage } from './store-images.js';

/**
 * Multi-platform images of the local store: a tag whose descriptor is an image index (a
 * `build --platform a,b`, `pull --all-platforms`, `load` of an index archive, `manifest create`)
 * names one store manifest per platform. These read such an index with its images.
 */

/** One image of a local index, with the platform the index lists it for. */
export interface LocalIndexImage {
  readonly platform: Platform;
  /** The index's descriptor of the manifest (annotations included). */
  readonly descriptor: Descriptor;
  readonly image: LocalImage;
}

/** An image index of the store, read: its images in index order, each with its documents. */
export interface LocalIndex {
  /** The full reference it was found under, if found by name. */
  readonly name?: string;
  readonly descriptor: Descriptor;
  readonly index: ImageIndex;
  /** Image manifests of the index that the store holds, with a real platform (not attestations). */
  readonly images: readonly LocalIndexImage[];
  /** Manifests the index names that the store does not hold (platforms never pulled). */
  readonly absent: readonly Descriptor[];
}

/** The platform an image config says it is for (config.md architecture, os, variant). */
export function imagePlatform(config: ImageConfig): Platform {
  return normalizePlatform({
    architecture: config.architecture,
    os: config.os,
    ...(config.variant !== undefined && config.variant !== '' ? { variant: config.variant } : {}),
    ...(config['os.version'] !== undefined ? { 'os.version': config['os.version'] } : {}),
  });
}

/**
 * Reads an index of the store and the images it names. Nested indexes and manifests for
 * `unknown/unknown` (BuildKit's attestation manifests) are not images and are left out; a
 * manifest without a platform in the index gets the one its config names.
 */
export async function readLocalIndex(
  store: Store,
  desc: Descriptor,
  opts: { readonly name?: string | undefined; readonly signal?: AbortSignal | undefined; /** local-image.ts LocalImageOptions.asStored */ readonly asStored?: boolean | undefined } = {},
): Promise<LocalIndex> {
  const bytes = await store.blobs.readBlobBytes(desc.digest, { maxBytes: MAX_MANIFEST_BYTES, signal: opts.signal });
  const parsed = parseManifestOrIndex(bytes, desc.mediaType, { what: `image index ${opts.name ?? desc.digest}` });
  if (parsed.kind !== 'index') {
    throw new TsbuildError('MANIFEST_INVALID', `${opts.name ?? desc.digest} is an image manifest, not an image index`);
  }
  const images: LocalIndexImage[] = [];
  const absent: Descriptor[] = [];
  for (const m of parsed.index.manifests) {
    if (!isManifestMediaType(m.mediaType) || m.platform?.os === 'unknown') continue;
    if (!(await store.blobs.hasBlob(m.digest))) {
      absent.push(m);
      continue;
    }
    const image = await readLocalImage(store, m, { ...(opts.name !== undefined ? { name: opts.name } : {}), ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.asStored === true ? { asStored: true } : {}) });
    images.push({ platform: m.platform ?? imagePlatform(image.config), descriptor: m, image });
  }
  return {
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    descriptor: { mediaType: parsed.mediaType, digest: desc.digest, size: desc.size },
    index: parsed.index,
    images,
    absent,
  };
}

/**
 * The image of a local index for `want` (containerd's choice: the best compatible platform), or
 * without `want` the one for this machine, else the first. A platform the index lacks is
 * PLATFORM_UNAVAILABLE naming the ones it has.
 */
export function indexImageFor(local: LocalIndex, want: Platform | undefined): LocalIndexImage {
  const byDigest = new Map(local.images.map((i) => [i.descriptor.digest, i]));
  const present: ImageIndex = { schemaVersion: 2, manifests: local.images.map((i) => ({ ...i.descriptor, platform: i.platform })) };
  const chosen = choosePlatform(present, want ?? defaultTargetPlatform());
  const hit = chosen !== undefined ? byDigest.get(chosen.digest) : want === undefined ? local.images[0] : undefined;
  if (hit !== undefined) return hit;
  const what = local.name ?? local.descriptor.digest;
  throw new TsbuildError('PLATFORM_UNAVAILABLE', `${what} has no image for ${formatPlatform(want ?? defaultTargetPlatform())} in the local store`, {
    hint: local.images.length > 0 ? `it has ${platformList(local)}; choose one with --platform` : 'the index holds no image the store has',
  });
}

/** `linux/amd64, linux/arm64`: the platforms of a local index's images, in index order. */
export function platformList(local: LocalIndex): string {
  return [...new Set(local.images.map((i) => formatPlatform(i.platform)))].join(', ');
}

/**
 * The one image of `img` for `platform` (`inspect`, `history`, `push`, `save --platform`): the
 * index's image for it, or a single image whose config is for it; PLATFORM_UNAVAILABLE otherwise.
 */
export function storeImageForPlatform(img: StoreImage, platform: Platform, what: string): StoreImage {
  if (img.index !== undefined) {
    const chosen = indexImageFor(img.index, platform).image;
    return { image: chosen, tags: img.tags, rootDigests: [chosen.manifestDescriptor.digest], size: chosen.manifest.layers.reduce((n, l) => n + l.size, 0), images: [chosen] };
  }
  const have = imagePlatform(img.image.config);
  if (!platformMatches(platform, have)) {
    throw new TsbuildError('PLATFORM_UNAVAILABLE', `image ${what} is for ${formatPlatform(have)}, not ${formatPlatform(platform)}`, {
      hint: 'leave out --platform, or name a multi-platform image that has this platform',
    });
  }
  return img;
}

/**
 * What `save` writes for a store image named `arg`: a multi-platform image whole (an index, OCI
 * archives only: a docker archive names one image per tag, and buildx's docker exporter refuses
 * the same), else one image, the one for `platform` when given.
 */
export function exportEntryFor(found: StoreImage, arg: string, names: readonly string[], opts: { readonly format: 'docker' | 'oci'; readonly platform?: Platform | undefined }): ExportImage | ExportIndex {
  const index = found.index;
  if (index !== undefined && opts.platform === undefined && index.images.length > 1) {
    if (opts.format === 'docker') {
      throw new TsbuildError('USAGE', `${arg} is a multi-platform image (${platformList(index)}); a docker archive holds one platform`, {
        hint: 'pick one with --platform (e.g. --platform linux/amd64), or write every platform with --format oci',
      });
    }
    return { kind: 'index', names, images: index.images.map((i) => ({ image: i.image, platform: i.platform, annotations: i.descriptor.annotations })), annotations: index.index.annotations };
  }
  const image = opts.platform !== undefined ? storeImageForPlatform(found, opts.platform, arg).image : found.image;
  return { ...image, names };
}
