import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TsbuildError } from '../src/errors.js';
import { readLocalImage } from '../src/image/local-image.js';
import { DEFAULT_GZIP_LEVEL, ParallelGzip } from '../src/layer/index.js';
import { OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST, canonicalJson, parseReference, sha256Digest, type ImageIndex, type ImageManifest } from '../src/oci/index.js';
import {
  RegistryClient,
  pullImage,
  pushImage,
  resolveBaseImage,
  type PullProgress,
  type PushProgress,
} from '../src/registry/index.js';
import { readLayerVariants, readRepoDigests } from '../src/registry/store-layers.js';
import { openStore, type Store } from '../src/store/index.js';
import { tool } from './support/cli.js';
import { makeStoreImage } from './support/images.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

// The real CNCF distribution registry, open (no auth), with relative Location headers.
let registry: RunningRegistry;
let tmp: string;
let client: RegistryClient;

beforeAll(async () => {
  registry = await startRegistry({ mode: { kind: 'open', relativeUrls: true } });
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-regtest-'));
  client = new RegistryClient({ retry: { baseDelayMs: 20 } });
});

afterAll(async () => {
  await client?.close();
  await registry?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

let storeN = 0;
async function newStore(): Promise<Store> {
  return openStore(path.join(tmp, `store-${++storeN}`));
}

const ref = (s: string) => parseReference(`${registry.host}/${s}`);

describe('push and pull against the distribution registry', () => {
  it('pushes an image and pulls it back into another store, verified', async () => {
    const src = await newStore();
    const image = await makeStoreImage(src, 'docker.io/library/app:v1', [Buffer.from('layer one'), 300_000, 70_000]);
    const events: PushProgress[] = [];
    const pushed = await pushImage(client, src, image, ref('team/app:v1'), { onProgress: (e) => events.push(e) });
    expect(pushed.digest).toMatch(/^sha256:/);
    expect(events.filter((e) => e.type === 'layer' && e.status === 'uploaded')).toHaveLength(3);
    // Layers compressed while uploading have the bytes an export would make (compressedLayerForm:
    // the same gzip, at its default level); the pull below checks them against the diff IDs.
    const served = JSON.parse((await client.getManifest(ref('team/app:v1'))).bytes.toString()) as ImageManifest;
    for (const [i, l] of image.manifest.layers.entries()) {
      const raw = await fs.readFile(src.blobs.blobPath(l.digest));
      const gz = await buffer(Readable.from([raw]).pipe(new ParallelGzip({ level: DEFAULT_GZIP_LEVEL })));
      expect(sha256Digest(gz)).toBe(served.layers[i]?.digest);
      expect(gunzipSync(gz).equals(raw)).toBe(true);
    }

    const dst = await newStore();
    const pulled = await pullImage(client, dst, ref('team/app:v1'));
    expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
    expect(pulled.repoDigest).toBe(`${registry.host}/team/app@${pushed.digest}`);
    const local = await readLocalImage(dst, pulled.image.manifestDescriptor);
    // The store keeps uncompressed layers: the same diff IDs as the source image.
    expect(local.manifest.layers.map((l) => l.digest)).toEqual(image.manifest.layers.map((l) => l.digest));
    for (const l of local.manifest.layers) expect((await dst.blobs.verifyBlob(l.digest)).ok).toBe(true);
    expect(await dst.getTag(`${registry.host}/team/app:v1`)).toBeDefined();
    expect(await readRepoDigests(dst, pulled.image.manifestDescriptor.digest)).toEqual([pulled.repoDigest]);
    expect((await readLayerVariants(dst, image.manifest.layers[1]!.digest))[0]?.repositories).toEqual([`${registry.host}/team/app`]);

    // Pulling again downloads nothing.
    const again: PullProgress[] = [];
    const second = await pullImage(client, dst, ref('team/app:v1'), { onProgress: (e) => again.push(e) });
    expect(second.layers.every((l) => l.status === 'exists')).toBe(true);
    expect(again.filter((e) => e.type === 'layer' && e.status === 'downloading')).toHaveLength(0);
  });

  it('skips blobs the registry has and mounts blobs from another repository', async () => {
    const src = await newStore();
    const image = await makeStoreImage(src, 'docker.io/library/mnt:v1', [50_000, 60_000]);
    await pushImage(client, src, image, ref('mount/a:v1'));
    const second: PushProgress[] = [];
    const again = await pushImage(client, src, image, ref('mount/a:v2'), { onProgress: (e) => second.push(e) });
    expect(second.filter((e) => e.type === 'layer').map((e) => (e as { status: string }).status)).toEqual(['exists', 'exists']);
    const third: PushProgress[] = [];
    const other = await pushImage(client, src, image, ref('mount/b:v1'), { onProgress: (e) => third.push(e) });
    expect(third.filter((e) => e.type === 'layer').map((e) => (e as { status: string }).status)).toEqual(['mounted', 'mounted']);
    expect(other.digest).toBe(again.digest);

    // A pulled image pushed to another repository of the same registry mounts its original blobs.
    const puller = await newStore();
    await pullImage(client, puller, ref('mount/a:v1'));
    const pulledImage = await readLocalImage(puller, (await puller.getTag(`${registry.host}/mount/a:v1`))!);
    const fourth: PushProgress[] = [];
    const c = await pushImage(client, puller, pulledImage, ref('mount/c:v1'), { onProgress: (e) => fourth.push(e) });
    expect(fourth.filter((e) => e.type === 'layer').map((e) => (e as { status: string }).status)).toEqual(['mounted', 'mounted']);
    expect(c.digest).toBe(again.digest);
  });

  it('uploads in chunks (PATCH with Content-Range) and the result pulls back', async () => {
    const src = await newStore();
    const image = await makeStoreImage(src, 'docker.io/library/chunky:v1', [1_000_000, 10]);
    const pushed = await pushImage(client, src, image, ref('chunky/x:v1'), { chunkSize: 64 * 1024 });
    const dst = await newStore();
    const pulled = await pullImage(client, dst, ref(`chunky/x@${pushed.digest}`));
    expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
  });

  it('chooses the platform from an image index', async () => {
    const src = await newStore();
    const amd = await makeStoreImage(src, 'docker.io/library/multi:amd64', [1000], { platform: { os: 'linux', architecture: 'amd64' } });
    const arm = await makeStoreImage(src, 'docker.io/library/multi:arm64', [2000], { platform: { os: 'linux', architecture: 'arm64' } });
    const a = await pushImage(client, src, amd, ref('multi/img:amd64'));
    const b = await pushImage(client, src, arm, ref('multi/img:arm64'));
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: OCI_IMAGE_INDEX,
      manifests: [
        { mediaType: OCI_IMAGE_MANIFEST, digest: a.digest, size: a.size, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: OCI_IMAGE_MANIFEST, digest: b.digest, size: b.size, platform: { os: 'linux', architecture: 'arm64' } },
      ],
    };
    const bytes = canonicalJson(index);
    await client.putManifest(ref('multi/img'), { reference: 'latest', bytes, mediaType: OCI_IMAGE_INDEX });
    const dst = await newStore();
    const pulled = await pullImage(client, dst, ref('multi/img'), { platform: { os: 'linux', architecture: 'arm64' } });
    expect(pulled.image.configDescriptor.digest).toBe(arm.configDescriptor.digest);
    expect(pulled.repoDigest).toBe(`${registry.host}/multi/img@${sha256Digest(bytes)}`);
    const err = await pullImage(client, dst, ref('multi/img'), { platform: { os: 'linux', architecture: 's390x' } }).catch((e: unknown) => e);
    expect((err as TsbuildError).code).toBe('PLATFORM_UNAVAILABLE');
  });

  it('resolves FROM images under --pull=never|missing|always', async () => {
    const src = await newStore();
    const image = await makeStoreImage(src, 'docker.io/library/base:v1', [3000]);
    await pushImage(client, src, image, ref('base/img:v1'));
    const dst = await newStore();
    const never = await resolveBaseImage(dst, client, ref('base/img:v1'), { policy: 'never' }).catch((e: unknown) => e);
    expect((never as TsbuildError).code).toBe('IMAGE_NOT_FOUND');
    const missing = await resolveBaseImage(dst, client, ref('base/img:v1'), { policy: 'missing', platform: { os: 'linux', architecture: 'amd64' } });
    expect(missing.configDescriptor.digest).toBe(image.configDescriptor.digest);
    // Now local: resolved without the registry.
    const offline = await resolveBaseImage(dst, undefined, ref('base/img:v1'), { policy: 'missing', platform: { os: 'linux', architecture: 'amd64' } });
    expect(offline.configDescriptor.digest).toBe(image.configDescriptor.digest);
    const always = await resolveBaseImage(dst, client, ref('base/img:v1'), { policy: 'always', platform: { os: 'linux', architecture: 'amd64' } });
    expect(always.configDescriptor.digest).toBe(image.configDescriptor.digest);
  });
});

describe('cancellation', () => {
  it('an abort mid-pull stops cleanly: no tag, no temp files, only verified blobs', async () => {
    const src = await newStore();
    const image = await makeStoreImage(src, 'docker.io/library/big:v1', [4_000_000, 4_000_000, 4_000_000]);
    await pushImage(client, src, image, ref('abort/img:v1'));
    const dst = await newStore();
    const controller = new AbortController();
    const err = await pullImage(client, dst, ref('abort/img:v1'), {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.type === 'layer' && p.status === 'downloading') controller.abort(new DOMException('stop', 'AbortError'));
      },
    }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect(await dst.listTags()).toEqual([]);
    expect(await fs.readdir(dst.paths.tmp)).toEqual([]);
    for (const d of await dst.blobs.listBlobs()) expect((await dst.blobs.verifyBlob(d)).ok).toBe(true);
    // And the next pull completes.
    const pulled = await pullImage(client, dst, ref('abort/img:v1'));
    expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
  });
});

