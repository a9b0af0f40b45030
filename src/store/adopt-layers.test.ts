import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTsbuildError } from '../errors.js';
import { OCI_LAYER_TAR_GZIP, sha256Digest, type ImageConfig } from '../oci/index.js';
import { openStore, storeUncompressedLayer, unpackStoredImage, writeStoreManifest, type Store } from './index.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-adopt-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A gzip blob in the store whose content is `text`: its descriptor and diff ID. */
async function packed(text: string): Promise<{ blob: { mediaType: string; digest: ReturnType<typeof sha256Digest>; size: number }; diffId: ReturnType<typeof sha256Digest> }> {
  const info = await store.blobs.putBytes(gzipSync(Buffer.from(text)));
  return { blob: { mediaType: OCI_LAYER_TAR_GZIP, ...info }, diffId: sha256Digest(text) };
}

describe('storeUncompressedLayer', () => {
  it('stores each of many small layers whole (the decompressed bytes all reach the blob)', async () => {
    // Small layers decompress at once: a reader attached late must still get every byte.
    for (let round = 0; round < 5; round++) {
      const layers = await Promise.all(Array.from({ length: 40 }, (_, i) => packed(`layer ${round} ${i}\n`.repeat(i * 50 + 1))));
      // One at a time (as a pull or load does) and all at once.
      for (const l of layers.slice(0, 20)) await storeUncompressedLayer(store, l.blob, l.diffId);
      await Promise.all(layers.slice(20).map((l) => storeUncompressedLayer(store, l.blob, l.diffId)));
      for (const l of layers) expect((await store.blobs.verifyBlob(l.diffId)).ok).toBe(true);
    }
  });
});

describe('unpackStoredImage', () => {
  it('makes every packed layer whole, or refuses a lying diff ID naming the image and layer and leaves no temp file', async () => {
    const good = await packed('a good layer\n'.repeat(1000));
    const lying = await packed('the bytes of this layer\n');
    const config: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [good.diffId, sha256Digest('not these bytes')] } };
    const configBlob = await store.blobs.putBytes(JSON.stringify(config));
    const image = await writeStoreManifest(store, {
      config,
      configBlob,
      layers: [
        { diffId: good.diffId, size: 0, packed: good.blob },
        { diffId: sha256Digest('not these bytes'), size: 0, packed: lying.blob },
      ],
    });
    const err = await unpackStoredImage(store, { manifest: image.manifest, config }, { what: 'image example.com/app:v1' }).catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('DIGEST_MISMATCH');
    expect((err as Error).message).toContain('image example.com/app:v1, layer 2 of 2');
    expect(await store.blobs.hasBlob(good.diffId)).toBe(true);
    expect(await store.blobs.hasBlob(sha256Digest('not these bytes'))).toBe(false);
    expect(await readdir(store.paths.tmp)).toEqual([]);

    // The same image with the true diff ID: the uncompressed manifest, its layers in the store.
    const honest: ImageConfig = { ...config, rootfs: { type: 'layers', diff_ids: [good.diffId, lying.diffId] } };
    const whole = await unpackStoredImage(store, { manifest: { ...image.manifest, config: { ...image.manifest.config } }, config: honest }, { what: 'image example.com/app:v2' });
    expect(whole.manifest.layers.map((l) => [l.mediaType, l.digest])).toEqual([
      ['application/vnd.oci.image.layer.v1.tar', good.diffId],
      ['application/vnd.oci.image.layer.v1.tar', lying.diffId],
    ]);
    expect(await store.blobs.hasBlob(whole.manifestDescriptor.digest)).toBe(true);
  });
});
