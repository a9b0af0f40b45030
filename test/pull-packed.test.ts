import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { bin, requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { startFaultProxy } from './support/fault-proxy.js';
import { pushMultiarchBusybox, storeWithMultiarchBusybox } from './support/multiarch.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { collectGarbage, openStore } from '../src/store/index.js';

// `pull --no-unpack` keeps each layer as the compressed blob the registry sent (verified by its
// digest while it streams) and decompresses it, checked against its diff ID, when something
// first reads the image's layers (a build, save, push): the real registry, the fault proxy for
// damaged bytes, SIGKILL for interrupted pulls and decompressions, skopeo and umoci as readers.

let work: string;
let registry: RunningRegistry;
/** The image in the registry: busybox + one layer of 4 MiB of text. */
let image: string;
/** Its layers as the registry holds them (compressed blob digests) and its config's diff IDs. */
let blobs: string[];
let diffIds: string[];

const hex = (d: string): string => d.slice(d.indexOf(':') + 1);
const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function storeBlobs(root: string): Promise<string[]> {
  return (await fs.readdir(path.join(root, 'blobs', 'sha256')).catch(() => [] as string[])).map((h) => `sha256:${h}`);
}

async function tmpEntries(root: string): Promise<string[]> {
  return fs.readdir(path.join(root, 'tmp')).catch(() => [] as string[]);
}

interface RegistryManifest {
  mediaType?: string;
  config: { mediaType: string; digest: string; size: number };
  layers: Array<{ mediaType: string; digest: string; size: number }>;
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT = `${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json`;

async function getManifest(host: string, repo: string, tag: string): Promise<{ manifest: RegistryManifest; type: string }> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT } });
  expect(res.status).toBe(200);
  return { manifest: (await res.json()) as RegistryManifest, type: res.headers.get('content-type') ?? OCI_MANIFEST };
}