describe('cross-checks with skopeo', () => {
  it('skopeo reads what tsbuild pushed, with the same digest', async () => {
    const src = await newStore();
    const image = await makeStoreImage(src, 'docker.io/library/sk:v1', [Buffer.from('hello'), 20_000]);
    const pushed = await pushImage(client, src, image, ref('skopeo/ours:v1'));
    const { stdout: raw } = await tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/skopeo/ours:v1`]);
    expect(sha256Digest(Buffer.from(raw))).toBe(pushed.digest);
    const dir = path.join(tmp, 'skopeo-oci');
    await tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${registry.host}/skopeo/ours:v1`, `oci:${dir}:v1`]);
    const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as ImageIndex;
    expect(index.manifests[0]?.digest).toBe(pushed.digest);
  });

  it('tsbuild pulls what skopeo pushed (OCI and Docker schema 2)', async () => {
    const src = await newStore();
    const image = await makeStoreImage(src, 'docker.io/library/sk2:v1', [Buffer.from('from skopeo'), 30_000]);
    // An OCI layout of the image, as skopeo's source.
    const { exportOciLayout } = await import('../src/store/archive-export.js');
    const layout = path.join(tmp, 'layout-sk2');
    await exportOciLayout(src, [{ ...image, names: [] }], layout, { compression: 'gzip' });
    for (const format of ['oci', 'v2s2'] as const) {
      await tool('skopeo', ['copy', '--dest-tls-verify=false', '--format', format, `oci:${layout}`, `docker://${registry.host}/skopeo/theirs:${format}`]);
      const dst = await newStore();
      const pulled = await pullImage(client, dst, ref(`skopeo/theirs:${format}`));
      expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
      const { stdout: raw } = await tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/skopeo/theirs:${format}`]);
      expect(pulled.repoDigest.endsWith(sha256Digest(Buffer.from(raw)))).toBe(true);
    }
  });
});
