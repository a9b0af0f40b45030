import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree, type RunResult } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.js';
import { startTokenIssuer, type TokenIssuer } from './support/token-issuer.js';

// --cache-to / --cache-from (docs/remote-cache.md): each store stands for one CI machine, the
// real registry (open, then with token auth) and a local directory carry the cache between
// them, and the fault proxy breaks an import and an export.
let work: string;
let reg: RunningRegistry;
let proxy: FaultProxy;

const DOCKERFILE = [
  'FROM busybox',
  'COPY a.txt /a.txt',
  'RUN head -c 32 /dev/urandom | od -x > /rand1',
  'COPY b.txt /b.txt',
  'RUN head -c 32 /dev/urandom | od -x > /rand2 && cat /b.txt >> /rand2',
  'RUN true',
  '',
].join('\n');

// Image IDs compare across stores: the same created time everywhere.
const ENV = { SOURCE_DATE_EPOCH: '0' };

beforeAll(async () => {
  work = await tempDir('remote-cache');
  reg = await startRegistry({ mode: { kind: 'open' } });
  proxy = await startFaultProxy({ upstream: `http://${reg.host}` });
});
afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

/** A fresh store with busybox: another CI machine. */
async function machine(name: string): Promise<string> {
  const root = path.join(work, name);
  await storeWithBusybox(root);
  return root;
}

async function context(name: string, b: string): Promise<string> {
  const dir = path.join(work, name);
  await writeTree(dir, { Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'b.txt': b });
  return dir;
}

