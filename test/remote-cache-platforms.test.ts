import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, tempDir, tool, tsbuild, writeTree, type RunResult } from './support/cli.js';
import { storeWithMultiarchBusybox } from './support/multiarch.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.js';

// --cache-to / --cache-from with several platforms (docs/remote-cache.md): one build for
// linux/amd64 and linux/arm64 (the arm64 RUN emulated through binfmt_misc, test/support/
// multiarch.ts) exports one cache holding both platforms' steps; another store imports it and
// reuses every step of both, and pushes the index without downloading a layer.
let work: string;
let reg: RunningRegistry;
let proxy: FaultProxy;

// The $BUILDPLATFORM stage runs once for both; each platform's RUN writes random bytes.
const DOCKERFILE = [
  'FROM --platform=$BUILDPLATFORM busybox:latest AS gen',
  'RUN head -c 32 /dev/urandom | od -An -tx1 > /rand',
  'FROM busybox:multi',
  'COPY --from=gen /rand /rand',
  'COPY a.txt /a.txt',
  'RUN head -c 32 /dev/urandom | od -x > /rand2 && uname -m > /arch',
  '',
].join('\n');
const PLATFORMS = ['--platform', 'linux/amd64,linux/arm64'];
// Image IDs compare across stores: the same created time everywhere.
const ENV = { SOURCE_DATE_EPOCH: '0' };

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests run RUN steps as root; run the suite as root (CI does)');
  for (const t of ['bwrap', 'skopeo', 'qemu-aarch64-static']) await requireTool(t);
  const binfmt = await fs.readFile('/proc/sys/fs/binfmt_misc/qemu-aarch64', 'utf8').catch(() => '');
  if (!/^enabled/.test(binfmt) || !/flags:.*F/.test(binfmt)) throw new Error('qemu-aarch64 is not registered in binfmt_misc with the F flag; run scripts/setup');
  work = await tempDir('remote-cache-platforms');
  reg = await startRegistry({ mode: { kind: 'open' } });
  proxy = await startFaultProxy({ upstream: `http://${reg.host}` });
}, 120_000);
afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

/** A fresh store with busybox for both platforms: another CI machine. */
async function machine(name: string): Promise<string> {
  const root = path.join(work, name);
  await storeWithMultiarchBusybox(root);
  return root;
}

