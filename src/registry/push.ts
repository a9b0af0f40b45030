import os from 'node:os';
import { createReadStream } from 'node:fs';
import { PassThrough, Readable, Transform } from 'node:stream';
import { TsbuildError } from '../errors.js';
import type { LocalImage } from '../image/index.js';
import { compressFile, compressionChoice, noteDeadBuffers } from '../layer/index.js';
import {
  OCI_IMAGE_CONFIG,
  OCI_IMAGE_MANIFEST,
  canonicalJson,
  digestBytes,
  formatReference,
  isNondistributableLayer,
  layerCompression,
  layerMediaType,
  normalizeRegistry,
  repositoryName,
  sha256Digest,
  withDefaultTag,
  type Descriptor,
  type Digest,
  type ImageManifest,
  type LayerCompression,
  type Reference,
} from '../oci/index.js';
import { compressLayerInMemory, knownCompressedLayer, rememberCompressedLayer, SMALL_LAYER, type Store } from '../store/index.js';
import type { RegistryClient } from './client.js';
import type { Repository } from './transport.js';
import type { BlobSource, UploadResult } from './upload.js';
import { mapParallel } from './parallel.js';
import { readLayerVariants, recordLayerVariant, recordRepoDigest } from './store-layers.js';

export type PushProgress =
  | { readonly type: 'layer'; readonly digest: Digest; readonly size: number; readonly status: 'preparing' | 'exists' | 'mounted' | 'uploading' | 'uploaded' }
  | { readonly type: 'config'; readonly digest: Digest; readonly status: 'exists' | 'uploaded' }
  | { readonly type: 'manifest'; readonly digest: Digest; readonly reference: string };

export interface PushOptions {
  /** Layer compression on the wire. Default gzip (what every registry and runtime accepts). */
  readonly compression?: LayerCompression;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: (p: PushProgress) => void;
  /** Blobs uploaded at once. Default 4. */
  readonly concurrency?: number | undefined;
  /**
   * Level for layers compressed for this push: gzip 1-9 (default layer/ DEFAULT_GZIP_LEVEL, as
   * exports), zstd 1-22 (default 3). Each level gives other bytes, so other digests; lower is
   * faster (deflate is the push's bottleneck on two cores).
   */
  readonly level?: number | undefined;
  /** Upload in PATCH chunks of this size (registries that cap request size); default monolithic. */
  readonly chunkSize?: number | undefined;
  /**
   * Put the manifest under its digest, not the destination's tag: an image of a multi-platform
   * image, which its index names (push-index.ts).
   */
  readonly byDigest?: boolean | undefined;
  /**
   * Called before a store layer's bytes are read (after the registry was found not to have it,
   * nor to be able to mount it): a build's lazy cache hit is fetched into the store then. A
   * layer mounted or found in the registry is never fetched.
   */
  readonly ensureLayer?: ((layer: Descriptor) => Promise<void>) | undefined;
}

export interface PushedImage {
  /** The full destination reference. */
  readonly reference: string;
  /** Digest of the manifest as the registry stores it. */
  readonly digest: Digest;
  readonly size: number;
}

/**
 * Push a store image to a registry (`tsbuild push`, `build --push`; call once per tag): the
 * layers in parallel: a compressed form the registry already has is skipped (HEAD) or mounted
 * from another repository of the same registry; else a compressed form the store has is
 * uploaded; else the layer is compressed while it uploads (once: remembered in the record
 * store/compressed-layers.ts compressedLayerForm keeps). The config alongside them, then the
 * manifest (OCI media types). Returns the manifest digest.
 */
