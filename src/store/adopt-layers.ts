import type { Duplex } from 'node:stream';
import { TsbuildError, isTsbuildError } from '../errors.js';
import { noteDeadBuffers } from '../host/index.js';
import { layerCompression, type Descriptor, type Digest, type ImageConfig, type ImageManifest } from '../oci/index.js';
import type { Store } from './store.js';
import { isPackedLayer, writeStoreManifest, type StoredImage } from './stored-image.js';

/**
 * How an image from elsewhere (a registry pull, a loaded archive) becomes a store image: its
 * layers stored uncompressed under their diff IDs, verified while they stream (the store's own
 * manifest listing them is stored-image.ts's writeStoreManifest). Shared by registry/pull.ts
 * and store/archive-import.ts.
 */

/**
 * Make sure the store has the uncompressed layer `diffId`, from the blob `blob` (already in the
 * store). Returns its size and whether it had to be made.
 */
export async function storeUncompressedLayer(
  store: Store,
  blob: Descriptor,
  diffId: Digest,
  opts: {
    readonly signal?: AbortSignal | undefined;
    /**
     * Check that `blob` really is `diffId` even when the store already has diffId (load: an
     * archive whose layer was swapped must be refused, not silently replaced by the store's).
     */
    readonly verify?: boolean;
  } = {},
): Promise<{ size: number; created: boolean }> {
  const have = await store.blobs.statBlob(diffId);
  if (have !== undefined && !opts.verify) return { size: have.size, created: false };
  const compression = layerCompression(blob.mediaType);
  if (blob.digest === diffId) {
    const st = await store.blobs.statBlob(blob.digest);
    if (st === undefined) throw new TsbuildError('BLOB_NOT_FOUND', `layer ${blob.digest} is not in the store`);
    return { size: st.size, created: false };
  }
  switch (compression) {
    case 'gzip':
    case 'zstd':
      break;
    case 'uncompressed':
      throw new TsbuildError('DIGEST_MISMATCH', `uncompressed layer ${blob.digest} does not match its diff ID ${diffId}`, {
        hint: 'the image config and manifest disagree; the image is broken',
      });
    case undefined:
      throw new TsbuildError('UNSUPPORTED', `layer ${blob.digest} has media type ${blob.mediaType}, which tsbuild cannot unpack`);
  }
  // zlib and layer/ are loaded on use: the store's front door loads this module for every command.
  let gunzip: Duplex;
  if (compression === 'zstd') {
    const { assertZstdAvailable, createZstdDecompressor } = await import('../layer/index.js');
    assertZstdAvailable();
    gunzip = createZstdDecompressor();
  } else {
    gunzip = (await import('node:zlib')).createGunzip({ chunkSize: 1024 * 1024 });
  }
  const src = await store.blobs.openBlob(blob.digest, { signal: opts.signal, highWaterMark: 1024 * 1024 });
  src.on('error', (e) => gunzip.destroy(e));
  // Each read is a fresh buffer, dead once gunzip has it (host/ noteDeadBuffers). Counted on the
  // file stream only, which flows into gunzip from this tick on: a 'data' listener on gunzip
  // would start it flowing before putBlob reads it, and what it emitted meanwhile would be lost.
  src.on('data', (c: Buffer) => noteDeadBuffers(c.length));
  src.pipe(gunzip);
  try {
    const info = await store.blobs.putBlob(gunzip, { expected: { digest: diffId }, signal: opts.signal });
    return { size: info.size, created: true };
  } catch (e) {
    src.destroy();
    if (e instanceof TsbuildError) {
      if (e.code === 'DIGEST_MISMATCH') {
        throw new TsbuildError('DIGEST_MISMATCH', `layer ${blob.digest} does not decompress to its diff ID ${diffId}`, {
          hint: 'the image config and the layer disagree; the image is broken',
          cause: e,
        });
      }
      throw e;
    }
    throw new TsbuildError('LAYER_INVALID', `layer ${blob.digest} is not valid ${compression} (${(e as Error).message})`, { cause: e });
  }
}


/**
 * Packed layers decompressed at once by unpackStoredImage. One already keeps two cores busy
 * (gunzip on the thread pool, sha256 on the main thread, overlapping). Measured on a build FROM
 * three packed 100 MB layers on a busy 2-core machine: one at a time 1.8-2.3 s and 100 MB of
 * peak RSS, two 1.9-2.4 s and 136 MB, three 145 MB (user CPU 1.5 s each); a push, whose target
 * is under 100 MB, went to 135 MB with two.
 */
const UNPACK_CONCURRENCY = 1;

/**
 * The image a store manifest with packed layers (a `pull --no-unpack`: compressed blobs kept
 * as downloaded, stored-image.ts StoredLayer) stands for, with every layer uncompressed: each
 * packed layer whose diff ID the store lacks is decompressed now, hashed while it streams and
 * stored under its diff ID only if it matches (storeUncompressedLayer: temp file + rename,
 * nothing left on a mismatch or a kill), and the uncompressed store manifest is written. The
 * one place a packed layer becomes a layer: every reader of a store image's layers gets it
 * through image/ readLocalImage, which calls this. The tag keeps naming the packed manifest,
 * whose compressed blobs stay (gc reaches them, and the uncompressed forms through the
 * config's diff IDs: reachability.ts), so a push reuses them instead of compressing again.
 *
 * A layer that does not decompress to its diff ID is DIGEST_MISMATCH naming `what` (the
 * image) and the layer; one that is not valid gzip/zstd is LAYER_INVALID.
 */
export async function unpackStoredImage(
  store: Store,
  image: { readonly manifest: ImageManifest; readonly config: ImageConfig },
  opts: { readonly what: string; readonly signal?: AbortSignal | undefined },
): Promise<Pick<StoredImage, 'manifest' | 'manifestDescriptor'>> {
  const { manifest, config } = image;
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new TsbuildError('MANIFEST_INVALID', `${opts.what}: the config lists ${diffIds.length} layers but the manifest ${manifest.layers.length}`);
  }
  const sizes: number[] = new Array<number>(manifest.layers.length).fill(0);
  // After a failure no other layer starts; the ones under way finish (stored if they match),
  // and the failure is reported once they have let go of their temp files: a command that exits
  // on it leaves nothing behind.
  const signal = opts.signal;
  let failure: { error: unknown } | undefined;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < manifest.layers.length && failure === undefined; i = next++) {
      const layer = manifest.layers[i]!;
      if (!isPackedLayer(layer)) {
        sizes[i] = layer.size;
        continue;
      }
      try {
        sizes[i] = (await storeUncompressedLayer(store, layer, diffIds[i]!, { signal })).size;
      } catch (e) {
        if (failure !== undefined) return; // the first failure is the one reported
        failure = {
          error: isTsbuildError(e) ? new TsbuildError(e.code, `${opts.what}, layer ${i + 1} of ${manifest.layers.length}: ${e.message}`, { ...(e.hint !== undefined ? { hint: e.hint } : {}), cause: e }) : e,
        };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(UNPACK_CONCURRENCY, manifest.layers.length) }, worker));
  if (failure !== undefined) throw failure.error;
  const written = await writeStoreManifest(
    store,
    { config, configBlob: manifest.config, layers: diffIds.map((diffId, i) => ({ diffId, size: sizes[i]! })), ...(manifest.annotations !== undefined ? { annotations: manifest.annotations } : {}) },
    { signal: opts.signal },
  );
  return { manifest: written.manifest, manifestDescriptor: written.manifestDescriptor };
}
