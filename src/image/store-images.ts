import { TsbuildError, isTsbuildError } from '../errors.js';
import { findLocalImage, normalizeName, readLocalImage, type LocalImage } from './local-image.js';
import { indexImageFor, readLocalIndex, type LocalIndex } from './local-index.js';
import { isIndexMediaType, isManifestMediaType, MAX_MANIFEST_BYTES, parseManifestOrIndex, parseReference, familiarName, type Descriptor, type Digest } from '../oci/index.js';
import { isPackedLayer, type Store } from '../store/index.js';

/**
 * The images of the store as the docker-like commands see them: every tagged image and every
 * dangling one (a manifest no tag reaches, e.g. the previous build of a moved tag). An image
 * appears once per image ID, with all its tags.
 */
export interface StoreImage {
  readonly image: LocalImage;
  /** Full references (docker.io/library/x:tag), sorted. Empty for a dangling image. */
  readonly tags: readonly string[];
  /** Digest of the tagged descriptor (an index for a multi-platform pull) or of the manifest. */
  readonly rootDigests: readonly Digest[];
  /** Uncompressed size of its layers (docker's SIZE); of an index, of every layer of its images once. */
  readonly size: number;
  /**
   * Set when the tags name an image index (a multi-platform image): `image` is then the image
   * for this machine's platform (else the first), and `index.images` all of them.
   */
  readonly index?: LocalIndex;
  /** Every image it stands for: `image` alone, or each image of the index. */
  readonly images: readonly LocalImage[];
}

interface Options {
  readonly signal?: AbortSignal | undefined;
}

interface ResolveOptions extends Options {
  /** local-image.ts LocalImageOptions.asStored: for what reads no layer of the image. */
  readonly asStored?: boolean | undefined;
}

/**
 * All images of the store, tagged first (by name), then dangling (newest first), as stored: an
 * image with packed layers (`pull --no-unpack`) is listed with its compressed blobs' sizes.
 */
export async function listStoreImages(store: Store, opts: Options = {}): Promise<StoreImage[]> {
  const { tagged, reached } = await taggedImages(store, opts.signal);
  return [...tagged, ...(await danglingImages(store, tagged, reached, opts.signal))];
}

/** The tagged images (one per image ID, with all its tags, by name), and every digest they reach. */
async function taggedImages(store: Store, signal: AbortSignal | undefined): Promise<{ tagged: StoreImage[]; reached: Set<Digest> }> {
  const tags = await store.listTags({ signal });
  // Images by image ID; multi-platform images by index digest (one entry whatever their images).
  const byId = new Map<string, { image: LocalImage; tags: string[]; roots: Digest[]; index?: LocalIndex }>();
  const reached = new Set<Digest>();
  for (const t of tags) {
    reached.add(t.descriptor.digest);
    if (isIndexMediaType(t.descriptor.mediaType)) {
      for (const d of await indexChildren(store, t.descriptor, signal)) reached.add(d);
      const index = await readLocalIndex(store, t.descriptor, { signal, asStored: true }).catch(() => undefined);
      const first = index !== undefined && index.images.length > 0 ? indexImageFor(index, undefined).image : undefined;
      if (index === undefined || first === undefined) continue;
      const key = `index:${t.descriptor.digest}`;
      const e = byId.get(key) ?? { image: first, tags: [], roots: [t.descriptor.digest], index };
      e.tags.push(t.name);
      byId.set(key, e);
      continue;
    }
    const image = await readLocalImage(store, t.descriptor, { signal, asStored: true }).catch(() => undefined);
    if (!image) continue;
    reached.add(image.manifestDescriptor.digest);
    const e = byId.get(image.configDescriptor.digest) ?? { image, tags: [], roots: [] };
    e.tags.push(t.name);
    if (!e.roots.includes(t.descriptor.digest)) e.roots.push(t.descriptor.digest);
    byId.set(image.configDescriptor.digest, e);
  }
  const tagged = [...byId.values()].map((e): StoreImage => {
    const images = e.index !== undefined ? e.index.images.map((i) => i.image) : [e.image];
    return { image: e.image, tags: e.tags.sort(), rootDigests: e.roots, size: imageSize(images), images, ...(e.index !== undefined ? { index: e.index } : {}) };
  });
  return { tagged, reached };
}

