import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { removePodmanImages, requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// End to end: COPY-only builds checked by tools that are not ours (podman, skopeo, umoci,
// oci-image-tool, GNU tar). Issue 3's "done when".
let work: string;
let root: string;
let ctx: string;

beforeAll(async () => {
  for (const t of ['podman', 'skopeo', 'umoci', 'oci-image-tool', 'tar', 'jq']) await requireTool(t);
  work = await tempDir('e2e-copy');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  ctx = path.join(work, 'ctx');
  await writeTree(ctx, {
    'Dockerfile': [
      'FROM busybox',
      'LABEL org.example.kind="copy only"',
      'ENV GREETING="hello from a COPY-only image"',
      'WORKDIR /app',
      'COPY hello.sh ./',
      'COPY --chmod=0755 run.sh /usr/local/bin/run',
      'COPY conf/ /etc/hello/',
      'EXPOSE 8080 53/udp',
      'CMD ["/usr/local/bin/run"]',
      '',
    ].join('\n'),
    'hello.sh': 'echo "$GREETING"\n',
    'run.sh': '#!/bin/sh\n. /app/hello.sh\ncat /etc/hello/a.conf\n',
    'conf/a.conf': 'conf-a\n',
    'conf/skip.tmp': 'ignored\n',
    '.dockerignore': '**/*.tmp\n',
  });
});
afterAll(async () => {
  await removePodmanImages('hello:v1');
  await fs.rm(work, { recursive: true, force: true });
});

describe('COPY-only builds', () => {
  it('builds a docker archive that podman loads and runs', async () => {
    const out = path.join(work, 'hello.tar');
    const r = await tsbuild(['build', '-t', 'hello:v1', '--output', `type=docker,dest=${out}`, ctx], { root });
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^sha256:[a-f0-9]{64}$/);
    const loaded = await tool('podman', ['load', '-i', out]);
    expect(loaded.stdout + loaded.stderr).toMatch(/hello:v1/);
    const run = await tool('podman', ['run', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rm', 'localhost/hello:v1']).catch(async () =>
      tool('podman', ['run', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rm', 'docker.io/library/hello:v1']),
    );
    expect(run.stdout).toBe('hello from a COPY-only image\nconf-a\n');
    // the image also went to the local store under its tag
    const images = await tsbuild(['images'], { root });
    expect(images.stdout).toMatch(/^hello\s+v1\s+/m);
  });

  it('writes an OCI archive that skopeo, umoci and oci-image-tool accept', async () => {
    const out = path.join(work, 'hello-oci.tar');
    const r = await tsbuild(['build', '--output', `type=oci,dest=${out}`, ctx], { root });
    expect(r.code).toBe(0);
    const inspect = JSON.parse((await tool('skopeo', ['inspect', '--config', `oci-archive:${out}`])).stdout) as {
      config: { Env: string[]; Cmd: string[]; WorkingDir: string; ExposedPorts: Record<string, unknown>; Labels: Record<string, string> };
      history: Array<{ created_by: string; empty_layer?: boolean }>;
    };
    expect(inspect.config.Cmd).toEqual(['/usr/local/bin/run']);
    expect(inspect.config.WorkingDir).toBe('/app');
    expect(inspect.config.Env).toContain('GREETING=hello from a COPY-only image');
    expect(Object.keys(inspect.config.ExposedPorts).sort()).toEqual(['53/udp', '8080/tcp']);
    expect(inspect.config.Labels['org.example.kind']).toBe('copy only');
    expect(inspect.history.some((h) => h.created_by.startsWith('COPY hello.sh ./'))).toBe(true);

    const layout = path.join(work, 'layout');
    await fs.mkdir(layout);
    await tool('tar', ['-xf', out, '-C', layout]);
    await tool('oci-image-tool', ['validate', '--type', 'image', layout]);
    const index = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    expect(index.manifests).toHaveLength(1);

    const bundle = path.join(work, 'bundle');
    await tool('skopeo', ['copy', `oci-archive:${out}`, `oci:${path.join(work, 'umoci-layout')}:x`]);
    await tool('umoci', ['unpack', '--rootless', '--image', `${path.join(work, 'umoci-layout')}:x`, bundle]);
    const rootfs = path.join(bundle, 'rootfs');
    expect(await fs.readFile(path.join(rootfs, 'app', 'hello.sh'), 'utf8')).toBe('echo "$GREETING"\n');
    expect((await fs.stat(path.join(rootfs, 'usr/local/bin/run'))).mode & 0o777).toBe(0o755);
    expect(await fs.readFile(path.join(rootfs, 'etc/hello/a.conf'), 'utf8')).toBe('conf-a\n');
    await expect(fs.access(path.join(rootfs, 'etc/hello/skip.tmp'))).rejects.toThrow(); // .dockerignore
    await expect(fs.access(path.join(rootfs, 'bin/busybox'))).resolves.toBeUndefined(); // base layer
  });

  it('gives the same manifest digest twice with SOURCE_DATE_EPOCH, also with --no-cache', async () => {
    const digests: string[] = [];
    for (const extra of [[], [], ['--no-cache']]) {
      const meta = path.join(work, `meta-${digests.length}.json`);
      const r = await tsbuild(['build', ...extra, '--metadata-file', meta, '--output', `type=oci,dest=${path.join(work, `r${digests.length}.tar`)}`, ctx], {
        root,
        env: { SOURCE_DATE_EPOCH: '1700000000' },
      });
      expect(r.code).toBe(0);
      const m = JSON.parse(await fs.readFile(meta, 'utf8')) as Record<string, string>;
      digests.push(m['containerimage.digest']!);
    }
    expect(digests[0]).toMatch(/^sha256:/);
    expect(new Set(digests).size).toBe(1);
    const a = await fs.readFile(path.join(work, 'r0.tar'));
    const c = await fs.readFile(path.join(work, 'r2.tar'));
    expect(a.equals(c)).toBe(true);
  });

  it('reads each file once with --no-cache and still records the same step key and stat index', async () => {
    // --no-cache takes the content digests of the cache key from the bytes written to the
    // layer (one read per file); a build with the cache on digests first. Both must agree
    // on the layer, the step key and what the stat index learns, for small files read
    // ahead, an empty one and one large enough to be streamed.
    const big = path.join(work, 'ctx-once');
    const files: Record<string, string> = { 'Dockerfile': 'FROM busybox\nCOPY . /data/\n', 'empty': '', 'large.bin': 'x'.repeat(3 * 1024 * 1024 + 7) };
    for (let i = 0; i < 60; i++) files[`d${i % 3}/f${i}.txt`] = `file ${i}\n`.repeat(i * 37);
    await writeTree(big, files);
    // The stat index keeps no record of a file changed less than 2.5 s before a build (a
    // same-size rewrite within the file system's time step would look unchanged): wait that out.
    await new Promise((r) => setTimeout(r, 2600));
    const stores: string[] = [];
    const ids: string[] = [];
    for (const extra of [[], ['--no-cache']]) {
      const r2 = path.join(work, `store-once-${stores.length}`);
      await storeWithBusybox(r2);
      const r = await tsbuild(['build', ...extra, '-t', 'once:1', big], { root: r2, env: { SOURCE_DATE_EPOCH: '1700000000' } });
      expect(r.code).toBe(0);
      stores.push(r2);
      ids.push(r.stdout);
    }
    expect(ids[1]).toBe(ids[0]);
    const metaOf = async (r2: string) => {
      const names = (await fs.readdir(path.join(r2, 'meta'))).filter((n) => n.startsWith('step.')).sort();
      const indexes = (await fs.readdir(path.join(r2, 'meta'))).filter((n) => n.startsWith('context-stat-index.'));
      expect(indexes).toHaveLength(1); // one index per context directory
      const { records } = JSON.parse(await fs.readFile(path.join(r2, 'meta', indexes[0]!), 'utf8')) as { records: string[] };
      const index = new Map<string, string>();
      for (let i = 0; i < records.length; i += 3) index.set(records[i]!, `${records[i + 1]} ${records[i + 2]}`);
      return { names, index: Object.fromEntries([...index].sort()) };
    };
    const [a, b] = [await metaOf(stores[0]!), await metaOf(stores[1]!)];
    expect(b.names).toEqual(a.names);
    expect(Object.keys(a.index).length).toBe(63);
    expect(b.index).toEqual(a.index);
    // And the store that built with --no-cache now finds the step without --no-cache.
    const again = await tsbuild(['build', '--progress', 'plain', '-t', 'once:1', big], { root: stores[1]!, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(again.stdout).toBe(ids[0]);
    expect(again.stderr).toMatch(/COPY \. \/data\/\n#\d+ CACHED/);
  });

  it('reuses every step on an unchanged rebuild and says so', async () => {
    const first = await tsbuild(['build', '-t', 'cachetest:1', ctx], { root });
    const r = await tsbuild(['build', '--progress', 'plain', '-t', 'cachetest:1', ctx], { root });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(first.stdout); // the same image ID, not one that differs in time stamps
    const copies = r.stderr.split('\n').filter((l) => / COPY /.test(l));
    expect(copies.length).toBe(3);
    const cached = r.stderr.split('\n').filter((l) => /CACHED/.test(l));
    expect(cached.length).toBeGreaterThanOrEqual(3);
  });

  it('plans a cached COPY and WORKDIR from the recorded view of the layers below, reading none of their indexes', async () => {
    const dir = await tempDir('view-record');
    const store = path.join(dir, 'store');
    try {
      await writeTree(dir, { 'base/Dockerfile': 'FROM scratch\nCOPY . /\n', 'base/real/keep': 'k\n', 'app/Dockerfile': 'FROM view-base:1\nCOPY a.txt /link/\nWORKDIR /real/w\n', 'app/a.txt': 'alpha\n', 'other/Dockerfile': 'FROM view-base:1\nCOPY a.txt /link/sub/\n', 'other/a.txt': 'alpha\n' });
      await fs.writeFile(path.join(dir, 'base', '.dockerignore'), 'Dockerfile\n');
      await fs.symlink('real', path.join(dir, 'base', 'link'));
      expect((await tsbuild(['build', '-t', 'view-base:1', path.join(dir, 'base')], { root: store })).code).toBe(0);
      const files = async (prefix: string) => (await fs.readdir(path.join(store, 'meta'))).filter((f) => f.startsWith(prefix));
      const build = (ctxDir: string, out: string) => tsbuild(['build', '--progress', 'plain', '--output', `type=oci,dest=${path.join(dir, out)}`, '-t', 'view-app:1', path.join(dir, ctxDir)], { root: store });
      // The destination goes through the base's symlink: only the base's view says where it lands.
      const first = await build('app', 'first.tar');
      expect(first.code).toBe(0);
      // One record for the base (the COPY's questions), one for the base and the COPY's layer (the WORKDIR's).
      expect(await files('view.')).toHaveLength(2);
      // Without the layers' indexes (a build that reads one reads it from the layer's blob and
      // writes it back), every step is a hit and the image the same.
      for (const f of await files('layer-index.')) await fs.rm(path.join(store, 'meta', f));
      const second = await build('app', 'second.tar');
      expect(second.stdout).toBe(first.stdout);
      expect(second.stderr).toMatch(/COPY a\.txt \/link\/\n#\d+ CACHED/);
      expect(second.stderr).toMatch(/WORKDIR \/real\/w\n#\d+ CACHED/);
      expect(await files('layer-index.')).toEqual([]);
      // A destination the record cannot answer for is planned from the indexes, read again.
      const third = await build('other', 'third.tar');
      expect(third.code).toBe(0);
      expect(await files('layer-index.')).not.toEqual([]);
      const x = path.join(dir, 'x');
      await fs.mkdir(x);
      await tool('tar', ['-xf', path.join(dir, 'third.tar'), '-C', x]);
      const blob = async (digest: string) => path.join(x, 'blobs', ...digest.split(':'));
      const index = JSON.parse(await fs.readFile(path.join(x, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      const manifest = JSON.parse(await fs.readFile(await blob(index.manifests[0]!.digest), 'utf8')) as { layers: { digest: string }[] };
      const { stdout: names } = await tool('tar', ['-tzf', await blob(manifest.layers.at(-1)!.digest)]);
      expect(names.split('\n')).toContain('real/sub/a.txt');
      // A damaged record is passed over, not trusted.
      for (const f of await files('view.')) await fs.writeFile(path.join(store, 'meta', f), '{"layers": [], "lookups": 1}\n');
      const fourth = await build('app', 'fourth.tar');
      expect(fourth.stdout).toBe(first.stdout);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('rebuilds only from the step whose input changed', async () => {
    const ctx2 = path.join(work, 'ctx2');
    await fs.cp(ctx, ctx2, { recursive: true });
    await tsbuild(['build', ctx2], { root });
    await fs.writeFile(path.join(ctx2, 'conf', 'a.conf'), 'changed\n');
    const r = await tsbuild(['build', '--progress', 'json', ctx2], { root });
    expect(r.code).toBe(0);
    const events = r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; id: number; name?: string });
    const names = new Map(events.filter((e) => e.type === 'step-start').map((e) => [e.id, e.name ?? '']));
    const cachedNames = events.filter((e) => e.type === 'step-cached').map((e) => names.get(e.id) ?? '');
    expect(cachedNames.some((n) => n.includes('COPY hello.sh'))).toBe(true);
    expect(cachedNames.some((n) => n.includes('COPY conf/'))).toBe(false);
  });

  it('misses when a file is rewritten with the same size and its mtime put back (its ctime changed)', async () => {
    const ctx3 = path.join(work, 'ctx3');
    await fs.cp(ctx, ctx3, { recursive: true });
    const f = path.join(ctx3, 'conf', 'a.conf');
    await fs.utimes(f, 1_700_000_000, 1_700_000_000);
    // Older than the stat index's window for recent changes, so the first build keeps a record of it.
    await new Promise((r) => setTimeout(r, 2600));
    const one = await tsbuild(['build', '-q', ctx3], { root });
    expect(one.code).toBe(0);
    await fs.writeFile(f, 'CONF-A\n');
    await fs.utimes(f, 1_700_000_000, 1_700_000_000);
    const two = await tsbuild(['build', '--progress', 'plain', ctx3], { root });
    expect(two.code).toBe(0);
    expect(two.stderr).toMatch(/COPY conf\/ \/etc\/hello\/\n#\d+ cache miss: /);
    expect(two.stdout).not.toBe(one.stdout);
  });

  it('writes the root filesystem as a directory and as a tar', async () => {
    const dir = path.join(work, 'rootfs-out');
    const tarFile = path.join(work, 'rootfs.tar');
    expect((await tsbuild(['build', '--output', `type=local,dest=${dir}`, ctx], { root })).code).toBe(0);
    expect(await fs.readFile(path.join(dir, 'etc/hello/a.conf'), 'utf8')).toBe('conf-a\n');
    expect((await tsbuild(['build', '--output', `type=tar,dest=${tarFile}`, ctx], { root })).code).toBe(0);
    const list = (await tool('tar', ['-tf', tarFile])).stdout;
    expect(list).toMatch(/^(\.\/)?app\/hello\.sh$/m);
    expect(list).toMatch(/^(\.\/)?bin\/busybox$/m);
  });

  it('writes --iidfile and round-trips through save and load', async () => {
    const iid = path.join(work, 'iid');
    const r = await tsbuild(['build', '-t', 'rt:1', '--iidfile', iid, ctx], { root });
    expect(r.code).toBe(0);
    const id = (await fs.readFile(iid, 'utf8')).trim();
    expect(id).toBe(r.stdout.trim());
    const archive = path.join(work, 'rt.tar');
    expect((await tsbuild(['save', '-o', archive, 'rt:1'], { root })).code).toBe(0);
    const root2 = path.join(work, 'store2');
    const loaded = await tsbuild(['load', '-i', archive], { root: root2 });
    expect(loaded.code).toBe(0);
    expect(loaded.stdout).toContain('rt:1');
    const listed = await tsbuild(['images', '--no-trunc'], { root: root2 });
    expect(listed.stdout).toContain(id);
  });
});

describe('COPY-only builds: bad input', () => {
  const cases: Array<[string, Record<string, string>, RegExp, number]> = [
    ['a missing source', { Dockerfile: 'FROM scratch\nCOPY nope.txt /\n' }, /Dockerfile:2: .*nope\.txt.*not found/, 1],
    ['a source excluded by .dockerignore', { Dockerfile: 'FROM scratch\nCOPY secret.txt /\n', 'secret.txt': 's', '.dockerignore': '# keys\n*.txt\n' }, /Dockerfile:2: .*secret\.txt.* excluded by \.dockerignore \(pattern "\*\.txt"\)/, 1],
    ['a source outside the context', { Dockerfile: 'FROM scratch\nCOPY ../x /\n' }, /Dockerfile:2: .*outside the build context/, 1],
    ['a base image that is not there', { Dockerfile: 'FROM nosuchimage:1\n' }, /Dockerfile:1: .*nosuchimage/, 1],
    ['an unknown instruction', { Dockerfile: 'FROM scratch\nCOPPY a /\n' }, /Dockerfile:2: .*unknown instruction/i, 1],
    ['an unknown target', { Dockerfile: 'FROM scratch AS a\n' }, /target stage .*zzz/, 1],
  ];
  it.each(cases)('%s: a located error, exit 1, no stack trace', async (_name, files, message, code) => {
    const dir = await tempDir('bad');
    try {
      await writeTree(dir, files);
      const extra = _name === 'an unknown target' ? ['--target', 'zzz'] : [];
      const r = await tsbuild(['build', ...extra, '--output', `type=oci,dest=${path.join(dir, 'out.tar')}`, dir], { root, cwd: dir });
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/);
      await expect(fs.access(path.join(dir, 'out.tar'))).rejects.toThrow();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('never reads a host file through a symlink in the context', async () => {
    const dir = await tempDir('escape');
    try {
      await writeTree(dir, { Dockerfile: 'FROM scratch\nCOPY link /x\n' });
      await fs.symlink('/etc/hostname', path.join(dir, 'link'));
      const r = await tsbuild(['build', '--output', `type=oci,dest=${path.join(dir, 'o.tar')}`, dir], { root });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/outside the build context/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
