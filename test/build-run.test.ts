import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// RUN steps in the real sandbox (bubblewrap on overlay snapshots), as root. The results are
// read back from the OCI archive with GNU tar and run with podman.
let work: string;
let root: string;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests run RUN steps as root; run the suite as root (CI does)');
  for (const t of ['bwrap', 'podman', 'skopeo', 'tar', 'getfattr']) await requireTool(t);
  work = await tempDir('e2e-run');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function ctxWith(files: Record<string, string>): Promise<string> {
  const ctx = await fs.mkdtemp(path.join(work, 'ctx-'));
  await writeTree(ctx, files);
  return ctx;
}

async function layerListings(archive: string): Promise<string[]> {
  const dir = `${archive}.d`;
  await fs.mkdir(dir, { recursive: true });
  await tool('tar', ['-xf', archive, '-C', dir]);
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> };
  const out: string[] = [];
  for (const l of manifest.layers) out.push((await tool('tar', ['-tzf', path.join(dir, 'blobs/sha256', l.digest.slice(7))])).stdout);
  return out;
}

describe('RUN', () => {
  it('captures what a step adds and deletes, and podman runs the result', async () => {
    const ctx = await ctxWith({
      Dockerfile: [
        'FROM busybox',
        'COPY greet.sh /usr/local/bin/greet',
        'RUN chmod 0755 /usr/local/bin/greet && echo built > /built.txt && rm /etc/group && mkdir -p /data/sub && echo app:x:1234:1234::/data:/bin/sh >> /etc/passwd && chown -R 1234:1234 /data',
        'USER app',
        'RUN id -u > /tmp/whoami && touch /data/sub/mine',
        'USER root',
        'CMD ["/usr/local/bin/greet"]',
        '',
      ].join('\n'),
      'greet.sh': '#!/bin/sh\necho "greetings, $(cat /built.txt), uid $(cat /tmp/whoami)"\nls -n /data/sub/mine | awk \'{print $3}\'\n',
    });
    const oci = path.join(work, 'run.tar');
    const docker = path.join(work, 'run-docker.tar');
    const r = await tsbuild(['build', '--progress', 'plain', '-t', 'runtest:1', '--output', `type=oci,dest=${oci}`, '--output', `type=docker,dest=${docker}`, ctx], { root });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const layers = await layerListings(oci);
    const runLayer = layers[2]!;
    expect(runLayer).toMatch(/^built\.txt$/m);
    expect(runLayer).toMatch(/^etc\/\.wh\.group$/m);
    expect(runLayer).not.toMatch(/^(dev|proc)\/?$/m); // sandbox mount points never land in a layer
    expect(runLayer).not.toMatch(/resolv\.conf/);
    await tool('podman', ['load', '-q', '-i', docker]);
    const run = await tool('podman', ['run', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rm', 'runtest:1']);
    expect(run.stdout).toBe('greetings, built, uid 1234\n1234\n');
  });

  it('reuses RUN results from the cache, and reruns after an input changes', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy.txt\n', 'a.txt': 'one' });
    expect((await tsbuild(['build', ctx], { root })).code).toBe(0);
    const again = await tsbuild(['build', '--progress', 'plain', ctx], { root });
    expect(again.stderr.match(/CACHED/g)?.length).toBe(2);
    await fs.writeFile(path.join(ctx, 'a.txt'), 'two');
    const out = path.join(work, 'changed');
    const changed = await tsbuild(['build', '--progress', 'plain', '--output', `type=local,dest=${out}`, ctx], { root });
    expect(changed.stderr).not.toMatch(/CACHED/);
    expect(await fs.readFile(path.join(out, 'copy.txt'), 'utf8')).toBe('two');
  });

  it('copies files made by RUN from one stage into another', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox AS build\nRUN mkdir /out && echo artefact > /out/app\nFROM scratch\nCOPY --from=build /out/app /app\n' });
    const out = path.join(work, 'ms');
    const r = await tsbuild(['build', '--output', `type=local,dest=${out}`, ctx], { root });
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(out, 'app'), 'utf8')).toBe('artefact\n');
  });

  it('reports a failing RUN with its line, exit code and last output, and leaves nothing behind', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN echo first line && echo the reason >&2 && exit 3\n' });
    const r = await tsbuild(['build', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: .*exited with code 3/);
    expect(r.stderr).toContain('the reason');
    expect(r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/);
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
    const mounts = await fs.readFile('/proc/mounts', 'utf8');
    expect(mounts).not.toContain(root);
  });

  it('gives a command that does not exist exit code 127 as an error', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN no-such-command\n' });
    const r = await tsbuild(['build', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: .*code 127/);
  });
});
