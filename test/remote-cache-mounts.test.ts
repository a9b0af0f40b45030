import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { storeWithBusybox, tempDir, tsbuild, writeTree, type RunResult } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.js';

// Exported cache mounts (docs/remote-cache.md, "Cache mounts"): a RUN whose cache mount holds
// what an earlier run downloaded. Store A exports the mount with its cache (registry and
// directory); an empty store B, whose lock file changed so the RUN runs again, finds A's file in
// the mount. A faulty mount blob is a warning and an empty mount.
let work: string;
let reg: RunningRegistry;
let proxy: FaultProxy;

// The RUN "installs a package": from the cache mount when it is there, else it "downloads"
// (random bytes) into the mount. /status says which, /pkg carries the package and the lock.
const DOCKERFILE = [
  'FROM busybox',
  'COPY lock.txt /lock.txt',
  'RUN --mount=type=cache,target=/cache if [ -f /cache/pkg ]; then echo hit > /status; else echo miss > /status; head -c 16 /dev/urandom | od -x > /cache/pkg; fi; cp /cache/pkg /pkg; cat /lock.txt >> /pkg',
  '',
].join('\n');

beforeAll(async () => {
  work = await tempDir('remote-cache-mounts');
  reg = await startRegistry({ mode: { kind: 'open' } });
  proxy = await startFaultProxy({ upstream: `http://${reg.host}` });
});
afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

async function machine(name: string): Promise<string> {
  const root = path.join(work, name);
  await storeWithBusybox(root);
  return root;
}

async function context(name: string, lock: string, dockerfile = DOCKERFILE): Promise<string> {
  const dir = path.join(work, name);
  await writeTree(dir, { Dockerfile: dockerfile, 'lock.txt': lock });
  return dir;
}

/** Builds with the image's files written to a directory: /status and /pkg read back. */
async function build(root: string, name: string, args: readonly string[]): Promise<RunResult & { status: string; pkg: string }> {
  const out = path.join(work, `out-${name}`);
  const r = await tsbuild(['build', '--progress', 'plain', '--output', `type=local,dest=${out}`, ...args], { root });
  const read = (f: string) => fs.readFile(path.join(out, f), 'utf8').catch(() => '');
  return { ...r, status: (await read('status')).trim(), pkg: await read('pkg') };
}

