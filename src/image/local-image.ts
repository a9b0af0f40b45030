import { TsbuildError } from '../errors.js';
import { indexImageFor, readLocalIndex } from './local-index.js';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, parseImageConfig, parseManifestOrIndex } from '../oci/index.js';
import { formatReference, parseReference, withDefaultTag } from '../oci/index.js';
import type { Descriptor, Platform } from '../oci/index.js';
import { isPackedLayer, unpackStoredImage, type Store, type StoredImage } from '../store/index.js';

/** An image of the local store, with its documents read and checked, as a lookup found it. */
export interface LocalImage extends StoredImage {
  /** The full reference it was found under, if found by name. */
  readonly name?: string;
}

/** `busybox` -> `docker.io/library/busybox:latest`; throws REFERENCE_INVALID. */
export function normalizeName(name: string): string {
  return formatReference(withDefaultTag(parseReference(name)));
}

/**
 * Finds an image in the store by reference (familiar or full), by image ID or a unique
 * prefix of it (as `docker image inspect 3f5a` does), or by manifest digest.
 * Returns undefined when nothing matches.
 */
export async function findLocalImage(store: Store, nameOrId: string, opts: LocalImageOptions = {}): Promise<LocalImage | undefined> {
  const tags = await store.listTags({ signal: opts.signal });
  let name: string | undefined;
  try {
    name = normalizeName(nameOrId);
  } catch {
    name = undefined;
  }
  if (name !== undefined) {
    const hit = tags.find((t) => t.name === name);
    if (hit) return readLocalImage(store, hit.descriptor, { ...opts, name });
  }
  const idPrefix = nameOrId.replace(/^sha256:/, '');
  if (/^[a-f0-9]{4,64}$/.test(idPrefix)) {
    const found = new Map<string, LocalImage>();
    const hits = new Map<string, Descriptor>();
    for (const t of tags) {
      // As stored: only the one found has its packed layers (if any) decompressed.
      const image = await readLocalImage(store, t.descriptor, { ...opts, asStored: true }).catch(() => undefined);
      if (!image) continue;
      const id = image.configDescriptor.digest;
      if (id.slice(7).startsWith(idPrefix) || t.descriptor.digest.slice(7).startsWith(idPrefix)) {
        found.set(id, image);
        hits.set(id, t.descriptor);
      }
    }
    if (found.size > 1) {
      throw new TsbuildError('IMAGE_NOT_FOUND', `image ID prefix ${JSON.stringify(nameOrId)} is ambiguous: it matches ${found.size} images`, {
        hint: 'give more characters of the ID, or the image name',
      });
    }
    const only = [...found.values()][0];
    if (only) return opts.asStored === true ? only : readLocalImage(store, hits.get(only.configDescriptor.digest)!, opts);
  }
  return undefined;
}

/** Like findLocalImage, but a missing image is an error naming it. */
export async function getLocalImage(store: Store, nameOrId: string, opts: LocalImageOptions = {}): Promise<LocalImage> {
  const image = await findLocalImage(store, nameOrId, opts);
  if (!image) {
    throw new TsbuildError('IMAGE_NOT_FOUND', `image ${JSON.stringify(nameOrId)} not found in the local store`, {
      hint: 'list images with `tsbuild images`; load one with `tsbuild load -i FILE` or `tsbuild import ROOTFS.tar NAME`',
    });
  }
  return image;
}

export interface LocalImageOptions {
  readonly platform?: Platform;
  readonly signal?: AbortSignal;
  /**
   * Return an image whose store manifest has packed layers (`pull --no-unpack`: compressed
   * blobs only, store/ StoredLayer) as stored, its manifest naming the compressed blobs, without
   * decompressing anything: only for what reads no layer (listings, inspect, tag, rmi). By
   * default such an image is made whole first (store/ unpackStoredImage: each layer
   * decompressed and checked against its diff ID), so every reader of layers gets them
   * uncompressed, keyed by diff ID, as for any other image.
   */
  readonly asStored?: boolean;
}

/**
 * Reads a manifest (choosing a platform from an index) and its config from the store. The
 * one place a store image is read for its layers: packed layers are decompressed here on first
 * use (LocalImageOptions.asStored).
 */
export async function readLocalImage(store: Store, desc: Descriptor, opts: LocalImageOptions & { name?: string } = {}, depth = 0): Promise<LocalImage> {
  const bytes = await store.blobs.readBlobBytes(desc.digest, { maxBytes: MAX_MANIFEST_BYTES, signal: opts.signal });
  const parsed = parseManifestOrIndex(bytes, desc.mediaType, { what: `manifest ${desc.digest}` });
  if (parsed.kind === 'index') {
    if (depth > 0) throw new TsbuildError('MANIFEST_INVALID', `image index ${desc.digest} is nested in another index`);
    // The store keeps one image per platform under an index tag (local-index.ts).
    const local = await readLocalIndex(store, desc, opts);
    try {
      return indexImageFor(local, opts.platform).image;
    } catch (e) {
      // IMAGE_NOT_FOUND: a FROM then pulls the platform it lacks (registry/pull.ts resolveBaseImage).
      if (e instanceof TsbuildError && e.code === 'PLATFORM_UNAVAILABLE') throw new TsbuildError('IMAGE_NOT_FOUND', e.message, { ...(e.hint !== undefined ? { hint: e.hint } : {}) });
      throw e;
    }
  }
  const manifest = parsed.manifest;
  const configBytes = await store.blobs.readBlobBytes(manifest.config.digest, { maxBytes: MAX_CONFIG_BYTES, signal: opts.signal });
  const config = parseImageConfig(configBytes);
  if (opts.asStored !== true && manifest.layers.some(isPackedLayer)) {
    const whole = await unpackStoredImage(store, { manifest, config }, { what: `image ${opts.name ?? desc.digest}`, signal: opts.signal });
    return { ...(opts.name ? { name: opts.name } : {}), ...whole, config, configDescriptor: manifest.config };
  }
  return {
    ...(opts.name ? { name: opts.name } : {}),
    manifestDescriptor: { mediaType: parsed.mediaType, digest: desc.digest, size: desc.size },
    manifest,
    config,
    configDescriptor: manifest.config,
  };
}