async function build(root: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<RunResult & { id: string; cached: string[]; ran: string[] }> {
  const r = await tsbuild(['build', '--progress', 'plain', ...args], { root, env: { ...ENV, ...opts.env } });
  // "#3 [3/6] RUN ..." then "#3 CACHED" or "#3 DONE".
  const names = new Map<string, string>();
  for (const m of r.stderr.matchAll(/^#(\d+) \[\d+\/\d+\] (.*)$/gm)) names.set(m[1]!, m[2]!);
  const cached = [...r.stderr.matchAll(/^#(\d+) CACHED$/gm)].map((m) => names.get(m[1]!)!).filter(Boolean);
  const ran = [...r.stderr.matchAll(/^#(\d+) DONE /gm)].map((m) => names.get(m[1]!)).filter((n): n is string => n !== undefined && !n.startsWith('FROM'));
  return { ...r, id: r.stdout.trim(), cached, ran };
}

async function manifestOf(host: string, repoTag: string): Promise<{ digest: string | null; body: { config: { mediaType: string; digest: string }; layers: Array<{ digest: string; mediaType: string }> } }> {
  const [repo, tag] = repoTag.split(':');
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  expect(res.status).toBe(200);
  return { digest: res.headers.get('docker-content-digest'), body: (await res.json()) as never };
}

async function documentOf(host: string, repo: string, digest: string): Promise<{ mediaType: string; exports: number; entries: Record<string, unknown> }> {
  const res = await fetch(`http://${host}/v2/${repo}/blobs/${digest}`);
  expect(res.status).toBe(200);
  return (await res.json()) as never;
}

describe('--cache-to / --cache-from between two stores', () => {
  it('a second store imports the registry or the directory cache and reuses every step; one changed file reruns exactly the steps after it', async () => {
    const a = await machine('A');
    const ctx = await context('ctx', 'b\n');
    const dir = path.join(work, 'cache-dir');
    const ref = `${reg.host}/ci/app:cache`;
    const first = await build(a, ['--cache-to', `type=registry,ref=${ref},mode=max`, '--cache-to', `type=local,dest=${dir}`, ctx]);
    expect(first.stderr).not.toMatch(/warning|error/i);
    expect(first.code).toBe(0);
    expect(first.ran).toHaveLength(5);

    // The ref is one OCI image manifest whose config is the cache document.
    const { body } = await manifestOf(reg.host, 'ci/app:cache');
    expect(body.config.mediaType).toBe('application/vnd.tsbuild.cache.v1+json');
    const doc = await documentOf(reg.host, 'ci/app', body.config.digest);
    expect(doc.exports).toBe(1);
    expect(Object.keys(doc.entries)).toHaveLength(5);
    // Four layers (RUN true made none), each with its file list (what lazy hits read first),
    // and the base image's layer with its file list (the document's baseLayers).
    expect(body.layers.filter((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip')).toHaveLength(5);
    expect(body.layers.filter((l) => l.mediaType === 'application/vnd.tsbuild.layer-index.v1+json')).toHaveLength(5);
    // The directory is an OCI layout holding the same document.
    const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const localManifest = JSON.parse(await fs.readFile(path.join(dir, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as typeof body;
    expect(localManifest.config.mediaType).toBe('application/vnd.tsbuild.cache.v1+json');
    // The steps' blobs (a directory carries no base layers: they help pushes to a registry).
    expect(localManifest.layers).toHaveLength(8);
    expect(body.layers.map((l) => l.digest)).toEqual(expect.arrayContaining(localManifest.layers.map((l) => l.digest)));

    // Store B (empty but for busybox) from the registry: every step hits, the RUNs writing
    // random bytes are not run again, and the image is the same.
    const b = await machine('B');
    const fromRegistry = await build(b, ['--cache-from', `type=registry,ref=${ref}`, ctx]);
    expect(fromRegistry.stderr).not.toMatch(/warning|error/i);
    expect(fromRegistry.code).toBe(0);
    expect(fromRegistry.ran).toEqual([]);
    expect(fromRegistry.cached).toHaveLength(5);
    expect(fromRegistry.id).toBe(first.id);
    expect(fromRegistry.stderr).toContain(`registry cache ${ref}: 5 entries`);
    // What was imported is kept in B's own step cache: without the source, still every step hits.
    expect((await build(b, [ctx])).ran).toEqual([]);

    // Store C from the directory: the same.
    const c = await machine('C');
    const fromDir = await build(c, ['--cache-from', `type=local,src=${dir}`, ctx]);
    expect(fromDir.code).toBe(0);
    expect(fromDir.ran).toEqual([]);
    expect(fromDir.id).toBe(first.id);

    // One changed file: the steps before it hit, it and every step after it run.
    const changed = await context('ctx-changed', 'b changed\n');
    const d = await machine('D');
    const partial = await build(d, ['--cache-from', ref, '--cache-to', `type=registry,ref=${ref},mode=max`, changed]);
    expect(partial.code).toBe(0);
    expect(partial.cached).toEqual(['COPY a.txt /a.txt', 'RUN head -c 32 /dev/urandom | od -x > /rand1']);
    expect(partial.ran).toEqual(['COPY b.txt /b.txt', 'RUN head -c 32 /dev/urandom | od -x > /rand2 && cat /b.txt >> /rand2', 'RUN true']);

    // The export merged: the ref serves both versions of the context now.
    const merged = await documentOf(reg.host, 'ci/app', (await manifestOf(reg.host, 'ci/app:cache')).body.config.digest);
    expect(merged.exports).toBe(2);
    expect(Object.keys(merged.entries)).toHaveLength(8);
    const e = await machine('E');
    expect((await build(e, ['--cache-from', ref, ctx])).ran).toEqual([]);
    expect((await build(e, ['--cache-from', ref, changed])).ran).toEqual([]);
  });

  it('keeps a cache bounded: entries no export of the last max-exports used are dropped, and their blobs leave the directory', async () => {
    const a = await machine('bounded');
    const dir = path.join(work, 'bounded-dir');
    const one = await context('bounded-1', 'one\n');
    const two = await context('bounded-2', 'two\n');
    expect((await build(a, ['--cache-to', `type=local,dest=${dir},mode=max,max-exports=1`, one])).code).toBe(0);
    const blobsAfterOne = (await fs.readdir(path.join(dir, 'blobs', 'sha256'))).length;
    expect((await build(a, ['--cache-to', `type=local,dest=${dir},mode=max,max-exports=1`, two])).code).toBe(0);
    // Only the second build's entries are left: the first build's context misses from it.
    const fresh = await machine('bounded-fresh');
    const again = await build(fresh, ['--cache-from', `type=local,src=${dir}`, one]);
    expect(again.cached).toEqual(['COPY a.txt /a.txt', 'RUN head -c 32 /dev/urandom | od -x > /rand1']);
    expect(again.ran).toHaveLength(3);
    // The blobs of the dropped entries are gone (two layers of the first build differ).
    expect((await fs.readdir(path.join(dir, 'blobs', 'sha256'))).length).toBe(blobsAfterOne);
    // mode=min (the default) exports the final image's steps: the same here (one stage).
    const min = path.join(work, 'min-dir');
    expect((await build(a, ['--cache-to', `type=local,dest=${min}`, two])).code).toBe(0);
    const idx = JSON.parse(await fs.readFile(path.join(min, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const m = JSON.parse(await fs.readFile(path.join(min, 'blobs', 'sha256', idx.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ mediaType: string }> };
    expect(m.layers.filter((l) => l.mediaType.endsWith('tar+gzip'))).toHaveLength(4);
  });

  it('compression=zstd: the layers are zstd frames in the registry and the directory, and another store imports either', async () => {
    await requireTool('zstd');
    const a = await machine('zstd-A');
    const ctx = await context('ctx-zstd', 'zstd\n');
    const dir = path.join(work, 'zstd-dir');
    const ref = `${reg.host}/ci/zstd:cache`;
    const first = await build(a, ['--cache-to', `type=registry,ref=${ref},mode=max,compression=zstd`, '--cache-to', `type=local,dest=${dir},compression=zstd`, ctx]);
    expect(first.stderr).not.toMatch(/warning|error/i);
    expect(first.code).toBe(0);
    const { body } = await manifestOf(reg.host, 'ci/zstd:cache');
    // The four steps' layers and the base image's (the document's baseLayers), all zstd.
    const steps = body.layers.filter((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+zstd');
    expect(steps).toHaveLength(5);
    expect(body.layers.filter((l) => l.mediaType.endsWith('tar+gzip'))).toEqual([]);
    // Each is a zstd frame (magic 28 b5 2f fd) that the zstd program takes.
    const res = await fetch(`http://${reg.host}/v2/ci/zstd/blobs/${steps[0]!.digest}`);
    const frame = Buffer.from(await res.arrayBuffer());
    expect(frame.subarray(0, 4).toString('hex')).toBe('28b52ffd');
    const blob = path.join(work, 'zstd-frame.zst');
    await fs.writeFile(blob, frame);
    await tool('zstd', ['-t', '-q', blob]); // rejects on a bad frame

    for (const [name, from] of [['zstd-B', `type=registry,ref=${ref}`], ['zstd-C', `type=local,src=${dir}`]] as const) {
      const b = await machine(name);
      const again = await build(b, ['--cache-from', from, ctx]);
      expect(again.stderr).not.toMatch(/warning|error/i);
      expect(again.ran).toEqual([]);
      expect(again.id).toBe(first.id);
      // The image's layers were read from the zstd blobs: a local output holds the RUN's file.
      const out = path.join(work, `${name}-out`);
      expect((await build(b, ['--cache-from', from, '-o', `type=local,dest=${out}`, ctx])).code).toBe(0);
      expect((await fs.readFile(path.join(out, 'rand2'), 'utf8')).endsWith('zstd\n')).toBe(true);
    }
  });
});

describe('-o type=registry: pushed, not kept in the local store', () => {
  it('a fully cached build pushed to the registry holding the cache downloads no layer: its layers are mounted from the cache', async () => {
    await requireTool('skopeo');
    const ctx = await context('push-only-ctx', 'push only\n');
    const cache = `${proxy.host}/app/cache`;
    // Store A: builds, exports every step, and pushes its image (to compare with).
    const a = await machine('push-only-a');
    const first = await build(a, ['--cache-to', `type=registry,ref=${cache},mode=max`, '-t', `${proxy.host}/app/a:v1`, '--push', ctx]);
    expect(first.code).toBe(0);
    const cacheLayers = (await manifestOf(reg.host, 'app/cache:latest')).body.layers.filter((l) => l.mediaType.endsWith('tar+gzip')).map((l) => l.digest);
    expect(cacheLayers).toHaveLength(5); // the steps' four and the base image's

    // Store B (busybox only): every step hits, the image is pushed, no layer blob is fetched.
    const b = await machine('push-only-b');
    const meta = path.join(work, 'push-only-meta.json');
    const iid = path.join(work, 'push-only-iid');
    proxy.stats.log.splice(0);
    const pushed = await build(b, ['--cache-from', `type=registry,ref=${cache}`, '-o', `type=registry,name=${proxy.host}/app/img:v1`, '--metadata-file', meta, '--iidfile', iid, ctx]);
    expect(pushed.stderr).not.toMatch(/warning|error/i);
    expect(pushed.code).toBe(0);
    expect(pushed.ran).toEqual([]);
    expect(pushed.cached).toHaveLength(5);
    expect(pushed.id).toBe(first.id);
    const gets = proxy.stats.log.filter((e) => e.method === 'GET' && cacheLayers.some((d) => e.path.includes(`/blobs/${d}`)));
    expect(gets).toEqual([]);
    // The cached steps' layers were mounted across repositories (POST ...?mount=), not uploaded.
    const mounts = proxy.stats.log.filter((e) => e.method === 'POST' && e.path.startsWith('/v2/app/img/blobs/uploads/') && e.path.includes('mount=') && e.status === 201);
    // The base image's layer too: the export recorded where the registry holds it.
    expect(mounts).toHaveLength(5);
    expect(pushed.stderr).toContain('layers: 0 already there, 5 mounted, 0 uploaded');

    // skopeo reads the image; its layers are store A's (same compressed blobs, same config).
    const inspect = async (ref: string) => JSON.parse((await tool('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`])).stdout) as { Digest: string; Layers: string[] };
    const mine = await inspect(`${proxy.host}/app/img:v1`);
    const theirs = await inspect(`${proxy.host}/app/a:v1`);
    expect(mine.Layers).toEqual(theirs.Layers);
    expect(mine.Digest).toBe(theirs.Digest);
    const copied = path.join(work, 'push-only-copy');
    await tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${proxy.host}/app/img:v1`, `oci:${copied}:v1`]);
    // --metadata-file and --iidfile as for --push.
    const metadata = JSON.parse(await fs.readFile(meta, 'utf8')) as Record<string, unknown>;
    expect(metadata['containerimage.digest']).toBe(mine.Digest);
    expect(metadata['containerimage.config.digest']).toBe(first.id);
    expect(metadata['image.name']).toBe(`${proxy.host}/app/img:v1`);
    expect((await fs.readFile(iid, 'utf8')).trim()).toBe(first.id);

    // Not in B's store: no tag, no untagged image left behind, and the store is whole.
    const images = await tsbuild(['images', '--format', '{{.ID}} {{.Repository}}'], { root: b });
    expect(images.code).toBe(0);
    expect(images.stdout).not.toContain(first.id.slice(7, 19));
    expect(images.stdout).not.toContain('app/img');
    const fsck = await tsbuild(['fsck'], { root: b });
    expect(fsck.stderr + fsck.stdout).not.toMatch(/missing|corrupt|leftover/);
    expect(fsck.code).toBe(0);

    // Another registry: the lazy layers are fetched then (verified), and uploaded.
    proxy.stats.log.splice(0);
    const c = await machine('push-only-c');
    const other = await build(c, ['--cache-from', `type=registry,ref=${cache}`, '-o', `type=image,name=${reg.host}/app/other:v1,push=true`, ctx]);
    expect(other.code).toBe(0);
    expect(other.ran).toEqual([]);
    expect(proxy.stats.log.filter((e) => e.method === 'GET' && cacheLayers.some((d) => e.path.includes(`/blobs/${d}`)) && e.status === 200)).toHaveLength(4);
    expect((await inspect(`${reg.host}/app/other:v1`)).Layers).toEqual(theirs.Layers);
    expect((await tsbuild(['fsck'], { root: c })).code).toBe(0);

    // -t with --push is unchanged: tagged locally and pushed.
    const d = await machine('push-only-d');
    const both = await build(d, ['--cache-from', `type=registry,ref=${cache}`, '-t', `${proxy.host}/app/both:v1`, '--push', ctx]);
    expect(both.code).toBe(0);
    expect((await tsbuild(['images', '--format', '{{.Repository}}:{{.Tag}}'], { root: d })).stdout).toContain('app/both:v1');
  });

  it('the CI case: a fresh store, the cache and the image in one repository: no layer uploaded or downloaded, no blob asked for twice, the image whole', async () => {
    await requireTool('skopeo');
    const ctx = await context('ci-same-ctx', 'ci same repository\n');
    const repo = `${proxy.host}/ci/same`;
    const flags = ['--cache-from', `type=registry,ref=${repo}:cache`, '--cache-to', `type=registry,ref=${repo}:cache,mode=max`];
    // The first CI run: builds everything, pushes, exports (the base image's layer included).
    const first = await build(await machine('ci-same-a'), [...flags, '-o', `type=registry,name=${repo}:v1`, ctx]);
    expect(first.code).toBe(0);
    const cacheManifest = (await manifestOf(reg.host, 'ci/same:cache')).body;
    const doc = (await documentOf(reg.host, 'ci/same', cacheManifest.config.digest)) as unknown as { baseLayers?: Array<{ layer: { digest: string; index?: { digest: string } } }> };
    // The base layer is recorded with its blob and file list, both listed in the manifest.
    expect(doc.baseLayers).toHaveLength(1);
    const listed = cacheManifest.layers.map((l) => l.digest);
    expect(listed).toContain(doc.baseLayers![0]!.layer.digest);
    expect(listed).toContain(doc.baseLayers![0]!.layer.index!.digest);

    // The next run on an empty store: every step hits, no layer is downloaded or uploaded.
    proxy.stats.log.splice(0);
    const next = await build(await machine('ci-same-b'), [...flags, '-o', `type=registry,name=${repo}:v2`, ctx]);
    expect(next.stderr).not.toMatch(/warning|error/i);
    expect(next.code).toBe(0);
    expect(next.ran).toEqual([]);
    expect(next.stderr).toContain('layers: 5 already there, 0 mounted, 0 uploaded');
    const log = proxy.stats.log;
    const layerBlobs = cacheManifest.layers.filter((l) => l.mediaType.endsWith('tar+gzip')).map((l) => l.digest);
    expect(log.filter((e) => e.method === 'GET' && layerBlobs.some((d) => e.path.includes(`/blobs/${d}`)))).toEqual([]);
    // One upload: the new cache document (the image config is the first run's: SOURCE_DATE_EPOCH);
    // then the two manifests.
    expect(log.filter((e) => e.method === 'PUT' && e.path.includes('/blobs/uploads/'))).toHaveLength(1);
    expect(log.filter((e) => e.method === 'PATCH')).toEqual([]);
    expect(log.filter((e) => e.method === 'PUT' && e.path.includes('/manifests/')).map((e) => e.path)).toEqual(['/v2/ci/same/manifests/v2', '/v2/ci/same/manifests/cache']);
    // Each layer blob is HEADed once (by the image push); the export trusts the cache manifest
    // it just read for the blobs it lists, and fetches each file list at most once.
    const heads = log.filter((e) => e.method === 'HEAD' && /\/blobs\/sha256:/.test(e.path)).map((e) => e.path);
    expect(new Set(heads).size).toBe(heads.length);
    expect(heads.filter((h) => listed.some((d) => h.endsWith(d))).length).toBe(5);
    const gets = log.filter((e) => e.method === 'GET' && /\/blobs\/sha256:/.test(e.path)).map((e) => e.path);
    expect(new Set(gets).size).toBe(gets.length);
    // The cache document is read once for import and export (the manifest twice).
    expect(gets.filter((g) => g.endsWith(cacheManifest.config.digest))).toHaveLength(1);

    // The image is whole in the registry: skopeo copies it (every blob verified) and it is the first run's image.
    const inspect = async (ref: string) => JSON.parse((await tool('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`])).stdout) as { Digest: string; Layers: string[] };
    const v2 = await inspect(`${repo}:v2`);
    expect(v2.Layers).toEqual((await inspect(`${repo}:v1`)).Layers);
    expect(v2.Digest).toBe((await inspect(`${repo}:v1`)).Digest);
    await tool('skopeo', ['copy', '--src-tls-verify=false', `docker://${repo}:v2`, `oci:${path.join(work, 'ci-same-copy')}:v2`]);
    // The cache the second run wrote is still whole: a third store reads it and hits every step.
    const third = await build(await machine('ci-same-c'), ['--cache-from', `type=registry,ref=${repo}:cache`, '-t', 'ci-same:v3', ctx]);
    expect(third.code).toBe(0);
    expect(third.ran).toEqual([]);
    expect(third.id).toBe(first.id);
  });

  it('type=registry with no name and no -t is a usage error', async () => {
    const root = await machine('push-only-bad');
    const ctx = await context('push-only-bad-ctx', 'x\n');
    const r = await build(root, ['-o', 'type=registry', ctx]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('needs name=REF or at least one -t NAME');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.ran).toEqual([]);
  });
});

describe('inline cache', () => {
  it('an image pushed with --cache-to type=inline is a cache source for --cache-from REF', async () => {
    const a = await machine('inline-a');
    const ctx = await context('inline-ctx', 'inline\n');
    const image = `${reg.host}/ci/inline:v1`;
    const pushed = await build(a, ['-t', image, '--push', '--cache-to', 'type=inline', ctx]);
    expect(pushed.code).toBe(0);
    // The cache metadata is in the image's config.
    const { body } = await manifestOf(reg.host, 'ci/inline:v1');
    const config = await documentOf(reg.host, 'ci/inline', body.config.digest) as unknown as Record<string, { entries: Record<string, unknown> }>;
    expect(Object.keys(config['tsbuild.cache.v1']!.entries)).toHaveLength(5);
    const b = await machine('inline-b');
    const again = await build(b, ['--cache-from', image, '--cache-to', 'type=inline', ctx]);
    expect(again.stderr).not.toMatch(/warning|error/i);
    expect(again.ran).toEqual([]);
    expect(again.id).toBe(pushed.id);
  });
});

describe('bad input', () => {
  it('a ref that does not exist is a quiet miss; a ref holding an image is a warning naming it and a miss', async () => {
    const root = await machine('bad');
    const ctx = await context('bad-ctx', 'bad\n');
    const none = await build(root, ['--cache-from', `type=registry,ref=${reg.host}/ci/none:cache`, ctx]);
    expect(none.code).toBe(0);
    expect(none.stderr).not.toMatch(/warning/i);
    expect(none.stderr).toContain(`registry cache ${reg.host}/ci/none:cache: nothing there yet`);
    expect(none.ran).toHaveLength(5);
    // An ordinary image at the ref.
    const image = `${reg.host}/ci/plain:v1`;
    expect((await build(root, ['-t', image, '--push', ctx])).code).toBe(0);
    const other = await machine('bad-2');
    const plain = await build(other, ['--cache-from', image, ctx]);
    expect(plain.code).toBe(0);
    expect(plain.stderr).toContain(`registry cache ${image} cannot be used`);
    expect(plain.stderr).toContain('an ordinary image');
    expect(plain.ran).toHaveLength(5);
  });

  it('a directory that is not an OCI layout is an error; unknown types and missing fields are usage errors', async () => {
    const root = await machine('bad-dir');
    const ctx = await context('bad-dir-ctx', 'x\n');
    const notLayout = path.join(work, 'not-a-layout');
    await writeTree(notLayout, { 'notes.txt': 'hello' });
    const r = await build(root, ['--cache-from', `type=local,src=${notLayout}`, ctx]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${notLayout} is not an OCI image layout`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.ran).toEqual([]); // refused before any step
    const to = await build(root, ['--cache-to', `type=local,dest=${notLayout}`, ctx]);
    expect(to.code).toBe(2);
    expect(to.ran).toEqual([]);
    expect(await fs.readdir(notLayout)).toEqual(['notes.txt']);
    const gha = await build(root, ['--cache-to', 'type=gha', ctx]);
    expect(gha.code).toBe(1);
    expect(gha.stderr).toContain('type=gha is not supported');
    const noRef = await build(root, ['--cache-to', 'type=registry,mode=max', ctx]);
    expect(noRef.code).toBe(2);
    expect(noRef.stderr).toContain('needs ref=NAME');
    const badMode = await build(root, ['--cache-to', `type=registry,ref=${reg.host}/x:c,mode=all`, ctx]);
    expect(badMode.code).toBe(2);
    // A missing directory is a first run: a miss, no error.
    expect((await build(root, ['--cache-from', `type=local,src=${path.join(work, 'never-written')}`, ctx])).code).toBe(0);
  });
});

describe('faults', () => {
  it('a corrupt layer or an unreachable document is a warning and a miss; a failed export keeps the previous cache', async () => {
    const a = await machine('fault-a');
    const ctx = await context('fault-ctx', 'fault\n');
    const ref = `${proxy.host}/ci/faulty:cache`;
    expect((await build(a, ['--cache-to', `type=registry,ref=${ref},mode=max`, ctx])).code).toBe(0);
    const before = await manifestOf(reg.host, 'ci/faulty:cache');

    // Every download of a layer is corrupted. The hits are lazy (the layers' file lists come
    // first): when the first layer is needed and cannot be fetched, the build runs again
    // without that source; it succeeds, and nothing corrupt is stored.
    const layers = before.body.layers.filter((l) => l.mediaType.endsWith('tar+gzip')).map((l) => l.digest);
    proxy.setRules([{ method: 'GET', path: /\/blobs\/sha256:/, when: (req) => layers.some((d) => (req.url ?? '').endsWith(d)), fault: 'corrupt' }]);
    const b = await machine('fault-b');
    const corrupt = await build(b, ['--cache-from', ref, ctx]);
    expect(corrupt.code).toBe(0);
    expect(corrupt.stderr).toMatch(/warning.*cannot be fetched.*building again without registry cache/i);
    // The step that made no layer stays a hit (taken from the source before it failed).
    expect(corrupt.ran).toHaveLength(4);
    expect(corrupt.ran).not.toContain('RUN true');
    expect(corrupt.id).toMatch(/^sha256:/);
    expect(proxy.stats.faults['corrupt']).toBeGreaterThan(0);

    // The document cannot be fetched at all: every step runs.
    proxy.setRules([{ method: 'GET', path: /\/manifests\//, respond: { status: 400, body: '{"errors":[{"code":"DENIED","message":"no"}]}' } }]);
    const c = await machine('fault-c');
    const down = await build(c, ['--cache-from', ref, ctx]);
    expect(down.code).toBe(0);
    expect(down.stderr).toMatch(/warning.*registry cache .*cannot be used/i);
    expect(down.ran).toHaveLength(5);

    // An export whose manifest PUT fails: with ignore-error=true a warning, else a failed build;
    // either way the ref keeps its previous content.
    proxy.setRules([{ method: 'PUT', path: /\/manifests\//, respond: { status: 400, body: '{"errors":[{"code":"MANIFEST_INVALID","message":"refused"}]}' } }]);
    const changed = await context('fault-ctx-2', 'changed\n');
    const ignored = await build(c, ['--cache-to', `type=registry,ref=${ref},mode=max,ignore-error=true`, changed]);
    expect(ignored.code).toBe(0);
    expect(ignored.stderr).toMatch(/warning.*export failed and is ignored/i);
    const failed = await build(c, ['--cache-to', `type=registry,ref=${ref},mode=max`, changed]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).not.toMatch(/\n\s+at /);
    proxy.setRules([]);
    expect((await manifestOf(reg.host, 'ci/faulty:cache')).digest).toBe(before.digest);
  });
});

describe('token auth', () => {
  let issuer: TokenIssuer;
  let tokenReg: RunningRegistry;
  beforeAll(async () => {
    issuer = await startTokenIssuer({ dir: work, users: { ci: 'pw-ci' }, acl: (user, repo) => (user === 'ci' && repo.startsWith('ci/') ? ['pull', 'push'] : []) });
    tokenReg = await startRegistry({ mode: { kind: 'token', realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootCertBundle: issuer.rootCertBundle } });
  });
  afterAll(async () => {
    await tokenReg?.stop();
    await issuer?.stop();
  });

  it('exports and imports with the credentials of the docker config, and a build without them misses with a warning', async () => {
    const config = path.join(work, 'docker-config');
    await writeTree(config, { 'config.json': JSON.stringify({ auths: { [tokenReg.host]: { auth: Buffer.from('ci:pw-ci').toString('base64') } } }) });
    const env = { DOCKER_CONFIG: config };
    const ref = `${tokenReg.host}/ci/app:cache`;
    const ctx = await context('token-ctx', 'token\n');
    const a = await machine('token-a');
    const exported = await build(a, ['--cache-to', `type=registry,ref=${ref},mode=max`, ctx], { env });
    expect(exported.stderr).not.toMatch(/warning|error/i);
    expect(exported.code).toBe(0);
    const b = await machine('token-b');
    const imported = await build(b, ['--cache-from', ref, ctx], { env });
    expect(imported.ran).toEqual([]);
    expect(imported.id).toBe(exported.id);
    expect(imported.stderr).not.toContain('pw-ci');
    const anonymous = await build(await machine('token-c'), ['--cache-from', ref, ctx], { env: { DOCKER_CONFIG: path.join(work, 'no-config') } });
    expect(anonymous.code).toBe(0);
    expect(anonymous.stderr).toMatch(/warning.*cannot be used/i);
    expect(anonymous.ran).toHaveLength(5);
  });
});
