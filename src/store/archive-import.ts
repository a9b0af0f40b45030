import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { TsbuildError } from '../errors.js';
import {
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  OCI_LAYER_TAR,
  OCI_LAYER_TAR_GZIP,
  formatReference,
  digestBytes,
  isDigest,
  choosePlatform,
  formatPlatform,
  isIndexMediaType,
  normalizePlatform,
  parseImageConfig,
  parseManifestOrIndex,
  parseReference,
  withDefaultTag,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageManifest,
  type Platform,
} from '../oci/index.js';
import type { Store } from './store.js';
import { storeUncompressedLayer } from './adopt-layers.js';
import { writeStoreIndex, writeStoreManifest, type StoredImage, type StoredIndexEntry, type StoredLayer } from './stored-image.js';

const SMALL_FILE_MAX = 8 * 1024 * 1024;

export interface LoadedImage {
  /** Full references the archive names the image by (may be empty). */
  readonly names: readonly string[];
  /** The image as the store now holds it (uncompressed layers); of a multi-platform image, its first. */
  readonly image: StoredImage;
  /**
   * Set for a multi-platform image (an index in index.json, loaded without a platform): every
   * image with its platform, and the store index the names are tagged with.
   */
  readonly index?: { readonly descriptor: Descriptor; readonly images: ReadonlyArray<{ readonly platform: Platform; readonly image: StoredImage }> };
}

export interface LoadOptions {
  readonly signal?: AbortSignal | undefined;
  /** Platform to pick from an index with several images (default: every image, kept as an index). */
  readonly platform?: Platform | undefined;
}

/**
 * `tsbuild load -i FILE`: imports an OCI archive (oci-layout + index.json + blobs) or a
 * docker archive (manifest.json, classic or Docker 25+ layout), optionally gzipped.
 *
 * Every blob is verified against its name while it streams; layers are stored uncompressed
 * (their digest is then their diff ID, checked against the config's rootfs.diff_ids).
 * Tags, and the archive's manifests and indexes, are written only after everything
 * verified, so a corrupt or truncated archive leaves the store's images unchanged: the
 * verified layers and configs it wrote are unreferenced blobs, which no listing shows and
 * gc removes. (With several images in one archive, those adopted before the failing one
 * keep their store manifests, untagged.)
 */
export async function loadArchive(store: Store, file: string, opts: LoadOptions = {}): Promise<LoadedImage[]> {
  const files = new Map<string, { digest: Digest; size: number } | Buffer>();
  // The archive's manifests and indexes wait in memory until everything verified: in the
  // store, a manifest whose load failed would show up as a dangling image.
  const pending = new Map<Digest, Buffer>();
  await readArchive(store, file, files, pending, opts.signal);
  const get = (name: string) => files.get(normalizeName(name));
  const images: LoadedImage[] = [];
  const multi: Array<{ names: readonly string[]; entries: StoredIndexEntry[]; images: Array<{ platform: Platform; image: StoredImage }>; annotations: Readonly<Record<string, string>> | undefined }> = [];
  const dockerManifest = get('manifest.json');
  const ociIndex = get('index.json');
  if (Buffer.isBuffer(dockerManifest)) {
    const items = parseJson(dockerManifest, 'manifest.json') as Array<{ Config?: unknown; RepoTags?: unknown; Layers?: unknown }>;
    if (!Array.isArray(items)) throw invalid('manifest.json is not a list');
    for (const item of items) {
      if (typeof item.Config !== 'string' || !Array.isArray(item.Layers)) throw invalid('manifest.json entry without Config or Layers');
      const cfg = get(item.Config);
      if (!cfg) throw invalid(`manifest.json names ${item.Config}, which the archive does not contain`);
      const configInfo = Buffer.isBuffer(cfg) ? await store.blobs.putBytes(cfg, { signal: opts.signal }) : cfg;
      const layerBlobs = (item.Layers as unknown[]).map((l) => {
        const f = typeof l === 'string' ? get(l) : undefined;
        if (!f || Buffer.isBuffer(f)) throw invalid(`manifest.json names layer ${String(l)}, which the archive does not contain`);
        return f;
      });
      const names = Array.isArray(item.RepoTags) ? (item.RepoTags as unknown[]).filter((t): t is string => typeof t === 'string').map(fullName) : [];
      images.push(await adoptImage(store, configInfo, layerBlobs, names, opts));
    }
  } else if (Buffer.isBuffer(ociIndex)) {
    const parsed = parseManifestOrIndex(ociIndex, undefined, { what: 'index.json' });
    if (parsed.kind !== 'index') throw invalid('index.json is not an image index');
    for (const desc of parsed.index.manifests) {
      const names = namesOf(desc);
      if (opts.platform === undefined && isIndexMediaType(desc.mediaType)) {
        multi.push({ names, ...(await adoptIndex(store, pending, desc, opts)) });
        continue;
      }
      const manifest = await resolveManifest(store, pending, desc, opts);
      const layerBlobs = manifest.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType }));
      images.push(await adoptImage(store, { digest: manifest.config.digest, size: manifest.config.size }, layerBlobs, names, opts));
    }
  } else {
    throw invalid('neither index.json (OCI archive) nor manifest.json (docker archive) found');
  }
  for (const [digest, bytes] of pending) await store.blobs.putBytes(bytes, { expected: { digest, size: bytes.length }, signal: opts.signal });
  for (const image of images) {
    for (const name of image.names) await store.setTag(name, image.image.manifestDescriptor, { signal: opts.signal });
  }
  // Multi-platform images: a store index naming the store manifests, under the archive's names.
  for (const m of multi) {
    const written = await writeStoreIndex(store, m.entries, { annotations: m.annotations, signal: opts.signal });
    for (const name of m.names) await store.setTag(name, written.descriptor, { signal: opts.signal });
    images.push({ names: m.names, image: m.images[0]!.image, index: { descriptor: written.descriptor, images: m.images } });
  }
  return images;
}

