import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTsbuildError } from '../errors.js';
import { OCI_IMAGE_CONFIG, OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST, sha256Digest, type Descriptor, type Digest } from '../oci/index.js';
import { collectGarbage, fsckStore, Lease, openStore, pulledFormKey, rememberCompressedLayer, type Store } from './index.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-gc-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface TestImage {
  readonly manifest: Descriptor;
  readonly config: Digest;
  readonly layers: Digest[];
}

/** A small image by hand: layer blobs (uncompressed, so digest = diff ID), config, manifest. */
async function putImage(s: Store, name: string, layerTexts: readonly string[]): Promise<TestImage> {
  const layers: Digest[] = [];
  for (const t of layerTexts) layers.push((await s.blobs.putBytes(t)).digest);
  const config = await s.blobs.putBytes(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers }, config: {} }),
  );
  const manifest = await s.blobs.putBytes(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_IMAGE_MANIFEST,
      config: { mediaType: OCI_IMAGE_CONFIG, ...config },
      layers: layers.map((digest, i) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest,
        size: Buffer.byteLength(layerTexts[i] ?? ''),
      })),
    }),
  );
  const desc: Descriptor = { mediaType: OCI_IMAGE_MANIFEST, ...manifest };
  await s.setTag(name, desc);
  return { manifest: desc, config: config.digest, layers };
}

