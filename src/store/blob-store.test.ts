import { createHash } from 'node:crypto';
import { chmod, mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAbortError, isTsbuildError } from '../errors.js';
import { parseDigest, sha256Digest, type Digest } from '../oci/index.js';
import { openStore, type Store } from './index.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-blob-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Deterministic pseudo-random chunks (so content does not compress or repeat trivially). */
function* chunks(total: number, chunkSize = 256 * 1024): Generator<Buffer> {
  let seed = createHash('sha256').update('seed').digest();
  for (let off = 0; off < total; off += chunkSize) {
    const n = Math.min(chunkSize, total - off);
    const parts: Buffer[] = [];
    for (let got = 0; got < n; got += 32) {
      seed = createHash('sha256').update(seed).digest();
      parts.push(seed);
    }
    yield Buffer.concat(parts).subarray(0, n);
  }
}

function digestOfChunks(total: number): Digest {
  const h = createHash('sha256');
  for (const c of chunks(total)) h.update(c);
  return parseDigest(`sha256:${h.digest('hex')}`);
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isTsbuildError(e)) return e.code;
    if (isAbortError(e)) return 'ABORT';
    throw e;
  }
  return 'OK';
}

async function entries(sub: string): Promise<string[]> {
  return readdir(join(store.root, sub));
}