/**
 * Every image of an index in the archive (image manifests with a platform other than
 * `unknown/unknown`, which BuildKit's attestations use), adopted one by one.
 */
async function adoptIndex(
  store: Store,
  pending: ReadonlyMap<Digest, Buffer>,
  desc: Descriptor,
  opts: LoadOptions,
): Promise<{ entries: StoredIndexEntry[]; images: Array<{ platform: Platform; image: StoredImage }>; annotations: Readonly<Record<string, string>> | undefined }> {
  const bytes = pending.get(desc.digest);
  if (bytes === undefined) throw invalid(`index.json names ${desc.digest}, which the archive does not contain`);
  const parsed = parseManifestOrIndex(bytes, desc.mediaType, { what: `image index ${desc.digest}` });
  if (parsed.kind !== 'index') throw invalid(`${desc.digest} is not an image index`);
  const entries: StoredIndexEntry[] = [];
  const images: Array<{ platform: Platform; image: StoredImage }> = [];
  for (const child of parsed.index.manifests) {
    if (isIndexMediaType(child.mediaType) || child.platform?.os === 'unknown') continue;
    const manifest = await resolveManifest(store, pending, child, opts);
    const layerBlobs = manifest.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType }));
    const { image } = await adoptImage(store, { digest: manifest.config.digest, size: manifest.config.size }, layerBlobs, [], opts);
    const platform = child.platform ?? normalizePlatform({ os: image.config.os, architecture: image.config.architecture, ...(image.config.variant !== undefined ? { variant: image.config.variant } : {}) });
    entries.push({ manifestDescriptor: image.manifestDescriptor, platform, annotations: child.annotations });
    images.push({ platform, image });
  }
  if (images.length === 0) throw invalid(`the image index ${desc.digest} holds no image manifest`);
  return { entries, images, annotations: parsed.index.annotations };
}

async function resolveManifest(store: Store, pending: ReadonlyMap<Digest, Buffer>, desc: Descriptor, opts: LoadOptions, depth = 0): Promise<ImageManifest> {
  if (depth > 4) throw invalid('image indexes nested too deeply');
  let bytes = pending.get(desc.digest);
  if (bytes === undefined) {
    if (!(await store.blobs.hasBlob(desc.digest))) throw invalid(`index.json names ${desc.digest}, which the archive does not contain`);
    bytes = await store.blobs.readBlobBytes(desc.digest, { maxBytes: MAX_MANIFEST_BYTES, signal: opts.signal });
  }
  const parsed = parseManifestOrIndex(bytes, desc.mediaType, { what: `manifest ${desc.digest}` });
  if (parsed.kind === 'manifest') return parsed.manifest;
  if (parsed.kind !== 'index') throw invalid(`${desc.digest} is a schema1 manifest, which tsbuild does not support`);
  const want = opts.platform;
  const candidates = parsed.index.manifests.filter((m) => m.platform?.os !== 'unknown' && !isIndexMediaType(m.mediaType));
  const pick = want !== undefined ? choosePlatform({ ...parsed.index, manifests: candidates }, want) : (candidates[0] ?? parsed.index.manifests[0]);
  if (!pick) {
    if (want === undefined) throw invalid(`the image index ${desc.digest} lists no manifests`);
    const have = [...new Set(candidates.flatMap((m) => (m.platform !== undefined ? [formatPlatform(m.platform)] : [])))];
    throw new TsbuildError('PLATFORM_UNAVAILABLE', `the archive's image index ${desc.digest} has no image for ${formatPlatform(want)}`, {
      hint: have.length > 0 ? `it has ${have.join(', ')}; choose one with --platform` : 'the index lists no platforms',
    });
  }
  return resolveManifest(store, pending, pick, opts, depth + 1);
}