async function makeSnapshot(s: Store, diffId: Digest): Promise<void> {
  const work = await s.makeTempDir('snapshot');
  await writeFile(join(work, 'f'), diffId);
  await s.commitSnapshot(work, diffId);
}

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('collectGarbage', () => {
  it('removes unreferenced blobs and keeps referenced ones', async () => {
    const img = await putImage(store, 'example.com/app:v1', ['layer-a', 'layer-b']);
    const junk = await store.blobs.putBytes('unreferenced junk');

    const dry = await collectGarbage(store, { graceMs: 0, dryRun: true });
    expect(dry).toMatchObject({ removedBlobs: 1, freedBytes: junk.size });
    expect(await store.blobs.hasBlob(junk.digest)).toBe(true);

    const res = await collectGarbage(store, { graceMs: 0 });
    expect(res).toEqual({ removedBlobs: 1, freedBytes: junk.size, removedTemps: 0, removedSnapshots: 0, keptYoung: 0 });
    expect(await store.blobs.hasBlob(junk.digest)).toBe(false);
    for (const d of [img.manifest.digest, img.config, ...img.layers]) expect(await store.blobs.hasBlob(d)).toBe(true);

    // Untagging makes the whole image garbage.
    await store.removeTag('example.com/app:v1');
    expect((await collectGarbage(store, { graceMs: 0 })).removedBlobs).toBe(4);
    expect(await store.blobs.listBlobs()).toEqual([]);
  });

  it('follows image indexes to their manifests', async () => {
    const img = await putImage(store, 'example.com/tmp:x', ['only-layer']);
    const absent = sha256Digest('a platform that was never pulled');
    const index = await store.blobs.putBytes(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_IMAGE_INDEX,
        manifests: [
          { ...img.manifest, platform: { architecture: 'amd64', os: 'linux' } },
          { mediaType: OCI_IMAGE_MANIFEST, digest: absent, size: 10, platform: { architecture: 'arm64', os: 'linux' } },
        ],
      }),
    );
    await store.setTag('example.com/multi:latest', { mediaType: OCI_IMAGE_INDEX, ...index });
    await store.removeTag('example.com/tmp:x');
    expect((await collectGarbage(store, { graceMs: 0 })).removedBlobs).toBe(0);
    expect(await store.blobs.listBlobs()).toHaveLength(4);
    expect(await fsckStore(store)).toEqual([]); // a missing platform of an index is normal
  });

  it('keeps young unreferenced blobs and extra roots', async () => {
    const young = await store.blobs.putBytes('just written, not yet tagged');
    const cached = await store.blobs.putBytes('a cached layer');
    const cachedConfigLayer = await store.blobs.putBytes('layer named by a cached config');
    const cachedConfig = await store.blobs.putBytes(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [cachedConfigLayer.digest] } }));
    let res = await collectGarbage(store); // default grace: 1 h
    expect(res).toMatchObject({ removedBlobs: 0, keptYoung: 4 });
    res = await collectGarbage(store, {
      graceMs: 0,
      extraRoots: [cached.digest, { mediaType: OCI_IMAGE_CONFIG, ...cachedConfig }],
    });
    // The config's diff IDs name snapshots, not blobs: the layer blob itself is not kept by it.
    expect(res.removedBlobs).toBe(2);
    expect(await store.blobs.hasBlob(young.digest)).toBe(false);
    expect(await store.blobs.hasBlob(cached.digest)).toBe(true);
    expect(await store.blobs.hasBlob(cachedConfig.digest)).toBe(true);
  });

  it('keeps the compressed blobs of an image kept packed and its layers once decompressed; nothing once untagged', async () => {
    const { gzipSync } = await import('node:zlib');
    const tars = ['packed layer one', 'packed layer two'];
    const diffIds = tars.map((t) => sha256Digest(t));
    const packed = await Promise.all(tars.map((t) => store.blobs.putBytes(gzipSync(Buffer.from(t)))));
    const config = await store.blobs.putBytes(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds }, config: {} }));
    const { writeStoreManifest } = await import('./index.js');
    const image = await writeStoreManifest(store, {
      config: { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } },
      configBlob: config,
      layers: diffIds.map((diffId, i) => ({ diffId, size: 0, packed: { ...packed[i]!, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' } })),
    });
    await store.setTag('example.com/packed:v1', image.manifestDescriptor);
    // The first layer decompressed (as a first use does), the second not yet.
    await store.blobs.putBytes(tars[0]!);
    const stray = await store.blobs.putBytes('nobody names this');
    const res = await collectGarbage(store, { graceMs: 0 });
    expect(res.removedBlobs).toBe(1);
    expect(await store.blobs.hasBlob(stray.digest)).toBe(false);
    for (const d of [...packed.map((p) => p.digest), diffIds[0]!, config.digest, image.manifestDescriptor.digest]) expect(await store.blobs.hasBlob(d)).toBe(true);
    expect(await fsckStore(store, {})).toEqual([]);
    await store.removeTag('example.com/packed:v1');
    await collectGarbage(store, { graceMs: 0 });
    expect(await store.blobs.listBlobs()).toEqual([]);
  });

  it("keeps the registry's blob a pull kept for a kept layer, not forms compressed here; nothing once untagged", async () => {
    const img = await putImage(store, 'pulled:v1', ['base layer']);
    const layer = img.layers[0]!;
    const fromRegistry = await store.blobs.putBytes('gzip bytes as the registry sent them');
    const madeHere = await store.blobs.putBytes('gzip bytes made by an export');
    await rememberCompressedLayer(store, layer, pulledFormKey('gzip'), fromRegistry);
    await rememberCompressedLayer(store, layer, 'gzip-4', madeHere);
    await collectGarbage(store, { graceMs: 0 });
    expect(await store.blobs.hasBlob(fromRegistry.digest)).toBe(true);
    expect(await store.blobs.hasBlob(madeHere.digest)).toBe(false);
    expect(await store.blobs.hasBlob(layer)).toBe(true);
    await store.removeTag('pulled:v1');
    await collectGarbage(store, { graceMs: 0 });
    expect(await store.blobs.hasBlob(fromRegistry.digest)).toBe(false);
    expect(await store.blobs.hasBlob(layer)).toBe(false);
  });

  it('removes snapshots no kept config names', async () => {
    const img = await putImage(store, 'example.com/app:v1', ['l1', 'l2']);
    const orphan = sha256Digest('orphan layer');
    const pinned = sha256Digest('pinned layer');
    for (const d of [...img.layers, orphan, pinned]) await makeSnapshot(store, d);
    expect((await collectGarbage(store, { graceMs: 60_000 })).removedSnapshots).toBe(0);
    const res = await collectGarbage(store, { graceMs: 0, keepSnapshots: [pinned] });
    expect(res.removedSnapshots).toBe(1);
    expect(await store.listSnapshots()).toEqual([...img.layers, pinned].sort());
    expect(await readdir(store.paths.tmp)).toEqual([]);
  });

  it('removes temp entries of dead processes and old foreign ones, keeps live and young ones', async () => {
    const dead = deadPid();
    await writeFile(join(store.paths.tmp, `${dead}-x-abc123.blob`), 'partial');
    await writeFile(join(store.paths.tmp, `${dead}-12345-def456.write`), 'partial');
    const deadDir = join(store.paths.tmp, `${dead}-x-0d1e2f.snapshot`);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(deadDir, 'sub'), { recursive: true });
    const mine = store.tempPath('blob');
    await writeFile(mine, 'in progress');
    await writeFile(join(store.paths.tmp, 'foreign-old'), 'x');
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(join(store.paths.tmp, 'foreign-old'), old, old);
    await writeFile(join(store.paths.tmp, 'foreign-young'), 'x');

    expect((await collectGarbage(store, { dryRun: true })).removedTemps).toBe(4);
    expect(await readdir(store.paths.tmp)).toHaveLength(6);
    expect((await collectGarbage(store)).removedTemps).toBe(4);
    expect((await readdir(store.paths.tmp)).sort()).toEqual([mine.slice(store.paths.tmp.length + 1), 'foreign-young'].sort());
  });

  it('stops before removing anything when a referenced manifest is damaged', async () => {
    const img = await putImage(store, 'example.com/app:v1', ['l1']);
    const junk = await store.blobs.putBytes('junk');
    const path = store.blobs.blobPath(img.manifest.digest);
    await chmod(path, 0o644);
    await writeFile(path, '{not json');
    const err = await collectGarbage(store, { graceMs: 0 }).catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('STORE_CORRUPT');
    expect(await store.blobs.hasBlob(junk.digest)).toBe(true);
    expect(await store.blobs.hasBlob(img.layers[0]!)).toBe(true);
  });
});