/** The images no tag reaches (newest first): found by sniffing the store's small blobs. */
async function danglingImages(store: Store, tagged: readonly StoreImage[], reached: ReadonlySet<Digest>, signal: AbortSignal | undefined): Promise<StoreImage[]> {
  const taggedIds = new Set(tagged.filter((t) => t.index === undefined).map((t) => t.image.configDescriptor.digest));
  const dangling: StoreImage[] = [];
  for (const desc of await untaggedManifests(store, reached, signal)) {
    const image = await readLocalImage(store, desc, { signal, asStored: true }).catch(() => undefined);
    if (!image || taggedIds.has(image.configDescriptor.digest) || dangling.some((d) => d.image.configDescriptor.digest === image.configDescriptor.digest)) continue;
    dangling.push({ image, tags: [], rootDigests: [desc.digest], size: imageSize([image]), images: [image] });
  }
  dangling.sort((a, b) => Date.parse(b.image.config.created ?? '') - Date.parse(a.image.config.created ?? '') || 0);
  return dangling;
}

/** Uncompressed size of the layers of `images`, each layer once. */
function imageSize(images: readonly LocalImage[]): number {
  const layers = new Map<Digest, number>();
  for (const i of images) for (const l of i.manifest.layers) layers.set(l.digest, l.size);
  return [...layers.values()].reduce((n, s) => n + s, 0);
}

/** The image ID a listing shows: the config digest, or the index digest of a multi-platform image (as docker's containerd store). */
export function storeImageId(i: StoreImage): Digest {
  return i.index !== undefined ? i.index.descriptor.digest : i.image.configDescriptor.digest;
}

async function indexChildren(store: Store, desc: Descriptor, signal: AbortSignal | undefined): Promise<Digest[]> {
  // A damaged or missing index reaches nothing (the listing shows what it can).
  const bytes = await store.blobs.readBlobBytes(desc.digest, { maxBytes: MAX_MANIFEST_BYTES, signal }).catch(() => undefined);
  let parsed: ReturnType<typeof parseManifestOrIndex> | undefined;
  try {
    parsed = bytes && parseManifestOrIndex(bytes, desc.mediaType, { what: `index ${desc.digest}` });
  } catch {
    parsed = undefined;
  }
  return parsed?.kind === 'index' ? parsed.index.manifests.map((m) => m.digest) : [];
}

/**
 * Image manifests among the store's blobs that `reached` does not contain. The store keeps no
 * list of them, so small blobs are sniffed: a manifest is a JSON object with a manifest media
 * type and a config. Layers (large, or not starting with `{`) are skipped after a stat.
 */
async function untaggedManifests(store: Store, reached: ReadonlySet<Digest>, signal: AbortSignal | undefined): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  for (const d of await store.blobs.listBlobs()) {
    if (reached.has(d)) continue;
    const st = await store.blobs.statBlob(d);
    if (!st || st.size > 64 * 1024 || st.size < 20) continue;
    const bytes = await store.blobs.readBlobBytes(d, { maxBytes: MAX_MANIFEST_BYTES, signal }).catch(() => undefined);
    if (!bytes || bytes[0] !== 0x7b) continue;
    let doc: unknown;
    try {
      doc = JSON.parse(bytes.toString('utf8'));
    } catch {
      continue;
    }
    const o = doc as { mediaType?: unknown; config?: unknown; layers?: unknown };
    if (typeof o.mediaType === 'string' && isManifestMediaType(o.mediaType) && typeof o.config === 'object' && Array.isArray(o.layers)) {
      out.push({ mediaType: o.mediaType, digest: d, size: st.size });
    }
  }
  return out;
}

/** `docker.io/library/busybox:latest` -> ['busybox', 'latest']; other names as they are. */
export function splitTag(name: string): { repository: string; tag: string } {
  try {
    const ref = parseReference(name);
    return { repository: familiarName({ registry: ref.registry, repository: ref.repository }), tag: ref.tag ?? '<none>' };
  } catch {
    return { repository: name, tag: '<none>' };
  }
}