/** A blob into the real registry, monolithic upload (distribution spec: POST then PUT ?digest=). */
async function putRegistryBlob(host: string, repo: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const start = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  expect(start.status).toBe(202);
  const location = new URL(start.headers.get('location')!, `http://${host}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  expect(put.status).toBe(201);
  return digest;
}

/**
 * `repo:tag` in the registry: the image's manifest with a config whose last diff ID names other
 * bytes than its layer decompresses to (every blob matches its digest; only the diff ID lies).
 */
async function pushLyingImage(repo: string, tag: string): Promise<void> {
  const src = await getManifest(registry.host, 'packed/app', 'v1');
  const cfg = (await (await fetch(`http://${registry.host}/v2/packed/app/blobs/${src.manifest.config.digest}`)).json()) as { rootfs: { diff_ids: string[] } };
  cfg.rootfs.diff_ids[cfg.rootfs.diff_ids.length - 1] = sha256('not this layer');
  const cfgBytes = Buffer.from(JSON.stringify(cfg));
  const cfgDigest = await putRegistryBlob(registry.host, repo, cfgBytes);
  for (const l of src.manifest.layers) {
    const mount = await fetch(`http://${registry.host}/v2/${repo}/blobs/uploads/?mount=${l.digest}&from=packed/app`, { method: 'POST' });
    expect(mount.status).toBe(201);
  }
  const manifest = { ...src.manifest, config: { ...src.manifest.config, digest: cfgDigest, size: cfgBytes.length } };
  const put = await fetch(`http://${registry.host}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: JSON.stringify(manifest), headers: { 'content-type': src.type } });
  expect(put.status).toBe(201);
}

/** Starts the CLI and SIGKILLs it as soon as `ready` (polled) says so; resolves once it is gone. */
async function killWhen(args: string[], root: string, ready: () => Promise<boolean>): Promise<{ killed: boolean }> {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, TSBUILD_ROOT: root }, stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  let killed = false;
  while (!done) {
    if (await ready()) {
      killed = child.kill('SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  await exited;
  return { killed };
}

/** A temp blob of this store being written (a download or a decompression in progress). */
async function tempBlobGrowing(root: string): Promise<boolean> {
  for (const name of await tmpEntries(root)) {
    if (!name.endsWith('.blob')) continue;
    const st = await fs.stat(path.join(root, 'tmp', name)).catch(() => undefined);
    if (st !== undefined && st.size > 0) return true;
  }
  return false;
}

beforeAll(async () => {
  for (const t of ['skopeo', 'umoci']) await requireTool(t);
  work = await tempDir('pull-packed');
  registry = await startRegistry({ mode: { kind: 'open' } });
  const src = path.join(work, 'src');
  await storeWithBusybox(src);
  // 4 MiB of hex text: compresses to about half, and takes a moment to decompress.
  const text = Array.from({ length: 4096 }, (_, i) => createHash('sha512').update(String(i)).digest('hex').repeat(8)).join('\n');
  await writeTree(path.join(work, 'ctx'), { Dockerfile: 'FROM busybox\nCOPY data.txt /data.txt\n', 'data.txt': text });
  image = `${registry.host}/packed/app:v1`;
  const built = await tsbuild(['build', '-q', '-t', image, path.join(work, 'ctx')], { root: src });
  expect(built.code, built.stderr).toBe(0);
  // gzip level 9: blobs a layer compressed here again (level 4) would not reproduce.
  const pushed = await tsbuild(['push', '-q', '--compression-level', '9', image], { root: src });
  expect(pushed.code, pushed.stderr).toBe(0);
  const { manifest } = await getManifest(registry.host, 'packed/app', 'v1');
  blobs = manifest.layers.map((l) => l.digest);
  const cfg = (await (await fetch(`http://${registry.host}/v2/packed/app/blobs/${manifest.config.digest}`)).json()) as { rootfs: { diff_ids: string[] } };
  diffIds = cfg.rootfs.diff_ids;
  expect(blobs).toHaveLength(2);
  expect(blobs.every((b) => !diffIds.includes(b))).toBe(true);
}, 300_000);

afterAll(async () => {
  await registry?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('pull --no-unpack keeps the compressed blobs', () => {
  it('stores the blobs as pulled, decompresses them at first use, and build, save and push work', async () => {
    const root = path.join(work, 'store-a');
    const pulled = await tsbuild(['pull', '-q', '--no-unpack', image], { root });
    expect(pulled.code, pulled.stderr).toBe(0);
    const stored = await storeBlobs(root);
    expect(stored).toEqual(expect.arrayContaining(blobs));
    expect(stored.filter((d) => diffIds.includes(d))).toEqual([]);
    // The store is still an OCI layout another tool reads whole (skopeo verifies every blob).
    await tool('skopeo', ['copy', `oci:${root}:${image}`, `oci:${path.join(work, 'copy-a')}:v1`]);
    // Nothing that reads no layer decompresses one.
    for (const args of [['images'], ['inspect', image], ['history', image], ['tag', image, 'other:v1']]) {
      const r = await tsbuild(args, { root });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    expect((await storeBlobs(root)).filter((d) => diffIds.includes(d))).toEqual([]);

    // A build on it: each layer decompressed once, checked, kept under its diff ID.
    await writeTree(path.join(work, 'ctx-b'), { Dockerfile: `FROM ${image}\nCOPY extra.txt /extra.txt\n`, 'extra.txt': 'extra\n' });
    const built = await tsbuild(['build', '-q', '-t', 'derived:v1', path.join(work, 'ctx-b')], { root });
    expect(built.code, built.stderr).toBe(0);
    expect(await storeBlobs(root)).toEqual(expect.arrayContaining([...blobs, ...diffIds]));
    expect(await tmpEntries(root)).toEqual([]);

    // gc keeps both forms while the tag names the image (no grace: everything unreachable goes).
    const store = await openStore(root);
    await collectGarbage(store, { graceMs: 0 });
    expect(await storeBlobs(root)).toEqual(expect.arrayContaining([...blobs, ...diffIds]));

    // save: an archive skopeo reads and umoci unpacks (both verify every blob they read).
    const archive = path.join(work, 'a.tar');
    const saved = await tsbuild(['save', '-o', archive, image], { root });
    expect(saved.code, saved.stderr).toBe(0);
    const inspected = JSON.parse((await tool('skopeo', ['inspect', `oci-archive:${archive}`])).stdout) as { Layers: string[] };
    expect(inspected.Layers).toHaveLength(2);
    const layout = path.join(work, 'layout-a');
    await tool('skopeo', ['copy', `oci-archive:${archive}`, `oci:${layout}:v1`]);
    const bundle = path.join(work, 'bundle-a');
    await tool('umoci', ['unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
    expect((await fs.readFile(path.join(bundle, 'rootfs', 'data.txt'), 'utf8')).length).toBeGreaterThan(4_000_000);
    // An OCI archive (gzip layers) carries the pulled blobs, not the layers compressed again.
    const ociArchive = path.join(work, 'a-oci.tar');
    const savedOci = await tsbuild(['save', '--format', 'oci', '-o', ociArchive, image], { root });
    expect(savedOci.code, savedOci.stderr).toBe(0);
    const ociManifest = JSON.parse((await tool('skopeo', ['inspect', '--raw', `oci-archive:${ociArchive}`])).stdout) as RegistryManifest;
    expect(ociManifest.layers.map((l) => l.digest)).toEqual(blobs);
    const ociLayout = path.join(work, 'layout-oci');
    await tool('skopeo', ['copy', `oci-archive:${ociArchive}`, `oci:${ociLayout}:v1`]);
    await tool('umoci', ['unpack', '--rootless', '--image', `${ociLayout}:v1`, path.join(work, 'bundle-oci')]);

    // push elsewhere: the pulled blobs go as they are, not compressed again.
    const other = await startRegistry({ mode: { kind: 'open' } });
    try {
      const pushed = await tsbuild(['push', '-q', image, `${other.host}/copy/app:v1`], { root });
      expect(pushed.code, pushed.stderr).toBe(0);
      const { manifest } = await getManifest(other.host, 'copy/app', 'v1');
      expect(manifest.layers.map((l) => l.digest)).toEqual(blobs);
      await tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${other.host}/copy/app:v1`, `oci:${path.join(work, 'copy-b')}:v1`]);
    } finally {
      await other.stop();
    }
    const fsck = await tsbuild(['fsck'], { root });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
  }, 180_000);

  it('refuses a layer that does not decompress to its diff ID at first use, and stores nothing of it', async () => {
    await pushLyingImage('packed/lying', 'v1');
    const root = path.join(work, 'store-lying');
    const lying = `${registry.host}/packed/lying:v1`;
    // The pull itself verifies what it can: every blob against its digest.
    const pulled = await tsbuild(['pull', '-q', '--no-unpack', lying], { root });
    expect(pulled.code, pulled.stderr).toBe(0);
    await writeTree(path.join(work, 'ctx-lying'), { Dockerfile: `FROM ${lying}\nCOPY extra.txt /extra.txt\n`, 'extra.txt': 'extra\n' });
    const built = await tsbuild(['build', '-q', '-t', 'on-lying:v1', path.join(work, 'ctx-lying')], { root });
    expect(built.code).toBe(1);
    expect(built.stderr).toContain(`image ${lying}, layer 2 of 2`);
    expect(built.stderr).toContain(`does not decompress to its diff ID ${sha256('not this layer')}`);
    expect(built.stderr).not.toMatch(/\n\s+at /);
    // The good first layer is kept under its diff ID; nothing under the lie, no temp left.
    const stored = await storeBlobs(root);
    expect(stored).toContain(diffIds[0]);
    expect(stored).not.toContain(sha256('not this layer'));
    expect(stored).not.toContain(diffIds[1]);
    expect(await tmpEntries(root)).toEqual([]);
    // save refuses it the same way.
    const saved = await tsbuild(['save', '-o', path.join(work, 'lying.tar'), lying], { root });
    expect(saved.code).toBe(1);
    expect(saved.stderr).toContain('does not decompress to its diff ID');
  }, 120_000);

  it('stores nothing of a layer the registry sends damaged, and a second pull stores it', async () => {
    const proxy = await startFaultProxy({ upstream: `http://${registry.host}`, rules: [{ method: 'GET', path: new RegExp(`/blobs/${blobs[1]!}$`), fault: 'corrupt' }] });
    try {
      const root = path.join(work, 'store-corrupt');
      const bad = await tsbuild(['pull', '-q', '--no-unpack', `${proxy.host}/packed/app:v1`], { root });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain(blobs[1]);
      expect(bad.stderr).toMatch(/DIGEST_MISMATCH|does not match|sent sha256:/);
      expect(await storeBlobs(root)).not.toContain(blobs[1]);
      expect(await tmpEntries(root)).toEqual([]);
      const good = await tsbuild(['pull', '-q', '--no-unpack', image], { root });
      expect(good.code, good.stderr).toBe(0);
      expect(await storeBlobs(root)).toEqual(expect.arrayContaining(blobs));
    } finally {
      await proxy.stop();
    }
  }, 120_000);
});

describe('a pull keeps the compressed blobs next to the layers it unpacks', () => {
  it('stores both forms; save --format oci and a push of an image built on it carry the pulled blobs, not the layers compressed again', async () => {
    const root = path.join(work, 'store-kept');
    const pulled = await tsbuild(['pull', '-q', image], { root });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await storeBlobs(root)).toEqual(expect.arrayContaining([...blobs, ...diffIds]));
    expect(await tmpEntries(root)).toEqual([]);

    await writeTree(path.join(work, 'ctx-kept'), { Dockerfile: `FROM ${image}\nCOPY extra.txt /extra.txt\n`, 'extra.txt': 'extra\n' });
    const built = await tsbuild(['build', '-q', '-t', 'derived:kept', path.join(work, 'ctx-kept')], { root });
    expect(built.code, built.stderr).toBe(0);
    const ociArchive = path.join(work, 'kept-oci.tar');
    const saved = await tsbuild(['save', '--format', 'oci', '-o', ociArchive, 'derived:kept'], { root });
    expect(saved.code, saved.stderr).toBe(0);
    const ociManifest = JSON.parse((await tool('skopeo', ['inspect', '--raw', `oci-archive:${ociArchive}`])).stdout) as RegistryManifest;
    expect(ociManifest.layers.map((l) => l.digest).slice(0, 2)).toEqual(blobs);
    expect(ociManifest.layers).toHaveLength(3);
    await tool('skopeo', ['copy', `oci-archive:${ociArchive}`, `oci:${path.join(work, 'layout-kept')}:v1`]);

    const other = await startRegistry({ mode: { kind: 'open' } });
    try {
      const pushed = await tsbuild(['push', '-q', 'derived:kept', `${other.host}/kept/app:v1`], { root });
      expect(pushed.code, pushed.stderr).toBe(0);
      const { manifest } = await getManifest(other.host, 'kept/app', 'v1');
      expect(manifest.layers.map((l) => l.digest).slice(0, 2)).toEqual(blobs);
      await tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${other.host}/kept/app:v1`, `oci:${path.join(work, 'copy-kept')}:v1`]);
    } finally {
      await other.stop();
    }
    const fsck = await tsbuild(['fsck'], { root });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
  }, 180_000);
});

describe('pull --all-platforms --no-unpack', () => {
  it('keeps every platform packed; save writes the index with every image whole, and load takes it back', async () => {
    const src = path.join(work, 'src-multi');
    await storeWithMultiarchBusybox(src);
    await pushMultiarchBusybox(src, registry.host, 'packed/busybox');
    const root = path.join(work, 'store-multi');
    const multi = `${registry.host}/packed/busybox:multi`;
    const pulled = await tsbuild(['pull', '-q', '--all-platforms', '--no-unpack', multi], { root });
    expect(pulled.code, pulled.stderr).toBe(0);
    const images = await tsbuild(['images', '--format', '{{.Repository}}:{{.Tag}}'], { root });
    expect(images.stdout).toContain(multi);
    const before = await storeBlobs(root);
    const archive = path.join(work, 'multi.tar');
    const saved = await tsbuild(['save', '--format', 'oci', '-o', archive, multi], { root });
    expect(saved.code, saved.stderr).toBe(0);
    // Both platforms' layers were decompressed (two new blobs at least: one layer each).
    expect((await storeBlobs(root)).length).toBeGreaterThanOrEqual(before.length + 2);
    const raw = JSON.parse((await tool('skopeo', ['inspect', '--raw', `oci-archive:${archive}`])).stdout) as { manifests: Array<{ platform: { architecture: string } }> };
    expect(raw.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
    const other = path.join(work, 'store-multi-loaded');
    const loaded = await tsbuild(['load', '-i', archive], { root: other });
    expect(loaded.code, loaded.stderr).toBe(0);
    const fsck = await tsbuild(['fsck'], { root: other });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
  }, 120_000);
});

describe('a killed pull or decompression leaves nothing half-written', () => {
  it('SIGKILL mid-download: no blob under its name, the next pull and a build work', async () => {
    const proxy = await startFaultProxy({ upstream: `http://${registry.host}`, rules: [{ method: 'GET', path: new RegExp(`/blobs/${blobs[1]!}$`), fault: 'slow' }] });
    try {
      const root = path.join(work, 'store-kill-pull');
      // Killed once the slow layer's GET reached the proxy: its 2 MB take ~250 ms to arrive.
      // (Waiting for bytes in its temp file, which the store writes a MiB at a time, left only
      // the second half of that, too little on a loaded machine.)
      const slowGet = (): boolean => proxy.stats.log.some((e) => e.method === 'GET' && e.path.endsWith(`/blobs/${blobs[1]!}`));
      const { killed } = await killWhen(['pull', '-q', '--no-unpack', `${proxy.host}/packed/app:v1`], root, async () => slowGet());
      expect(killed).toBe(true);
      expect(await storeBlobs(root)).not.toContain(blobs[1]);
      const again = await tsbuild(['pull', '-q', '--no-unpack', image], { root });
      expect(again.code, again.stderr).toBe(0);
      await writeTree(path.join(work, 'ctx-kill'), { Dockerfile: `FROM ${image}\nCOPY extra.txt /extra.txt\n`, 'extra.txt': 'extra\n' });
      const built = await tsbuild(['build', '-q', '-t', 'after-kill:v1', path.join(work, 'ctx-kill')], { root });
      expect(built.code, built.stderr).toBe(0);
      // The dead process's temp file goes with the next gc; then the store is whole.
      await collectGarbage(await openStore(root));
      const fsck = await tsbuild(['fsck'], { root });
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    } finally {
      await proxy.stop();
    }
  }, 120_000);

  it('SIGKILL mid-decompression: every blob matches its name, and the next build works', async () => {
    const root = path.join(work, 'store-kill-unpack');
    const pulled = await tsbuild(['pull', '-q', '--no-unpack', image], { root });
    expect(pulled.code, pulled.stderr).toBe(0);
    await writeTree(path.join(work, 'ctx-kill-2'), { Dockerfile: `FROM ${image}\nCOPY extra.txt /extra.txt\n`, 'extra.txt': 'extra\n' });
    // Killed as soon as a decompressed layer is being written (or, on a fast machine, once done).
    await killWhen(['build', '-q', '-t', 'killed:v1', path.join(work, 'ctx-kill-2')], root, () => tempBlobGrowing(root));
    // Whatever is under blobs/ is whole: fsck re-hashes every blob (stale temps aside).
    const store = await openStore(root);
    await collectGarbage(store);
    const fsck = await tsbuild(['fsck'], { root });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    const built = await tsbuild(['build', '-q', '-t', 'after-kill-2:v1', path.join(work, 'ctx-kill-2')], { root });
    expect(built.code, built.stderr).toBe(0);
    expect(await storeBlobs(root)).toEqual(expect.arrayContaining(diffIds));
  }, 120_000);
});