/**
 * Makes a store image from a config and layer blobs: each layer decompressed into an
 * uncompressed blob whose digest must equal the config's diff ID for that position.
 */
async function adoptImage(
  store: Store,
  configInfo: { digest: Digest; size: number },
  layerBlobs: ReadonlyArray<{ digest: Digest; size: number; mediaType?: string }>,
  names: readonly string[],
  opts: LoadOptions,
): Promise<LoadedImage> {
  // The manifest's sizes are part of what it vouches for: a blob of another size is not the one
  // it names (a docker archive's sizes come from the files themselves and always match).
  const configStat = await store.blobs.statBlob(configInfo.digest);
  if (!configStat) throw invalid(`the manifest names config ${configInfo.digest}, which the archive does not contain`);
  if (configStat.size !== configInfo.size) throw invalid(`the manifest says config ${configInfo.digest} has ${configInfo.size} bytes, the archive's has ${configStat.size}`);
  const configBytes = await store.blobs.readBlobBytes(configInfo.digest, { maxBytes: MAX_CONFIG_BYTES, signal: opts.signal });
  const config: ImageConfig = parseImageConfig(configBytes);
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== layerBlobs.length) {
    throw invalid(`the config lists ${diffIds.length} layers but the manifest ${layerBlobs.length}`);
  }
  const layers: StoredLayer[] = [];
  for (const [i, blob] of layerBlobs.entries()) {
    const diffId = diffIds[i]!;
    const st = await store.blobs.statBlob(blob.digest);
    if (!st) throw invalid(`the manifest names layer ${blob.digest}, which the archive does not contain`);
    if (st.size !== blob.size) throw invalid(`the manifest says layer ${i + 1} (${blob.digest}) has ${blob.size} bytes, the archive's has ${st.size}`);
    // Docker archives name no media type: the layer is gzip when it starts like one, else a tar
    // that must be its diff ID.
    const mediaType = blob.mediaType ?? (blob.digest === diffId || !(await startsWithGzipMagic(store.blobs.blobPath(blob.digest))) ? OCI_LAYER_TAR : OCI_LAYER_TAR_GZIP);
    const desc = { mediaType, digest: blob.digest, size: blob.size };
    try {
      layers.push({ diffId, size: (await storeUncompressedLayer(store, desc, diffId, { signal: opts.signal, verify: true })).size });
    } catch (e) {
      if (e instanceof TsbuildError && (e.code === 'DIGEST_MISMATCH' || e.code === 'LAYER_INVALID')) {
        throw new TsbuildError(e.code, `layer ${i + 1} of ${layerBlobs.length}: ${e.message}`, { cause: e, hint: 'the archive was altered or damaged: its layer does not match the diff ID the image config names; nothing was loaded' });
      }
      throw e;
    }
  }
  return { names, image: await writeStoreManifest(store, { config, configBlob: configInfo, layers }, { signal: opts.signal }) };
}

function namesOf(desc: Descriptor): string[] {
  const a = desc.annotations ?? {};
  for (const candidate of [a['io.containerd.image.name'], a['org.opencontainers.image.ref.name']]) {
    if (!candidate) continue;
    try {
      return [fullName(candidate)];
    } catch {
      // A bare tag ("v1") names no repository; such an image is loaded untagged.
    }
  }
  return [];
}

function fullName(name: string): string {
  return formatReference(withDefaultTag(parseReference(name)));
}

