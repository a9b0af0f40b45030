import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, tempDir, tool, tsbuild, type RunResult } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

// Multi-platform images in the store and through the commands (images, inspect, history, tag,
// rmi, df, pull --platform / --all-platforms, push, save/load, manifest create/push/inspect),
// against the real registry, with skopeo as the independent reader. The arm64 images are
// `tsbuild import --platform linux/arm64` of a small rootfs: their config says arm64, which is
// all that the store and the registry look at (nothing here runs them).
let tmp: string;
let reg: RunningRegistry;
const root = (name: string): string => path.join(tmp, `root-${name}`);
const run = (name: string, args: readonly string[]): Promise<RunResult> => tsbuild(args, { root: root(name) });

function ok(r: RunResult): string {
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  return r.stdout.trim();
}

function failed(r: RunResult, code: number): string {
  expect(r.code, r.stdout + r.stderr).toBe(code);
  expect(r.stderr).toMatch(/^error: /m);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  return r.stderr;
}

async function skopeoRaw(ref: string): Promise<{ bytes: string; doc: { mediaType?: string; manifests: Array<{ digest: string; mediaType: string; platform?: { os: string; architecture: string } }> } }> {
  const { stdout } = await tool('skopeo', ['inspect', '--raw', '--tls-verify=false', ref]);
  return { bytes: stdout, doc: JSON.parse(stdout) as never };
}