describe('fsckStore', () => {
  it('finds nothing wrong in a healthy store', async () => {
    await putImage(store, 'example.com/app:v1', ['l1', 'l2']);
    expect(await fsckStore(store)).toEqual([]);
  });

  it('finds a corrupted blob, missing blobs, stray files and stale temps', async () => {
    const img = await putImage(store, 'example.com/app:v1', ['l1', 'l2']);
    const other = await putImage(store, 'example.com/other:v1', ['l3']);

    const layer = img.layers[0]!;
    await chmod(store.blobs.blobPath(layer), 0o644);
    await writeFile(store.blobs.blobPath(layer), 'tampered');
    await store.blobs.deleteBlob(img.layers[1]!);
    await store.blobs.deleteBlob(other.manifest.digest);
    await writeFile(join(store.paths.blobs, 'sha256', 'not-a-digest'), 'x');
    await writeFile(join(store.paths.tmp, `${deadPid()}-x-abc.blob`), 'partial');

    const problems = await fsckStore(store);
    expect(problems).toContainEqual({ kind: 'blob-corrupt', digest: layer, actual: sha256Digest('tampered'), path: store.blobs.blobPath(layer) });
    expect(problems).toContainEqual({ kind: 'missing-blob', digest: img.layers[1], referencedBy: img.manifest.digest });
    expect(problems).toContainEqual({ kind: 'tag-missing-blob', name: 'example.com/other:v1', digest: other.manifest.digest });
    expect(problems).toContainEqual({ kind: 'stray-file', path: join(store.paths.blobs, 'sha256', 'not-a-digest') });
    expect(problems.filter((p) => p.kind === 'stale-temp')).toHaveLength(1);
    expect(problems).toHaveLength(5);

    // Structure-only mode skips re-hashing.
    expect((await fsckStore(store, { verifyContent: false })).some((p) => p.kind === 'blob-corrupt')).toBe(false);
  });

  it('reports a stale lock file', async () => {
    const { hostname } = await import('node:os');
    await writeFile(store.paths.lock, JSON.stringify({ pid: deadPid(), host: hostname(), token: 't', acquiredAt: 'then' }));
    expect(await fsckStore(store)).toEqual([expect.objectContaining({ kind: 'stale-lock' })]);
  });
});

