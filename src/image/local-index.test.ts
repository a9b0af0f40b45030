import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTsbuildError } from '../errors.js';
import { OCI_IMAGE_MANIFEST, canonicalJson, parseDigest, type ImageConfig, type Platform } from '../oci/index.js';
import { openStore, writeStoreIndex, type Store, type StoredImage } from '../store/index.js';
import { findLocalImage, readLocalImage } from './local-image.js';
import { indexImageFor, platformList, readLocalIndex } from './local-index.js';
import { sealImage } from './seal.js';
import { listStoreImages } from './store-images.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-local-index-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function image(platform: Platform, content: string): Promise<StoredImage> {
  const layer = await store.blobs.putBytes(Buffer.from(content));
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
  };
  return sealImage(store, config, [{ diffId: layer.digest, size: layer.size }]);
}

function codeOf(e: unknown): string | undefined {
  return isTsbuildError(e) ? e.code : undefined;
}

describe('local indexes', () => {
  it('reads the images an index holds, leaving out attestations and naming what the store lacks', async () => {
    const amd = await image({ os: 'linux', architecture: 'amd64' }, 'amd');
    const arm = await image({ os: 'linux', architecture: 'arm64', variant: 'v8' }, 'arm');
    const att = await image({ os: 'unknown', architecture: 'unknown' }, 'att');
    const absent = { mediaType: OCI_IMAGE_MANIFEST, digest: parseDigest(`sha256:${'1'.repeat(64)}`), size: 100 };
    const written = await writeStoreIndex(store, [
      { manifestDescriptor: amd.manifestDescriptor, platform: { os: 'linux', architecture: 'amd64' } },
      { manifestDescriptor: arm.manifestDescriptor, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { manifestDescriptor: att.manifestDescriptor, platform: { os: 'unknown', architecture: 'unknown' } },
      { manifestDescriptor: absent, platform: { os: 'linux', architecture: 's390x' } },
    ]);
    // Canonical, so the same images give the same index digest.
    expect((await store.blobs.readBlobBytes(written.descriptor.digest, { maxBytes: 65536 })).equals(canonicalJson(written.index))).toBe(true);
    await store.setTag('docker.io/library/multi:v1', written.descriptor);

    const local = await readLocalIndex(store, written.descriptor, { name: 'docker.io/library/multi:v1' });
    expect(local.images.map((i) => i.image.configDescriptor.digest)).toEqual([amd.configDescriptor.digest, arm.configDescriptor.digest]);
    expect(local.absent.map((d) => d.digest)).toEqual([absent.digest]);
    expect(platformList(local)).toBe('linux/amd64, linux/arm64/v8');

    // linux/arm64 and linux/arm64/v8 are one platform (containerd's normalisation).
    expect(indexImageFor(local, { os: 'linux', architecture: 'arm64' }).image.configDescriptor.digest).toBe(arm.configDescriptor.digest);
    let err: unknown;
    try {
      indexImageFor(local, { os: 'linux', architecture: 'riscv64' });
    } catch (e) {
      err = e;
    }
    expect(codeOf(err)).toBe('PLATFORM_UNAVAILABLE');
    expect((err as { hint?: string }).hint).toContain('linux/amd64, linux/arm64/v8');

    // Through the image lookups FROM uses: a platform the index lacks is IMAGE_NOT_FOUND (FROM then pulls it).
    const found = await findLocalImage(store, 'multi:v1', { platform: { os: 'linux', architecture: 'arm64' } });
    expect(found?.configDescriptor.digest).toBe(arm.configDescriptor.digest);
    await expect(readLocalImage(store, written.descriptor, { platform: { os: 'linux', architecture: 'riscv64' } })).rejects.toMatchObject({ code: 'IMAGE_NOT_FOUND' });

    // Listed once, keyed by the index, with both images; its children are not dangling images.
    const listed = await listStoreImages(store);
    expect(listed).toHaveLength(1); // the attestation manifest is the index's, not a dangling image
    const entry = listed.find((l) => l.index !== undefined);
    expect(entry?.tags).toEqual(['docker.io/library/multi:v1']);
    expect(entry?.images.map((i) => i.configDescriptor.digest)).toEqual([amd.configDescriptor.digest, arm.configDescriptor.digest]);
    expect(entry?.size).toBe(6);
  });
});
