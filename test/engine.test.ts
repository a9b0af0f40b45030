import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
// From source, not dist/: these fail when build() is broken, however stale dist/ is.
import { build, type BuildEnv, type BuildEvent, type BuildRequest, type BuildResult, type CacheKey, type CacheSource } from '../src/engine/index.js';
import { isTsbuildError } from '../src/errors.js';
import { readLayerFile } from '../src/layer/layer-index.js';
import { hostPlatform, type Digest } from '../src/oci/index.js';
import { openStore, type Store } from '../src/store/index.js';

let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-engine-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** A fresh store and context (files + Dockerfile) in the temp dir. */
async function setup(name: string, files: Record<string, string>): Promise<{ store: Store; contextDir: string }> {
  const contextDir = path.join(tmp, name, 'context');
  for (const [rel, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(contextDir, rel)), { recursive: true });
    await fs.writeFile(path.join(contextDir, rel), content);
  }
  return { store: await openStore(path.join(tmp, name, 'store')), contextDir };
}

async function run(store: Store, contextDir: string, dockerfile: string, patch: Partial<BuildRequest> = {}, envPatch: Partial<BuildEnv> = {}): Promise<{ result: BuildResult; events: BuildEvent[] }> {
  const events: BuildEvent[] = [];
  const result = await build(
    {
      contextDir,
      dockerfile: { name: 'Dockerfile', text: Buffer.from(dockerfile) },
      tags: ['localhost/engine-test:latest'],
      buildArgs: new Map(),
      labels: {},
      noCache: false,
      outputs: [{ type: 'image' }],
      ...patch,
    },
    {
      store,
      signal: new AbortController().signal,
      report: (e) => events.push(e),
      platform: hostPlatform(),
      created: '2024-01-02T03:04:05Z',
      logger: () => pino({ level: 'silent' }),
      ...envPatch,
    },
  );
  return { result, events };
}

/** The kinds of the temp dirs the store makes from now on ('from': a stage or image unpacked for COPY --from or a mount). */
function tempDirKinds(store: Store): string[] {
  const kinds: string[] = [];
  const makeTempDir = store.makeTempDir.bind(store);
  store.makeTempDir = (kind) => {
    kinds.push(kind ?? 'dir');
    return makeTempDir(kind);
  };
  return kinds;
}

/** A file of a layer in the store, as text. */
async function fileOf(store: Store, diffId: Digest, p: string): Promise<string | undefined> {
  return (await readLayerFile(() => store.blobs.openBlob(diffId), p, 1024 * 1024))?.toString('utf8');
}

