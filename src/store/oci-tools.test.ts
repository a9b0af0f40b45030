import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OCI_IMAGE_CONFIG, OCI_IMAGE_MANIFEST, type Descriptor } from '../oci/index.js';
import { openStore, type Store } from './index.js';

/**
 * The store is an OCI image layout that real tools read directly (STYLE.md 14: real
 * verifiers). Skipped where the tool is not installed (scripts/ installs both on CI).
 */
const run = promisify(execFile);

async function have(tool: string): Promise<boolean> {
  try {
    await run(tool, ['--version']);
    return true;
  } catch {
    return false;
  }
}
// Verifiers that are not ours: a missing one fails the suite loudly (scripts/setup installs them).
for (const tool of ['skopeo', 'umoci']) {
  if (!(await have(tool))) throw new Error(`${tool} is not installed; run scripts/setup`);
}

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-ocitools-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function tarLayer(files: Record<string, string>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, body] of Object.entries(files).sort()) pack.entry({ name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, body);
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of Readable.from(pack)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function putImage(name: string): Promise<Descriptor> {
  const layerBytes = await tarLayer({ 'hello.txt': 'hello from tsbuild\n' });
  const layer = await store.blobs.putBlob(Readable.from([layerBytes]));
  const config = await store.blobs.putBytes(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [layer.digest] },
      history: [{ created_by: 'test' }],
    }),
  );
  const manifest = await store.blobs.putBytes(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_IMAGE_MANIFEST,
      config: { mediaType: OCI_IMAGE_CONFIG, ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
    }),
  );
  const desc: Descriptor = { mediaType: OCI_IMAGE_MANIFEST, ...manifest, platform: { architecture: 'amd64', os: 'linux' } };
  await store.setTag(name, desc);
  return desc;
}

describe('the store as an OCI image layout', () => {
  it('skopeo inspects and copies a tagged image straight from the store', async () => {
    const desc = await putImage('docker.io/library/hello:latest');
    const { stdout } = await run('skopeo', ['inspect', `oci:${store.root}:docker.io/library/hello:latest`]);
    const info = JSON.parse(stdout) as { Digest: string; Layers: string[]; Architecture: string };
    expect(info.Digest).toBe(desc.digest);
    expect(info.Architecture).toBe('amd64');
    expect(info.Layers).toHaveLength(1);
    // copy re-verifies every blob digest on the way.
    await run('skopeo', ['copy', `oci:${store.root}:docker.io/library/hello:latest`, `dir:${join(dir, 'copy')}`]);
  });

  it('umoci lists the store tags', async () => {
    await putImage('docker.io/library/hello:latest');
    await putImage('hello-v2');
    const { stdout } = await run('umoci', ['ls', '--layout', store.root]);
    expect(stdout.split('\n').filter(Boolean).sort()).toEqual(['docker.io/library/hello:latest', 'hello-v2']);
    // umoci unpack checks every blob it reads against its digest.
    const bundle = join(dir, 'bundle');
    await run('umoci', ['unpack', '--rootless', '--image', `${store.root}:docker.io/library/hello:latest`, bundle]);
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(join(bundle, 'rootfs', 'hello.txt'), 'utf8')).toBe('hello from tsbuild\n');
  });
});
