import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeLayer } from '../layer/index.js';
import { openStore, type Store } from '../store/index.js';
import { layerIndexOf, parseLayerIndexRecord } from './layer-index-cache.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-layer-index-cache-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const entry = { path: 'etc/hostname', type: 'file' as const, mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 3 };

describe('layer-index record', () => {
  it('accepts a whole LayerIndex and refuses anything less', () => {
    const good = { entries: [entry, { ...entry, path: 'bin/sh', type: 'symlink', size: 0, linkTarget: 'busybox' }], whiteouts: ['tmp/x'], opaqueDirs: [] };
    expect(parseLayerIndexRecord(good)).toEqual(good);
    expect(parseLayerIndexRecord({ ...good, whiteouts: undefined })).toBeUndefined();
    expect(parseLayerIndexRecord({ ...good, entries: [{ ...entry, type: 'socket' }] })).toBeUndefined();
    expect(parseLayerIndexRecord({ ...good, entries: [{ ...entry, mode: '644' }] })).toBeUndefined();
    expect(parseLayerIndexRecord({ ...good, entries: [{ ...entry, linkTarget: 5 }] })).toBeUndefined();
    expect(parseLayerIndexRecord(undefined)).toBeUndefined();
    expect(parseLayerIndexRecord([])).toBeUndefined();
  });

  it('a damaged record is read again from the layer blob', async () => {
    const out = new PassThrough();
    const put = store.blobs.putBlob(out);
    await writeLayer([{ ...entry, source: () => Readable.from([Buffer.from('box')]) }], out);
    const { digest } = await put;
    await store.writeMeta(`layer-index.${digest.slice(7)}`, { entries: [{ path: 'wrong' }], whiteouts: [], opaqueDirs: [] });
    const index = await layerIndexOf(store, digest);
    expect(index.entries.find((e) => e.path === 'etc/hostname')).toMatchObject({ type: 'file', size: 3, mode: 0o644 });
    expect(index.entries.some((e) => e.path === 'wrong')).toBe(false);
    expect(parseLayerIndexRecord(await store.readMeta(`layer-index.${digest.slice(7)}`))).toEqual(index);
  });
});