describe('build() in-process', () => {
  it('builds a COPY-only image: one layer per COPY, tagged in the store', async () => {
    const { store, contextDir } = await setup('copy', { 'a.txt': 'alpha\n', 'dir/b.txt': 'beta\n', 'ignored.txt': 'no' });
    await fs.writeFile(path.join(contextDir, '.dockerignore'), 'ignored.txt\n');
    const { result } = await run(store, contextDir, 'FROM scratch\nCOPY a.txt /a.txt\nCOPY . /ctx/\n');
    const { manifest, config } = result.image;
    expect(manifest.layers).toHaveLength(2);
    expect(config.rootfs.diff_ids).toEqual(manifest.layers.map((l) => l.digest));
    expect(await fileOf(store, manifest.layers[0]!.digest, 'a.txt')).toBe('alpha\n');
    expect(await fileOf(store, manifest.layers[1]!.digest, 'ctx/dir/b.txt')).toBe('beta\n');
    expect(await fileOf(store, manifest.layers[1]!.digest, 'ctx/ignored.txt')).toBeUndefined();
    expect((await store.getTag('localhost/engine-test:latest'))?.digest).toBe(result.image.manifestDescriptor.digest);
    expect(config.history?.map((h) => h.created_by)).toEqual(['COPY a.txt /a.txt # buildkit', 'COPY . /ctx/ # buildkit']);
  });

  it('applies config instructions (ENV, LABEL, CMD, USER, WORKDIR) without a sandbox', async () => {
    const { store, contextDir } = await setup('config', {});
    const { result } = await run(store, contextDir, 'FROM scratch\nENV A=1 B="two words"\nLABEL l=v\nCMD ["run", "$A"]\nWORKDIR /app/$A\nUSER 5:6\n', { labels: { extra: 'x' } });
    const c = result.image.config.config ?? {};
    expect(c.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1', 'B=two words']);
    expect(c.Labels).toEqual({ l: 'v', extra: 'x' });
    expect(c.Cmd).toEqual(['run', '$A']);
    expect(c.WorkingDir).toBe('/app/1');
    expect(c.User).toBe('5:6');
    // WORKDIR made its directory as the only layer; the other steps are empty-layer history.
    expect(result.image.manifest.layers).toHaveLength(1);
    expect(result.image.config.history?.map((h) => h.empty_layer === true)).toEqual([true, true, true, false, true]);
  });

  it('rebuilds from the cache: every step a hit, the same image ID', async () => {
    const { store, contextDir } = await setup('cached', { 'a.txt': 'alpha\n' });
    const dockerfile = 'FROM scratch\nCOPY a.txt /a.txt\nWORKDIR /w\nENV X=1\n';
    const first = await run(store, contextDir, dockerfile);
    expect(first.events.filter((e) => e.type === 'step-cached')).toEqual([]);
    const second = await run(store, contextDir, dockerfile);
    const cached = second.events.filter((e): e is Extract<BuildEvent, { type: 'step-cached' }> => e.type === 'step-cached').map((e) => e.name);
    expect(cached).toEqual(['[2/4] COPY a.txt /a.txt', '[3/4] WORKDIR /w']);
    expect(second.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    // A changed file misses from its step on, and gives another image.
    await fs.writeFile(path.join(contextDir, 'a.txt'), 'changed\n');
    const third = await run(store, contextDir, dockerfile);
    expect(third.events.filter((e) => e.type === 'step-cached')).toEqual([]);
    expect(third.result.image.configDescriptor.digest).not.toBe(first.result.image.configDescriptor.digest);
  });

  it('resolves a cached COPY --chown name from the recorded /etc/passwd, reading no layer', async () => {
    const { store, contextDir } = await setup('chown-record', { 'a.txt': 'alpha\n', 'base/etc/passwd': 'root:x:0:0::/root:/bin/sh\napp:x:1234:2345::/home/app:/bin/sh\n', 'base/etc/group': 'root:x:0:\napp:x:2345:\nstaff:x:50:\n' });
    await run(store, contextDir, 'FROM scratch\nCOPY base/ /\n', { tags: ['localhost/chown-base:1'] });
    const dockerfile = 'FROM localhost/chown-base:1\nCOPY --chown=app:staff a.txt /a.txt\n';
    const first = await run(store, contextDir, dockerfile);
    const baseLayer = first.result.image.config.rootfs.diff_ids[0]!;
    const opened: string[] = [];
    const openBlob = store.blobs.openBlob.bind(store.blobs);
    store.blobs.openBlob = (d, o) => {
      opened.push(d);
      return openBlob(d, o);
    };
    const second = await run(store, contextDir, dockerfile);
    expect(second.events.filter((e) => e.type === 'step-cached')).toHaveLength(1);
    expect(second.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    expect(opened).not.toContain(baseLayer);
    // Without the record the names are read from the base layer again (what the spy sees), with the same result.
    for (const f of (await fs.readdir(store.paths.meta)).filter((n) => n.startsWith('view.'))) await fs.rm(path.join(store.paths.meta, f));
    const third = await run(store, contextDir, dockerfile);
    expect(opened).toContain(baseLayer);
    expect(third.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    // And the owner is the one the names say.
    const layer = first.result.image.manifest.layers[1]!.digest;
    const { indexLayer } = await import('../src/layer/layer-index.js');
    const index = await indexLayer(await store.blobs.openBlob(layer));
    expect(index.entries.find((e) => e.path === 'a.txt')).toMatchObject({ uid: 1234, gid: 50 });
  });

  it('looks a cached COPY --from up without unpacking its source stage', async () => {
    const { store, contextDir } = await setup('copy-from-alias', { 'a.txt': 'alpha\n', 'dir/b.txt': 'beta\n' });
    const dockerfile = 'FROM scratch AS src\nCOPY . /files/\nFROM scratch\nCOPY --from=src /files/dir /out/\nCOPY --from=src /files/a.txt /a\n';
    const first = await run(store, contextDir, dockerfile);
    const unpacked = tempDirKinds(store);
    const second = await run(store, contextDir, dockerfile);
    expect(second.events.filter((e) => e.type === 'step-cached')).toHaveLength(3);
    expect(second.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    expect(unpacked).not.toContain('from');
    // Without its record the step is planned from the unpacked source again, to the same image.
    for (const f of (await fs.readdir(store.paths.meta)).filter((n) => n.startsWith('copy-alias.'))) await fs.rm(path.join(store.paths.meta, f));
    const third = await run(store, contextDir, dockerfile);
    expect(unpacked).toContain('from');
    expect(third.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    // A record whose key the cache no longer answers for is passed over: the steps run again.
    for (const f of (await fs.readdir(store.paths.meta)).filter((n) => n.startsWith('step.'))) await fs.rm(path.join(store.paths.meta, f));
    const fourth = await run(store, contextDir, dockerfile);
    expect(fourth.events.filter((e) => e.type === 'step-cached')).toEqual([]);
    expect(fourth.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    expect(await fileOf(store, fourth.result.image.manifest.layers[0]!.digest, 'out/b.txt')).toBe('beta\n');
  });

  it('finds a COPY --from in an imported cache by its alias, on a store that never built it, without unpacking the stage', async () => {
    const { store, contextDir } = await setup('copy-from-imported', { 'a.txt': 'alpha\n', 'dir/b.txt': 'beta\n' });
    const dockerfile = 'FROM scratch AS src\nCOPY . /files/\nFROM scratch\nCOPY --from=src /files/dir /out/\n';
    const cacheDir = path.join(tmp, 'copy-from-imported', 'cache');
    const cacheTo = [{ type: 'local' as const, dest: cacheDir, mode: 'max' as const, ignoreError: false, compression: 'gzip' as const, maxExports: 10, maxAgeSeconds: 3600 }];
    const first = await run(store, contextDir, dockerfile, { cacheTo });
    const finalLayer = first.result.image.manifest.layers[0]!.digest;
    // The cache's document (an OCI layout: index.json -> manifest -> config), read and rewritten below.
    const blob = (d: string): string => path.join(cacheDir, 'blobs', 'sha256', d.slice(7));
    const readJson = async <T>(p: string): Promise<T> => JSON.parse(await fs.readFile(p, 'utf8')) as T;
    type Doc = { entries: Record<string, { aliases?: unknown; layers?: Array<{ diffId: string }> }> };
    const index = await readJson<{ manifests: Array<{ digest: string; size: number }> }>(path.join(cacheDir, 'index.json'));
    const manifest = await readJson<{ config: { digest: string; size: number } }>(blob(index.manifests[0]!.digest));
    const doc = await readJson<Doc>(blob(manifest.config.digest));
    expect(Object.values(doc.entries).filter((e) => e.aliases !== undefined)).toHaveLength(1);
    const srcLayer = Object.values(doc.entries).flatMap((e) => e.layers ?? []).map((l) => l.diffId).find((d) => d !== finalLayer)!;
    expect(srcLayer).toBeDefined();

    // Another machine: an empty store that imports the cache.
    const fresh = async (name: string): Promise<{ store: Store; kinds: string[]; out: Awaited<ReturnType<typeof run>> }> => {
      const other = await openStore(path.join(tmp, 'copy-from-imported', name));
      const kinds = tempDirKinds(other);
      const out = await run(other, contextDir, dockerfile, { cacheFrom: [{ type: 'local', src: cacheDir }] });
      return { store: other, kinds, out };
    };
    const second = await fresh('store-2');
    expect(second.out.events.filter((e) => e.type === 'step-cached')).toHaveLength(2);
    expect(second.out.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    expect(second.kinds).not.toContain('from');
    // The source stage's layer was never fetched: only the final image's.
    expect(await second.store.blobs.hasBlob(finalLayer)).toBe(true);
    expect(await second.store.blobs.hasBlob(srcLayer as Digest)).toBe(false);
    // The alias is now the store's own record too.
    expect((await fs.readdir(second.store.paths.meta)).filter((n) => n.startsWith('copy-alias.'))).toHaveLength(1);

    // The same cache without the aliases (as exported before they were carried): still two hits,
    // but the stage is unpacked to key the COPY --from.
    for (const e of Object.values(doc.entries)) delete e.aliases;
    const docBytes = Buffer.from(JSON.stringify(doc));
    const docDigest = `sha256:${createHash('sha256').update(docBytes).digest('hex')}`;
    await fs.writeFile(blob(docDigest), docBytes);
    const manifestBytes = Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, digest: docDigest, size: docBytes.length } }));
    const manifestDigest = `sha256:${createHash('sha256').update(manifestBytes).digest('hex')}`;
    await fs.writeFile(blob(manifestDigest), manifestBytes);
    await fs.writeFile(path.join(cacheDir, 'index.json'), JSON.stringify({ ...index, manifests: [{ ...index.manifests[0], digest: manifestDigest, size: manifestBytes.length }] }));
    const third = await fresh('store-3');
    expect(third.out.events.filter((e) => e.type === 'step-cached')).toHaveLength(2);
    expect(third.out.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    expect(third.kinds).toContain('from');
  });

  it('takes a cached RUN with a bind mount of a stage without unpacking the stage', async () => {
    const { storeWithBusybox } = await import('./support/cli.js');
    const root = path.join(tmp, 'bind-late', 'store');
    await storeWithBusybox(root);
    const store = await openStore(root);
    const { contextDir } = await setup('bind-late', { 'a.txt': 'alpha\n' });
    const dockerfile = 'FROM scratch AS src\nCOPY a.txt /files/a.txt\nFROM busybox\nRUN --mount=type=bind,from=src,source=/files,target=/m cat /m/a.txt > /got\n';
    const unpacked = tempDirKinds(store);
    const first = await run(store, contextDir, dockerfile);
    expect(unpacked).toContain('from');
    expect(await fileOf(store, first.result.image.manifest.layers.at(-1)!.digest, 'got')).toBe('alpha\n');
    unpacked.length = 0;
    const second = await run(store, contextDir, dockerfile);
    expect(second.events.filter((e) => e.type === 'step-cached')).toHaveLength(2);
    expect(second.result.image.configDescriptor.digest).toBe(first.result.image.configDescriptor.digest);
    expect(unpacked).not.toContain('from');
  }, 120_000);

  it('copies from an earlier stage (COPY --from) and builds only what the target needs', async () => {
    const { store, contextDir } = await setup('stages', { 'a.txt': 'from the first stage\n' });
    const { result, events } = await run(store, contextDir, 'FROM scratch AS one\nCOPY a.txt /x/a.txt\nFROM scratch AS unused\nCOPY a.txt /u\nFROM scratch\nCOPY --from=one /x/a.txt /y.txt\n');
    expect(result.image.manifest.layers).toHaveLength(1);
    expect(await fileOf(store, result.image.manifest.layers[0]!.digest, 'y.txt')).toBe('from the first stage\n');
    const names = events.flatMap((e) => (e.type === 'step-start' ? [e.name] : []));
    expect(names.some((n) => n.includes('unused'))).toBe(false);
    expect(names).toContain('[one 2/2] COPY a.txt /x/a.txt');

    // An image of the store as a source, twice in one build (COPY --from and FROM).
    const again = await run(store, contextDir, 'FROM scratch\nCOPY --from=localhost/engine-test:latest /y.txt /z.txt\nFROM localhost/engine-test:latest\nCOPY --from=0 /z.txt /w.txt\n');
    const layers = again.result.image.manifest.layers;
    expect(layers).toHaveLength(2);
    expect(layers[0]!.digest).toBe(result.image.manifest.layers[0]!.digest);
    expect(await fileOf(store, layers[1]!.digest, 'w.txt')).toBe('from the first stage\n');
  });

  it('asks further cache sources only where the local step cache misses', async () => {
    const { store, contextDir } = await setup('sources', { 'a.txt': 'alpha\n' });
    const asked: CacheKey[] = [];
    // A source that knows nothing: every lookup it gets is a miss of the local cache.
    const empty: CacheSource = { name: 'empty test source', lookup: async (key) => void asked.push(key) };
    const dockerfile = 'FROM scratch\nCOPY a.txt /a.txt\nWORKDIR /w\nENV X=1\n';
    await run(store, contextDir, dockerfile, {}, { cacheSources: [empty] });
    expect(asked).toHaveLength(2); // COPY and WORKDIR; ENV is config only, never looked up
    asked.length = 0;
    const warm = await run(store, contextDir, dockerfile, {}, { cacheSources: [empty] });
    expect(asked).toEqual([]);
    expect(warm.events.filter((e) => e.type === 'step-cached')).toHaveLength(2);
    await run(store, contextDir, dockerfile, { noCache: true }, { cacheSources: [empty] });
    expect(asked).toEqual([]);
  });

  it('fails with a coded error at the Dockerfile line of the step', async () => {
    const { store, contextDir } = await setup('error', { 'a.txt': 'a' });
    const err = await run(store, contextDir, 'FROM scratch\nCOPY a.txt /a\n\nCOPY missing.txt /m\n').catch((e: unknown) => e);
    expect(isTsbuildError(err)).toBe(true);
    if (!isTsbuildError(err)) return;
    expect(err.code).toBe('CONTEXT_SOURCE_MISSING');
    expect(err.location).toEqual({ file: 'Dockerfile', startLine: 4, endLine: 4 });
    const bad = await run(store, contextDir, 'FROM scratch\nEXPOSE 80/bogus\n').catch((e: unknown) => e);
    expect(isTsbuildError(bad) && bad.location?.startLine).toBe(2);
  });
});
