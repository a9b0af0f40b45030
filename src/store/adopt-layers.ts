import type { Duplex } from 'node:stream';
import { TsbuildError } from '../errors.js';
import { layerCompression, type Descriptor, type Digest } from '../oci/index.js';
import type { Store } from './store.js';

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