async function sha256(text: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

interface IndexDoc {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
  MediaType: string;
  Platforms: string[];
  Size: number;
  Manifests: Array<{ Platform: string; Digest: string; ImageId: string }>;
}

async function inspectIndex(name: string, image: string): Promise<IndexDoc> {
  const [doc] = JSON.parse(ok(await run(name, ['inspect', image]))) as IndexDoc[];
  return doc!;
}

const ids: Record<string, string> = {};
let localIndex = '';

beforeAll(async () => {
  await requireTool('skopeo');
  tmp = await tempDir('image-index');
  reg = await startRegistry({ mode: { kind: 'open' } });
  const rootfs = path.join(tmp, 'rootfs');
  await fs.mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await fs.writeFile(path.join(rootfs, 'etc', 'hello'), 'hello\n');
  await tool('tar', ['-C', rootfs, '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-cf', path.join(tmp, 'a.tar'), '.']);
  await fs.writeFile(path.join(rootfs, 'etc', 'arch'), 'arm64\n');
  await tool('tar', ['-C', rootfs, '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-cf', path.join(tmp, 'b.tar'), '.']);
  const env = { SOURCE_DATE_EPOCH: '0' };
  const imp = async (file: string, name: string, platform: string): Promise<void> => {
    const r = await tsbuild(['import', path.join(tmp, file), name, '--platform', platform], { root: root('a'), env });
    ids[name] = ok(r);
  };
  await imp('a.tar', 'app:amd64', 'linux/amd64');
  await imp('b.tar', 'app:arm64', 'linux/arm64');
  // The same layer for two platforms: shared blobs must count once.
  await imp('a.tar', 'base:arm64', 'linux/arm64');
}, 120_000);

afterAll(async () => {
  await reg?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('multi-platform images in the local store', () => {
  it('import --platform writes the platform into the config; a bad platform is refused', async () => {
    const [doc] = JSON.parse(ok(await run('a', ['inspect', 'app:arm64']))) as Array<{ Architecture: string; Os: string }>;
    expect(doc).toMatchObject({ Architecture: 'arm64', Os: 'linux' });
    const bad = failed(await tsbuild(['import', path.join(tmp, 'a.tar'), 'bad:v1', '--platform', 'linux/arm64/v8/x'], { root: root('a') }), 1);
    expect(bad).toMatch(/invalid platform "linux\/arm64\/v8\/x"/);
  });

  it('manifest create joins images into one index that images, inspect, history and tag show once', async () => {
    const indexDigest = ok(await run('a', ['manifest', 'create', 'app:v1', 'app:amd64', 'app:arm64']));
    localIndex = indexDigest;
    expect(indexDigest).toMatch(/^sha256:[a-f0-9]{64}$/);
    const listing = ok(await run('a', ['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}} {{.Platforms}}']));
    const row = listing.split('\n').filter((l) => l.startsWith('app:v1 '));
    expect(row).toEqual([`app:v1 ${indexDigest.slice(7, 19)} linux/amd64, linux/arm64`]);
    expect(ok(await run('a', ['images']))).toMatch(/PLATFORMS/);

    const doc = await inspectIndex('a', 'app:v1');
    expect(doc.Id).toBe(indexDigest);
    expect(doc.Platforms).toEqual(['linux/amd64', 'linux/arm64']);
    expect(doc.Manifests.map((m) => m.ImageId)).toEqual([ids['app:amd64'], ids['app:arm64']]);

    const arm = JSON.parse(ok(await run('a', ['inspect', '--platform', 'linux/arm64', 'app:v1']))) as Array<{ Id: string; Architecture: string }>;
    expect(arm[0]).toMatchObject({ Id: ids['app:arm64'], Architecture: 'arm64' });
    expect(ok(await run('a', ['history', '--platform', 'linux/arm64', '-q', 'app:v1']))).toBe(ids['app:arm64']!.slice(7, 19));
    const none = failed(await run('a', ['inspect', '--platform', 'linux/s390x', 'app:v1']), 1);
    expect(none).toMatch(/no image for linux\/s390x/);
    expect(none).toMatch(/linux\/amd64, linux\/arm64/);

    ok(await run('a', ['tag', 'app:v1', 'app:latest']));
    expect((await inspectIndex('a', 'app:latest')).Id).toBe(indexDigest);
    // By index digest prefix, too.
    ok(await run('a', ['tag', indexDigest.slice(7, 19), 'app:again']));
    expect((await inspectIndex('a', 'app:again')).Id).toBe(indexDigest);
    ok(await run('a', ['rmi', 'app:again', 'app:latest']));
  });

  it('manifest create refuses two images for one platform and a source that does not exist, and tags nothing', async () => {
    const dup = failed(await run('a', ['manifest', 'create', 'dup:v1', 'app:arm64', 'base:arm64']), 2);
    expect(dup).toMatch(/two images for linux\/arm64: app:arm64 and base:arm64/);
    const missing = failed(await run('a', ['manifest', 'create', 'miss:v1', 'app:amd64', `${reg.host}/nosuch/app:v1`]), 1);
    expect(missing).toContain(`${reg.host}/nosuch/app:v1`);
    expect(missing).toContain(`registry ${reg.host}`);
    const tags = ok(await run('a', ['images', '--format', '{{.Repository}}']));
    expect(tags).not.toMatch(/dup|miss/);
  });

  it('--amend adds to an existing index; an image for a platform it has replaces that one', async () => {
    ok(await run('a', ['manifest', 'create', 'amend:v1', 'app:amd64']));
    ok(await run('a', ['manifest', 'create', '--amend', 'amend:v1', 'app:arm64']));
    expect((await inspectIndex('a', 'amend:v1')).Manifests.map((m) => m.ImageId)).toEqual([ids['app:amd64'], ids['app:arm64']]);
    ok(await run('a', ['manifest', 'create', '--amend', 'amend:v1', 'base:arm64']));
    expect((await inspectIndex('a', 'amend:v1')).Manifests.map((m) => m.ImageId)).toEqual([ids['app:amd64'], ids['base:arm64']]);
    ok(await run('a', ['rmi', 'amend:v1']));
  });

  it('df and images count the blobs two platforms share once', async () => {
    ok(await run('a', ['manifest', 'create', 'base:v1', 'app:amd64', 'base:arm64']));
    const sizes = ok(await run('a', ['images', '--format', '{{.Repository}}:{{.Tag}} {{.Size}}']));
    const line = (n: string): string | undefined => sizes.split('\n').find((l) => l.startsWith(`${n} `));
    // app:amd64 and base:arm64 have the same (one) layer: the index is that size, not twice it.
    expect(line('base:v1')?.split(' ')[1]).toBe(line('app:amd64')?.split(' ')[1]);
    const df = ok(await run('a', ['df', '-v']));
    expect(df).toMatch(/base\s+v1/);
    ok(await run('a', ['rmi', 'base:v1']));
  });
});

describe('multi-platform images through the registry', () => {
  let pushed: string;

  it('push sends every image, then the index; skopeo reads the index and copies it whole', async () => {
    const dest = `${reg.host}/multi/app:v1`;
    const r = await run('a', ['push', 'app:v1', dest]);
    pushed = ok(r);
    expect(pushed).toMatch(/^sha256:[a-f0-9]{64}$/);
    const raw = await skopeoRaw(`docker://${dest}`);
    expect(await sha256(raw.bytes)).toBe(pushed);
    expect(raw.doc.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.doc.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`)).toEqual(['linux/amd64', 'linux/arm64']);
    // The images went first, by digest: the registry serves each one.
    for (const m of raw.doc.manifests) {
      const child = await skopeoRaw(`docker://${reg.host}/multi/app@${m.digest}`);
      expect(await sha256(child.bytes)).toBe(m.digest);
    }
    await tool('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${dest}`, `oci:${path.join(tmp, 'skopeo-layout')}:v1`]);
    const layoutIndex = JSON.parse(await fs.readFile(path.join(tmp, 'skopeo-layout', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    expect(layoutIndex.manifests[0]?.digest).toBe(pushed);
    // Pushed twice: nothing new, the same digest.
    expect(ok(await run('a', ['push', '-q', 'app:v1', dest]))).toBe(pushed);
  });

  it('pull --all-platforms on an empty store gives back the same digests', async () => {
    const ref = `${reg.host}/multi/app:v1`;
    const storeDigest = ok(await run('b', ['pull', '--all-platforms', ref]));
    const doc = await inspectIndex('b', ref);
    expect(doc.Id).toBe(storeDigest);
    // The store index the push started from: the same store manifests, platforms, annotations.
    expect(storeDigest).toBe(localIndex);
    expect(doc.RepoDigests).toEqual([`${reg.host}/multi/app@${pushed}`]);
    expect(doc.Manifests.map((m) => [m.Platform, m.ImageId])).toEqual([
      ['linux/amd64', ids['app:amd64']],
      ['linux/arm64', ids['app:arm64']],
    ]);
    expect(ok(await run('b', ['images', '--digests', '--format', '{{.Digest}}']))).toBe(pushed);
    // And back: the same index digest in another repository (layers mounted, not uploaded).
    const again = await run('b', ['push', ref, ref.replace('/app:', '/copy:')]);
    expect(ok(again)).toBe(pushed);
    expect(again.stderr).toMatch(/Mounted from another repository|Layer already exists/);
    expect(again.stderr).not.toMatch(/: Pushed\n/);
    ok(await run('b', ['fsck']));
  });

  it('pull --platform picks one image, and names the platforms there are when it is absent', async () => {
    expect(ok(await run('c', ['pull', '-q', '--platform', 'linux/arm64', `${reg.host}/multi/app:v1`]))).toBe(ids['app:arm64']);
    const absent = failed(await run('c', ['pull', '--platform', 'linux/s390x', `${reg.host}/multi/app:v1`]), 1);
    expect(absent).toContain(`${reg.host}/multi/app:v1 has no image for linux/s390x (registry ${reg.host})`);
    expect(absent).toMatch(/linux\/amd64, linux\/arm64/);
    const bad = failed(await run('c', ['pull', '--platform', 'linux/a*', `${reg.host}/multi/app:v1`]), 1);
    expect(bad).toMatch(/invalid platform/);
    failed(await run('c', ['pull', '--platform', 'linux/amd64', '--all-platforms', `${reg.host}/multi/app:v1`]), 2);
  });

  it('pull --all-platforms leaves out attestation entries (unknown/unknown) and says so', async () => {
    // An index with a third entry for unknown/unknown, as BuildKit's attestation manifests are listed.
    const layout = path.join(tmp, 'skopeo-layout');
    const top = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const blob = (d: string): string => path.join(layout, 'blobs', 'sha256', d.slice(7));
    const index = JSON.parse(await fs.readFile(blob(top.manifests[0]!.digest), 'utf8')) as { manifests: Array<Record<string, unknown>> };
    index.manifests.push({ ...index.manifests[1], platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } });
    const bytes = JSON.stringify(index);
    const digest = await sha256(bytes);
    await fs.writeFile(blob(digest), bytes);
    await fs.writeFile(path.join(layout, 'index.json'), JSON.stringify({ ...top, manifests: [{ ...top.manifests[0], digest, size: Buffer.byteLength(bytes) }] }));
    const ref = `${reg.host}/multi/attested:v1`;
    await tool('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${ref}`]);
    expect((await skopeoRaw(`docker://${ref}`)).doc.manifests).toHaveLength(3);
    const r = await run('h', ['pull', '--all-platforms', ref]);
    ok(r);
    expect(r.stderr).toMatch(/Skipped \(attestation\)/);
    expect((await inspectIndex('h', ref)).Platforms).toEqual(['linux/amd64', 'linux/arm64']);
    const none = failed(await run('h', ['pull', '--platform', 'linux/riscv64', ref]), 1);
    expect(none).toMatch(/it has linux\/amd64, linux\/arm64;/);
  });

  it('a Docker manifest list is read as an index is', async () => {
    const list = `${reg.host}/multi/dockerlist:v1`;
    await tool('skopeo', ['copy', '--all', '--format', 'v2s2', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${reg.host}/multi/app:v1`, `docker://${list}`]);
    expect((await skopeoRaw(`docker://${list}`)).doc.mediaType).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
    const inspected = JSON.parse(ok(await run('d', ['manifest', 'inspect', list]))) as { mediaType: string };
    expect(inspected.mediaType).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
    ok(await run('d', ['pull', '-q', '--all-platforms', list]));
    expect((await inspectIndex('d', list)).Manifests.map((m) => m.ImageId)).toEqual([ids['app:amd64'], ids['app:arm64']]);
    expect(ok(await run('d', ['pull', '-q', '--platform', 'linux/arm64', list]))).toBe(ids['app:arm64']);
  });

  it('manifest create --push joins registry images (one per CI runner) in the registry, without downloading them', async () => {
    ok(await run('a', ['push', '-q', 'app:amd64', `${reg.host}/ci/app:v1-amd64`]));
    ok(await run('a', ['push', '-q', 'app:arm64', `${reg.host}/ci/app:v1-arm64`]));
    const target = `${reg.host}/ci/app:v1`;
    const r = await run('e', ['manifest', 'create', '--push', '-t', target, `${reg.host}/ci/app:v1-amd64`, `${reg.host}/ci/app:v1-arm64`]);
    const digest = ok(r);
    const raw = await skopeoRaw(`docker://${target}`);
    expect(await sha256(raw.bytes)).toBe(digest);
    // The images are the ones the runners pushed, digest for digest; the store was not used.
    for (const [i, tag] of ['v1-amd64', 'v1-arm64'].entries()) {
      expect(raw.doc.manifests[i]?.digest).toBe(await sha256((await skopeoRaw(`docker://${reg.host}/ci/app:${tag}`)).bytes));
    }
    expect(ok(await run('e', ['images', '-q']))).toBe('');
    const shown = JSON.parse(ok(await run('e', ['manifest', 'inspect', target]))) as { manifests: Array<{ digest: string }> };
    expect(shown.manifests.map((m) => m.digest)).toEqual(raw.doc.manifests.map((m) => m.digest));

    // Another tool's images (skopeo's Docker schema 2 copies) keep their digests too, mounted into another repository.
    const fromDocker = `${reg.host}/ci/fromdocker:v1`;
    const d = ok(await run('e', ['manifest', 'create', '--push', '-t', fromDocker, `docker://${reg.host}/multi/dockerlist:v1`]));
    const list = await skopeoRaw(`docker://${fromDocker}`);
    expect(await sha256(list.bytes)).toBe(d);
    expect(list.doc.mediaType).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
    expect(list.doc.manifests.map((m) => m.digest)).toEqual((await skopeoRaw(`docker://${reg.host}/multi/dockerlist:v1`)).doc.manifests.map((m) => m.digest));
    await tool('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${fromDocker}`, `oci:${path.join(tmp, 'fromdocker')}:v1`]);

    // A source that is not there: named with its registry, and nothing is put.
    const missing = failed(await run('e', ['manifest', 'create', '--push', '-t', `${reg.host}/ci/broken:v1`, `${reg.host}/ci/app:v1-amd64`, `${reg.host}/ci/app:nosuch`]), 1);
    expect(missing).toContain(`registry ${reg.host} has no ${reg.host}/ci/app:nosuch`);
    await expect(skopeoRaw(`docker://${reg.host}/ci/broken:v1`)).rejects.toThrow();
    const bad = failed(await run('e', ['manifest', 'create', 'x:v1', 'Not A Name!']), 1);
    expect(bad).toMatch(/invalid reference format: "Not A Name!"/);
  });

  it('manifest create --push of local images, and manifest push, go through the store', async () => {
    // The same images as app:v1: the same index in the registry as `push app:v1`.
    expect(ok(await run('a', ['manifest', 'create', '-q', '--push', '-t', `${reg.host}/ci/local:v1`, 'app:amd64', 'app:arm64']))).toBe(pushed);
    expect(ok(await run('a', ['manifest', 'push', '-q', 'app:v1', `${reg.host}/ci/other:v1`]))).toBe(pushed);
    const local = JSON.parse(ok(await run('a', ['manifest', 'inspect', 'app:v1']))) as { manifests: unknown[] };
    expect(local.manifests).toHaveLength(2);
    // push --platform sends the one image, as the index names it.
    const arm = ok(await run('a', ['push', '-q', '--platform', 'linux/arm64', 'app:v1', `${reg.host}/ci/armonly:v1`]));
    expect(arm).toBe((await skopeoRaw(`docker://${reg.host}/multi/app:v1`)).doc.manifests[1]?.digest);
  });
});

describe('multi-platform images in archives, and removal', () => {
  it('save --format oci writes the index; load brings back every platform', async () => {
    const archive = path.join(tmp, 'multi-oci.tar');
    ok(await run('a', ['save', '--format', 'oci', '-o', archive, 'app:v1']));
    const raw = JSON.parse((await tool('skopeo', ['inspect', '--raw', `oci-archive:${archive}`])).stdout) as { manifests: Array<{ platform: { architecture: string } }> };
    expect(raw.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
    const loaded = ok(await run('f', ['load', '-i', archive]));
    expect(loaded).toBe('Loaded image: app:v1 (linux/amd64, linux/arm64)');
    expect((await inspectIndex('f', 'app:v1')).Manifests.map((m) => m.ImageId)).toEqual([ids['app:amd64'], ids['app:arm64']]);
    ok(await run('f', ['fsck']));
    expect(ok(await run('i', ['load', '--platform', 'linux/arm64', '-i', archive]))).toBe('Loaded image: app:v1');
    expect(ok(await run('i', ['inspect', '--format', '{{.Id}} {{.Architecture}}', 'app:v1']))).toBe(`${ids['app:arm64']} arm64`);
    failed(await run('i', ['load', '--platform', 'linux/ppc64le', '-i', archive]), 1);
  });

  it('a docker archive refuses several platforms unless --platform picks one', async () => {
    const archive = path.join(tmp, 'multi-docker.tar');
    const refused = failed(await run('a', ['save', '-o', archive, 'app:v1']), 2);
    expect(refused).toMatch(/multi-platform image \(linux\/amd64, linux\/arm64\)/);
    await expect(fs.stat(archive)).rejects.toThrow();
    ok(await run('a', ['save', '--platform', 'linux/arm64', '-o', archive, 'app:v1']));
    expect(ok(await run('g', ['load', '-i', archive]))).toBe('Loaded image: app:v1');
    const [doc] = JSON.parse(ok(await run('g', ['inspect', 'app:v1']))) as Array<{ Id: string; Architecture: string }>;
    expect(doc).toMatchObject({ Id: ids['app:arm64'], Architecture: 'arm64' });
  });

  it('rmi of an index removes it and its images; prune leaves a store fsck finds clean', async () => {
    const ref = `${reg.host}/multi/app:v1`;
    const doc = await inspectIndex('b', ref);
    const r = ok(await run('b', ['rmi', ref]));
    expect(r).toContain('Untagged:');
    expect(r).toContain(`Deleted: ${doc.Id}`);
    for (const m of doc.Manifests) {
      expect(r).toContain(`Deleted: ${m.Digest}`);
      expect(r).toContain(`Deleted: ${m.ImageId}`);
    }
    expect(ok(await run('b', ['images', '-q']))).toBe('');
    ok(await run('b', ['prune', '--filter', 'until=0s']));
    ok(await run('b', ['fsck']));

    // In store a, the images the index names keep their own tags: rmi of the index keeps them
    // (-f: base:arm64 has app:amd64's layers, which rmi counts as a child image).
    const a = ok(await run('a', ['rmi', '-f', 'app:v1']));
    expect(a).toContain('Untagged: app:v1');
    expect(a).not.toContain(ids['app:arm64']);
    expect(ok(await run('a', ['inspect', '--format', '{{.Id}}', 'app:arm64']))).toBe(ids['app:arm64']);
    ok(await run('a', ['fsck']));
  });
});
