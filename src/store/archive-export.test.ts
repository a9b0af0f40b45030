import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canonicalJson, OCI_IMAGE_MANIFEST, type Digest, type ImageConfig, type ImageManifest } from '../oci/index.js';
import { exportOciArchive } from './archive-export.js';
import { openStore, type Store } from './index.js';
import type { StoredImage } from './stored-image.js';

/**
 * The OCI archive writer (save --format oci, --output type=oci): the tar made header by header.
 * GNU tar and skopeo read it, its blobs are whole, a blob of the wrong size is refused with
 * nothing left behind.
 */
let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-archive-export-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An image of the store with these layers (the stored, uncompressed form) and a config. */
async function imageOf(layers: readonly Buffer[]): Promise<StoredImage> {
  const descs = [];
  for (const l of layers) {
    const info = await store.blobs.putBlob(Readable.from([l]));
    descs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: info.digest, size: info.size });
  }
  const config: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: descs.map((d) => d.digest) } };
  const cfg = await store.blobs.putBytes(canonicalJson(config));
  const configDescriptor = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg.digest, size: cfg.size };
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: OCI_IMAGE_MANIFEST, config: configDescriptor, layers: descs };
  const m = await store.blobs.putBytes(canonicalJson(manifest));
  return { manifest, manifestDescriptor: { mediaType: OCI_IMAGE_MANIFEST, digest: m.digest, size: m.size }, config, configDescriptor };
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('exportOciArchive', () => {
  it('writes every blob whole under its digest, the same bytes each time; skopeo reads it', async () => {
    // A small layer (compressed in memory), one of several MiB (read in turns of two buffers,
    // random so that its gzip is as big), an empty one.
    const image = await imageOf([Buffer.from('small layer\n'.repeat(100)), randomBytes(3 * 1024 * 1024 + 1234), Buffer.alloc(0)]);
    const a = join(dir, 'a.tar');
    const b = join(dir, 'b.tar');
    const [written] = await exportOciArchive(store, [{ ...image, names: ['example.com/app:v1'] }], a, { compression: 'gzip' });
    await exportOciArchive(store, [{ ...image, names: ['example.com/app:v1'] }], b, { compression: 'gzip' });
    const bytes = await readFile(a);
    expect(bytes.equals(await readFile(b))).toBe(true);
    expect(bytes.length % 512).toBe(0);
    // Every entry as GNU tar lists it: owner 0:0, mtime 0, the directories before their files.
    const listed = execFileSync('tar', ['-tvf', a, '--numeric-owner'], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } }).trim().split('\n');
    expect(listed.slice(0, 4).map((l) => l.split(/\s+/).at(-1))).toEqual(['oci-layout', 'index.json', 'blobs/', 'blobs/sha256/']);
    for (const l of listed) expect(l).toMatch(/^(-rw-r--r--|drwxr-xr-x) 0\/0 +\d+ 1970-01-01 00:00 /);
    const x = join(dir, 'x');
    execFileSync('mkdir', ['-p', x]);
    execFileSync('tar', ['-xf', a, '-C', x]);
    const names = await readdir(join(x, 'blobs', 'sha256'));
    expect(names).toHaveLength(5); // the config, the export's manifest, three gzip layers
    for (const n of names) expect(sha256(await readFile(join(x, 'blobs', 'sha256', n)))).toBe(`sha256:${n}`);
    expect(written!.digest).toBe(JSON.parse(await readFile(join(x, 'index.json'), 'utf8')).manifests[0].digest as Digest);
    // The export's manifest is the archive's alone: not added to the store.
    expect(await store.blobs.statBlob(written!.digest)).toBeUndefined();
    const inspected = spawnSync('skopeo', ['inspect', '--raw', `oci-archive:${a}:v1`], { encoding: 'utf8' });
    expect(inspected.status, inspected.stderr).toBe(0);
    expect(sha256(Buffer.from(inspected.stdout))).toBe(written!.digest);
  });

  it('refuses a blob whose file is not its size, leaving no archive and no temp file', async () => {
    const image = await imageOf([randomBytes(200 * 1024)]);
    const dest = join(dir, 'out.tar');
    // A stored layer cut short (a damaged store): its gzip is made from what is there, but the
    // config read back whole is then the wrong size.
    await truncate(store.blobs.blobPath(image.manifest.config.digest), 10);
    await expect(exportOciArchive(store, [{ ...image, names: [] }], dest, { compression: 'gzip' })).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    expect(await readdir(dir)).toEqual(['root']);
    // Longer than recorded: refused too.
    await writeFile(store.blobs.blobPath(image.manifest.config.digest), Buffer.alloc(image.manifest.config.size + 1, 0x20));
    await expect(exportOciArchive(store, [{ ...image, names: [] }], dest, { compression: 'gzip' })).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    expect(await readdir(dir)).toEqual(['root']);
  });
});
