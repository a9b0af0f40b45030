import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { removePodmanImages, requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// COPY --link and ADD --link as BuildKit builds them (dockerfile2llb dispatchCopy: with
// `cfg.link && cfg.chmod == ""` the copy is made onto llb.Scratch and merged over the state).
// The layer is made on an empty tree: read back with GNU tar, it holds what is copied and the
// parents the copy made (0755, the --chown owner else 0:0), never what the layers below have;
// its key leaves the layers below out, so a changed base or earlier step still finds it; the
// image runs in podman.
let work: string;
let root: string;

const PODMAN_RUN = ['run', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rm'];

beforeAll(async () => {
  for (const t of ['tar', 'jq', 'podman']) await requireTool(t);
  work = await tempDir('e2e-link');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await removePodmanImages('link-tree:1', 'link-cached:1');
  await fs.rm(work, { recursive: true, force: true });
});

interface Built {
  /** Each layer as GNU tar lists it: `mode owner size path`, sorted by path. */
  readonly layers: string[][];
  readonly diffIds: string[];
  readonly stderr: string;
}

async function build(ctx: string, extra: readonly string[] = []): Promise<Built> {
  const out = path.join(work, `${path.basename(ctx)}-${Date.now()}.oci.tar`);
  const r = await tsbuild(['build', ...extra, '--output', `type=oci,dest=${out}`, ctx], { root });
  expect(r.stderr).not.toMatch(/internal error/);
  if (r.code !== 0) throw new Error(`build failed (${r.code}): ${r.stderr}`);
  const dir = `${out}.d`;
  await fs.mkdir(dir);
  await tool('tar', ['-xf', out, '-C', dir]);
  const blob = (d: string) => path.join(dir, 'blobs', 'sha256', d.slice('sha256:'.length));
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await fs.readFile(blob(index.manifests[0]!.digest), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const config = JSON.parse(await fs.readFile(blob(manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } };
  const layers: string[][] = [];
  for (const l of manifest.layers) {
    const { stdout } = await tool('tar', ['--numeric-owner', '-tvf', blob(l.digest)]);
    layers.push(
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const f = line.split(/\s+/);
          return [f[0], f[1], f[2], f.slice(5).join(' ').replace(/^\.\//, '')].join(' ');
        })
        .sort(byPath),
    );
  }
  await fs.rm(dir, { recursive: true, force: true });
  return { layers, diffIds: config.rootfs.diff_ids, stderr: r.stderr };
}

/** The progress lines of the step whose name contains `text`: whether it was CACHED. */
function wasCached(stderr: string, text: string): boolean {
  const lines = stderr.split('\n');
  const at = lines.findIndex((l) => l.includes(text));
  if (at < 0) throw new Error(`no step ${JSON.stringify(text)} in:\n${stderr}`);
  const id = /^#(\d+) /.exec(lines[at]!)?.[1];
  return lines.some((l) => l === `#${id} CACHED`);
}

describe('COPY --link: the layer is made on an empty tree', () => {
  it('does not follow a symlinked destination of the base, makes parents in the layer, keeps WORKDIR', async () => {
    const ctx = path.join(work, 'tree');
    await writeTree(ctx, {
      Dockerfile: [
        'FROM busybox',
        // /app is a symlink and /opt a 0700 directory owned by 5:5 in the layers below.
        'RUN mkdir -p /srv/real && ln -s /srv/real /app && mkdir /opt && chmod 700 /opt && chown 5:5 /opt',
        // With --chmod BuildKit does not link (dispatchCopy): a plain COPY, through the symlink.
        'COPY --link --chmod=600 m.txt /app/m/',
        'COPY --link --chown=7:8 a.txt dir/ /app/deep/',
        'COPY --link b.txt /opt/',
        'ADD --link tree.tar /unpacked/',
        'WORKDIR /work',
        'COPY --link a.txt rel/',
        // A RUN on top sees the directory /app (the layers applied in order by our snapshotter).
        'RUN test -d /app && test ! -L /app && cat /app/deep/a.txt > /seen && ls /srv/real > /srv-listing',
        `CMD ["sh", "-c", "test -d /app && test ! -L /app && cat /app/deep/a.txt /app/deep/x.txt /opt/b.txt /unpacked/t.txt /work/rel/a.txt /srv/real/m/m.txt && ls /srv/real && stat -c '%n %a %u:%g' /app /app/deep /opt /work /work/rel"]`,
        '',
      ].join('\n'),
      'a.txt': 'a\n',
      'dir/x.txt': 'x\n',
      'b.txt': 'b\n',
      'm.txt': 'm\n',
      'tree/t.txt': 't\n',
    });
    await tool('sh', ['-c', 'chmod 755 tree && tar --owner=0 --group=0 -cf tree.tar -C tree . && rm -r tree'], { cwd: ctx });
    const built = await build(ctx, ['-t', 'link-tree:1']);
    const [m, deep, opt, unpacked, workdir, rel, ran] = built.layers.slice(-7);
    expect(ran).toEqual(['-rw-r--r-- 0/0 2 seen', '-rw-r--r-- 0/0 2 srv-listing']);
    expect(m).toEqual(['drwxr-xr-x 0/0 0 srv/', 'drwxr-xr-x 0/0 0 srv/real/', 'drwxr-xr-x 0/0 0 srv/real/m/', '-rw------- 0/0 2 srv/real/m/m.txt']);
    // The symlink /app of the base is not followed: /app is a directory of this layer, made
    // (with /app/deep) by the copy and owned by the --chown user as BuildKit's mkdir on scratch.
    expect(deep).toEqual(['drwxr-xr-x 7/8 0 app/', 'drwxr-xr-x 7/8 0 app/deep/', '-rw-r--r-- 7/8 2 app/deep/a.txt', '-rw-r--r-- 7/8 2 app/deep/x.txt']);
    // /opt of the base (0700 5:5) is not read: the layer's /opt is the one the copy made.
    expect(opt).toEqual(['drwxr-xr-x 0/0 0 opt/', '-rw-r--r-- 0/0 2 opt/b.txt']);
    expect(unpacked).toEqual(['drwxr-xr-x 0/0 0 unpacked/', '-rw-r--r-- 0/0 2 unpacked/t.txt']);
    expect(workdir).toEqual(['drwxr-xr-x 0/0 0 work/']);
    // The destination is relative to the stage's WORKDIR, whose directory the copy makes again.
    expect(rel).toEqual(['drwxr-xr-x 0/0 0 work/', 'drwxr-xr-x 0/0 0 work/rel/', '-rw-r--r-- 0/0 2 work/rel/a.txt']);

    const archive = path.join(work, 'link-tree.docker.tar');
    const r = await tsbuild(['build', '-t', 'link-tree:1', '--output', `type=docker,dest=${archive}`, ctx], { root });
    expect(r.code).toBe(0);
    await tool('podman', ['load', '-i', archive]);
    const run = await tool('podman', [...PODMAN_RUN, 'localhost/link-tree:1']).catch(() => tool('podman', [...PODMAN_RUN, 'docker.io/library/link-tree:1']));
    // The image is the layers applied in order: /app became the directory, /srv/real keeps
    // only what the --chmod copy wrote through the symlink, /opt is the link layer's.
    expect(run.stdout).toBe(['a', 'x', 'b', 't', 'a', 'm', 'm', '/app 755 7:8', '/app/deep 755 7:8', '/opt 755 0:0', '/work 755 0:0', '/work/rel 755 0:0', ''].join('\n'));
  });
});

describe('COPY --link: the layer is independent of the layers below', () => {
  it('is reused (CACHED, same layer) when an earlier RUN or COPY or the base image changes; later steps still run', async () => {
    const baseCtx = path.join(work, 'base');
    const ctx = path.join(work, 'cached');
    const writeBase = (marker: string) => writeTree(baseCtx, { Dockerfile: ['FROM busybox', `RUN echo ${marker} > /marker`, ''].join('\n') });
    const writeApp = (early: string, run: string) =>
      writeTree(ctx, {
        Dockerfile: [
          'FROM link-base:1',
          'COPY early.txt /early.txt',
          `RUN echo ${run} > /before`,
          'COPY --link app.txt /app/',
          'RUN cat /marker /early.txt /before /app/app.txt > /after',
          '',
        ].join('\n'),
        'early.txt': `${early}\n`,
        'app.txt': 'app\n',
      });
    const buildBase = async () => {
      const r = await tsbuild(['build', '-t', 'link-base:1', baseCtx], { root });
      expect(r.code).toBe(0);
    };
    const afterOf = async (b: Built) => {
      const last = b.layers[b.layers.length - 1]!;
      expect(last).toContainEqual(expect.stringMatching(/ after$/));
      return b;
    };

    await writeBase('base-1');
    await buildBase();
    await writeApp('early-1', 'run-1');
    const first = await afterOf(await build(ctx));
    expect(wasCached(first.stderr, 'COPY --link app.txt /app/')).toBe(false);
    const linkLayer = first.diffIds[first.diffIds.length - 2]!;
    expect(first.layers[first.layers.length - 2]).toEqual(['drwxr-xr-x 0/0 0 app/', '-rw-r--r-- 0/0 4 app/app.txt']);

    // An earlier RUN changed.
    await writeApp('early-1', 'run-2');
    const run2 = await build(ctx);
    expect(wasCached(run2.stderr, 'RUN echo run-2')).toBe(false);
    expect(wasCached(run2.stderr, 'COPY --link app.txt /app/')).toBe(true);
    expect(run2.diffIds[run2.diffIds.length - 2]).toBe(linkLayer);
    // What follows the linked layer depends on everything below it: it runs again.
    expect(wasCached(run2.stderr, 'RUN cat /marker')).toBe(false);

    // An earlier COPY changed.
    await writeApp('early-2', 'run-2');
    const copy2 = await build(ctx);
    expect(wasCached(copy2.stderr, 'COPY early.txt /early.txt')).toBe(false);
    expect(wasCached(copy2.stderr, 'COPY --link app.txt /app/')).toBe(true);
    expect(copy2.diffIds[copy2.diffIds.length - 2]).toBe(linkLayer);
    expect(wasCached(copy2.stderr, 'RUN cat /marker')).toBe(false);

    // The base image changed.
    await writeBase('base-2');
    await buildBase();
    const base2 = await build(ctx);
    expect(wasCached(base2.stderr, 'COPY early.txt /early.txt')).toBe(false);
    expect(wasCached(base2.stderr, 'COPY --link app.txt /app/')).toBe(true);
    expect(base2.diffIds[base2.diffIds.length - 2]).toBe(linkLayer);
    expect(wasCached(base2.stderr, 'RUN cat /marker')).toBe(false);

    // Nothing changed: all cached, and the last RUN saw the new base, COPY and RUN.
    const again = await build(ctx, ['-t', 'link-cached:1']);
    expect(wasCached(again.stderr, 'RUN cat /marker')).toBe(true);
    const archive = path.join(work, 'link-cached.docker.tar');
    const r = await tsbuild(['build', '-t', 'link-cached:1', '--output', `type=docker,dest=${archive}`, ctx], { root });
    expect(r.code).toBe(0);
    await tool('podman', ['load', '-i', archive]);
    const run = await tool('podman', [...PODMAN_RUN, 'localhost/link-cached:1', 'cat', '/after']).catch(() => tool('podman', [...PODMAN_RUN, 'docker.io/library/link-cached:1', 'cat', '/after']));
    expect(run.stdout).toBe('base-2\nearly-2\nrun-2\napp\n');

    // A plain COPY of the same file is keyed by its parent: a changed RUN below misses it.
    await writeTree(ctx, { Dockerfile: ['FROM link-base:1', 'RUN echo run-3 > /before', 'COPY app.txt /app/', ''].join('\n') });
    await build(ctx);
    await writeTree(ctx, { Dockerfile: ['FROM link-base:1', 'RUN echo run-4 > /before', 'COPY app.txt /app/', ''].join('\n') });
    const plain = await build(ctx);
    expect(wasCached(plain.stderr, 'COPY app.txt /app/')).toBe(false);
  });
});

function byPath(a: string, b: string): number {
  const pa = a.split(' ')[3]!;
  const pb = b.split(' ')[3]!;
  return pa < pb ? -1 : pa > pb ? 1 : 0;
}
