import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot as repo, requireTool, tempDir, tsbuild, writeTree } from './support/cli.js';
import { pushMultiarchBusybox, storeWithMultiarchBusybox } from './support/multiarch.js';
import { CLI, withTestUser } from './support/rootless.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { chainId, ensureLowerDirs, hostFilesystem, type HostFilesystem } from '../src/snapshot/index.js';
import { findLocalImage, layerIndexOf } from '../src/image/index.js';
import { openStore } from '../src/store/index.js';
import { pull } from '../src/api/index.js';
import { parseDigest, type Digest } from '../src/oci/index.js';

// `tsbuild pull` unpacks the layers into the snapshots a build's RUN steps start from (as
// buildah, podman and docker unpack at pull time): the real registry, the real sandbox, the
// build afterwards finds them and unpacks nothing.
let work: string;
let registry: RunningRegistry;
/** The busybox image for this host: its one layer's diff ID. */
let baseDiffId: Digest;
/** An image whose second layer deletes a file (an OCI whiteout): diff IDs of both layers. */
let whiteoutDiffIds: Digest[];

interface Inspected {
  RootFS: { Layers: string[] };
}

async function diffIdsOf(root: string, image: string): Promise<Digest[]> {
  const r = await tsbuild(['inspect', image], { root });
  expect(r.code, r.stderr).toBe(0);
  const doc = JSON.parse(r.stdout) as Inspected | Inspected[];
  return (Array.isArray(doc) ? doc[0]! : doc).RootFS.Layers.map((d) => parseDigest(d));
}

async function snapshots(root: string): Promise<string[]> {
  return (await fs.readdir(path.join(root, 'snapshots')).catch(() => [] as string[])).sort();
}

const hex = (d: Digest): string => d.slice(d.indexOf(':') + 1);

/**
 * Overwrites a stored layer blob with zeros (a tar of zeros is an empty archive): a build that
 * unpacked the layer again would run on an empty tree, so a RUN that succeeds on it proves the
 * snapshot made at pull time was used and the blob never read.
 */
async function zeroBlob(root: string, diffId: Digest): Promise<void> {
  const blob = path.join(root, 'blobs', 'sha256', hex(diffId));
  const { size } = await fs.stat(blob);
  await fs.chmod(blob, 0o644);
  await fs.writeFile(blob, Buffer.alloc(size));
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests run RUN steps as root; run the suite as root (CI does)');
  await requireTool('bwrap');
  work = await tempDir('pull-unpack');
  registry = await startRegistry({ mode: { kind: 'open' } });
  const src = path.join(work, 'src');
  await storeWithMultiarchBusybox(src);
  await pushMultiarchBusybox(src, registry.host);
  // A layer with a whiteout (copy-and-walk snapshots write OCI `.wh.` entries), pushed.
  const ctx = path.join(work, 'ctx-wh');
  await writeTree(ctx, { Dockerfile: 'FROM busybox:amd64\nRUN rm /bin/ls && echo gone > /gone\n' });
  const built = await tsbuild(['build', '-q', '-t', `${registry.host}/wh/image:v1`, ctx], { root: src, env: { TSBUILD_SNAPSHOTTER: 'copy' } });
  expect(built.code, built.stderr).toBe(0);
  const pushed = await tsbuild(['push', `${registry.host}/wh/image:v1`], { root: src });
  expect(pushed.code, pushed.stderr).toBe(0);
  baseDiffId = (await diffIdsOf(src, 'busybox:amd64'))[0]!;
  whiteoutDiffIds = await diffIdsOf(src, `${registry.host}/wh/image:v1`);
  expect(whiteoutDiffIds).toHaveLength(2);
}, 300_000);

