import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compressedLayerForm, knownCompressedLayer, openStore, pulledFormKey, rememberCompressedLayer, type Store } from './index.js';
import { SMALL_LAYER } from './compressed-layers.js';
import type { BlobInfo } from './blob-store.js';

/**
 * compressedLayerForm: the one way outputs, pushes and cache exports get a compressed layer.
 * The zstd forms are made by the zstd program (scripts/setup installs it) and read back by it.
 */
let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-compressed-layers-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha = (cmd: string): string => `sha256:${execFileSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 30 }).split(' ')[0]}`;

/** A layer-sized blob: text that compresses, then `random` bytes that do not. */
async function putLayer(random = 0): Promise<BlobInfo> {
  const text = Buffer.from('tsbuild compressed layer form\n'.repeat(20000));
  return store.blobs.putBlob(Readable.from([text, randomBytes(random)]));
}

describe('compressedLayerForm', () => {
  it('zstd: made once by the zstd program, remembered, and decompresses to the layer', async () => {
    const layer = await putLayer(1024 * 1024);
    const form = await compressedLayerForm(store, layer, 'zstd');
    expect(form.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(form.size).toBeLessThan(layer.size);
    const path = store.blobs.blobPath(form.digest);
    expect(sha(`zstd -dc '${path}' | sha256sum`)).toBe(layer.digest);
    expect(sha(`sha256sum '${path}'`)).toBe(form.digest);
    expect(await knownCompressedLayer(store, layer.digest, 'zstd-3')).toEqual({ digest: form.digest, size: form.size });
    // Remembered: the same blob, not compressed again (another level is another form).
    expect(await compressedLayerForm(store, layer, 'zstd', { level: 3 })).toEqual(form);
    const l19 = await compressedLayerForm(store, layer, 'zstd', { level: 19 });
    expect(l19.digest).not.toBe(form.digest);
    expect(sha(`zstd -dc '${store.blobs.blobPath(l19.digest)}' | sha256sum`)).toBe(layer.digest);
  });

  it('a pulled form (no known level) serves an output that asks for no level; a level makes its own', async () => {
    const { gzipSync } = await import('node:zlib');
    const layer = await putLayer();
    const pulled = await store.blobs.putBytes(gzipSync(await readFile(store.blobs.blobPath(layer.digest)), { level: 1 }));
    await rememberCompressedLayer(store, layer.digest, pulledFormKey('gzip'), pulled);
    const form = await compressedLayerForm(store, layer, 'gzip');
    expect({ digest: form.digest, size: form.size }).toEqual(pulled);
    const l4 = await compressedLayerForm(store, layer, 'gzip', { level: 4 });
    expect(l4.digest).not.toBe(pulled.digest);
    // Gone from the store (gc): compressed again rather than named.
    await store.blobs.deleteBlob(pulled.digest);
    expect((await compressedLayerForm(store, layer, 'gzip')).digest).toBe(l4.digest);
  });

  it('gzip at the default level is the form gzip-4; uncompressed is the layer itself; bad levels are usage errors', async () => {
    const layer = await putLayer();
    const gz = await compressedLayerForm(store, layer, 'gzip');
    expect(gz.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(sha(`gunzip -c '${store.blobs.blobPath(gz.digest)}' | sha256sum`)).toBe(layer.digest);
    expect(await knownCompressedLayer(store, layer.digest, 'gzip-4')).toEqual({ digest: gz.digest, size: gz.size });
    expect(await compressedLayerForm(store, layer, 'uncompressed')).toEqual({ ...layer, mediaType: 'application/vnd.oci.image.layer.v1.tar' });
    await expect(compressedLayerForm(store, layer, 'gzip', { level: 10 })).rejects.toMatchObject({ code: 'USAGE' });
    await expect(compressedLayerForm(store, layer, 'zstd', { level: 0 })).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('smallInMemory: a small layer without a form comes back in memory and nothing is kept; the bytes are the form a push keeps', async () => {
    const layer = await store.blobs.putBytes(Buffer.from('a small layer\n'.repeat(1000)));
    const bigger = await store.blobs.putBlob(Readable.from([randomBytes(SMALL_LAYER + 1)]));
    const blobsBefore = (await store.blobs.listBlobs()).sort();
    const mem = await compressedLayerForm(store, layer, 'gzip', { smallInMemory: true });
    expect(mem.bytes).toBeInstanceOf(Buffer);
    expect(mem.size).toBe(mem.bytes!.length);
    expect((await store.blobs.listBlobs()).sort()).toEqual(blobsBefore);
    expect(await knownCompressedLayer(store, layer.digest, 'gzip-4')).toBeUndefined();
    // The same bytes as the kept form, which an output asking again is then handed by name.
    const kept = await compressedLayerForm(store, layer, 'gzip');
    expect({ digest: kept.digest, size: kept.size }).toEqual({ digest: mem.digest, size: mem.size });
    expect((await readFile(store.blobs.blobPath(kept.digest))).equals(mem.bytes!)).toBe(true);
    const again = await compressedLayerForm(store, layer, 'gzip', { smallInMemory: true });
    expect(again.bytes).toBeUndefined();
    expect(again.digest).toBe(kept.digest);
    // A layer over SMALL_LAYER is compressed into the store as always.
    const big = await compressedLayerForm(store, bigger, 'gzip', { smallInMemory: true });
    expect(big.bytes).toBeUndefined();
    expect(await store.blobs.statBlob(big.digest)).toMatchObject({ size: big.size });
  });

  it('a zstd process killed mid-layer fails the form and leaves nothing in the store', async () => {
    // 48 MiB of random bytes at level 19: seconds of work, so the child is caught while it runs.
    const layer = await store.blobs.putBlob(Readable.from((function* () {
      for (let i = 0; i < 48; i++) yield randomBytes(1024 * 1024);
    })()));
    const blobsBefore = (await store.blobs.listBlobs()).sort();
    const form = compressedLayerForm(store, layer, 'zstd', { level: 19 });
    form.catch(() => undefined);
    const killed = await killChildZstd();
    expect(killed).toBe(true);
    await expect(form).rejects.toMatchObject({ code: 'LAYER_IO', message: expect.stringMatching(/zstd .*killed by SIGKILL/) as unknown });
    expect((await store.blobs.listBlobs()).sort()).toEqual(blobsBefore);
    expect(await readdir(join(store.root, 'tmp'))).toEqual([]);
    expect(await knownCompressedLayer(store, layer.digest, 'zstd-19')).toBeUndefined();
  });
});

/** SIGKILLs the first zstd process whose parent is this process (polls /proc for up to 20 s). */
async function killChildZstd(): Promise<boolean> {
  for (let i = 0; i < 1000; i++) {
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      if (/^Name:\s+zstd$/m.test(status) && new RegExp(`^PPid:\\s+${process.pid}$`, 'm').test(status)) {
        // Let it compress a little first, so the kill lands mid-stream.
        await new Promise((r) => setTimeout(r, 200));
        process.kill(Number(pid), 'SIGKILL');
        return true;
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