/** `docker.io/library/busybox:latest` -> `busybox:latest`, as docker prints RepoTags. */
export function familiarTag(name: string): string {
  const { repository, tag } = splitTag(name);
  return tag === '<none>' ? repository : `${repository}:${tag}`;
}

/** `sha256:0123456789ab...` -> `0123456789ab`, docker's short ID. */
export function shortId(d: string): string {
  return d.replace(/^sha256:/, '').slice(0, 12);
}

/**
 * Finds the image an argument names: a reference (familiar or full), an image ID or a unique
 * prefix of one (4+ hex digits), including dangling images. A malformed reference, an
 * ambiguous prefix and an unknown image are each a clear TsbuildError (exit 1). The image
 * found has its packed layers decompressed (readLocalImage), unless `asStored`.
 */
export async function resolveImageArg(store: Store, arg: string, opts: ResolveOptions = {}): Promise<StoreImage> {
  const found = await findStoreImage(store, arg, opts);
  return opts.asStored === true ? found : unpackedStoreImage(store, found, opts.signal);
}

/** `img` with every image's packed layers decompressed (read again without asStored), or `img` itself when it has none. */
async function unpackedStoreImage(store: Store, img: StoreImage, signal: AbortSignal | undefined): Promise<StoreImage> {
  if (!img.images.some((i) => i.manifest.layers.some(isPackedLayer))) return img;
  const name = img.image.name;
  const withName = { ...(name !== undefined ? { name } : {}), ...(signal ? { signal } : {}) };
  if (img.index !== undefined) {
    const index = await readLocalIndex(store, img.index.descriptor, { ...withName, ...(img.index.name !== undefined ? { name: img.index.name } : {}) });
    const image = index.images.find((i) => i.descriptor.digest === img.image.manifestDescriptor.digest)?.image ?? indexImageFor(index, undefined).image;
    const images = index.images.map((i) => i.image);
    return { ...img, image, index, images, size: imageSize(images) };
  }
  const image = await readLocalImage(store, img.image.manifestDescriptor, withName);
  return { ...img, image, images: [image], size: imageSize([image]) };
}

async function findStoreImage(store: Store, arg: string, opts: ResolveOptions): Promise<StoreImage> {
  const hex = arg.replace(/^sha256:/, '');
  const isHex = /^[a-f0-9]{4,64}$/.test(hex);
  let name: string | undefined;
  try {
    name = normalizeName(arg);
  } catch (e) {
    if (!isHex) {
      throw new TsbuildError('REFERENCE_INVALID', `invalid reference format: ${JSON.stringify(arg)}${isTsbuildError(e) ? ` (${e.message})` : ''}`, {
        hint: 'name an image as NAME[:TAG] (lowercase), or by its image ID',
      });
    }
  }
  const { tagged, reached } = await taggedImages(store, opts.signal);
  if (name !== undefined) {
    // A name is a tag: the untagged images need not be looked for (that reads every small
    // blob of the store, the most of an export or push of a small image).
    const byName = tagged.find((i) => i.tags.includes(name));
    if (byName) return byName;
  }
  if (isHex) {
    const all = [...tagged, ...(await danglingImages(store, tagged, reached, opts.signal))];
    const hits = all.filter((i) => (i.index === undefined && i.image.configDescriptor.digest.slice(7).startsWith(hex)) || i.rootDigests.some((d) => d.slice(7).startsWith(hex)));
    if (hits.length > 1) {
      throw new TsbuildError('IMAGE_NOT_FOUND', `image ID prefix ${JSON.stringify(arg)} is ambiguous: it matches ${hits.length} images`, {
        hint: 'give more characters of the ID, or the image name',
      });
    }
    if (hits[0]) return hits[0];
  }
  // Same rules and messages as the rest of the CLI for what is left (e.g. a platform miss).
  const found = await findLocalImage(store, arg, { ...(opts.signal ? { signal: opts.signal } : {}), asStored: true });
  if (found) return { image: found, tags: found.name ? [found.name] : [], rootDigests: [found.manifestDescriptor.digest], size: imageSize([found]), images: [found] };
  throw new TsbuildError('IMAGE_NOT_FOUND', `No such image: ${arg}`, {
    hint: 'list images with `tsbuild images`; build, pull or load one first',
  });
}
