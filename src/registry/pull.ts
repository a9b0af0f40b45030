import { PassThrough, type Duplex } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { TsbuildError, isAbortError } from '../errors.js';
import { findLocalImage, type LocalImage } from '../image/index.js';
import {
  MAX_CONFIG_BYTES,
  layerCompression,
  choosePlatform,
  defaultTargetPlatform,
  formatPlatform,
  formatReference,
  isManifestMediaType,
  normalizePlatform,
  parseImageConfig,
  parseManifestOrIndex,
  platformMatches,
  repositoryName,
  withDefaultTag,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
  type Reference,
} from '../oci/index.js';
import type { Store } from '../store/index.js';
import type { RegistryClient } from './client.js';
import type { Repository } from './transport.js';
import { RegistryError } from './errors.js';
import { mapParallel } from './parallel.js';
import { pulledFormKey, rememberCompressedLayer, storeUncompressedLayer, writeStoreIndex, writeStoreManifest, type StoredImage } from '../store/index.js';
import { recordLayerVariant, recordRepoDigest } from './store-layers.js';

/** What a pull reports as it goes (the CLI renders these on stderr). */
export type PullProgress =
  | { readonly type: 'resolved'; readonly reference: string; readonly digest: Digest; readonly platform: string | undefined }
  | { readonly type: 'layer'; readonly digest: Digest; readonly size: number; readonly status: 'exists' | 'downloading' | 'downloaded' | 'done' }
  | { readonly type: 'config'; readonly digest: Digest; readonly status: 'exists' | 'downloaded' };

export interface PullOptions {
  /** Platform to choose from an index. Default: linux on the host's CPU. */
  readonly platform?: Platform | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: (p: PullProgress) => void;
  /** Layers downloaded at once. Default 4. */
  readonly concurrency?: number | undefined;
  /**
   * Told of each image once its config is read, before its layers are fetched; it may return
   * a listener called as each layer (by its index in the manifest) is in the store, downloaded
   * and verified or found there, in the order the parallel downloads finish: what lets a
   * caller unpack a layer while later ones still download.
   */
  readonly onImageLayers?: ((image: ImageLayers) => ((index: number) => void) | undefined) | undefined;
  /**
   * Keep each layer as the compressed blob the registry sent (verified against its digest while
   * it streams), not decompressed: the store image then has packed layers (store/ StoredLayer),
   * decompressed and checked against their diff IDs when something first reads them (image/
   * readLocalImage), as containerd's content store keeps what it pulled. `pull --no-unpack`: a
   * pull costs a download and one hash per layer. Layers already stored uncompressed stay so.
   * Not with an `onImageLayers` listener that unpacks (it needs the layers uncompressed).
   */
  readonly keepCompressed?: boolean | undefined;
}

/** An image whose layers a pull is about to store (PullOptions.onImageLayers). */
export interface ImageLayers {
  /** The reference pulled. */
  readonly name: string;
  readonly config: ImageConfig;
  /** The registry's layer descriptors (compressed), in manifest order. */
  readonly layers: readonly Descriptor[];
}

export interface PulledImage {
  /** The store tag: the full reference pulled (`localhost:5000/app:v1`). */
  readonly name: string;
  /** The image as the store now holds it (uncompressed layers). */
  readonly image: StoredImage;
  /** `registry/repository@digest` of what the registry served (index or manifest). */
  readonly repoDigest: string;
  /** Layers by blob digest and whether they were downloaded or already present. */
  readonly layers: readonly { readonly digest: Digest; readonly status: 'exists' | 'downloaded' }[];
}

const MAX_INDEX_DEPTH = 2;

/**
 * Pull an image into the store (`tsbuild pull`, and FROM with --pull).
 *
 * Manifest negotiation (OCI and Docker schema 2; schema 1 refused), a platform chosen from an
 * index, the config and then the layers in parallel (p-limit), each verified against its
 * descriptor while it streams (download.ts) and decompressed into the store's uncompressed form,
 * verified against the config's diff IDs: a blob is stored only once both digests hold. With
 * `keepCompressed` the compressed blob itself is stored instead, and the diff ID is checked at
 * first use (PullOptions.keepCompressed). Layers whose diff ID is already in the store are not
 * downloaded. The tag is set last, so a failed pull
 * changes no image; the verified blobs of other layers it stored are unreferenced and gc removes
 * them.
 */