export async function pushImage(client: RegistryClient, store: Store, image: LocalImage, destination: Reference, opts: PushOptions = {}): Promise<PushedImage> {
  const dest = withDefaultTag(destination);
  if (dest.digest !== undefined && dest.tag === undefined) {
    throw new TsbuildError('REFERENCE_INVALID', `cannot push to ${formatReference(dest)}: the destination needs a tag, not a digest`);
  }
  const compression = opts.compression ?? 'gzip';
  compressionChoice(compression, opts.level); // a bad level is a usage error before anything is sent
  const signal = opts.signal;
  const repo: Repository = dest;
  const repoName = repositoryName(dest);
  const registry = normalizeRegistry(dest.registry);
  const target: PushTarget = { client, store, repo, registry, repoName, later: [] };
  const cfg = image.manifest.config;
  let layers: Descriptor[];
  // The config is one more blob of the same parallel transfer, first in line (a registry needs
  // it and the layers only by the manifest's PUT): after the last layer its HEAD, POST and PUT
  // were three more round trips. --max-concurrent-uploads counts it; a failure stops the rest.
  try {
    const jobs: ReadonlyArray<Descriptor | 'config'> = ['config', ...image.manifest.layers];
    const done = await mapParallel(jobs, opts.concurrency ?? 4, signal, async (job, _i, s) => {
      if (job === 'config') return uploadFromStore(target, cfg, { ...opts, signal: s });
      if (isNondistributableLayer(job.mediaType)) return job; // never pushed (media-types.ts)
      return pushLayer(target, job, compression, { ...opts, signal: s });
    });
    layers = done.slice(1) as Descriptor[];
    opts.onProgress?.({ type: 'config', digest: cfg.digest, status: done[0] === 'uploaded' ? 'uploaded' : 'exists' });
  } catch (e) {
    await settle(target).catch(() => undefined);
    throw e;
  }

  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_MANIFEST,
    config: { mediaType: OCI_IMAGE_CONFIG, digest: cfg.digest, size: cfg.size },
    layers,
    ...(image.manifest.annotations !== undefined ? { annotations: image.manifest.annotations } : {}),
  };
  const bytes = canonicalJson(manifest);
  const byDigest = opts.byDigest === true ? digestBytes(bytes, 'sha256') : undefined;
  let digest: Digest;
  try {
    digest = await client.putManifest(repo, { reference: byDigest ?? dest.tag ?? 'latest', bytes, mediaType: OCI_IMAGE_MANIFEST, signal });
  } catch (e) {
    await settle(target).catch(() => undefined);
    throw e;
  }
  // The store's side of the uploads (compressed copies made durable, what the registry has),
  // written while the manifest went up.
  await settle(target);
  const reference = byDigest !== undefined ? `${repoName}@${byDigest}` : formatReference(dest);
  opts.onProgress?.({ type: 'manifest', digest, reference });
  await recordRepoDigest(store, image.manifestDescriptor.digest, `${repoName}@${digest}`, { signal }).catch(() => undefined);
  return { reference, digest, size: bytes.byteLength };
}

/**
 * Store layers (uncompressed descriptors, digest = diff ID) to a repository as pushImage sends
 * them: skipped when the repository has a compressed form, mounted from another repository of
 * the registry, else uploaded (compressed once, remembered). Returns each layer's descriptor on
 * the wire, in order. A build cache export shares its blobs with the image this way.
 */
export async function pushLayers(client: RegistryClient, store: Store, destination: Reference, layers: readonly Descriptor[], opts: PushOptions = {}): Promise<Descriptor[]> {
  const target: PushTarget = { client, store, repo: destination, registry: normalizeRegistry(destination.registry), repoName: repositoryName(destination), later: [] };
  let pushed: Descriptor[];
  try {
    pushed = await mapParallel(layers, opts.concurrency ?? 4, opts.signal, (layer, _i, s) => pushLayer(target, layer, opts.compression ?? 'gzip', { ...opts, signal: s }));
  } catch (e) {
    await settle(target).catch(() => undefined);
    throw e;
  }
  await settle(target);
  return pushed;
}