describe('BlobStore', () => {
  it('round-trips a multi-MB stream', async () => {
    const size = 9 * 1024 * 1024 + 123;
    const want = digestOfChunks(size);
    const info = await store.blobs.putBlob(Readable.from(chunks(size)), { expected: { digest: want, size } });
    expect(info).toEqual({ digest: want, size });
    expect(await store.blobs.hasBlob(want)).toBe(true);
    expect((await store.blobs.statBlob(want))?.size).toBe(size);
    expect(store.blobs.blobPath(want)).toBe(join(store.root, 'blobs', 'sha256', want.slice(7)));

    const h = createHash('sha256');
    for await (const c of await store.blobs.openBlob(want)) h.update(c as Buffer);
    expect(`sha256:${h.digest('hex')}`).toBe(want);

    expect(await store.blobs.verifyBlob(want)).toEqual({ ok: true, actual: want, size });
    expect(await store.blobs.listBlobs()).toEqual([want]);
    expect(await codeOf(store.blobs.readBlobBytes(want, { maxBytes: 1024 }))).toBe('BLOB_TOO_LARGE');
    expect(await entries('tmp')).toEqual([]);

    expect(await store.blobs.deleteBlob(want)).toBe(true);
    expect(await store.blobs.deleteBlob(want)).toBe(false);
    expect(await store.blobs.hasBlob(want)).toBe(false);
    expect(await codeOf(store.blobs.openBlob(want))).toBe('BLOB_NOT_FOUND');
    expect(await codeOf(store.blobs.readBlobBytes(want, { maxBytes: 1 }))).toBe('BLOB_NOT_FOUND');
  });

  it('syncs a big blob to disk while it is written, not only when it is sealed', async () => {
    const total = 40 * 1024 * 1024;
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void>; sync: () => Promise<void> };
    await probe.close();
    const { datasync, sync } = proto;
    const calls: string[] = [];
    proto.datasync = function (this: unknown) {
      calls.push('datasync');
      return datasync.call(this);
    };
    proto.sync = function (this: unknown) {
      calls.push('sync');
      return sync.call(this);
    };
    try {
      const info = await store.blobs.putBlob(Readable.from(chunks(total)), { expected: { digest: digestOfChunks(total), size: total } });
      expect(info.size).toBe(total);
    } finally {
      proto.datasync = datasync;
      proto.sync = sync;
    }
    // Every 16 MiB written, then the sealing fsync: its data is on disk before the rename.
    expect(calls.filter((c) => c === 'datasync').length).toBeGreaterThanOrEqual(2);
    expect(calls.at(-1)).toBe('sync');
  });

  it('stores without an expected digest and reports what it computed', async () => {
    const info = await store.blobs.putBlob(Readable.from([Buffer.from('hello '), Buffer.from('world')]));
    expect(info).toEqual({ digest: sha256Digest('hello world'), size: 11 });
    expect((await store.blobs.readBlobBytes(info.digest, { maxBytes: 100 })).toString()).toBe('hello world');
  });

  it('a digest mismatch leaves nothing behind', async () => {
    const wrong = sha256Digest('something else');
    const err = await store.blobs.putBlob(Readable.from(chunks(3 * 1024 * 1024)), { expected: { digest: wrong } }).catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('DIGEST_MISMATCH');
    expect(isTsbuildError(err) && err.message).toContain(wrong);
    expect(await entries('blobs/sha256')).toEqual([]);
    expect(await entries('tmp')).toEqual([]);
  });

  it('stops early when the source sends more than the expected size', async () => {
    let pulled = 0;
    const source = Readable.from(
      (function* () {
        for (const c of chunks(64 * 1024 * 1024)) {
          pulled += c.length;
          yield c;
        }
      })(),
    );
    expect(await codeOf(store.blobs.putBlob(source, { expected: { digest: sha256Digest('x'), size: 1000 } }))).toBe('DIGEST_MISMATCH');
    expect(pulled).toBeLessThan(8 * 1024 * 1024);
    expect(await entries('blobs/sha256')).toEqual([]);
    expect(await entries('tmp')).toEqual([]);
  });

  it('a size mismatch with the right digest is a mismatch too', async () => {
    const data = Buffer.from('twelve bytes');
    expect(await codeOf(store.blobs.putBlob(Readable.from([data]), { expected: { digest: sha256Digest(data), size: 13 } }))).toBe(
      'DIGEST_MISMATCH',
    );
    expect(await codeOf(store.blobs.putBytes(data, { expected: { digest: sha256Digest(data), size: 11 } }))).toBe('DIGEST_MISMATCH');
    expect(await entries('blobs/sha256')).toEqual([]);
  });

  it('abort mid-stream leaves nothing behind', async () => {
    const ac = new AbortController();
    let sent = 0;
    const source = new Readable({
      read() {
        if (sent < 1024 * 1024) {
          sent += 64 * 1024;
          this.push(Buffer.alloc(64 * 1024, 1));
        } else if (!ac.signal.aborted) {
          // Stall like a slow network, then abort while the write is in flight.
          setTimeout(() => ac.abort(), 20);
        }
      },
    });
    expect(await codeOf(store.blobs.putBlob(source, { signal: ac.signal }))).toBe('ABORT');
    expect(source.destroyed).toBe(true);
    expect(await entries('blobs/sha256')).toEqual([]);
    expect(await entries('tmp')).toEqual([]);
  });

  it('an already aborted signal writes nothing', async () => {
    const ac = new AbortController();
    ac.abort();
    expect(await codeOf(store.blobs.putBlob(Readable.from([Buffer.from('x')]), { signal: ac.signal }))).toBe('ABORT');
    expect(await codeOf(store.blobs.putBytes('x', { signal: ac.signal }))).toBe('ABORT');
    expect(await entries('tmp')).toEqual([]);
  });

  it('a source error mid-stream leaves nothing behind', async () => {
    const source = Readable.from(
      (function* () {
        yield Buffer.alloc(1024 * 1024, 2);
        throw new Error('connection reset');
      })(),
    );
    await expect(store.blobs.putBlob(source)).rejects.toThrow('connection reset');
    expect(await entries('blobs/sha256')).toEqual([]);
    expect(await entries('tmp')).toEqual([]);
  });

  it('a stream that fails before it is read is a rejection, not an uncaught exception', async () => {
    // As in a pull: the registry's 404 reaches a piped stream while the temp file is opened.
    const wire = new PassThrough();
    const piped = new PassThrough();
    wire.pipe(piped);
    const put = store.blobs.putBlob(piped);
    piped.destroy(new Error('blob unknown to registry'));
    await expect(put).rejects.toThrow('blob unknown to registry');
    expect(await entries('tmp')).toEqual([]);
  });

  it('8 concurrent writers of the same content all succeed', async () => {
    const size = 2 * 1024 * 1024;
    const want = digestOfChunks(size);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => store.blobs.putBlob(Readable.from(chunks(size, 16 * 1024)), { expected: { digest: want, size } })),
    );
    for (const r of results) expect(r).toEqual({ digest: want, size });
    expect(await store.blobs.listBlobs()).toEqual([want]);
    expect((await store.blobs.verifyBlob(want)).ok).toBe(true);
    expect(await entries('tmp')).toEqual([]);
  });

  it('putBytes stores small blobs and checks the expected digest', async () => {
    const doc = '{"schemaVersion":2}';
    const info = await store.blobs.putBytes(doc, { expected: { digest: sha256Digest(doc), size: doc.length } });
    expect(await store.blobs.readBlobJson(info.digest, { maxBytes: 100 })).toEqual({ schemaVersion: 2 });
    expect(await codeOf(store.blobs.putBytes('other', { expected: { digest: info.digest } }))).toBe('DIGEST_MISMATCH');
    expect(await codeOf(store.blobs.putBytes('x', { expected: { digest: parseDigest(`sha512:${'a'.repeat(128)}`) } }))).toBe('UNSUPPORTED');
    expect(await entries('tmp')).toEqual([]);
  });

  it('readBlobBytes and verifyBlob notice a blob whose content does not match its name', async () => {
    const info = await store.blobs.putBytes('{"a":1}');
    const path = store.blobs.blobPath(info.digest);
    await chmod(path, 0o644);
    await writeFile(path, '{"a":2}');
    expect(await codeOf(store.blobs.readBlobBytes(info.digest, { maxBytes: 100 }))).toBe('STORE_CORRUPT');
    const v = await store.blobs.verifyBlob(info.digest);
    expect(v.ok).toBe(false);
    expect(v.actual).toBe(sha256Digest('{"a":2}'));
  });

  it('putChunks is done with each chunk before it asks for the next (the producer may reuse it)', async () => {
    // One buffer, refilled after every yield: a consumer that buffered chunks would store the
    // last content several times over.
    const parts = [...chunks(3 * 1024 * 1024, 64 * 1024)];
    async function* reusing(): AsyncGenerator<Buffer> {
      const buf = Buffer.alloc(64 * 1024);
      for (const p of parts) {
        p.copy(buf);
        yield buf.subarray(0, p.length);
        buf.fill(0xee);
      }
    }
    const info = await store.blobs.putChunks(reusing(), { expected: { digest: digestOfChunks(3 * 1024 * 1024) } });
    expect(info.size).toBe(3 * 1024 * 1024);
    expect(sha256Digest(await store.blobs.readBlobBytes(info.digest, { maxBytes: 4 * 1024 * 1024 }))).toBe(info.digest);
  });

  it('putChunks stores chunks of every size around its 256 KiB write buffers from one reused buffer, and nothing when the source fails with a write in flight', async () => {
    const sizes = [1, 511, 262143, 262144, 262145, 700_000, 3, 524288, 100_000, 1_048_576];
    const data = Buffer.alloc(sizes.reduce((a, b) => a + b, 0));
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
    async function* reusing(fail: boolean): AsyncGenerator<Buffer> {
      const buf = Buffer.alloc(1_048_576);
      let off = 0;
      for (const n of sizes) {
        data.copy(buf, 0, off, off + n);
        off += n;
        yield buf.subarray(0, n);
        buf.fill(0xee);
        if (fail && off > 1_500_000) throw new Error('read failed');
      }
    }
    const info = await store.blobs.putChunks(reusing(false));
    expect(info).toEqual({ digest: sha256Digest(data), size: data.length });
    expect((await store.blobs.readBlobBytes(info.digest, { maxBytes: 4 * 1024 * 1024 })).equals(data)).toBe(true);
    await store.blobs.deleteBlob(info.digest);
    await expect(store.blobs.putChunks(reusing(true))).rejects.toThrow('read failed');
    expect(await entries('tmp')).toEqual([]);
  });

  it('putChunks leaves nothing behind on a mismatch, a source error or an abort', async () => {
    expect(await codeOf(store.blobs.putChunks(Readable.from(chunks(1024 * 1024)), { expected: { digest: sha256Digest('x') } }))).toBe('DIGEST_MISMATCH');
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from('partial');
      throw new Error('read failed');
    }
    await expect(store.blobs.putChunks(failing())).rejects.toThrow('read failed');
    const ac = new AbortController();
    async function* aborting(): AsyncGenerator<Buffer> {
      yield Buffer.from('partial');
      ac.abort();
      yield Buffer.from('more');
    }
    expect(await codeOf(store.blobs.putChunks(aborting(), { signal: ac.signal }))).toBe('ABORT');
    expect(await entries('tmp')).toEqual([]);
    expect(await entries('blobs/sha256')).toEqual([]);
  });

  it('a stored blob is read-only on disk', async () => {
    const info = await store.blobs.putBytes('immutable');
    const { stat } = await import('node:fs/promises');
    expect((await stat(store.blobs.blobPath(info.digest))).mode & 0o777).toBe(0o444);
  });
});