export async function pullImage(client: RegistryClient, store: Store, reference: Reference, opts: PullOptions = {}): Promise<PulledImage> {
  const ref = withDefaultTag(reference);
  const name = formatReference(ref);
  const repoName = repositoryName(ref);
  const signal = opts.signal;
  const want = opts.platform ?? defaultTargetPlatform();

  const top = await client.getManifest(ref, { signal });
  let parsed = parseManifestOrIndex(top.bytes, top.contentType, { what: `manifest ${name}` });
  let platformName: string | undefined;
  for (let depth = 0; parsed.kind === 'index'; depth++) {
    if (depth >= MAX_INDEX_DEPTH) throw new TsbuildError('MANIFEST_INVALID', `image index ${name} nests indexes too deeply`);
    const chosen = choosePlatform(parsed.index, want);
    if (chosen === undefined) {
      const available = parsed.index.manifests.flatMap((m) => (m.platform !== undefined && m.platform.os !== 'unknown' ? [formatPlatform(m.platform)] : []));
      throw new TsbuildError('PLATFORM_UNAVAILABLE', `${name} has no image for ${formatPlatform(want)} (registry ${ref.registry})`, {
        hint: available.length > 0 ? `it has ${[...new Set(available)].join(', ')}; choose one with --platform` : 'the index lists no platforms',
      });
    }
    platformName = chosen.platform !== undefined ? formatPlatform(chosen.platform) : undefined;
    const child = await client.getManifest({ ...ref, digest: chosen.digest }, { signal, what: `manifest ${repoName}@${chosen.digest} (${platformName ?? 'from the index'})` });
    parsed = parseManifestOrIndex(child.bytes, chosen.mediaType, { what: `manifest ${repoName}@${chosen.digest}` });
  }
  const manifest: ImageManifest = parsed.manifest;
  opts.onProgress?.({ type: 'resolved', reference: name, digest: top.digest, platform: platformName });
  const { image, results } = await pullManifest(client, store, ref, manifest, opts);
  await store.setTag(name, image.manifestDescriptor, { signal });
  const repoDigest = `${repoName}@${top.digest}`;
  await recordRepoDigest(store, image.manifestDescriptor.digest, repoDigest, { signal });
  return { name, image, repoDigest, layers: results.map((r) => ({ digest: r.digest, status: r.status })) };
}

/**
 * The config and layers of one image manifest into the store, and its store manifest (not
 * tagged): the part of a pull after the manifest is chosen.
 */