afterAll(async () => {
  await registry?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('tsbuild pull unpacks for the build', () => {
  it('makes the base layer snapshot, and a RUN on it unpacks nothing again', async () => {
    const root = path.join(work, 'store-a');
    const pull = await tsbuild(['pull', `${registry.host}/library/busybox:amd64`], { root });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toMatch(/: Download complete\n[0-9a-f]{12}: Extracting\n[0-9a-f]{12}: Pull complete\n/);
    expect(await snapshots(root)).toEqual([hex(baseDiffId)]);
    const snap = path.join(root, 'snapshots', hex(baseDiffId));
    expect((await fs.readFile(path.join(snap, 'bin/busybox'))).byteLength).toBeGreaterThan(0);
    const before = await fs.stat(snap);
    const fsck = await tsbuild(['fsck'], { root });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);

    // Pulled again: already there, already unpacked; docker's one line.
    const again = await tsbuild(['pull', `${registry.host}/library/busybox:amd64`], { root });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('Already exists');
    expect(again.stderr).not.toContain('Extracting');
    expect(again.stderr).not.toContain('Pull complete');

    await zeroBlob(root, baseDiffId);
    const ctx = path.join(work, 'ctx-a');
    await writeTree(ctx, { Dockerfile: `FROM ${registry.host}/library/busybox:amd64\nRUN echo built > /built\n` });
    const built = await tsbuild(['build', '-q', '-t', 'after-pull', ctx], { root });
    expect(built.code, built.stderr).toBe(0);
    // The same tree (inode and mtime) under the same name; the only new snapshot is the RUN's.
    const after = await fs.stat(snap);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    const runLayer = (await diffIdsOf(root, 'after-pull'))[1]!;
    expect(await snapshots(root)).toEqual([hex(baseDiffId), hex(runLayer)].sort());
  }, 120_000);

  it('flattens up to a layer with whiteouts, the chain the build then uses', async () => {
    const root = path.join(work, 'store-wh');
    const pull = await tsbuild(['pull', `${registry.host}/wh/image:v1`], { root });
    expect(pull.code, pull.stderr).toBe(0);
    const chain = chainId(whiteoutDiffIds);
    expect(await snapshots(root)).toEqual([hex(whiteoutDiffIds[0]!), hex(chain)].sort());
    const flat = path.join(root, 'snapshots', hex(chain));
    await expect(fs.lstat(path.join(flat, 'bin/ls'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await fs.readFile(path.join(flat, 'gone'), 'utf8')).toBe('gone\n');
    const before = await fs.stat(flat);

    for (const d of whiteoutDiffIds) await zeroBlob(root, d);
    const ctx = path.join(work, 'ctx-wh2');
    await writeTree(ctx, { Dockerfile: `FROM ${registry.host}/wh/image:v1\nRUN test ! -e /bin/ls && cat /gone > /seen\n` });
    const built = await tsbuild(['build', '-q', '-t', 'on-chain', ctx], { root });
    expect(built.code, built.stderr).toBe(0);
    const after = await fs.stat(flat);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    const runLayer = (await diffIdsOf(root, 'on-chain'))[2]!;
    expect(await snapshots(root)).toEqual([hex(whiteoutDiffIds[0]!), hex(chain), hex(runLayer)].sort());
  }, 120_000);

  it('--no-unpack only stores the layers', async () => {
    const root = path.join(work, 'store-b');
    const pull = await tsbuild(['pull', '--no-unpack', `${registry.host}/library/busybox:amd64`], { root });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toContain('Pull complete');
    expect(pull.stderr).not.toContain('Extracting');
    expect(await snapshots(root)).toEqual([]);
  }, 60_000);

  it('leaves another platform packed, without a word', async () => {
    const root = path.join(work, 'store-c');
    const arm = await tsbuild(['pull', '--platform', 'linux/arm64', `${registry.host}/library/busybox:multi`], { root });
    expect(arm.code, arm.stderr).toBe(0);
    expect(arm.stderr).not.toMatch(/warning|Extracting/);
    expect(arm.stderr).toContain('Pull complete');
    expect(await snapshots(root)).toEqual([]);

    // Every platform: only this host's image is unpacked.
    const all = await tsbuild(['pull', '--all-platforms', `${registry.host}/library/busybox:multi`], { root });
    expect(all.code, all.stderr).toBe(0);
    expect(all.stderr).not.toContain('warning');
    expect(await snapshots(root)).toEqual([hex(baseDiffId)]);
  }, 60_000);

  it('makes nothing where builds use copy-and-walk snapshots', async () => {
    const root = path.join(work, 'store-d');
    const pull = await tsbuild(['pull', `${registry.host}/library/busybox:amd64`], { root, env: { TSBUILD_SNAPSHOTTER: 'copy' } });
    expect(pull.code, pull.stderr).toBe(0);
    expect(await snapshots(root)).toEqual([]);
  }, 60_000);

  it('rmi and prune take the pulled snapshots with the image', async () => {
    const root = path.join(work, 'store-e');
    const pull = await tsbuild(['pull', `${registry.host}/wh/image:v1`], { root });
    expect(pull.code, pull.stderr).toBe(0);
    expect(await snapshots(root)).toHaveLength(2);
    // Tagged: prune keeps both, the flattened chain too (a build needs it).
    const keep = await tsbuild(['prune', '--filter', 'until=0s'], { root });
    expect(keep.code, keep.stderr).toBe(0);
    expect(await snapshots(root)).toHaveLength(2);
    const df = await tsbuild(['system', 'df'], { root });
    expect(df.code, df.stderr).toBe(0);
    expect(df.stdout).toMatch(/Snapshots\s+2\s+2\s/);
    const rmi = await tsbuild(['rmi', `${registry.host}/wh/image:v1`], { root });
    expect(rmi.code, rmi.stderr).toBe(0);
    const prune = await tsbuild(['prune', '--filter', 'until=0s'], { root });
    expect(prune.code, prune.stderr).toBe(0);
    expect(await snapshots(root)).toEqual([]);
    const fsck = await tsbuild(['fsck'], { root });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
  }, 60_000);

  it('an unpack that fails is a warning: the image is stored, nothing half-written', async () => {
    const root = path.join(work, 'store-bad');
    const init = await tsbuild(['images'], { root });
    expect(init.code, init.stderr).toBe(0);
    // snapshots/ is a file: every snapshot of this store fails (ENOTDIR), as a broken disk would.
    await fs.rmdir(path.join(root, 'snapshots'));
    await fs.writeFile(path.join(root, 'snapshots'), 'not a directory');
    const pull = await tsbuild(['pull', `${registry.host}/library/busybox:amd64`], { root });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toMatch(/^warning: .*busybox:amd64 is stored, but unpacking it failed \(the first build that runs a step on it will unpack it\): ENOTDIR/m);
    expect(pull.stderr).not.toMatch(/\n\s+at /);
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
    const images = await tsbuild(['images'], { root });
    expect(images.stdout).toContain(`${registry.host}/library/busybox`);
  }, 60_000);

  it('shares one unpack between two callers of a process, as a RUN step waits for the pull\'s', async () => {
    const root = path.join(work, 'store-share');
    const pulled = await tsbuild(['pull', '--no-unpack', `${registry.host}/wh/image:v1`], { root });
    expect(pulled.code, pulled.stderr).toBe(0);
    const store = await openStore(root);
    // --no-unpack kept the layers compressed: reading the image, as a build does, decompresses them.
    expect(await findLocalImage(store, `${registry.host}/wh/image:v1`)).toBeDefined();
    const real = await hostFilesystem();
    const applied: string[] = [];
    const counting: HostFilesystem = {
      ...real,
      unpackLayer: async (s, diffId, dir, signal) => {
        applied.push(diffId);
        await real.unpackLayer(s, diffId, dir, signal);
      },
    };
    const indexOf = (i: number) => layerIndexOf(store, whiteoutDiffIds[i]!);
    const [a, b] = await Promise.all([ensureLowerDirs(store, counting, whiteoutDiffIds, indexOf), ensureLowerDirs(store, counting, whiteoutDiffIds, indexOf)]);
    expect(a).toEqual(b);
    expect(a).toEqual([path.join(root, 'snapshots', hex(chainId(whiteoutDiffIds)))]);
    // The clean first layer alone, then the flattened chain of both: three applies, not six.
    expect(applied).toEqual([whiteoutDiffIds[0], whiteoutDiffIds[0], whiteoutDiffIds[1]]);
    expect(await snapshots(root)).toEqual([hex(whiteoutDiffIds[0]!), hex(chainId(whiteoutDiffIds))].sort());
  }, 60_000);

  it('a build that pulls its base unpacks it while it downloads, once', async () => {
    const root = path.join(work, 'store-build');
    const ctx = path.join(work, 'ctx-build');
    await writeTree(ctx, { Dockerfile: `FROM ${registry.host}/wh/image:v1\nRUN cat /gone > /seen\n` });
    const built = await tsbuild(['build', '-q', '-t', 'pulled-by-build', ctx], { root });
    expect(built.code, built.stderr).toBe(0);
    const runLayer = (await diffIdsOf(root, 'pulled-by-build'))[2]!;
    expect(await snapshots(root)).toEqual([hex(whiteoutDiffIds[0]!), hex(chainId(whiteoutDiffIds)), hex(runLayer)].sort());
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
  }, 60_000);

  it('pull() of the API unpacks too, unless unpack: false', async () => {
    const root = path.join(work, 'store-api');
    const statuses: string[] = [];
    const r = await pull(`${registry.host}/library/busybox:amd64`, { root, onProgress: (p) => {
        if (p.type === 'unpack') statuses.push(p.status);
      },
    });
    expect(r.warnings).toEqual([]);
    expect(statuses).toContain('extracting');
    expect(await snapshots(root)).toEqual([hex(baseDiffId)]);
    const packed = path.join(work, 'store-api-packed');
    await pull(`${registry.host}/library/busybox:amd64`, { root: packed, unpack: false });
    expect(await snapshots(packed)).toEqual([]);
  }, 60_000);

  it('unpacks in the user namespace for an ordinary user', async () => {
    await withTestUser('pull-unpack', async ({ dir, store, give, ok }) => {
      await writeTree(path.join(dir, 'ctx'), { Dockerfile: `FROM ${registry.host}/library/busybox:amd64\nRUN echo built > /built\n` });
      await give();
      const pull = await ok(`${CLI} pull ${registry.host}/library/busybox:amd64`);
      expect(pull.stderr).toContain('Extracting');
      const snap = path.join(store, 'snapshots', hex(baseDiffId));
      const before = await fs.stat(snap);
      await ok(`${CLI} build -q -t rootless-after-pull ${dir}/ctx`);
      const after = await fs.stat(snap);
      expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
      expect(await snapshots(store)).toHaveLength(2);
    });
  }, 180_000);

  it('a worker in the user namespace dies with a SIGKILLed tsbuild (unpack, write-layer and tree removal run there)', async () => {
    await withTestUser('ns-worker-death', async ({ dir, give, ok }) => {
      // runInUserNamespace from the compiled code, running a sleep no other process of the machine runs.
      const marker = '27182818';
      const script = path.join(dir, 'worker.mjs');
      await fs.writeFile(script, `import(${JSON.stringify(path.join(repo, 'dist/src/sandbox/index.js'))}).then((m) => m.runInUserNamespace('sleep', ['${marker}']));\n`);
      await give();
      const r = await ok(
        `${process.execPath} ${script} & p=$!; ` +
          `i=0; until pgrep -f '^sleep ${marker}$' >/dev/null || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done; ` +
          `pgrep -f '^sleep ${marker}$' >/dev/null && echo started; kill -9 $p; sleep 1; ` +
          `pgrep -f '^sleep ${marker}$' >/dev/null && echo left || echo gone`,
      );
      expect(r.stdout.trim().split('\n')).toEqual(['started', 'gone']);
    });
  }, 60_000);
});
