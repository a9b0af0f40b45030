import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { hostFilesystem } from '../snapshot/index.js';
import { openStore, type Store } from '../store/index.js';
import { packCacheMount, restoreCacheMount, treeStamp } from './cache-mount-blob.js';
import { cacheDir } from './run-mounts.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-cache-mount-blob-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Every entry of a tree: type, mode, owner, link target or content hash (GNU find, not our walk). */
function tree(dir: string): string[] {
  const out = execFileSync('find', ['.', '-mindepth', '1', '-printf', '%y %m %U:%G %p %l\\n'], { cwd: dir, encoding: 'utf8' }).trim().split('\n');
  return out.sort().map((line) => {
    const p = line.split(' ')[3]!;
    return line.startsWith('f ') ? `${line} ${execFileSync('sha256sum', [p], { cwd: dir, encoding: 'utf8' }).slice(0, 12)}` : line;
  });
}

async function fillMount(store: Store, id: string): Promise<string> {
  const dir = cacheDir(store, id);
  await fs.mkdir(path.join(dir, 'pkgs/a'), { recursive: true });
  await fs.writeFile(path.join(dir, 'pkgs/a/index.json'), '{"a":1}\n');
  await fs.writeFile(path.join(dir, 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
  await fs.symlink('pkgs/a/index.json', path.join(dir, 'latest'));
  await fs.chmod(path.join(dir, 'pkgs'), 0o750);
  await fs.chown(path.join(dir, 'pkgs/a/index.json'), 1000, 1000);
  return dir;
}

describe('a cache mount as a blob', () => {
  it('packs into a verified blob and restores, on another store, the same tree', async () => {
    const hostFs = await hostFilesystem();
    const one = await openStore(path.join(tmp, 'one'));
    const src = await fillMount(one, 'npm');
    const packed = await packCacheMount(one, 'npm', { hostFs });
    expect(packed).toBeDefined();
    // The blob's name is the digest of its bytes (GNU tar reads it: the mount's root first).
    const blobPath = one.blobs.blobPath(packed!.diffId);
    expect(`sha256:${createHash('sha256').update(await fs.readFile(blobPath)).digest('hex')}`).toBe(packed!.diffId);
    expect(execFileSync('tar', ['-tf', blobPath], { encoding: 'utf8' }).split('\n')[0]).toBe('cache/');

    // A second machine: the blob arrives by digest, the mount comes back whole.
    const two = await openStore(path.join(tmp, 'two'));
    await two.blobs.putBlob(await one.blobs.openBlob(packed!.diffId), { expected: { digest: packed!.diffId, size: packed!.size } });
    expect(await restoreCacheMount(two, 'npm', packed!.diffId, { hostFs })).toBe('restored');
    const restored = cacheDir(two, 'npm');
    expect(tree(restored)).toEqual(tree(src));
    expect((await fs.stat(restored)).mode & 0o7777).toBe((await fs.stat(src)).mode & 0o7777);
    expect((await fs.readdir(path.dirname(restored))).filter((n) => n.includes('.restore-'))).toEqual([]);

    // A mount that has content already is kept; an empty or missing one has nothing to export.
    await fs.writeFile(path.join(restored, 'local-only'), 'x');
    expect(await restoreCacheMount(two, 'npm', packed!.diffId, { hostFs })).toBe('kept');
    expect(await fs.readFile(path.join(restored, 'local-only'), 'utf8')).toBe('x');
    expect(await packCacheMount(one, 'never-used', { hostFs })).toBeUndefined();
  });

  it('leaves nothing half-written when a restore fails: the mount stays absent', async () => {
    const hostFs = await hostFilesystem();
    const store = await openStore(path.join(tmp, 'bad'));
    // A blob that is a tar but not a packed mount (no cache/ directory).
    const other = path.join(tmp, 'other');
    await fs.mkdir(other);
    await fs.writeFile(path.join(other, 'x'), 'y');
    execFileSync('tar', ['-cf', path.join(tmp, 'other.tar'), '-C', other, 'x']);
    const put = await store.blobs.putBlob((await fs.open(path.join(tmp, 'other.tar'))).createReadStream());
    await expect(restoreCacheMount(store, 'pip', put.digest, { hostFs })).rejects.toMatchObject({ code: 'LAYER_INVALID' });
    const dir = cacheDir(store, 'pip');
    await expect(fs.stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await fs.readdir(path.dirname(dir))).filter((n) => n.includes('.restore-'))).toEqual([]);
  });

  it('stamps a tree by stat alone: equal while nothing changes, different after any write, even one that puts the size and mtime back', async () => {
    const store = await openStore(path.join(tmp, 'stamp'));
    const dir = await fillMount(store, 'stamp');
    const first = await treeStamp(dir);
    expect(await treeStamp(dir)).toBe(first);
    // Read, not written: the same.
    await fs.readFile(path.join(dir, 'big.bin'));
    expect(await treeStamp(dir)).toBe(first);
    // Same size, same mtime set back: the ctime moved.
    const file = path.join(dir, 'pkgs/a/index.json');
    const before = await fs.stat(file);
    await fs.writeFile(file, '{"a":2}\n');
    await fs.utimes(file, before.atime, before.mtime);
    const rewritten = await treeStamp(dir);
    expect(rewritten).not.toBe(first);
    // A mode, a new entry, a removed one: each a new stamp.
    await fs.chmod(path.join(dir, 'big.bin'), 0o600);
    const chmodded = await treeStamp(dir);
    expect(chmodded).not.toBe(rewritten);
    await fs.writeFile(path.join(dir, 'new'), '');
    const added = await treeStamp(dir);
    expect(added).not.toBe(chmodded);
    await fs.rm(path.join(dir, 'new'));
    expect(await treeStamp(dir)).not.toBe(added);
  });
});