async function pullManifest(
  client: RegistryClient,
  store: Store,
  ref: Reference,
  manifest: ImageManifest,
  opts: PullOptions,
): Promise<{ image: StoredImage; results: ReadonlyArray<{ digest: Digest; status: 'exists' | 'downloaded' }> }> {
  const name = formatReference(ref);
  const repoName = repositoryName(ref);
  const signal = opts.signal;
  // Config: small, capped, verified.
  const cfg = manifest.config;
  if (cfg.size > MAX_CONFIG_BYTES) {
    throw new TsbuildError('MANIFEST_INVALID', `the config of ${name} is ${cfg.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`);
  }
  const haveConfig = await store.blobs.hasBlob(cfg.digest);
  if (!haveConfig) await downloadToStore(client, store, { repo: ref, desc: cfg, what: `config ${cfg.digest} of ${name}`, signal });
  opts.onProgress?.({ type: 'config', digest: cfg.digest, status: haveConfig ? 'exists' : 'downloaded' });
  const config = parseImageConfig(await store.blobs.readBlobBytes(cfg.digest, { maxBytes: MAX_CONFIG_BYTES, signal }), { what: `config of ${name}` });
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new TsbuildError('MANIFEST_INVALID', `${name}: the config lists ${diffIds.length} layers but the manifest ${manifest.layers.length} (registry ${ref.registry})`);
  }

  const stored = opts.onImageLayers?.({ name, config, layers: manifest.layers });
  // A listener unpacks each layer as it is stored, which needs it uncompressed.
  const keepCompressed = opts.keepCompressed === true && stored === undefined;
  const results = await mapParallel(manifest.layers, opts.concurrency ?? 4, signal, async (layer, i, s) => {
    const diffId = diffIds[i]!;
    if (await store.blobs.hasBlob(diffId)) {
      const size = (await store.blobs.statBlob(diffId))?.size ?? 0;
      opts.onProgress?.({ type: 'layer', digest: layer.digest, size: layer.size, status: 'exists' });
      stored?.(i);
      await recordLayerVariant(store, diffId, layer, repoName, { signal: s }).catch(() => undefined);
      return { diffId, size, digest: layer.digest, status: 'exists' as const };
    }
    let status: 'exists' | 'downloaded' = 'exists';
    let size: number;
    if (keepCompressed && isPackable(layer, diffId)) {
      if (!(await store.blobs.hasBlob(layer.digest))) {
        opts.onProgress?.({ type: 'layer', digest: layer.digest, size: layer.size, status: 'downloading' });
        await downloadToStore(client, store, { repo: ref, desc: layer, what: `layer ${layer.digest} of ${name}`, signal: s });
        status = 'downloaded';
        opts.onProgress?.({ type: 'layer', digest: layer.digest, size: layer.size, status: 'downloaded' });
      }
      await recordLayerVariant(store, diffId, layer, repoName, { signal: s });
      // The layer's compressed form for an export that asks for no level (save --format oci).
      await rememberCompressedLayer(store, diffId, pulledFormKey(layerCompression(layer.mediaType) === 'zstd' ? 'zstd' : 'gzip'), { digest: layer.digest, size: layer.size }, { signal: s });
      opts.onProgress?.({ type: 'layer', digest: layer.digest, size: layer.size, status: 'done' });
      return { diffId, size: 0, packed: { digest: layer.digest, size: layer.size, mediaType: layer.mediaType }, digest: layer.digest, status };
    }
    if (await store.blobs.hasBlob(layer.digest)) {
      // The compressed blob is here (an archive, an older pull): unpack it locally.
      size = (await storeUncompressedLayer(store, layer, diffId, { signal: s })).size;
      if (isPackable(layer, diffId)) await rememberCompressedLayer(store, diffId, pulledFormKey(layerCompression(layer.mediaType) === 'zstd' ? 'zstd' : 'gzip'), { digest: layer.digest, size: layer.size }, { signal: s });
    } else {
      opts.onProgress?.({ type: 'layer', digest: layer.digest, size: layer.size, status: 'downloading' });
      size = await downloadLayer(client, store, { repo: ref, name, layer, diffId, signal: s });
      status = 'downloaded';
      opts.onProgress?.({ type: 'layer', digest: layer.digest, size: layer.size, status: 'downloaded' });
    }
    await recordLayerVariant(store, diffId, layer, repoName, { signal: s });
    opts.onProgress?.({ type: 'layer', digest: layer.digest, size: layer.size, status: 'done' });
    stored?.(i);
    return { diffId, size, digest: layer.digest, status };
  });

  const image = await writeStoreManifest(store, { config, configBlob: cfg, layers: results }, { signal });
  return { image, results };
}

export interface PulledIndex {
  /** The store tag: the full reference pulled. */
  readonly name: string;
  /** The store index the tag names (one store manifest per platform), or undefined when the reference named a single image. */
  readonly index: { readonly descriptor: Descriptor; readonly index: ImageIndex } | undefined;
  /** The images pulled, in index order, each with its platform. */
  readonly images: ReadonlyArray<{ readonly platform: Platform; readonly image: StoredImage; readonly repoDigest: string }>;
  /** `registry/repository@digest` of what the registry served (the index). */
  readonly repoDigest: string;
  readonly layers: readonly { readonly digest: Digest; readonly status: 'exists' | 'downloaded' }[];
  /** Manifests of the index that are not images and were not pulled (attestations, nested indexes). */
  readonly skipped: readonly Descriptor[];
}

/**
 * Pull every image of a multi-platform reference (`tsbuild pull --all-platforms`, as
 * `skopeo copy --all`): each image manifest of the index is pulled as pullImage pulls one, then
 * a store index naming the store manifests, with the platforms and annotations the registry's
 * index gives, is tagged with the reference. The store's documents have uncompressed layers, so
 * their digests are the store's own; the registry's digests are remembered as repo digests (the
 * index's for the tag, each manifest's for its image), and the image IDs (config digests) are
 * the registry's. Manifests for `unknown/unknown` (attestations) and nested indexes are
 * skipped and reported. A reference that names a single image is pulled as that image.
 * The tag is set last: a failed pull tags nothing.
 */