async function cacheDocument(host: string, repoTag: string): Promise<{ layers: string[]; doc: { mounts?: Array<{ id: string; exportedAt: number; layer: { digest: string; diffId: string; mediaType: string } }> } }> {
  const [repo, tag] = repoTag.split(':');
  const m = (await (await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const doc = (await (await fetch(`http://${host}/v2/${repo}/blobs/${m.config.digest}`)).json()) as never;
  return { layers: m.layers.map((l) => l.digest), doc };
}

const firstLine = (s: string): string => s.split('\n')[0]!;

describe('exported cache mounts', () => {
  it('a second, empty store restores the mount from the registry or the directory before the RUN that mounts it', async () => {
    const a = await machine('A');
    const ref = `${reg.host}/ci/mounts:cache`;
    const dir = path.join(work, 'cache-dir');
    const first = await build(a, 'A', ['--cache-to', `type=registry,ref=${ref},mode=max,mounts=all`, '--cache-to', `type=local,dest=${dir},mounts=/cache,nope`, await context('ctx-1', 'lock 1\n')]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.status).toBe('miss');
    expect(first.stderr).toMatch(/warning.*cache mount "nope" is empty or was never used on this machine/i);
    expect(first.stderr).toMatch(/1 cache mounts/);

    // The document lists the mount, its blob is a layer of the cache manifest.
    const exported = await cacheDocument(reg.host, 'ci/mounts:cache');
    expect(exported.doc.mounts?.map((m) => [m.id, m.exportedAt])).toEqual([['/cache', 1]]);
    expect(exported.layers).toContain(exported.doc.mounts![0]!.layer.digest);
    expect(exported.doc.mounts![0]!.layer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');

    // Store B: the lock file changed, so the RUN misses and runs; the package is in its cache mount.
    const b = await machine('B');
    const changed = await context('ctx-2', 'lock 2\n');
    const fromRegistry = await build(b, 'B', ['--cache-from', `type=registry,ref=${ref}`, '--cache-to', `type=registry,ref=${ref},mode=max,mounts=all`, changed]);
    expect(fromRegistry.code, fromRegistry.stderr).toBe(0);
    expect(fromRegistry.stderr).not.toMatch(/warning/i);
    expect(fromRegistry.stderr).toContain(`cache mount "/cache" restored from registry ${ref}`);
    expect(fromRegistry.status).toBe('hit');
    expect(firstLine(fromRegistry.pkg)).toBe(firstLine(first.pkg));
    expect(fromRegistry.pkg).toContain('lock 2');
    // B's export replaced the mount (the newest wins per id): one entry, written by export 2.
    expect((await cacheDocument(reg.host, 'ci/mounts:cache')).doc.mounts?.map((m) => [m.id, m.exportedAt])).toEqual([['/cache', 2]]);

    // Store C from the directory: the same.
    const c = await machine('C');
    const fromDir = await build(c, 'C', ['--cache-from', `type=local,src=${dir}`, changed]);
    expect(fromDir.code, fromDir.stderr).toBe(0);
    expect(fromDir.stderr).toContain(`cache mount "/cache" restored from local ${dir}`);
    expect(fromDir.status).toBe('hit');
    expect(firstLine(fromDir.pkg)).toBe(firstLine(first.pkg));

    // A mount that is already there locally is kept (on one machine, the local one is newer).
    await fs.writeFile(path.join(work, 'ctx-2', 'lock.txt'), 'lock 3\n');
    const again = await build(c, 'C2', ['--cache-from', `type=local,src=${dir}`, changed]);
    expect(again.code).toBe(0);
    expect(again.stderr).not.toContain('restored');

    // Lazy: a build that mounts no cache restores nothing.
    const d = await machine('D');
    const plain = await build(d, 'D', ['--cache-from', `type=local,src=${dir}`, await context('ctx-plain', 'x\n', 'FROM busybox\nCOPY lock.txt /lock.txt\nRUN cat /lock.txt > /status\n')]);
    expect(plain.code).toBe(0);
    expect(plain.stderr).not.toContain('restored');
    expect(await fs.readdir(path.join(d, 'cache-mounts')).catch(() => [])).toEqual([]);
  });

  it('a mount unchanged since it was packed or restored is not packed again; a changed or pruned one is', async () => {
    const a = await machine('reuse-A');
    const ref = `${reg.host}/ci/mounts-reuse:cache`;
    const ctx = await context('reuse-ctx', 'lock 1\n');
    const args = ['--cache-to', `type=registry,ref=${ref},mounts=all`, ctx];
    const reused = /cache mount "\/cache" unchanged since it was last packed or restored: blob sha256:[a-f0-9]{64} reused/;
    const first = await build(a, 'reuse-1', args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).not.toMatch(reused);
    const one = await cacheDocument(reg.host, 'ci/mounts-reuse:cache');

    // Nothing wrote to the mount: the second export reuses its blob, and the cache's blobs stay the same.
    const second = await build(a, 'reuse-2', args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(reused);
    const two = await cacheDocument(reg.host, 'ci/mounts-reuse:cache');
    expect(two.doc.mounts?.map((m) => [m.layer.diffId, m.exportedAt])).toEqual([[one.doc.mounts![0]!.layer.diffId, 2]]);
    expect(two.layers).toEqual(one.layers);

    // A file written into the mount (as a RUN would): packed again, a new blob.
    const [mountDir] = (await fs.readdir(path.join(a, 'cache-mounts'), { withFileTypes: true })).filter((e) => e.isDirectory());
    await fs.writeFile(path.join(a, 'cache-mounts', mountDir!.name, 'more'), 'more\n');
    const third = await build(a, 'reuse-3', args);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stderr).not.toMatch(reused);
    const packed = (await cacheDocument(reg.host, 'ci/mounts-reuse:cache')).doc.mounts![0]!.layer;
    expect(packed.diffId).not.toBe(one.doc.mounts![0]!.layer.diffId);

    // Its blob removed by prune (nothing holds it once the build is over): packed again, the same bytes.
    const prune = await tsbuild(['prune', '--filter', 'until=0s'], { root: a });
    expect(prune.code, prune.stderr).toBe(0);
    expect(await fs.stat(path.join(a, 'blobs', 'sha256', packed.diffId.slice('sha256:'.length))).catch(() => undefined)).toBeUndefined();
    const fourth = await build(a, 'reuse-4', args);
    expect(fourth.code, fourth.stderr).toBe(0);
    expect(fourth.stderr).not.toMatch(reused);
    expect((await cacheDocument(reg.host, 'ci/mounts-reuse:cache')).doc.mounts![0]!.layer.diffId).toBe(packed.diffId);

    // Restored on another store and exported untouched: the restored blob is reused.
    const b = await machine('reuse-B');
    const restored = await build(b, 'reuse-B', ['--cache-from', `type=registry,ref=${ref}`, '--cache-to', `type=registry,ref=${ref},mounts=all`, await context('reuse-ctx-2', 'lock 2\n')]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stderr).toContain(`cache mount "/cache" restored from registry ${ref}`);
    expect(restored.status).toBe('hit');
    expect(restored.stderr).toMatch(reused);
    expect((await cacheDocument(reg.host, 'ci/mounts-reuse:cache')).doc.mounts![0]!.layer.diffId).toBe(packed.diffId);
  });

  it('a corrupt mount blob (registry or directory) is a warning: the mount starts empty and the build succeeds', async () => {
    const a = await machine('fault-A');
    const ref = `${proxy.host}/ci/mounts-faulty:cache`;
    const dir = path.join(work, 'fault-dir');
    const first = await build(a, 'fault-A', ['--cache-to', `type=registry,ref=${ref},mounts=all`, '--cache-to', `type=local,dest=${dir},mounts=all`, await context('fault-1', 'lock 1\n')]);
    expect(first.code, first.stderr).toBe(0);
    const blob = (await cacheDocument(reg.host, 'ci/mounts-faulty:cache')).doc.mounts![0]!.layer.digest;
    const changed = await context('fault-2', 'lock 2\n');

    proxy.setRules([{ method: 'GET', path: /\/blobs\/sha256:/, when: (req) => (req.url ?? '').endsWith(blob), fault: 'corrupt' }]);
    try {
      const b = await machine('fault-B');
      const r = await build(b, 'fault-B', ['--cache-from', ref, changed]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/warning.*cache mount "\/cache" cannot be restored, it starts empty/i);
      expect(r.status).toBe('miss');
      expect(proxy.stats.faults['corrupt']).toBeGreaterThan(0);
    } finally {
      proxy.setRules([]);
    }

    // The directory's blob tampered with (same size, other bytes): refused by its digest.
    const file = path.join(dir, 'blobs', 'sha256', blob.slice('sha256:'.length));
    const bytes = await fs.readFile(file);
    bytes.writeUInt8(bytes.readUInt8(bytes.length >> 1) ^ 0xff, bytes.length >> 1);
    await fs.writeFile(file, bytes);
    const c = await machine('fault-C');
    const r = await build(c, 'fault-C', ['--cache-from', `type=local,src=${dir}`, changed]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning.*cache mount "\/cache" cannot be restored/i);
    expect(r.status).toBe('miss');
  });

  it('refuses mounts= on an inline export, clearly', async () => {
    const r = await tsbuild(['build', '--cache-to', 'type=inline,mounts=all', await context('inline', 'x\n')], { root: path.join(work, 'inline-store') });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/type=inline cannot carry cache mounts/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