/** A small blob from memory (a config document), unless the repository has it. */
export async function pushBlobBytes(client: RegistryClient, destination: Reference, bytes: Buffer, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<{ digest: Digest; size: number }> {
  const digest = sha256Digest(bytes);
  const size = bytes.byteLength;
  await client.uploadBlob({ repo: destination, digest, size, source: bytesSource(bytes), signal: opts.signal, unlessPresent: true });
  return { digest, size };
}

/** Where a push goes, and what it reads from: shared by every blob of one push. */
interface PushTarget {
  readonly client: RegistryClient;
  readonly store: Store;
  readonly repo: Repository;
  /** The destination registry, normalised. */
  readonly registry: string;
  /** `registry/repository` of the destination. */
  readonly repoName: string;
  /**
   * Store work a layer's upload does not wait for (its compressed copy fsynced and renamed into
   * place, the records of what the registry has): settled before the push returns or fails.
   */
  readonly later: Array<Promise<unknown>>;
}

/**
 * Puts store work on `target.later`, marked as handled now: it may fail before settle() looks
 * (which then throws that failure), and must not end the process as an unhandled rejection.
 */
function defer(target: PushTarget, work: Promise<unknown>): void {
  work.catch(() => undefined);
  target.later.push(work);
}

/** Waits for every piece of `target.later` (the first failure, if any, is thrown once all settled). */
async function settle(target: PushTarget): Promise<void> {
  const results = await Promise.allSettled(target.later.splice(0));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

async function pushLayer(target: PushTarget, layer: Descriptor, compression: LayerCompression, opts: PushOptions): Promise<Descriptor> {
  const { client, store, repo, registry, repoName } = target;
  const { signal } = opts;
  const report = (digest: Digest, size: number, status: 'preparing' | 'exists' | 'mounted' | 'uploading' | 'uploaded'): void =>
    opts.onProgress?.({ type: 'layer', digest, size, status });
  const stored = layerCompression(layer.mediaType);
  if (stored !== 'uncompressed') {
    // Not a store-made layer: push the blob as it is.
    await uploadFromStore(target, layer, opts);
    return layer;
  }
  const diffId = layer.digest;
  const wire = (v: { digest: Digest; size: number }): Descriptor => ({ mediaType: layerMediaType('oci', compression), digest: v.digest, size: v.size });

  if (compression !== 'uncompressed') {
    const variants = (await readLayerVariants(store, diffId, { signal })).filter((v) => layerCompression(v.mediaType) === compression);
    // 1. A form this registry already has: in this repository, or mountable from another.
    for (const v of variants) {
      const here = v.repositories.filter((r) => sameRegistry(r, registry));
      if (here.length === 0) continue;
      if ((await client.blobSize(repo, v.digest, { signal, forPush: true })) !== undefined) {
        report(v.digest, v.size, 'exists');
        defer(target, remember(store, diffId, v, repoName, signal));
        return wire(v);
      }
      for (const r of here) {
        const from = r.slice(registry.length + 1);
        if (from === repo.repository) continue;
        if (await client.mountBlob(repo, { digest: v.digest, from, signal })) {
          report(v.digest, v.size, 'mounted');
          defer(target, remember(store, diffId, v, repoName, signal));
          return wire(v);
        }
      }
    }
    await opts.ensureLayer?.(layer);
    // 2. The original compressed blob of a pulled layer, if the store still has it.
    for (const v of variants) {
      if ((await store.blobs.statBlob(v.digest))?.size === v.size) {
        const result = await uploadFromStore(target, v, opts);
        report(v.digest, v.size, result === 'uploaded' ? 'uploaded' : result);
        defer(target, remember(store, diffId, v, repoName, signal));
        return wire(v);
      }
    }
  }
  if (compression === 'uncompressed') {
    if (opts.ensureLayer && (await client.blobSize(repo, diffId, { signal, forPush: true })) === undefined) await opts.ensureLayer(layer);
    const result = await uploadFromStore(target, layer, opts);
    report(diffId, layer.size, result === 'uploaded' ? 'uploaded' : result);
    return wire(layer);
  }
  // 3. Compressed before (by an export or an earlier push): upload that.
  const choice = compressionChoice(compression, opts.level);
  const known = await knownCompressedLayer(store, diffId, choice.key, { signal });
  if (known !== undefined) {
    const v = { ...known, mediaType: layerMediaType('oci', compression) };
    report(v.digest, v.size, 'uploading');
    const result = await uploadFromStore(target, v, opts);
    report(v.digest, v.size, result === 'uploaded' ? 'uploaded' : result);
    defer(target, remember(store, diffId, v, repoName, signal));
    return wire(v);
  }
  // 4. Compress here, streaming: the gzip output goes to the store and to the registry at once,
  // so compressing and uploading overlap; the digest is known when the stream ends.
  report(diffId, layer.size, 'preparing');
  const v = await compressAndUpload(target, layer, compression, opts);
  report(v.digest, v.size, 'uploaded');
  defer(target, remember(store, diffId, v, repoName, signal));
  return wire(v);
}

/**
 * Compresses a stored layer into the store and the registry at once, so compressing and
 * uploading overlap; remembered as store/compressed-layers.ts compressedLayerForm remembers
 * its forms (the same compressor, level and key, so the same bytes and digest).
 */
async function compressAndUpload(target: PushTarget, layer: Descriptor, compression: 'gzip' | 'zstd', opts: PushOptions): Promise<{ digest: Digest; size: number; mediaType: string }> {
  const { client, store, repo } = target;
  const { signal } = opts;
  const mediaType = layerMediaType('oci', compression);
  const choice = compressionChoice(compression, opts.level);
  // Read in 1 MiB pieces into the compressor's own few buffers (layer/ compressFile); gzip cuts
  // them into 1 MiB blocks deflated on every core (layer/parallel-gzip.ts); zstd runs -T0.
  if (!(await store.blobs.hasBlob(layer.digest))) throw new TsbuildError('BLOB_NOT_FOUND', `layer ${layer.digest} is not in the store`, { hint: 'build or pull the image again' });
  if (layer.size <= SMALL_LAYER) {
    // A small layer (metadata steps, a few small files) is compressed in memory and goes up in
    // one monolithic PUT: streamed, it took a PATCH more, which this registry answers in 7-11 ms
    // (it writes the session's data), on the critical path of a small image's push. The store
    // keeps the form (for later pushes and exports) while it uploads, not before.
    const bytes = await compressLayerInMemory(store, layer, compression, choice.level, { signal });
    const info = { digest: digestBytes(bytes, 'sha256'), size: bytes.length };
    defer(
      target,
      store.blobs.putBytes(bytes, { signal }).then((kept) => rememberCompressedLayer(store, layer.digest, choice.key, kept, { signal })),
    );
    // No HEAD first: the forms of this layer that registries have were looked up above, and
    // these bytes were made just now.
    await client.uploadBlob({ repo, digest: info.digest, size: info.size, source: bytesSource(bytes), signal, chunkSize: opts.chunkSize });
    return { ...info, mediaType };
  }
  // One big layer compresses at a time (see compressionTurn), released when its compressor is
  // done; small ones (a COPY of a few files) cost their round trips more: they go alongside.
  const release = layer.size > 1024 * 1024 ? await compressionTurn(signal) : (): void => undefined;
  let gzip: Readable;
  try {
    // One deflate job per core, not one more as an export runs: the main thread has the upload's
    // work besides, and a push holds undici and its sockets' buffers too. big-run's image (a
    // 512 MiB random file and 50,000 small ones): 96-97 MB of RSS against 106-111 MB, 7.2-7.4 s
    // against 6.8-7.9 s; hello-python: 0.81-0.87 s against 0.76-0.87 s (2 cores).
    gzip = compressFile(store.blobs.blobPath(layer.digest), choice.compression === 'zstd' ? 'zstd' : 'gzip', choice.level, { signal, size: layer.size, jobs: os.availableParallelism() });
  } catch (e) {
    release(); // no compressor (zstd missing): the next layer's turn
    throw e;
  }
  gzip.once('close', release);
  // Each holds at most the chunk being handed on: the compressor's output is in its jobs.
  const toStore = new PassThrough({ highWaterMark: 64 * 1024 });
  // A streamed upload is one PATCH of the whole blob: a registry that caps request sizes
  // (--chunk-size) refuses it, so then the layer is compressed into the store first and
  // uploaded from there in chunks.
  const toWire = opts.chunkSize === undefined ? new PassThrough({ highWaterMark: 64 * 1024 }) : undefined;
  gzip.on('error', (e) => {
    toStore.destroy(e);
    toWire?.destroy(e);
  });
  gzip.pipe(toStore);
  if (toWire !== undefined) gzip.pipe(toWire);
  // The digest is known once the last byte is hashed: the upload is finished then, while the
  // store makes its copy durable (fsync) and renames it into place.
  let onHashed: (info: { digest: Digest; size: number }) => void = () => undefined;
  const hashed = new Promise<{ digest: Digest; size: number }>((resolve) => (onHashed = resolve));
  const stored = store.blobs.putBlob(toStore, { signal, onHashed });
  stored.catch(() => undefined);
  const recorded = stored.then((info) => rememberCompressedLayer(store, layer.digest, choice.key, info, { signal }));
  recorded.catch(() => undefined);
  if (toWire === undefined) {
    await recorded;
    const info = await stored;
    await uploadFromStore(target, info, opts);
    return { digest: info.digest, size: info.size, mediaType };
  }
  let sent: { digest: Digest; size: number };
  try {
    sent = await client.uploadStreamed(repo, {
      body: toWire,
      finish: () => Promise.race([hashed, stored]),
      // After a failed attempt: let the store side finish on its own, and upload that copy.
      fallback: async () => {
        gzip.unpipe(toWire);
        toWire.destroy();
        const info = await stored;
        return { ...info, source: storeSource(store, info.digest) };
      },
      signal,
    });
  } catch (e) {
    gzip.unpipe(toWire);
    toWire.destroy();
    // Ends the compressor and its reads (a zstd child would otherwise wait for input that never
    // comes), and the store's copy, whose temp file putBlob removes: then nothing is left writing.
    gzip.destroy();
    toStore.destroy(e as Error);
    await recorded.catch(() => undefined);
    throw e;
  }
  defer(target, recorded);
  return { digest: sent.digest, size: sent.size, mediaType };
}

/** The end of the last compression a push started (compressionTurn). */
let compressing: Promise<void> = Promise.resolve();

/**
 * Waits until the layers compressed before this one by pushes of this process are done, and
 * returns the call that lets the next one start. A layer's gzip keeps every core busy on its
 * own (its blocks are deflated as parallel jobs: layer/parallel-gzip.ts), so a second layer
 * compressed alongside only added its buffers: pushing big-run's image (Debian's 121 MB layer
 * and a 1 GB one) peaked at 115-117 MB of RSS with both at once, 103-106 MB one at a time.
 * Uploads that need no compression (a blob of the store, a mount) and layers of a MiB or less
 * do not wait.
 */
export async function compressionTurn(signal: AbortSignal | undefined): Promise<() => void> {
  const before = compressing;
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  // The next turn starts once this one is over, and never before the ones ahead of this one.
  compressing = before.then(() => mine);
  if (signal === undefined) {
    await before;
    return release;
  }
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      before,
      new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason);
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } catch (e) {
    release();
    throw e;
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
  }
  return release;
}