export async function pullAllPlatforms(
  client: RegistryClient,
  store: Store,
  reference: Reference,
  opts: Omit<PullOptions, 'platform'> & { /** Tag the reference in the store (default true); `manifest create` only needs the images. */ readonly tag?: boolean } = {},
): Promise<PulledIndex> {
  const ref = withDefaultTag(reference);
  const name = formatReference(ref);
  const repoName = repositoryName(ref);
  const signal = opts.signal;
  const top = await client.getManifest(ref, { signal });
  const parsed = parseManifestOrIndex(top.bytes, top.contentType, { what: `manifest ${name}` });
  const repoDigest = `${repoName}@${top.digest}`;
  if (parsed.kind === 'manifest') {
    opts.onProgress?.({ type: 'resolved', reference: name, digest: top.digest, platform: undefined });
    const { image, results } = await pullManifest(client, store, ref, parsed.manifest, opts);
    if (opts.tag !== false) await store.setTag(name, image.manifestDescriptor, { signal });
    await recordRepoDigest(store, image.manifestDescriptor.digest, repoDigest, { signal });
    const platform = normalizePlatform({ os: image.config.os, architecture: image.config.architecture, ...(image.config.variant !== undefined ? { variant: image.config.variant } : {}) });
    return { name, index: undefined, images: [{ platform, image, repoDigest }], repoDigest, layers: results, skipped: [] };
  }
  const images: Array<{ platform: Platform; image: StoredImage; repoDigest: string; annotations: Readonly<Record<string, string>> | undefined }> = [];
  const layers: Array<{ digest: Digest; status: 'exists' | 'downloaded' }> = [];
  const skipped: Descriptor[] = [];
  for (const child of parsed.index.manifests) {
    if (!isManifestMediaType(child.mediaType) || child.platform?.os === 'unknown') {
      skipped.push(child);
      continue;
    }
    const label = child.platform !== undefined ? formatPlatform(child.platform) : undefined;
    const fetched = await client.getManifest({ ...ref, digest: child.digest }, { signal, what: `manifest ${repoName}@${child.digest}${label !== undefined ? ` (${label})` : ''}` });
    const m = parseManifestOrIndex(fetched.bytes, child.mediaType, { what: `manifest ${repoName}@${child.digest}` });
    if (m.kind !== 'manifest') throw new TsbuildError('MANIFEST_INVALID', `${name}: index entry ${child.digest} is not an image manifest (registry ${ref.registry})`);
    opts.onProgress?.({ type: 'resolved', reference: name, digest: child.digest, platform: label });
    const { image, results } = await pullManifest(client, store, ref, m.manifest, opts);
    const platform = child.platform ?? normalizePlatform({ os: image.config.os, architecture: image.config.architecture, ...(image.config.variant !== undefined ? { variant: image.config.variant } : {}) });
    images.push({ platform, image, repoDigest: `${repoName}@${child.digest}`, annotations: child.annotations });
    layers.push(...results);
  }
  if (images.length === 0) {
    throw new TsbuildError('MANIFEST_INVALID', `${name} is an image index with no image manifests (registry ${ref.registry})`, { hint: 'it may hold only attestations or other artifacts' });
  }
  const written = await writeStoreIndex(
    store,
    images.map((i) => ({ manifestDescriptor: i.image.manifestDescriptor, platform: i.platform, annotations: i.annotations })),
    { annotations: parsed.index.annotations, signal },
  );
  for (const i of images) await recordRepoDigest(store, i.image.manifestDescriptor.digest, i.repoDigest, { signal });
  if (opts.tag !== false) await store.setTag(name, written.descriptor, { signal });
  await recordRepoDigest(store, written.descriptor.digest, repoDigest, { signal });
  return { name, index: written, images: images.map(({ platform, image, repoDigest: rd }) => ({ platform, image, repoDigest: rd })), repoDigest, layers, skipped };
}

/**
 * Whether a layer can be kept packed (PullOptions.keepCompressed): gzip or zstd, so the
 * compressed blob differs from the layer. A zstd layer is kept so on a machine without the zstd
 * program too (a store that only pushes or exports never needs it); the first use that
 * decompresses it says what is missing (UNSUPPORTED).
 */
function isPackable(layer: Descriptor, diffId: Digest): boolean {
  const c = layerCompression(layer.mediaType);
  return (c === 'gzip' || c === 'zstd') && layer.digest !== diffId;
}

