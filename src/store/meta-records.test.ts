import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Digest } from '../oci/index.js';
import { Lease, knownCompressedLayer, liveLeases, openStore, parseCompressedLayersRecord, parseLeaseRecord, rememberCompressedLayer, type Store } from './index.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-meta-records-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const D = sha256Digest('x');

describe('compressed-layers record', () => {
  it('keeps well-formed forms and drops the rest', () => {
    expect(
      parseCompressedLayersRecord({
        'gzip-6': { digest: D, size: 3 },
        'gzip-1': { digest: 'sha256:short', size: 3 },
        'gzip-9': { digest: D, size: -1 },
        zstd: { digest: D },
        bad: 'text',
      }),
    ).toEqual({ 'gzip-6': { digest: D, size: 3 } });
    for (const v of [undefined, null, 7, 'x', [{ digest: D, size: 1 }]]) expect(parseCompressedLayersRecord(v)).toEqual({});
  });

  it('round-trips through the store, and a damaged entry reads as unknown (compressed again)', async () => {
    const layer = await store.blobs.putBytes('layer');
    const gz = await store.blobs.putBytes('gz');
    await rememberCompressedLayer(store, layer.digest, 'gzip-6', gz);
    expect(await knownCompressedLayer(store, layer.digest, 'gzip-6')).toEqual({ digest: gz.digest, size: gz.size });
    await store.writeMeta(`compressed.${layer.digest.slice(7)}`, { 'gzip-6': { digest: gz.digest, size: 'big' } });
    expect(await knownCompressedLayer(store, layer.digest, 'gzip-6')).toBeUndefined();
    // A memo torn by a crash of the machine (renamed before its bytes reached the disk) is
    // absent to its readers, and the next write replaces it; other documents stay errors.
    const name = `compressed.${layer.digest.slice(7)}`;
    await writeFile(join(dir, 'root', 'meta', `${name}.json`), '');
    expect(await knownCompressedLayer(store, layer.digest, 'gzip-6')).toBeUndefined();
    await rememberCompressedLayer(store, layer.digest, 'gzip-6', gz);
    expect(await knownCompressedLayer(store, layer.digest, 'gzip-6')).toEqual({ digest: gz.digest, size: gz.size });
    await writeFile(join(dir, 'root', 'meta', 'other.json'), '{"torn');
    await expect(store.readMeta('other')).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    expect(await store.readMeta('other', { memo: true })).toBeUndefined();
    expect(await readdir(join(dir, 'root', 'tmp'))).toEqual([]);
  });
});

describe('lease record', () => {
  it('keeps digests, descriptors and snapshot names; skips the rest', () => {
    const desc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D, size: 9 };
    expect(parseLeaseRecord({ roots: [D, 'sha256:nope', { ...desc, extra: 1 }, { digest: D }], snapshots: [D, 3, 'x'] })).toEqual({ roots: [D, desc], snapshots: [D] });
    expect(parseLeaseRecord(undefined)).toEqual({ roots: [], snapshots: [] });
  });

  it('is what liveLeases reads back from a held lease', async () => {
    const blob = await store.blobs.putBytes('held');
    const lease = new Lease(store);
    await lease.hold({ roots: [blob.digest], snapshots: [D] });
    const files = await readdir(join(store.paths.root, 'leases'));
    expect(files).toHaveLength(1);
    expect(await liveLeases(store)).toEqual({ roots: [blob.digest], snapshots: [D] });
    // A hand-damaged lease file protects what it still names well.
    await writeFile(join(store.paths.root, 'leases', files[0]!), JSON.stringify({ roots: [blob.digest, 42], snapshots: 'no' }));
    expect(await liveLeases(store)).toEqual({ roots: [blob.digest], snapshots: [] });
    await lease.release();
  });
});
