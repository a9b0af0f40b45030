import { createCipheriv } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { layerTarChunks, writeLayer, type LayerEntry } from './write-layer.js';
import { sha256Digest, type Digest } from '../oci/index.js';
import { openStore, type Store } from '../store/index.js';
import { ReadAhead, readWholeFile, recycledFileReader, type BufferSource } from './read-ahead.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-readahead-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Distinct content per file (so bytes of one file showing up in another are caught). */
function content(i: number, size: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(i);
  return createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), iv).update(Buffer.alloc(size));
}

describe('ReadAhead', () => {
  it('gives the layer the same bytes as plain file streams, through recycled buffers, and the digest of each file', async () => {
    // Sizes around the buffer classes and the whole-read limit (256 KiB), many of a kind so
    // that buffers are reused, and big files that are streamed through one buffer.
    const sizes = [0, 1, 4095, 4096, 4097, 262143, 262144, 262145, 600_000, 1_500_000];
    const files: Array<{ id: string; srcAbs: string; size: number; sha: Digest }> = [];
    for (let i = 0; i < 120; i++) {
      const size = sizes[i % sizes.length]! + (i % 7);
      const id = `app/f${String(i).padStart(3, '0')}`;
      const abs = join(dir, `f${i}`);
      const data = content(i, size);
      await writeFile(abs, data);
      files.push({ id, srcAbs: abs, size, sha: sha256Digest(data) });
    }
    const entry = (f: (typeof files)[number], source: LayerEntry['source']): LayerEntry => ({ path: f.id, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: f.size, source });

    const plain = await writeLayer(
      files.map((f) => entry(f, () => createReadStream(f.srcAbs))),
      new Writable({ write: (_c, _e, cb) => cb() }),
    );
    const seen = new Map<number, Digest>();
    const ahead = new ReadAhead(files, { onStat: (i, abs, st, d) => { expect(abs).toBe(files[i]!.srcAbs); expect(Number(st.size)).toBe(files[i]!.size); seen.set(i, d); } });
    const stored = await store.blobs.putChunks(layerTarChunks(files.map((f, i) => entry(f, ahead.source(i)))));
    expect(stored.digest).toBe(plain.diffId);
    expect(stored.size).toBe(plain.size);
    for (const [i, f] of files.entries()) {
      expect(ahead.digest(i)).toBe(f.sha);
      expect(seen.get(i)).toBe(f.sha);
    }

    // Without onStat, files are hashed only when asked: a cached COPY's key already holds the
    // digests, and the layer's digest is the store's.
    for (const digests of [false, true]) {
      const again = new ReadAhead(files, { digests });
      const layer = await store.blobs.putChunks(layerTarChunks(files.map((f, i) => entry(f, again.source(i)))));
      expect(layer.digest).toBe(plain.diffId);
      expect(files.map((_, i) => again.digest(i))).toEqual(digests ? files.map((f) => f.sha) : files.map(() => undefined));
    }

    // sourcePath entries (a RUN's layer) read by recycledFileReader: the same bytes.
    const byPath = files.map((f): LayerEntry => ({ path: f.id, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: f.size, sourcePath: f.srcAbs }));
    const viaReader = await store.blobs.putChunks(layerTarChunks(byPath, { readFile: recycledFileReader() }));
    expect(viaReader.digest).toBe(plain.diffId);
    expect(viaReader.size).toBe(plain.size);
  });

  it('refuses through recycledFileReader a file that is not the size its entry says, and leaves no temp file', async () => {
    const abs = join(dir, 'grown');
    await writeFile(abs, content(1, 300_000));
    for (const size of [299_999, 300_001, 10]) {
      const entries: LayerEntry[] = [{ path: 'grown', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size, sourcePath: abs }];
      await expect(store.blobs.putChunks(layerTarChunks(entries, { readFile: recycledFileReader() }))).rejects.toThrow(/grown/);
    }
    expect(await readdir(join(dir, 'root', 'tmp'))).toEqual([]);
  });
});

describe('readWholeFile', () => {
  it('reads a file that grew past its stat size to its end, and gives outgrown and failed buffers back', async () => {
    const content = Buffer.from('x'.repeat(5000));
    await writeFile(join(dir, 'grown'), content);
    const given: number[] = [];
    const buffers: BufferSource = { take: (min) => Buffer.alloc(min), give: (b) => void given.push(b.length) };
    // Told 10 bytes: 11, 22, ... until a read comes back short.
    const { buf, len } = await readWholeFile(join(dir, 'grown'), 10, undefined, buffers);
    expect(buf.subarray(0, len).equals(content)).toBe(true);
    expect(given).toEqual([11, 22, 44, 88, 176, 352, 704, 1408, 2816]);
    // A directory opens but cannot be read: the buffer taken goes back, the error comes out.
    given.length = 0;
    await expect(readWholeFile(dir, 10, undefined, buffers)).rejects.toThrow(/EISDIR/);
    expect(given).toEqual([11]);
  });
});