/** Download a config (or an uncompressed layer) into the store, verified while it streams. */
async function downloadToStore(client: RegistryClient, store: Store, d: { readonly repo: Repository; readonly desc: Descriptor; readonly what: string; readonly signal: AbortSignal | undefined }): Promise<void> {
  await client.downloadBlob({ repo: d.repo, digest: d.desc.digest, size: d.desc.size, what: d.what, signal: d.signal }, (bytes) =>
    // downloadBlob's stream fails instead of ending when the bytes do not match: hashed once.
    store.blobs.putBlob(bytes, { expected: { digest: d.desc.digest, size: d.desc.size }, sourceVerified: true, signal: d.signal }),
  );
}

/**
 * Download a layer straight into the store's uncompressed form, in one pass: the bytes the
 * registry sends are verified against the layer descriptor while they stream (download.ts) and
 * are decompressed into a blob verified against the config's diff ID. Wrong bytes fail the
 * stream before it ends, so the uncompressed blob is stored only when both digests hold. The
 * compressed blob is kept too, written from the same bytes (as containerd's content store keeps
 * what it pulled, which BuildKit's exports reuse): it is the layer's known compressed form, so
 * an export or a push of an image built on this base uploads the registry's own bytes instead
 * of compressing the layer again (a Debian base: ~2 s of both cores on every fresh export).
 * gc keeps it while it keeps the layer (store/ pulledForms). Returns the uncompressed size.
 */
async function downloadLayer(client: RegistryClient, store: Store, d: { readonly repo: Repository; readonly name: string; readonly layer: Descriptor; readonly diffId: Digest; readonly signal: AbortSignal | undefined }): Promise<number> {
  const { layer, diffId, signal } = d;
  const compression = layerCompression(layer.mediaType);
  // The full reference names the registry and the image (`localhost:5000/app:v1`).
  const where = `layer ${layer.digest} of ${d.name}`;
  if (compression === 'uncompressed') {
    if (layer.digest !== diffId) {
      throw new TsbuildError('MANIFEST_INVALID', `${where}: uncompressed layer does not match its diff ID ${diffId}`);
    }
    await downloadToStore(client, store, { repo: d.repo, desc: layer, what: where, signal });
    return layer.size;
  }
  if (compression !== 'gzip' && compression !== 'zstd') {
    throw new TsbuildError('UNSUPPORTED', `${where} has media type ${layer.mediaType}, which tsbuild cannot unpack`);
  }
  // zstd: the zstd program (layer/zstd.ts); UNSUPPORTED, naming it, before anything is downloaded.
  let decompressor: (() => Duplex) | undefined;
  if (compression === 'zstd') {
    const layerCode = await import('../layer/index.js');
    layerCode.assertZstdAvailable();
    decompressor = layerCode.createZstdDecompressor;
  }
  const size = await client.downloadBlob({ repo: d.repo, digest: layer.digest, size: layer.size, what: where, signal }, async (wire) => {
    const gunzip = decompressor !== undefined ? decompressor() : createGunzip({ chunkSize: 1024 * 1024 });
    const packed = new PassThrough({ highWaterMark: 1024 * 1024 });
    wire.on('error', (e) => {
      gunzip.destroy(e);
      packed.destroy(e);
    });
    wire.pipe(gunzip);
    wire.pipe(packed);
    // downloadBlob's stream fails instead of ending when the bytes do not match: hashed once.
    const kept = store.blobs.putBlob(packed, { expected: { digest: layer.digest, size: layer.size }, sourceVerified: true, signal });
    kept.catch(() => undefined);
    try {
      const unpacked = await store.blobs.putBlob(gunzip, { expected: { digest: diffId }, signal });
      await kept;
      return unpacked.size;
    } catch (e) {
      if (e instanceof RegistryError || isAbortError(e)) throw e;
      if (e instanceof TsbuildError && e.code !== 'DIGEST_MISMATCH') throw e;
      // Bad gzip or a wrong diff ID before the wire bytes were all checked: either they were
      // damaged on the way (worth another try) or the image is broken.
      throw new RegistryError('DIGEST_MISMATCH', `${where}: the layer does not decompress to its diff ID ${diffId} (${(e as Error).message})`, {
        temporary: true,
        hint: 'the bytes were damaged on the way or the image is broken; nothing was stored',
        cause: e,
      });
    } finally {
      // The attempt's outcome is decided (putBlob settled): an error the wire raises later
      // (a 404 from the registry after a sibling layer aborted us) has nowhere useful to go
      // and must not become an uncaught exception.
      for (const st of [wire, gunzip, packed]) st.on('error', () => undefined);
      wire.destroy();
      gunzip.destroy();
      packed.destroy();
    }
  });
  await rememberCompressedLayer(store, diffId, pulledFormKey(compression), { digest: layer.digest, size: layer.size }, { signal });
  return size;
}