function normalizeName(name: string): string {
  return name.replace(/^\.\//, '').replace(/^\/+/, '');
}

/**
 * Streams the archive once: blobs/<alg>/<hex> entries are verified against their name while
 * they are stored; other big entries (classic docker `ID/layer.tar`) are stored and named by
 * their digest; small JSON files are kept in memory (capped).
 */
async function readArchive(
  store: Store,
  file: string,
  files: Map<string, { digest: Digest; size: number } | Buffer>,
  pending: Map<Digest, Buffer>,
  signal?: AbortSignal,
): Promise<void> {
  const ex = tarExtract();
  const head = await peek(file);
  const source: Readable = createReadStream(file);
  const input = head[0] === 0x1f && head[1] === 0x8b ? source.pipe(createGunzip()) : source;
  const consume = async () => {
    for await (const entry of ex) {
      const name = normalizeName(entry.header.name);
      if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      const m = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name);
      if (m) {
        const digest = `${m[1]}:${m[2]}`;
        if (!isDigest(digest)) throw invalid(`entry ${name} is not named by a valid digest`);
        const size = entry.header.size ?? 0;
        if (size <= MAX_MANIFEST_BYTES) {
          // Small: read it whole; a manifest or index waits in `pending`, the rest is stored.
          const chunks: Buffer[] = [];
          for await (const c of entry) chunks.push(c as Buffer);
          const bytes = Buffer.concat(chunks);
          const got = digestBytes(bytes, m[1] as 'sha256' | 'sha512');
          if (got !== digest) {
            throw new TsbuildError('DIGEST_MISMATCH', `archive entry ${name} does not hash to its name: got ${got}`, { hint: 'the archive was altered or damaged; nothing was loaded' });
          }
          if (isManifestOrIndex(bytes)) {
            pending.set(digest, bytes);
            files.set(name, { digest, size: bytes.length });
          } else {
            files.set(name, await store.blobs.putBytes(bytes, { expected: { digest, size: bytes.length }, signal }));
          }
          continue;
        }
        const info = await store.blobs.putBlob(entry as unknown as AsyncIterable<Uint8Array>, { expected: { digest, size: entry.header.size ?? 0 }, signal }).catch((e: unknown) => {
          if (e instanceof TsbuildError && e.code === 'DIGEST_MISMATCH') {
            throw new TsbuildError('DIGEST_MISMATCH', `archive entry ${name} does not hash to its name: ${e.message}`, { cause: e, hint: 'the archive was altered or damaged; nothing was loaded' });
          }
          throw e;
        });
        files.set(name, info);
      } else if (/\.json$|^repositories$|^oci-layout$/.test(name) && (entry.header.size ?? 0) <= SMALL_FILE_MAX) {
        const chunks: Buffer[] = [];
        for await (const c of entry) chunks.push(c as Buffer);
        files.set(name, Buffer.concat(chunks));
      } else {
        files.set(name, await store.blobs.putBlob(entry as unknown as AsyncIterable<Uint8Array>, { signal }));
      }
    }
  };
  // consume() first: when storing an entry fails (a full disk), the pipeline only reports
  // the AbortError of its torn-down extract, which must not win and read as Ctrl-C.
  const piped = pipeline(input, ex, { signal });
  piped.catch(() => undefined); // awaited below; this only keeps an early rejection handled
  try {
    await consume();
    await piped;
  } catch (e) {
    if (e instanceof TsbuildError || (e as { name?: string }).name === 'AbortError') throw e;
    throw invalid(`cannot read ${file}: ${(e as Error).message}`, e);
  }
  // Config files of classic docker archives are named ID.json: keep them as blobs too.
  for (const [name, v] of files) {
    if (Buffer.isBuffer(v) && /^[a-f0-9]{64}\.json$/.test(name)) files.set(name, await store.blobs.putBytes(v, { signal }));
  }
}

/** A JSON object with a manifest's layers or an index's manifests. */
function isManifestOrIndex(bytes: Buffer): boolean {
  if (bytes[0] !== 0x7b) return false;
  try {
    const o = JSON.parse(bytes.toString('utf8')) as { layers?: unknown; manifests?: unknown };
    return Array.isArray(o.layers) || Array.isArray(o.manifests);
  } catch {
    return false;
  }
}

async function startsWithGzipMagic(file: string): Promise<boolean> {
  const head = await peek(file);
  return head[0] === 0x1f && head[1] === 0x8b;
}

async function peek(file: string): Promise<Buffer> {
  const { open } = await import('node:fs/promises');
  let h;
  try {
    h = await open(file, 'r');
  } catch (e) {
    throw new TsbuildError('ARCHIVE_INVALID', `cannot open ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const buf = Buffer.alloc(2);
    await h.read(buf, 0, 2, 0);
    return buf;
  } finally {
    await h.close();
  }
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw invalid(`${what} is not valid JSON`, e);
  }
}

function invalid(message: string, cause?: unknown): TsbuildError {
  return new TsbuildError('ARCHIVE_INVALID', message, { cause, hint: 'the archive is damaged or not an OCI or docker image archive' });
}