describe('leases', () => {
  /** Images of one layer each, put in and untagged again: only a lease keeps them from gc. */
  async function untaggedImages(...names: string[]): Promise<TestImage[]> {
    const out: TestImage[] = [];
    for (const n of names) {
      out.push(await putImage(store, `docker.io/library/${n}:1`, [n]));
      await store.removeTag(`docker.io/library/${n}:1`);
    }
    return out;
  }

  it('a live lease keeps an untagged image and its snapshots; released or dead, it does not', async () => {
    const img = await putImage(store, 'docker.io/library/leased:1', ['leased layer']);
    await makeSnapshot(store, img.layers[0]!);
    await store.removeTag('docker.io/library/leased:1');
    const lease = new Lease(store);
    await lease.hold({ roots: [img.manifest], snapshots: [img.layers[0]!] });
    const kept = await collectGarbage(store, { graceMs: 0 });
    expect(kept).toMatchObject({ removedBlobs: 0, removedSnapshots: 0 });
    expect(await store.blobs.hasBlob(img.layers[0]!)).toBe(true);

    // A lease left by a process that is gone is ignored, and gc removes its file.
    const leases = join(store.paths.root, 'leases');
    const [name] = await readdir(leases);
    const stale = name!.replace(/^\d+-(\d+|x)-/, `${deadPid()}-x-`);
    await rename(join(leases, name!), join(leases, stale));
    const swept = await collectGarbage(store, { graceMs: 0 });
    expect(swept).toMatchObject({ removedBlobs: 3, removedSnapshots: 1 });
    expect(await readdir(leases)).toEqual([]);
    await lease.release();
  });

  it('a deferred addition protects nothing until the next hold, which writes it', async () => {
    const [a, b] = await untaggedImages('a', 'b');
    const lease = new Lease(store);
    lease.defer({ roots: [a!.manifest] });
    expect(await collectGarbage(store, { graceMs: 0, dryRun: true })).toMatchObject({ removedBlobs: 6 });
    // A hold of something else carries what was deferred; a hold of nothing new writes it too.
    await lease.hold({ roots: [b!.manifest] });
    expect(await collectGarbage(store, { graceMs: 0, dryRun: true })).toMatchObject({ removedBlobs: 0 });
    const [c] = await untaggedImages('c');
    lease.defer({ roots: [c!.manifest] });
    await lease.hold();
    expect(await collectGarbage(store, { graceMs: 0 })).toMatchObject({ removedBlobs: 0 });
    await lease.release();
    expect(await collectGarbage(store, { graceMs: 0 })).toMatchObject({ removedBlobs: 9 });
  });

  it('holds from parallel tasks all land in the lease file', async () => {
    const [a, b] = await untaggedImages('a', 'b');
    const lease = new Lease(store);
    await Promise.all([lease.hold({ roots: [a!.manifest] }), lease.hold({ roots: [b!.manifest] })]);
    expect(await collectGarbage(store, { graceMs: 0 })).toMatchObject({ removedBlobs: 0 });
    await lease.release();
    expect(await collectGarbage(store, { graceMs: 0 })).toMatchObject({ removedBlobs: 6 });
  });
});
