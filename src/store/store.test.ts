import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTsbuildError } from '../errors.js';
import { OCI_IMAGE_MANIFEST, sha256Digest, type Descriptor } from '../oci/index.js';
import { REF_NAME_ANNOTATION, openStore, type Store } from './index.js';

let dir: string;
let root: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-store-'));
  root = join(dir, 'root');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isTsbuildError(e)) return e.code;
    throw e;
  }
  return 'OK';
}

async function manifestBlob(store: Store, text = '{"schemaVersion":2}'): Promise<Descriptor> {
  const info = await store.blobs.putBytes(text);
  return { mediaType: OCI_IMAGE_MANIFEST, ...info };
}

describe('openStore', () => {
  it('creates an OCI image layout', async () => {
    const store = await openStore(root);
    expect(JSON.parse(await readFile(join(root, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    expect(JSON.parse(await readFile(join(root, 'index.json'), 'utf8'))).toMatchObject({ schemaVersion: 2, manifests: [] });
    for (const d of ['blobs/sha256', 'tmp', 'snapshots', 'meta']) expect((await stat(join(root, d))).isDirectory()).toBe(true);
    expect(await store.listTags()).toEqual([]);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
  });

  it('is safe when several opens race on a fresh root', async () => {
    const stores = await Promise.all(Array.from({ length: 6 }, () => openStore(root)));
    expect(stores).toHaveLength(6);
    expect(JSON.parse(await readFile(join(root, 'index.json'), 'utf8')).manifests).toEqual([]);
  });

  it('refuses a broken index.json and leaves it as it was', async () => {
    await openStore(root);
    await writeFile(join(root, 'index.json'), '{"schemaVersion":2,"manifests":[');
    expect(await codeOf(openStore(root))).toBe('STORE_CORRUPT');
    expect(await readFile(join(root, 'index.json'), 'utf8')).toBe('{"schemaVersion":2,"manifests":[');
    await writeFile(join(root, 'index.json'), '{"schemaVersion":2,"manifests":[{"digest":"nope"}]}');
    expect(await codeOf(openStore(root))).toBe('STORE_CORRUPT');
  });

  it('refuses a broken oci-layout', async () => {
    await openStore(root);
    await writeFile(join(root, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
    expect(await codeOf(openStore(root))).toBe('STORE_CORRUPT');
  });

  it('refuses a root that is a file, or is under one, with STORE_IO', async () => {
    await writeFile(join(dir, 'file'), 'x');
    expect(await codeOf(openStore(join(dir, 'file')))).toBe('STORE_IO');
    expect(await codeOf(openStore(join(dir, 'file', 'sub')))).toBe('STORE_IO');
  });

  it('refuses a non-empty directory that is not a store', async () => {
    await mkdir(root);
    await writeFile(join(root, 'notes.txt'), 'mine');
    expect(await codeOf(openStore(root))).toBe('STORE_CORRUPT');
    expect(await readdir(root)).toEqual(['notes.txt']);
  });
});

describe('tags', () => {
  it('set, get, list and remove persist across reopen', async () => {
    const store = await openStore(root);
    const a = await manifestBlob(store, '{"a":1}');
    const b = await manifestBlob(store, '{"b":2}');
    const platform = { architecture: 'amd64', os: 'linux' };
    await store.setTag('docker.io/library/busybox:latest', { ...a, platform });
    await store.setTag('example.com/app:v1', b);
    await store.setTag('example.com/app@sha256:' + 'a'.repeat(64), b);

    const again = await openStore(root);
    expect(await again.getTag('docker.io/library/busybox:latest')).toEqual({
      ...a,
      platform,
      annotations: { [REF_NAME_ANNOTATION]: 'docker.io/library/busybox:latest' },
    });
    expect((await again.listTags()).map((t) => t.name)).toEqual([
      'docker.io/library/busybox:latest',
      'example.com/app:v1',
      'example.com/app@sha256:' + 'a'.repeat(64),
    ]);

    // Tagging again replaces, keeping one entry per name.
    await again.setTag('docker.io/library/busybox:latest', b);
    expect((await again.getTag('docker.io/library/busybox:latest'))?.digest).toBe(b.digest);
    expect((await again.readIndex()).manifests).toHaveLength(3);

    expect(await again.removeTag('example.com/app:v1')).toBe(true);
    expect(await again.removeTag('example.com/app:v1')).toBe(false);
    const third = await openStore(root);
    expect(await third.getTag('example.com/app:v1')).toBeUndefined();
    expect((await third.listTags()).map((t) => t.name)).toEqual([
      'docker.io/library/busybox:latest',
      'example.com/app@sha256:' + 'a'.repeat(64),
    ]);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
    expect(await readdir(root)).not.toContain('lock');
  });

  it('refuses invalid names, missing blobs and wrong sizes', async () => {
    const store = await openStore(root);
    const a = await manifestBlob(store);
    expect(await codeOf(store.setTag('has space:latest', a))).toBe('REFERENCE_INVALID');
    expect(await codeOf(store.setTag('', a))).toBe('REFERENCE_INVALID');
    expect(await codeOf(store.setTag('example.com/x:y', { ...a, digest: sha256Digest('absent') }))).toBe('BLOB_NOT_FOUND');
    expect(await codeOf(store.setTag('example.com/x:y', { ...a, size: a.size + 1 }))).toBe('DIGEST_MISMATCH');
    expect(await store.listTags()).toEqual([]);
  });

  it('keeps entries and fields written by other tools', async () => {
    const store = await openStore(root);
    const a = await manifestBlob(store);
    const foreign = {
      schemaVersion: 2,
      annotations: { 'com.example.note': 'kept' },
      manifests: [{ mediaType: OCI_IMAGE_MANIFEST, digest: a.digest, size: a.size, 'com.example.field': 1 }],
    };
    await writeFile(join(root, 'index.json'), JSON.stringify(foreign));
    await store.setTag('example.com/x:y', a);
    const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as Record<string, unknown>;
    expect(index.annotations).toEqual({ 'com.example.note': 'kept' });
    expect(index.manifests).toHaveLength(2);
    expect((await store.listTags()).map((t) => t.name)).toEqual(['example.com/x:y']);
  });

  it('many concurrent setTag calls in one process all land', async () => {
    const store = await openStore(root);
    const other = await openStore(root); // a second handle shares the in-process queue
    const a = await manifestBlob(store);
    await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? store : other).setTag(`example.com/many:t${i}`, a)));
    expect(await store.listTags()).toHaveLength(30);
  });
});

describe('meta', () => {
  it('reads, writes and updates JSON documents atomically', async () => {
    const store = await openStore(root);
    expect(await store.readMeta('step-cache')).toBeUndefined();
    await store.writeMeta('step-cache', { entries: { k: 'v' } });
    expect(await store.readMeta('step-cache')).toEqual({ entries: { k: 'v' } });
    await Promise.all(
      Array.from({ length: 10 }, () => store.updateMeta('counter', (cur) => (typeof cur === 'number' ? cur : 0) + 1)),
    );
    expect(await (await openStore(root)).readMeta('counter')).toBe(10);
    expect(await codeOf(store.writeMeta('../escape', 1))).toBe('USAGE');
    expect(await codeOf(store.readMeta('Upper'))).toBe('USAGE');
    await writeFile(join(root, 'meta', 'broken.json'), '{');
    expect(await codeOf(store.readMeta('broken'))).toBe('STORE_CORRUPT');
    expect(await codeOf(store.readMeta('step-cache', { maxBytes: 4 }))).toBe('BLOB_TOO_LARGE');
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
  });
});

describe('snapshots', () => {
  it('commit, look up, list and remove', async () => {
    const store = await openStore(root);
    const diffId = sha256Digest('layer one');
    expect(await store.hasSnapshot(diffId)).toBe(false);

    const work = await store.makeTempDir('snapshot');
    await mkdir(join(work, 'etc'));
    await writeFile(join(work, 'etc', 'hostname'), 'box\n');
    expect(await store.commitSnapshot(work, diffId)).toEqual({ committed: true });
    expect(await store.hasSnapshot(diffId)).toBe(true);
    expect(store.snapshotPath(diffId)).toBe(join(root, 'snapshots', diffId.slice(7)));
    expect(await readFile(join(store.snapshotPath(diffId), 'etc', 'hostname'), 'utf8')).toBe('box\n');

    // A second writer of the same diff ID loses quietly and its dir is cleaned up.
    const work2 = await store.makeTempDir('snapshot');
    await writeFile(join(work2, 'x'), 'x');
    expect(await store.commitSnapshot(work2, diffId)).toEqual({ committed: false });
    expect(await readdir(join(root, 'tmp'))).toEqual([]);

    expect(await store.listSnapshots()).toEqual([diffId]);
    expect(await store.removeSnapshot(diffId)).toBe(true);
    expect(await store.removeSnapshot(diffId)).toBe(false);
    expect(await store.hasSnapshot(diffId)).toBe(false);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
  });

  it('removes snapshots containing read-only directories', async () => {
    const store = await openStore(root);
    const diffId = sha256Digest('ro');
    const work = await store.makeTempDir('snapshot');
    await mkdir(join(work, 'proc'), { mode: 0o555 });
    await mkdir(join(work, 'ro'));
    await writeFile(join(work, 'ro', 'f'), 'f');
    const { chmod } = await import('node:fs/promises');
    await chmod(join(work, 'ro'), 0o555);
    await store.commitSnapshot(work, diffId);
    expect(await store.removeSnapshot(diffId)).toBe(true);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
  });

  it('refuses to commit a directory outside the store tmp/', async () => {
    const store = await openStore(root);
    const outside = join(dir, 'elsewhere');
    await mkdir(outside);
    expect(await codeOf(store.commitSnapshot(outside, sha256Digest('x')))).toBe('USAGE');
  });
});