function sameRegistry(repoName: string, registry: string): boolean {
  return repoName.startsWith(`${registry}/`);
}

async function remember(store: Store, diffId: Digest, v: { digest: Digest; size: number; mediaType: string }, repoName: string, signal: AbortSignal | undefined): Promise<void> {
  await recordLayerVariant(store, diffId, { digest: v.digest, size: v.size, mediaType: v.mediaType }, repoName, { signal });
}

/** Upload from the store unless the repository has the blob (asked as the upload starts). */
async function uploadFromStore(target: PushTarget, blob: { readonly digest: Digest; readonly size: number }, opts: PushOptions): Promise<UploadResult> {
  const { client, store, repo } = target;
  const { digest, size } = blob;
  return client.uploadBlob({ repo, digest, size, source: storeSource(store, digest), signal: opts.signal, chunkSize: opts.chunkSize, unlessPresent: true });
}

/** Windows of bytes in memory, as an upload asks for them. */
function bytesSource(bytes: Buffer): BlobSource {
  return async (start, end, signal) => {
    signal?.throwIfAborted();
    return Readable.from(end > start ? [bytes.subarray(start, end)] : []);
  };
}

/** Windows of a stored blob, read as an upload asks for them. */
function storeSource(store: Store, digest: Digest): BlobSource {
  const path = store.blobs.blobPath(digest);
  return async (start, end, signal) => {
    signal?.throwIfAborted();
    if (end <= start) return Readable.from([]);
    const src = createReadStream(path, { start, end: end - 1, highWaterMark: 1024 * 1024 });
    // A fresh 1 MiB buffer per read, dead once sent (layer/ noteDeadBuffers): counted as the
    // upload reads them (a 'data' listener here would start the flow before the upload listens).
    const counted = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        noteDeadBuffers(chunk.length);
        cb(null, chunk);
      },
    });
    src.on('error', (e) => counted.destroy(e));
    counted.on('close', () => src.destroy());
    return src.pipe(counted);
  };
}
