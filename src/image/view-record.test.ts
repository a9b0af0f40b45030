import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../oci/index.js';
import { openStore, type Store } from '../store/index.js';
import { RootfsView, type IndexedEntry } from './rootfs-view.js';
import { MAX_RECORDED_FILE, parseViewRecord, readViewRecord, saveViewRecord } from './view-record.js';

const A = `sha256:${'a'.repeat(64)}` as Digest;
const B = `sha256:${'b'.repeat(64)}` as Digest;
const dir = (p: string): IndexedEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0 });
const link = (p: string, target: string): IndexedEntry => ({ path: p, type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: 0, size: 0, linkTarget: target });

let tmp: string;
let store: Store;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-view-record-'));
  store = await openStore(path.join(tmp, 'store'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('view records', () => {
  it('keep the lookups of a stack of layers, and grow with new ones', async () => {
    const view = new RootfsView([{ entries: [dir('real'), link('link', 'real')], whiteouts: [], opaqueDirs: [] }, { entries: [dir('app')], whiteouts: [], opaqueDirs: [] }]);
    expect(await readViewRecord(store, [A, B])).toBeUndefined();
    view.resolve('link/sub');
    await saveViewRecord(store, [A, B], { lookups: view.lookups() }, undefined);
    const first = (await readViewRecord(store, [A, B]))!.lookups;
    expect([...first.keys()].sort()).toEqual(['link', 'real', 'real/sub']);
    expect(first.get('real/sub')).toBeUndefined();
    expect(first.get('link')).toMatchObject({ type: 'symlink', linkTarget: 'real', layer: 0 });
    // Another stack (the same layers in another order) has a record of its own.
    expect(await readViewRecord(store, [B, A])).toBeUndefined();
    // A replayed view answers the same; a new question goes to a real view, whose answers are added.
    expect(RootfsView.replay(first).resolve('link/sub')).toEqual(view.resolve('link/sub'));
    const second = new RootfsView([{ entries: [dir('real'), link('link', 'real')], whiteouts: [], opaqueDirs: [] }, { entries: [dir('app')], whiteouts: [], opaqueDirs: [] }]);
    second.lstat('app');
    await saveViewRecord(store, [A, B], { lookups: second.lookups() }, await readViewRecord(store, [A, B]));
    const merged = (await readViewRecord(store, [A, B]))!.lookups;
    expect([...merged.keys()].sort()).toEqual(['app', 'link', 'real', 'real/sub']);
    expect(merged.get('app')).toMatchObject({ type: 'dir', layer: 1 });
  });

  it('merge what two builds that read no record found', async () => {
    const layers = [{ entries: [dir('a'), dir('b')], whiteouts: [], opaqueDirs: [] }];
    const one = new RootfsView(layers);
    one.lstat('a');
    const two = new RootfsView(layers);
    two.lstat('b');
    await saveViewRecord(store, [B], { lookups: one.lookups() }, undefined);
    await saveViewRecord(store, [B], { lookups: two.lookups(), files: [['/etc/passwd', 'root:x:0:0::/root:/bin/sh\n']] }, undefined);
    const record = (await readViewRecord(store, [B]))!;
    expect([...record.lookups.keys()].sort()).toEqual(['a', 'b']);
    expect([...record.files]).toEqual([['/etc/passwd', 'root:x:0:0::/root:/bin/sh\n']]);
  });

  it('are taken whole or not at all', () => {
    const entry = { ...dir('x'), layer: 0 };
    expect(parseViewRecord({ layers: [A], lookups: [['x', entry], ['y', null]] }, [A])?.lookups.size).toBe(2);
    expect(parseViewRecord({ layers: [A], lookups: [['x', entry]] }, [B])).toBeUndefined(); // other layers
    expect(parseViewRecord({ layers: [A], lookups: [['x', { ...entry, layer: 1 }]] }, [A])).toBeUndefined(); // no layer 1
    expect(parseViewRecord({ layers: [A], lookups: [['x', { ...entry, type: 'fifo' }]] }, [A])).toBeUndefined();
    expect(parseViewRecord({ layers: [A], lookups: [['', entry]] }, [A])).toBeUndefined();
    expect(parseViewRecord({ layers: [A], lookups: [['x']] }, [A])).toBeUndefined();
    expect(parseViewRecord({ layers: [A] }, [A])).toBeUndefined();
    expect(parseViewRecord('garbage', [A])).toBeUndefined();
    // Files: text or null (none there), nothing else, nothing long.
    expect(parseViewRecord({ layers: [A], lookups: [], files: [['/etc/group', null], ['/etc/passwd', 'x']] }, [A])?.files.size).toBe(2);
    expect(parseViewRecord({ layers: [A], lookups: [], files: [['/etc/passwd', 7]] }, [A])).toBeUndefined();
    expect(parseViewRecord({ layers: [A], lookups: [], files: [['/etc/passwd', 'x'.repeat(MAX_RECORDED_FILE + 1)]] }, [A])).toBeUndefined();
    expect(parseViewRecord({ layers: [A], lookups: [], files: {} }, [A])).toBeUndefined();
  });

  it('keep no file longer than a few KiB: it is read from its layer each time', async () => {
    const C = `sha256:${'c'.repeat(64)}` as Digest;
    await saveViewRecord(store, [C], { files: [['/etc/big', 'x'.repeat(MAX_RECORDED_FILE + 1)]] }, undefined);
    expect(await readViewRecord(store, [C])).toBeUndefined();
    await saveViewRecord(store, [C], { files: [['/etc/small', 'x'], ['/etc/none', undefined]] }, undefined);
    expect([...(await readViewRecord(store, [C]))!.files].sort()).toEqual([['/etc/none', undefined], ['/etc/small', 'x']]);
  });
});
