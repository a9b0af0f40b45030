import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { compressLayer } from './compress.js';
import { layerFromDirectory } from './layer-from-directory.js';
import { encodeHeader } from './tar-header.js';
import { snapshotTree } from './test-tree-snapshot.js';
import { layerTarChunks, layerTarStream, writeLayer, type LayerEntry } from './write-layer.js';

const isRoot = process.getuid?.() === 0;
let tmp: string;

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'tsb-wl-'));
});
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

/** A Writable that throws the bytes away (digests come back from writeLayer). */
function nullSink(): Writable {
  return new Writable({ write: (_c, _e, cb) => cb() });
}

const LONG = `${'long-directory-name-'.repeat(4)}x/${'very-long-file-name-'.repeat(4)}end.txt`; // > 100 bytes
const UNI = 'dir/ünïcødé-名前.txt';

function sampleEntries(): LayerEntry[] {
  const text = (s: string): Pick<LayerEntry, 'size' | 'source'> => ({ size: Buffer.byteLength(s), source: () => Readable.from([Buffer.from(s)]) });
  return [
    { path: 'tmp', type: 'dir', mode: 0o1777, uid: 0, gid: 0, mtime: 1_600_000_000 },
    { path: 'dir', type: 'dir', mode: 0o2755, uid: 10, gid: 20, mtime: 1_600_000_001 },
    { path: 'dir/suid', type: 'file', mode: 0o4755, uid: 1234, gid: 5678, mtime: 1_600_000_002, ...text('#!/bin/sh\necho hi\n') },
    { path: 'dir/hard', type: 'hardlink', mode: 0o4755, uid: 1234, gid: 5678, mtime: 1_600_000_002, linkTarget: 'dir/suid' },
    { path: 'dir/link', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: 1_600_000_003, linkTarget: '../tmp/nowhere' },
    { path: 'empty', type: 'file', mode: 0o600, uid: 3_000_000, gid: 3_000_001, mtime: 1_600_000_004 },
    { path: UNI, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_005, ...text('unicode\n') },
    { path: 'long-directory-name-long-directory-name-long-directory-name-long-directory-name-x', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 1_600_000_006 },
    { path: LONG, type: 'file', mode: 0o640, uid: 1, gid: 2, mtime: 1_600_000_007, ...text('long\n') },
    { path: 'fifo', type: 'fifo', mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_008 },
    { path: 'xattr-file', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_009, xattrs: { 'user.test': Buffer.from('value') }, ...text('x') },
  ];
}