/** A plain-progress build; `ran` and `cached` name each step with its platform (`[linux/arm64] RUN ...`). */
async function build(root: string, name: string, args: readonly string[]): Promise<RunResult & { id: string; cached: string[]; ran: string[] }> {
  const iid = path.join(work, `iid-${name}`);
  const r = await tsbuild(['build', '--progress', 'plain', '--iidfile', iid, ...args], { root, env: ENV });
  const names = new Map<string, string>();
  for (const m of r.stderr.matchAll(/^#(\d+) (\[linux\/\w+\]) \[[\w-]* ?\d+\/\d+\] (.*)$/gm)) names.set(m[1]!, `${m[2]} ${m[3]}`);
  const cached = [...r.stderr.matchAll(/^#(\d+) CACHED$/gm)].map((m) => names.get(m[1]!)).filter((n): n is string => n !== undefined);
  const ran = [...r.stderr.matchAll(/^#(\d+) DONE /gm)].map((m) => names.get(m[1]!)).filter((n): n is string => n !== undefined && !/\] FROM /.test(n));
  const id = await fs.readFile(iid, 'utf8').then((t) => t.trim(), () => '');
  return { ...r, id, cached, ran };
}

async function registryJson<T>(host: string, repo: string, kind: 'manifests' | 'blobs', ref: string, accept = 'application/vnd.oci.image.manifest.v1+json'): Promise<T> {
  const res = await fetch(`http://${host}/v2/${repo}/${kind}/${ref}`, { headers: { accept } });
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

interface CacheManifest {
  config: { mediaType: string; digest: string };
  layers: Array<{ mediaType: string; digest: string }>;
}

describe('--cache-to / --cache-from with several platforms', () => {
  it('one export holds both platforms; an empty store imports the registry or the directory and reuses every step of both', async () => {
    const ctx = path.join(work, 'ctx');
    await writeTree(ctx, { Dockerfile: DOCKERFILE, 'a.txt': 'a\n' });
    const ref = `${reg.host}/ci/multi:cache`;
    const dir = path.join(work, 'cache-dir');
    const a = await machine('A');
    const first = await build(a, 'A', [...PLATFORMS, '--cache-to', `type=registry,ref=${ref},mode=max`, '--cache-to', `type=local,dest=${dir},mode=max`, ctx]);
    expect(first.stderr).not.toMatch(/warning|error/i);
    expect(first.code).toBe(0);
    // gen's RUN once (both platforms share it), then COPY, COPY, RUN for each platform.
    expect(first.ran).toHaveLength(7);
    expect(first.id).toMatch(/^sha256:[a-f0-9]{64}$/);
    // One export per --cache-to, not one per platform.
    expect(first.stderr.match(/^#\d+ exporting cache to /gm)).toHaveLength(2);

    // One manifest, one document, exported once, with the entries of both platforms.
    const manifest = await registryJson<CacheManifest>(reg.host, 'ci/multi', 'manifests', 'cache');
    expect(manifest.config.mediaType).toBe('application/vnd.tsbuild.cache.v1+json');
    const doc = await registryJson<{ exports: number; entries: Record<string, { layers?: Array<{ digest: string }> }>; explain: { steps: Record<string, string> }; baseLayers?: Array<{ layer: { digest: string; index?: { digest: string } } }> }>(reg.host, 'ci/multi', 'blobs', manifest.config.digest);
    expect(doc.exports).toBe(1);
    expect(Object.keys(doc.entries)).toHaveLength(7);
    const identities = Object.keys(doc.explain.steps).join('\n');
    expect(identities).toContain('linux/arm64');
    expect(identities).toContain('linux/amd64');
    // Each distinct layer once (the COPY steps make the same layer for both platforms), and
    // each platform's base image layer (baseLayers).
    expect(doc.baseLayers).toHaveLength(2);
    const blobs = new Set([...Object.values(doc.entries).flatMap((e) => e.layers?.map((l) => l.digest) ?? []), ...doc.baseLayers!.map((b) => b.layer.digest)]);
    expect(manifest.layers.filter((l) => l.mediaType.endsWith('tar+gzip')).map((l) => l.digest).sort()).toEqual([...blobs].sort());
    // The directory holds the same manifest, but for the base layers (they help pushes to a registry).
    const layoutIndex = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    expect(layoutIndex.manifests).toHaveLength(1);
    const local = JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', layoutIndex.manifests[0]!.digest.slice(7)), 'utf8')) as CacheManifest;
    const base = new Set(doc.baseLayers!.flatMap((b) => [b.layer.digest, ...(b.layer.index ? [b.layer.index.digest] : [])]));
    expect(local.layers.map((l) => l.digest).sort()).toEqual(manifest.layers.map((l) => l.digest).filter((d) => !base.has(d)).sort());

    // Store B from the registry: every step of both platforms hits (the RUNs writing random
    // bytes do not run), and the index is the same.
    const b = await machine('B');
    const fromRegistry = await build(b, 'B', [...PLATFORMS, '--cache-from', `type=registry,ref=${ref}`, ctx]);
    expect(fromRegistry.stderr).not.toMatch(/warning|error/i);
    expect(fromRegistry.code).toBe(0);
    expect(fromRegistry.ran).toEqual([]);
    expect(fromRegistry.cached.filter((n) => n.startsWith('[linux/arm64]')).length).toBeGreaterThanOrEqual(3);
    expect(fromRegistry.cached.filter((n) => n.startsWith('[linux/amd64]')).length).toBeGreaterThanOrEqual(3);
    expect(fromRegistry.id).toBe(first.id);
    // The source is read once for the whole build, not once per platform.
    expect(fromRegistry.stderr.match(new RegExp(`registry cache ${ref.replace(/[.]/g, '\\.')}: 7 entries`, 'g'))).toHaveLength(1);

    // Store C from the directory: the same.
    const c = await machine('C');
    const fromDir = await build(c, 'C', [...PLATFORMS, '--cache-from', `type=local,src=${dir}`, ctx]);
    expect(fromDir.stderr).not.toMatch(/warning|error/i);
    expect(fromDir.code).toBe(0);
    expect(fromDir.ran).toEqual([]);
    expect(fromDir.id).toBe(first.id);

    // One changed file: each platform's COPY and RUN after it run again, nothing else; the
    // export merges into the same document (a second export).
    await fs.writeFile(path.join(ctx, 'a.txt'), 'a changed\n');
    const changed = await build(c, 'C2', [...PLATFORMS, '--cache-from', `type=local,src=${dir}`, '--cache-to', `type=local,dest=${dir},mode=max`, ctx]);
    expect(changed.code).toBe(0);
    expect(changed.ran.sort()).toEqual(['[linux/amd64] COPY a.txt /a.txt', '[linux/amd64] RUN head -c 32 /dev/urandom | od -x > /rand2 && uname -m > /arch', '[linux/arm64] COPY a.txt /a.txt', '[linux/arm64] RUN head -c 32 /dev/urandom | od -x > /rand2 && uname -m > /arch']);
    const after = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const afterManifest = JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', after.manifests[0]!.digest.slice(7)), 'utf8')) as CacheManifest;
    const afterDoc = JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', afterManifest.config.digest.slice(7)), 'utf8')) as { exports: number; entries: Record<string, unknown> };
    expect(afterDoc.exports).toBe(2);
    expect(Object.keys(afterDoc.entries)).toHaveLength(11);
  }, 600_000);

  it('-o type=registry pushes every platform and the index; with every step a hit from that registry, no layer is downloaded', async () => {
    const ctx = path.join(work, 'push-ctx');
    // No COPY --from: a stage such a COPY reads is unpacked (its hits fetched) to key the COPY.
    await writeTree(ctx, { Dockerfile: 'FROM busybox:multi\nCOPY a.txt /a.txt\nRUN head -c 32 /dev/urandom | od -x > /rand2 && uname -m > /arch\n', 'a.txt': 'push only\n' });
    const cache = `${proxy.host}/app/multi-cache`;
    const a = await machine('push-a');
    const first = await build(a, 'push-a', [...PLATFORMS, '--cache-to', `type=registry,ref=${cache},mode=max`, '-t', `${proxy.host}/app/multi-a:v1`, '--push', ctx]);
    expect(first.code).toBe(0);
    const cacheLayers = (await registryJson<CacheManifest>(reg.host, 'app/multi-cache', 'manifests', 'latest')).layers.filter((l) => l.mediaType.endsWith('tar+gzip')).map((l) => l.digest);
    // COPY a.txt makes one layer for both platforms; each platform's RUN its own; and each
    // platform's base image layer.
    expect(cacheLayers).toHaveLength(5);

    const b = await machine('push-b');
    proxy.stats.log.splice(0);
    const pushed = await build(b, 'push-b', [...PLATFORMS, '--cache-from', `type=registry,ref=${cache}`, '-o', `type=registry,name=${proxy.host}/app/multi-img:v1`, ctx]);
    expect(pushed.stderr).not.toMatch(/warning|error/i);
    expect(pushed.code).toBe(0);
    expect(pushed.ran).toEqual([]);
    expect(pushed.id).toBe(first.id);
    // No layer blob of the cache was downloaded: every layer was mounted from the cache's
    // repository, the base images' too.
    expect(proxy.stats.log.filter((e) => e.method === 'GET' && cacheLayers.some((d) => e.path.includes(`/blobs/${d}`)))).toEqual([]);
    expect(proxy.stats.log.filter((e) => e.method === 'POST' && e.path.startsWith('/v2/app/multi-img/blobs/uploads/') && e.path.includes('mount=') && e.status === 201)).toHaveLength(5);

    // The registry holds the same index as store A pushed (same images, same compressed layers).
    const raw = async (r: string) => (await tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${r}`])).stdout;
    const mine = JSON.parse(await raw(`${proxy.host}/app/multi-img:v1`)) as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
    const theirs = JSON.parse(await raw(`${proxy.host}/app/multi-a:v1`)) as typeof mine;
    expect(mine.manifests.map((m) => m.platform.architecture).sort()).toEqual(['amd64', 'arm64']);
    expect(mine.manifests.map((m) => m.digest)).toEqual(theirs.manifests.map((m) => m.digest));
    for (const arch of ['amd64', 'arm64']) {
      const out = path.join(work, `push-copy-${arch}`);
      await tool('skopeo', ['copy', '--src-tls-verify=false', '--override-arch', arch, `docker://${proxy.host}/app/multi-img:v1`, `oci:${out}:v1`]);
    }

    // Not in B's store: no tag, no untagged image or index left behind, and the store is whole.
    const images = await tsbuild(['images', '--format', '{{.ID}} {{.Repository}}'], { root: b });
    expect(images.code).toBe(0);
    expect(images.stdout).not.toContain('multi-img');
    expect(await fs.stat(path.join(b, 'blobs/sha256', first.id.slice(7))).catch(() => undefined)).toBeUndefined();
    const fsck = await tsbuild(['fsck'], { root: b });
    expect(fsck.stderr + fsck.stdout).not.toMatch(/missing|corrupt|leftover/);
    expect(fsck.code).toBe(0);
  }, 600_000);

  it('an index pushed with --cache-to type=inline serves the steps of every platform', async () => {
    const ctx = path.join(work, 'inline-ctx');
    await writeTree(ctx, { Dockerfile: DOCKERFILE, 'a.txt': 'inline\n' });
    const image = `${reg.host}/ci/inline-multi:v1`;
    const a = await machine('inline-a');
    const pushed = await build(a, 'inline-a', [...PLATFORMS, '--cache-to', 'type=inline', '-t', image, '--push', ctx]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const b = await machine('inline-b');
    const again = await build(b, 'inline-b', [...PLATFORMS, '--cache-from', image, '--cache-to', 'type=inline', ctx]);
    expect(again.stderr).not.toMatch(/warning|error/i);
    expect(again.code).toBe(0);
    // Not only the host's (amd64) image's steps: the arm64 RUN, emulated, is not run again.
    expect(again.ran).toEqual([]);
    expect(again.id).toBe(pushed.id);
  }, 600_000);
});