/**
 * One layer of a repository into the store's uncompressed form, verified against its blob
 * digest while it streams and against `diffId` once decompressed (a build cache hit whose
 * layer the store lacks). Remembers where the compressed form lives, so a push to the same
 * registry skips or mounts it. Returns the uncompressed size.
 */
export async function pullLayer(
  client: RegistryClient,
  store: Store,
  repo: Reference,
  layer: Descriptor,
  diffId: Digest,
  opts: { readonly signal?: AbortSignal | undefined; readonly what?: string | undefined } = {},
): Promise<number> {
  const repoName = repositoryName(repo);
  const size = await downloadLayer(client, store, { repo, name: opts.what ?? repoName, layer, diffId, signal: opts.signal });
  await recordLayerVariant(store, diffId, layer, repoName, { signal: opts.signal });
  return size;
}

/** A small blob (a config, a cache document) of a repository, verified, at most `maxBytes`. */
export async function fetchBlobBytes(client: RegistryClient, repo: Reference, desc: Descriptor, opts: { readonly maxBytes: number; readonly what: string; readonly signal?: AbortSignal | undefined }): Promise<Buffer> {
  if (desc.size > opts.maxBytes) throw new TsbuildError('MANIFEST_INVALID', `${opts.what} is ${desc.size} bytes, over the ${opts.maxBytes}-byte limit (registry ${repo.registry})`);
  return client.downloadBlob({ repo, digest: desc.digest, size: desc.size, what: opts.what, signal: opts.signal }, async (bytes) => {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of bytes as AsyncIterable<Buffer>) {
      n += c.byteLength;
      if (n > opts.maxBytes) throw new TsbuildError('MANIFEST_INVALID', `${opts.what} is over the ${opts.maxBytes}-byte limit (registry ${repo.registry})`);
      chunks.push(c);
    }
    return Buffer.concat(chunks);
  });
}

export type PullPolicy = 'missing' | 'always' | 'never';

export interface BaseImageOptions extends PullOptions {
  readonly policy: PullPolicy;
}

/**
 * The base image for FROM under a pull policy, as docker and podman resolve it:
 * `missing` (default) uses the store's image when it has one for the platform, else pulls;
 * `always` pulls (layers already present are not downloaded again); `never` uses the store only.
 */
export async function resolveBaseImage(store: Store, client: RegistryClient | undefined, reference: Reference, opts: BaseImageOptions): Promise<LocalImage> {
  const { policy } = opts;
  const ref = withDefaultTag(reference);
  const name = formatReference(ref);
  const want = opts.platform ?? defaultTargetPlatform();
  if (policy !== 'always') {
    const local = await findLocalImage(store, name, { platform: want, ...(opts.signal ? { signal: opts.signal } : {}) }).catch((e: unknown) => {
      if (e instanceof TsbuildError && e.code === 'IMAGE_NOT_FOUND') return undefined;
      throw e;
    });
    const fits =
      local !== undefined &&
      platformMatches(want, { os: local.config.os, architecture: local.config.architecture, ...(local.config.variant !== undefined ? { variant: local.config.variant } : {}) });
    if (local !== undefined && fits) return local;
    if (policy === 'never') {
      throw new TsbuildError('IMAGE_NOT_FOUND', `image ${name} ${local === undefined ? 'is not in the local store' : `in the local store is not for ${formatPlatform(want)}`} and --pull=never forbids pulling it`, {
        hint: 'pull it first with `tsbuild pull`, or use --pull=missing',
      });
    }
  }
  if (client === undefined) throw new TsbuildError('USAGE', `cannot pull ${name}: no registry client`);
  const pulled = await pullImage(client, store, ref, { ...opts, platform: want });
  return { ...pulled.image, name: pulled.name };
}
