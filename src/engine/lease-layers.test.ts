import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTsbuildError } from '../errors.js';
import { collectGarbage, Lease, openStore, type Store, type StoredLayer } from '../store/index.js';
import { claimLeased, deferLayers, leaseLayers } from './lease-layers.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-lease-layers-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const layer = async (text: string): Promise<StoredLayer> => {
  const b = await store.blobs.putBytes(text);
  return { diffId: b.digest, size: b.size };
};

describe('deferred layers (a build\'s cache hits)', () => {
  it('are written by the next claim, and then kept by gc', async () => {
    const a = await layer('a');
    const lease = new Lease(store);
    deferLayers(lease, [a], 'step 1');
    expect(await collectGarbage(store, { graceMs: 0, dryRun: true })).toMatchObject({ removedBlobs: 1 });
    await claimLeased(lease, store);
    expect(await collectGarbage(store, { graceMs: 0 })).toMatchObject({ removedBlobs: 0 });
    await lease.release();
  });

  it('removed before the claim fail it with BLOB_NOT_FOUND naming the step', async () => {
    const a = await layer('a');
    const lease = new Lease(store);
    deferLayers(lease, [a], '[2/3] RUN make');
    await store.blobs.deleteBlob(a.diffId); // a concurrent rmi or prune
    const err = await claimLeased(lease, store).catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('BLOB_NOT_FOUND');
    expect((err as Error).message).toContain('[2/3] RUN make');
    await lease.release();
  });

  it('are checked by a later leaseLayers too, which holds them with its own', async () => {
    const a = await layer('a');
    const b = await layer('b');
    const lease = new Lease(store);
    deferLayers(lease, [a], 'FROM base');
    await store.blobs.deleteBlob(a.diffId);
    const err = await leaseLayers(lease, store, [a, b], 'step 2').catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('BLOB_NOT_FOUND');
    await lease.release();

    const c = await layer('c');
    const lease2 = new Lease(store);
    deferLayers(lease2, [c], 'FROM base');
    await leaseLayers(lease2, store, [c, b], 'step 2');
    expect(await collectGarbage(store, { graceMs: 0 })).toMatchObject({ removedBlobs: 0 });
    // Nothing deferred is left: a claim writes nothing more.
    await claimLeased(lease2, store);
    await lease2.release();
    expect(await collectGarbage(store, { graceMs: 0 })).toMatchObject({ removedBlobs: 2 });
  });
});
