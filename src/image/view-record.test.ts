import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../oci/index.js';
import { openStore, type Store } from '../store/index.js';
import { RootfsView, type IndexedEntry } from './rootfs-view.js';
import { parseViewRecord, readViewRecord, saveViewRecord } from './view-record.js';

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
    await saveViewRecord(store, [A, B], view, undefined);
    const first = await readViewRecord(store, [A, B]);
    expect([...first!.keys()].sort()).toEqual(['link', 'real', 'real/sub']);
    expect(first!.get('real/sub')).toBeUndefined();
    expect(first!.get('link')).toMatchObject({ type: 'symlink', linkTarget: 'real', layer: 0 });
    // Another stack (the same layers in another order) has a record of its own.
    expect(await readViewRecord(store, [B, A])).toBeUndefined();
    // A replayed view answers the same; a new question goes to a real view, whose answers are added.
    expect(RootfsView.replay(first!).resolve('link/sub')).toEqual(view.resolve('link/sub'));
    const second = new RootfsView([{ entries: [dir('real'), link('link', 'real')], whiteouts: [], opaqueDirs: [] }, { entries: [dir('app')], whiteouts: [], opaqueDirs: [] }]);
    second.lstat('app');
    await saveViewRecord(store, [A, B], second, first);
    const merged = await readViewRecord(store, [A, B]);
    expect([...merged!.keys()].sort()).toEqual(['app', 'link', 'real', 'real/sub']);
    expect(merged!.get('app')).toMatchObject({ type: 'dir', layer: 1 });
  });

  it('merge what two builds that read no record found', async () => {
    const layers = [{ entries: [dir('a'), dir('b')], whiteouts: [], opaqueDirs: [] }];
    const one = new RootfsView(layers);
    one.lstat('a');
    const two = new RootfsView(layers);
    two.lstat('b');
    await saveViewRecord(store, [B], one, undefined);
    await saveViewRecord(store, [B], two, undefined);
    expect([...(await readViewRecord(store, [B]))!.keys()].sort()).toEqual(['a', 'b']);
  });

  it('are taken whole or not at all', () => {
    const entry = { ...dir('x'), layer: 0 };
    expect(parseViewRecord({ layers: [A], lookups: [['x', entry], ['y', null]] }, [A])?.size).toBe(2);
    expect(parseViewRecord({ layers: [A], lookups: [['x', entry]] }, [B])).toBeUndefined(); // other layers
    expect(parseViewRecord({ layers: [A], lookups: [['x', { ...entry, layer: 1 }]] }, [A])).toBeUndefined(); // no layer 1
    expect(parseViewRecord({ layers: [A], lookups: [['x', { ...entry, type: 'fifo' }]] }, [A])).toBeUndefined();
    expect(parseViewRecord({ layers: [A], lookups: [['', entry]] }, [A])).toBeUndefined();
    expect(parseViewRecord({ layers: [A], lookups: [['x']] }, [A])).toBeUndefined();
    expect(parseViewRecord({ layers: [A] }, [A])).toBeUndefined();
    expect(parseViewRecord('garbage', [A])).toBeUndefined();
  });
});