/** Names of a tar's entries, in order (the ustar name, or the PAX path record in front). */
function tarNames(tar: Buffer): string[] {
  const names: string[] = [];
  let paxPath: string | undefined;
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const field = (from: number, len: number): string => h.subarray(from, from + len).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (String.fromCharCode(h[156]!) === 'x') {
      const records = tar.subarray(off + 512, off + 512 + size).toString('utf8');
      paxPath = /\d+ path=([^\n]*)\n/.exec(records)?.[1];
    } else {
      names.push(paxPath ?? field(0, 100));
      paxPath = undefined;
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

describe('writeLayer', () => {
  it('orders entries component-wise in UTF-8 byte order, whatever the characters', async () => {
    // "/" must sort before every other character ("a/b" before "a.b" and "a-"), and characters
    // above U+FFFF (UTF-16 surrogates) after U+E000..U+FFFF, as in UTF-8.
    const paths = ['a', 'a/b', 'a.b', 'a-', 'a/b/c', 'ab', 'a\u{1F600}', 'a\uFF01', 'a\uE000', 'aé', 'a~', 'a b', 'b', 'a/.wh-ish', 'a/b.c', 'a/b/c.d'];
    const dirs = new Set(['a', 'a/b']);
    const entries: LayerEntry[] = paths.map((p) => ({ path: p, type: dirs.has(p) ? 'dir' : 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0 }));
    entries.push({ path: 'a/b', type: 'opaque', mode: 0, uid: 0, gid: 0, mtime: 0 }, { path: 'a/gone', type: 'whiteout', mode: 0, uid: 0, gid: 0, mtime: 0 });
    const chunks: Buffer[] = [];
    for await (const c of layerTarChunks([...entries].reverse())) chunks.push(Buffer.from(c));
    const expected = entries
      .map((e) => {
        const name = e.type === 'dir' ? `${e.path}/` : e.type === 'opaque' ? `${e.path}/.wh..wh..opq` : e.type === 'whiteout' ? 'a/.wh.gone' : e.path;
        const key = e.type === 'opaque' ? `${e.path}/` : e.type === 'whiteout' ? 'a/.wh.gone' : e.path;
        return { name, key: Buffer.from(key.split('/').join('\0')) };
      })
      .sort((x, y) => Buffer.compare(x.key, y.key))
      .map((x) => x.name);
    expect(tarNames(Buffer.concat(chunks))).toEqual(expected);
  });

  it('layerTarChunks gives the bytes writeLayer writes', async () => {
    const chunks: Buffer[] = [];
    for await (const c of layerTarChunks(sampleEntries(), { sourceDateEpoch: 1_600_000_003 })) chunks.push(Buffer.from(c));
    const bytes = Buffer.concat(chunks);
    const out: Buffer[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, cb) => { out.push(c); cb(); } });
    const written = await writeLayer(sampleEntries(), sink, { sourceDateEpoch: 1_600_000_003 });
    expect(bytes.equals(Buffer.concat(out))).toBe(true);
    expect(bytes.length).toBe(written.size);
  });

  it('is deterministic: same tree twice, any input order -> same diff ID', async () => {
    const a = await writeLayer(sampleEntries(), nullSink());
    const b = await writeLayer(sampleEntries().reverse(), nullSink());
    expect(b).toEqual(a);
    expect(a.size % 512).toBe(0);
  });

  it('captures a directory deterministically and clamps mtimes to SOURCE_DATE_EPOCH', async () => {
    const root = path.join(tmp, 'det');
    await fsp.mkdir(path.join(root, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(root, 'sub', 'f'), 'content');
    await fsp.writeFile(path.join(root, 'g'), 'more');
    await fsp.link(path.join(root, 'g'), path.join(root, 'sub', 'g-link'));
    await fsp.symlink('sub/f', path.join(root, 'ln'));
    const epoch = 1_000_000_000;
    const once = () => writeLayer(layerFromDirectory(root), nullSink());
    const clamped = () => writeLayer(layerFromDirectory(root), nullSink(), { sourceDateEpoch: epoch });
    const [a1, a2, c1] = [await once(), await once(), await clamped()];
    expect(a2.diffId).toBe(a1.diffId);
    // Touch everything: unclamped digest changes, clamped one does not.
    const later = new Date(Date.now() + 5_000_000);
    for (const p of ['sub/f', 'g', 'sub']) await fsp.utimes(path.join(root, p), later, later);
    expect((await once()).diffId).not.toBe(a1.diffId);
    expect((await clamped()).diffId).toBe(c1.diffId);
    const out = path.join(tmp, 'det.tar');
    await writeLayer(layerFromDirectory(root), createWriteStream(out), { sourceDateEpoch: epoch });
    const listing = execFileSync('tar', ['--full-time', '--numeric-owner', '-tvf', out], { encoding: 'utf8' });
    expect(listing).toContain('2001-09-09 01:46:40 sub/');
    expect(listing).toMatch(/^h.* sub\/g-link link to g$/m); // 'g' sorts before 'sub/g-link'
    expect(listing).not.toContain('./');
  });

  it('writes tars GNU tar lists and extracts exactly (modes, owners, links, long and non-ASCII names)', async () => {
    const file = path.join(tmp, 'sample.tar');
    await writeLayer(sampleEntries(), createWriteStream(file));
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', file], { encoding: 'utf8' });
    expect(listing).toMatch(/^drwxrwxrwt 0\/0 .* tmp\/$/m);
    expect(listing).toMatch(/^drwxr-sr-x 10\/20 .* dir\/$/m);
    // 'dir/hard' sorts first, so it carries the content and 'dir/suid' links to it.
    expect(listing).toMatch(/^-rwsr-xr-x 1234\/5678 .* dir\/hard$/m);
    expect(listing).toMatch(/^hrwsr-xr-x 1234\/5678 .* dir\/suid link to dir\/hard$/m);
    expect(listing).toContain(`${LONG}\n`);
    expect(listing).toContain(UNI);
    expect(listing).toMatch(/^-rw------- 3000000\/3000001 .* empty$/m);
    expect(listing).toMatch(/^prw-r--r-- 0\/0 .* fifo$/m);

    const out = path.join(tmp, 'gnu-out');
    await fsp.mkdir(out);
    execFileSync('tar', ['--numeric-owner', ...(isRoot ? ['--same-owner'] : []), '--same-permissions', '-xf', file, '-C', out]);
    const snap = await snapshotTree(out);
    const expectOwner = (uid: number, gid: number) => (isRoot ? { uid, gid } : {});
    expect(snap.get('tmp')).toMatchObject({ type: 'dir', mode: 0o1777, mtime: 1_600_000_000, ...expectOwner(0, 0) });
    expect(snap.get('dir')).toMatchObject({ type: 'dir', mode: 0o2755, mtime: 1_600_000_001, ...expectOwner(10, 20) });
    expect(snap.get('dir/suid')).toMatchObject({ type: 'file', mode: 0o4755, size: 18, ...expectOwner(1234, 5678) });
    expect(snap.get('dir/suid')).toMatchObject({ type: 'file', hardlinkOf: 'dir/hard' });
    expect(snap.get('dir/link')).toMatchObject({ type: 'symlink', linkTarget: '../tmp/nowhere' });
    expect(snap.get('empty')).toMatchObject({ type: 'file', size: 0, mode: 0o600, ...expectOwner(3_000_000, 3_000_001) });
    expect(snap.get('fifo')).toMatchObject({ type: 'fifo' });
    expect(await fsp.readFile(path.join(out, UNI), 'utf8')).toBe('unicode\n');
    expect(await fsp.readFile(path.join(out, LONG), 'utf8')).toBe('long\n');
    expect(snap.get(LONG)).toMatchObject({ mode: 0o640, mtime: 1_600_000_007 });
  });

  it('writes xattrs as SCHILY.xattr PAX records that GNU tar restores', async () => {
    const file = path.join(tmp, 'xattr.tar');
    await writeLayer(sampleEntries(), createWriteStream(file));
    const out = path.join(tmp, 'xattr-out');
    await fsp.mkdir(out);
    execFileSync('tar', ['--xattrs', '--xattrs-include=user.*', '-xf', file, '-C', out, 'xattr-file']);
    expect(execFileSync('getfattr', ['--only-values', '-n', 'user.test', path.join(out, 'xattr-file')], { encoding: 'utf8' })).toBe('value');
  });

  it('refuses content that does not match the declared size, and bad paths', async () => {
    const bad: LayerEntry = { path: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 10, source: () => Readable.from([Buffer.from('short')]) };
    await expect(writeLayer([bad], nullSink())).rejects.toMatchObject({ code: 'LAYER_INVALID' });
    await expect(writeLayer([{ ...bad, size: 2 }], nullSink())).rejects.toMatchObject({ code: 'LAYER_INVALID' });
    await expect(writeLayer([{ ...bad, path: 'a/../b' }], nullSink())).rejects.toMatchObject({ code: 'LAYER_INVALID' });
    await expect(writeLayer([{ ...bad, size: 5 }, { ...bad, size: 5 }], nullSink())).rejects.toMatchObject({ code: 'LAYER_INVALID' });
  });

  it('honours an aborted signal', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(writeLayer(sampleEntries(), nullSink(), { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('puts sizes over 8 GiB, big uids and non-ASCII names into PAX records', () => {
    const buf = encodeHeader({ name: 'big', typeflag: '0', mode: 0o644, uid: 5_000_000, gid: 0, size: 9 * 1024 ** 3, mtime: 0, linkname: '', uname: 'ü', gname: '', devmajor: 0, devminor: 0 });
    const text = buf.toString('latin1');
    expect(buf[156]).toBe('x'.charCodeAt(0));
    expect(text).toContain(`size=${9 * 1024 ** 3}\n`);
    expect(text).toContain('uid=5000000\n');
    expect(buf.subarray(512).toString('utf8')).toContain('uname=ü\n');
    // The ustar header after the PAX data carries size 0 (PAX wins) and the short name.
    const main = buf.subarray(buf.length - 512);
    expect(main.subarray(0, 3).toString()).toBe('big');
    expect(main.subarray(124, 135).toString()).toBe('00000000000');
  });

  it('GNU tar reads the size of a 9 GiB entry from its PAX header (sparse archive)', async () => {
    // The header, then 9 GiB of content and the end-of-archive blocks as a hole: GNU tar
    // seeks over the content of a regular file, so this costs no disk and no time.
    const size = 9 * 1024 ** 3;
    const header = encodeHeader({ name: 'big', typeflag: '0', mode: 0o644, uid: 0, gid: 0, size, mtime: 0, linkname: '', uname: '', gname: '', devmajor: 0, devminor: 0 });
    const file = path.join(tmp, 'sparse-big.tar');
    await fsp.writeFile(file, header);
    await fsp.truncate(file, header.length + size + 1024);
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', file], { encoding: 'utf8' });
    expect(listing).toMatch(new RegExp(`^-rw-r--r-- 0/0 +${size} .* big$`, 'm'));
  });
});

describe('compression', () => {
  it('gzip: deterministic, no timestamp or name, gzip -t valid, diff ID = sha256 of gunzip -c', async () => {
    const f1 = path.join(tmp, 'l1.tar.gz');
    const f2 = path.join(tmp, 'l2.tar.gz');
    const r1 = await compressLayer(layerTarStream(sampleEntries()), createWriteStream(f1), { compression: 'gzip' });
    const r2 = await compressLayer(layerTarStream(sampleEntries().reverse()), createWriteStream(f2), { compression: 'gzip' });
    expect(r2).toEqual(r1);
    const head = (await fsp.readFile(f1)).subarray(0, 10);
    expect([...head.subarray(0, 4)]).toEqual([0x1f, 0x8b, 8, 0]); // FLG 0: no name, comment, extra
    expect(head.readUInt32LE(4)).toBe(0); // MTIME 0
    execFileSync('gzip', ['-t', f1]);
    const sha = (cmd: string) => `sha256:${execFileSync('sh', ['-c', cmd], { encoding: 'utf8' }).split(' ')[0]}`;
    expect(sha(`gunzip -c '${f1}' | sha256sum`)).toBe(r1.diffId);
    expect(sha(`sha256sum '${f1}'`)).toBe(r1.digest);
    expect(r1.size).toBe((await fsp.stat(f1)).size);
    expect(r1.diffId).toBe((await writeLayer(sampleEntries(), nullSink())).diffId);
    // Compressing the stored uncompressed layer gives the same blob and checks its diff ID.
    const plain = path.join(tmp, 'l.tar');
    await writeLayer(sampleEntries(), createWriteStream(plain));
    const r3 = await compressLayer(createReadStream(plain), nullSink(), { compression: 'gzip' });
    expect(r3).toEqual(r1);
  });

  it('zstd (the zstd program, -T0): deterministic, zstd -t valid, diff ID = sha256 of zstd -dc, media type by level', async () => {
    const f1 = path.join(tmp, 'l1.tar.zst');
    const f2 = path.join(tmp, 'l2.tar.zst');
    const r1 = await compressLayer(layerTarStream(sampleEntries()), createWriteStream(f1), { compression: 'zstd' });
    const r2 = await compressLayer(layerTarStream(sampleEntries()), createWriteStream(f2), { compression: 'zstd' });
    expect(r2).toEqual(r1);
    expect([...(await fsp.readFile(f1)).subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);
    execFileSync('zstd', ['-q', '-t', f1]);
    const sha = (cmd: string) => `sha256:${execFileSync('sh', ['-c', cmd], { encoding: 'utf8' }).split(' ')[0]}`;
    expect(sha(`zstd -dc '${f1}' | sha256sum`)).toBe(r1.diffId);
    expect(sha(`sha256sum '${f1}'`)).toBe(r1.digest);
    expect(r1.diffId).toBe((await writeLayer(sampleEntries(), nullSink())).diffId);
    // Another level, other bytes; a level out of range is a usage error.
    const r19 = await compressLayer(layerTarStream(sampleEntries()), nullSink(), { compression: 'zstd', level: 19 });
    expect(r19.diffId).toBe(r1.diffId);
    expect(r19.digest).not.toBe(r1.digest);
    await expect(compressLayer(layerTarStream(sampleEntries()), nullSink(), { compression: 'zstd', level: 23 })).rejects.toMatchObject({ code: 'USAGE' });
  });
});
