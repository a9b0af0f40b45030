import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { CLI, MAKE_BUSYBOX, withTestUser } from './support/rootless.js';

// --isolation=sandbox|chroot|none and the copy-and-walk snapshots (TSBUILD_SNAPSHOTTER=copy),
// through the CLI, as root. The same Dockerfile must give the same layers (diff IDs) whichever
// way it ran; podman runs the results.
let work: string;
let root: string;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests run RUN steps as root (chroot needs it); run the suite as root (CI does)');
  for (const t of ['bwrap', 'podman', 'tar', 'getfattr', 'setpriv', 'unshare']) await requireTool(t);
  work = await tempDir('e2e-isolation');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

// Creates, modifies and deletes files and directories, changes modes and owners, makes
// symlinks and hard links, replaces a file by a directory and a directory by a file.
// (Not here: rewriting, in a later step, a file hard-linked in an earlier one: overlay's
// copy-up breaks such a link, the copy-and-walk tree keeps it; see docs/design.md.)
const DOCKERFILE = [
  'FROM busybox',
  'RUN mkdir -p /app/sub/deep /app/gone/inner /app/cfg /app/todir && echo one > /app/a && echo two > /app/sub/deep/b \\',
  ' && echo x > /app/gone/inner/x && echo c > /app/cfg/c && echo f > /app/tofile && echo d > /app/todir/d \\',
  ' && ln -s a /app/link && ln /app/a /app/hard && chmod 0750 /app/sub && chown 1:1 /app/a && rm /etc/group',
  'RUN echo more >> /app/sub/deep/b && chmod 0600 /app/sub/deep/b && chown 2:2 /app/sub/deep && rm -rf /app/gone \\',
  ' && rm -rf /app/cfg && mkdir /app/cfg && echo new > /app/cfg/n && chmod 4755 /app/cfg/n && ln /app/cfg/n /app/cfg/n2 \\',
  ' && rm /app/link && ln -s cfg/n /app/link && mkdir -p /usr/local/share/x && echo y > /usr/local/share/x/y',
  'RUN rm /app/tofile && mkdir /app/tofile && echo in > /app/tofile/in && rm -rf /app/todir && echo now-a-file > /app/todir && touch /tmp/t && rm /tmp/t',
  'RUN true',
  `CMD ["sh", "-c", "cat /app/a /app/sub/deep/b /app/cfg/n2 /app/tofile/in /app/todir /usr/local/share/x/y; stat -c '%a %u:%g %h %n' /app/a /app/hard /app/sub /app/sub/deep /app/sub/deep/b /app/cfg/n /app/cfg/n2; readlink /app/link; ls /app/gone /etc/group /app/cfg/c 2>&1 | wc -l"]`,
  '',
].join('\n');

const EXPECTED_RUN = [
  'one',
  'two',
  'more',
  'new',
  'in',
  'now-a-file',
  'y',
  '644 1:1 2 /app/a',
  '644 1:1 2 /app/hard',
  '750 0:0 1 /app/sub',
  '755 2:2 1 /app/sub/deep',
  '600 0:0 1 /app/sub/deep/b',
  '4755 0:0 2 /app/cfg/n',
  '4755 0:0 2 /app/cfg/n2',
  'cfg/n',
  '3',
  '',
].join('\n');

async function ctxWith(files: Record<string, string>): Promise<string> {
  const ctx = await fs.mkdtemp(path.join(work, 'ctx-'));
  await writeTree(ctx, files);
  return ctx;
}

/** diff IDs of the image in an OCI archive, and each layer's listing (numeric owners, modes). */
async function readArchive(archive: string): Promise<{ diffIds: string[]; listings: string[] }> {
  const dir = `${archive}.d`;
  await fs.mkdir(dir, { recursive: true });
  await tool('tar', ['-xf', archive, '-C', dir]);
  const blob = async (d: string) => JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', d.slice(7)), 'utf8'));
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = (await blob(index.manifests[0]!.digest)) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const config = (await blob(manifest.config.digest)) as { rootfs: { diff_ids: string[] } };
  const listings: string[] = [];
  for (const l of manifest.layers.slice(1)) listings.push((await tool('tar', ['--numeric-owner', '-tvzf', path.join(dir, 'blobs/sha256', l.digest.slice(7))])).stdout);
  return { diffIds: config.rootfs.diff_ids, listings };
}

async function podmanRun(dockerArchive: string, name: string): Promise<string> {
  await tool('podman', ['load', '-q', '-i', dockerArchive]);
  try {
    return (await tool('podman', ['run', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rm', name])).stdout;
  } finally {
    await tool('podman', ['rmi', '-f', name]).catch(() => undefined);
  }
}

async function ourMounts(): Promise<string[]> {
  return (await fs.readFile('/proc/self/mounts', 'utf8')).split('\n').filter((l) => l.includes(work));
}


const WAYS = [
  { name: 'sandbox+overlay', args: ['--isolation', 'sandbox'], env: { TSBUILD_SNAPSHOTTER: 'overlay' } },
  { name: 'sandbox+copy', args: ['--isolation', 'sandbox'], env: { TSBUILD_SNAPSHOTTER: 'copy' } },
  { name: 'chroot', args: ['--isolation', 'chroot'], env: {} },
  { name: 'none', args: ['--isolation', 'none'], env: {} },
] as const;

describe('--isolation and copy-and-walk snapshots', () => {
  it('give the same layers for the same Dockerfile, and podman runs the results', async () => {
    const ctx = await ctxWith({ Dockerfile: DOCKERFILE });
    const results = new Map<string, { diffIds: string[]; listings: string[] }>();
    for (const way of WAYS) {
      const tag = `isolation-${way.name.replace('+', '-')}:1`;
      const oci = path.join(work, `${way.name}.tar`);
      const docker = path.join(work, `${way.name}-docker.tar`);
      const r = await tsbuild(['build', '--progress', 'plain', '--no-cache', ...way.args, '-t', tag, '-o', `type=oci,dest=${oci}`, '-o', `type=docker,dest=${docker}`, ctx], {
        root,
        env: { ...way.env, SOURCE_DATE_EPOCH: '1700000000' },
      });
      expect(r.stderr, way.name).not.toMatch(/error|warning/i);
      expect(r.code, way.name).toBe(0);
      results.set(way.name, await readArchive(oci));
      if (way.name === 'sandbox+copy' || way.name === 'none') expect(await podmanRun(docker, tag), way.name).toBe(EXPECTED_RUN);
    }
    const overlay = results.get('sandbox+overlay')!;
    // `RUN true` changes nothing: no layer (base + 3 RUN layers).
    expect(overlay.diffIds).toHaveLength(4);
    const [first, second, third] = overlay.listings;
    expect(first).toMatch(/^-{10} 0\/0 +0 .* etc\/\.wh\.group$/m);
    expect(first).toMatch(/^hrw-r--r-- 1\/1 .* app\/hard link to app\/a$/m);
    expect(second).toMatch(/ app\/\.wh\.gone$/m);
    expect(second).not.toMatch(/app\/gone\//);
    expect(second).toMatch(/ app\/cfg\/\.wh\.\.wh\.\.opq$/m);
    expect(second).toMatch(/^-rwsr-xr-x 0\/0 .* app\/cfg\/n$/m);
    expect(second).toMatch(/^hrwsr-xr-x 0\/0 .* app\/cfg\/n2 link to app\/cfg\/n$/m);
    expect(second).toMatch(/^drwxr-xr-x 0\/0 .* usr\/local\/$/m); // parents of a change are in the layer
    expect(third).toMatch(/ app\/tofile\/\.wh\.\.wh\.\.opq$/m);
    expect(third).toMatch(/^-rw-r--r-- 0\/0 .* app\/todir$/m);
    expect(third).not.toMatch(/app\/todir\/|tmp\/t$/m);
    for (const l of [first, second, third]) expect(l).not.toMatch(/^\S+ \S+ +\d+ \S+ \S+ (dev|proc|sys|etc\/resolv\.conf|etc\/hosts)\/?$/m);
    for (const way of WAYS) expect(results.get(way.name), way.name).toEqual(overlay);
  });

  it('keeps the copy tree and its stat index between builds and reads the index, not the files', async () => {
    const first = 'FROM busybox\nRUN echo a > /a && mkdir /d && echo b > /d/b\nRUN echo c > /c\n';
    const env = { TSBUILD_SNAPSHOTTER: 'copy', SOURCE_DATE_EPOCH: '1700000000' };
    const one = await tsbuild(['build', '-q', await ctxWith({ Dockerfile: first })], { root, env });
    expect(one.code).toBe(0);
    // The tree after the last step is kept as snapshots/<id>/{root,index.jsonl}. Drop /d/b
    // from its index: a build that goes on from there (its first steps cached) then reports
    // /d/b as new, which only happens if the kept index, not a fresh walk, is the before-state.
    const snaps = path.join(root, 'snapshots');
    let tampered = 0;
    for (const n of await fs.readdir(snaps)) {
      const file = path.join(snaps, n, 'index.jsonl');
      const text = await fs.readFile(file, 'utf8').catch(() => '');
      const lines = text.split('\n');
      if (!lines.some((l) => l.includes('"path":"c"')) || !lines.some((l) => l.includes('"path":"d/b"'))) continue;
      await fs.writeFile(file, lines.filter((l) => !l.includes('"path":"d/b"')).join('\n'));
      tampered++;
    }
    expect(tampered).toBe(1);
    const out = path.join(work, 'kept.tar');
    const two = await tsbuild(['build', '-q', '-o', `type=oci,dest=${out}`, await ctxWith({ Dockerfile: `${first}RUN echo e > /e\n` })], { root, env });
    expect(two.code).toBe(0);
    const { listings } = await readArchive(out);
    expect(listings).toHaveLength(3);
    expect(listings[2]).toMatch(/ d\/b$/m);
    expect(listings[2]).toMatch(/ e$/m);
    expect(listings[2]).not.toMatch(/ c$/m);
  });

  it('gives the same layers rootless (user namespace) with copy snapshots as with overlay', async () => {
    // The suite runs as root; these builds run as the tsbuild-test user scripts/setup creates.
    await withTestUser('copy', async ({ dir, give, ok }) => {
      await writeTree(path.join(dir, 'ctx'), {
        Dockerfile: [
          'FROM busybox',
          'RUN mkdir /d && echo x > /d/f && chown -R 1234:2345 /d && chmod 0700 /d && rm /etc/group && mkdir -p /app/sub && echo a > /app/sub/a && mkfifo /app/fifo',
          'RUN --mount=type=cache,target=/var/cache/thing echo c > /var/cache/thing/c && rm -rf /app/sub && mkdir /app/sub && echo b > /app/sub/b && echo more >> /d/f',
          '',
        ].join('\n'),
      });
      await give();
      const diffIds: string[][] = [];
      for (const snapshotter of ['overlay', 'copy']) {
        const out = path.join(dir, `${snapshotter}.tar`);
        await ok(`${MAKE_BUSYBOX} >/dev/null && ${CLI} build --no-cache -o type=oci,dest=${out} ${dir}/ctx`, { SOURCE_DATE_EPOCH: '1700000000', TSBUILD_SNAPSHOTTER: snapshotter });
        const { diffIds: ids, listings } = await readArchive(out);
        diffIds.push(ids);
        expect(listings[0]).toMatch(/^drwx------ 1234\/2345 .* d\/$/m);
        expect(listings[0]).toMatch(/^p\S+ 0\/0 .* app\/fifo$/m);
        expect(listings[1]).toMatch(/ app\/sub\/\.wh\.\.wh\.\.opq$/m);
      }
      expect(diffIds[1]).toEqual(diffIds[0]);
      expect(await fs.readdir(path.join(dir, 'store', 'tmp'))).toEqual([]);
    });
  });

  it.each(WAYS)('a failing RUN under $name leaves no mount, work dir or process behind', async (way) => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN echo ok > /ok\nRUN echo partial > /partial && sleep 4242.5 & echo out; exit 3\n' });
    // The sandbox's step dirs go to TMPDIR: a private one, other processes use /tmp too.
    const tmp = await fs.mkdtemp(path.join(work, 'tmpdir-'));
    const r = await tsbuild(['build', '--progress', 'plain', ...way.args, ctx], { root, env: { ...way.env, TMPDIR: tmp } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:3: .*exited with code 3/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
    expect(await ourMounts()).toEqual([]);
    expect(await fs.readdir(tmp)).toEqual([]);
    const ps = await tool('ps', ['-eo', 'args']);
    expect(ps.stdout).not.toContain('sleep 4242.5');
  });

  describe('where bwrap is missing', () => {
    let bin: string;
    beforeAll(async () => {
      // A PATH with every host tool the sandbox uses except bwrap.
      bin = path.join(work, 'bin-without-bwrap');
      await fs.mkdir(bin);
      for (const t of ['unshare', 'setpriv', 'mount', 'getfattr', 'sh', 'newuidmap', 'newgidmap', 'find', 'rm', 'cp', 'touch']) {
        const p = (await tool('sh', ['-c', `command -v ${t}`])).stdout.trim();
        await fs.symlink(p, path.join(bin, t));
      }
    });

    it('--isolation=sandbox fails naming bwrap and how to install it', async () => {
      const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN true\n' });
      const r = await tsbuild(['build', '--isolation', 'sandbox', ctx], { root, env: { PATH: bin } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/bwrap \(bubblewrap\) is not installed/);
      expect(r.stderr).toMatch(/apt-get install bubblewrap/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
    });

    it('--isolation=auto steps down to chroot with one warning and builds', async () => {
      const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN echo hi > /hi\nRUN echo there >> /hi\n' });
      const out = path.join(work, 'auto-out');
      const r = await tsbuild(['build', '--progress', 'plain', '-o', `type=local,dest=${out}`, ctx], { root, env: { PATH: bin } });
      expect(r.code).toBe(0);
      const warnings = r.stderr.split('\n').filter((l) => /warning/i.test(l));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/bwrap.*--isolation=chroot/);
      expect(await fs.readFile(path.join(out, 'hi'), 'utf8')).toBe('hi\nthere\n');
    });
  });

  // chroot(2) comes with no mounts: the engine puts /dev's devices and the host's resolver files
  // into the tree for each step and takes them out again (snapshot/chroot-provision.ts).
  it.each([['chroot'], ['none']])('--isolation=%s gives a step /dev and resolv.conf, and none of it reaches the layer', async (isolation) => {
    const ctx = await ctxWith({
      Dockerfile: [
        'FROM busybox',
        'COPY resolv.conf /etc/resolv.conf',
        // Writes to devices, /dev/shm and the resolver files go nowhere; only /out is the step's.
        'RUN echo gone > /dev/null && test -c /dev/null && test "$(head -c 3 /dev/zero | wc -c)" = 3 && echo tmp > /dev/shm/x \\',
        ' && grep -q "^nameserver" /etc/resolv.conf && ! grep -q image-resolver /etc/resolv.conf && test -s /etc/hosts \\',
        ' && echo step >> /etc/resolv.conf && echo out > /out',
        'RUN cat /etc/resolv.conf > /seen',
        '',
      ].join('\n'),
      'resolv.conf': '# image-resolver\nnameserver 192.0.2.1\n',
    });
    const out = path.join(work, `provision-${isolation}.tar`);
    const r = await tsbuild(['build', '--progress', 'plain', '--no-cache', '--isolation', isolation, '-o', `type=oci,dest=${out}`, ctx], { root, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(r.code, r.stderr).toBe(0);
    const { listings } = await readArchive(out);
    // COPY, then the two RUN layers: exactly the files the steps made.
    expect(listings).toHaveLength(3);
    expect(listings[1]!.trim().split('\n')).toEqual([expect.stringMatching(/ out$/)]);
    expect(listings[2]!.trim().split('\n')).toEqual([expect.stringMatching(/ seen$/)]);
    // The image's own resolv.conf is back, untouched by the step's append.
    const local = path.join(work, `provision-${isolation}-rootfs`);
    const l = await tsbuild(['build', '-q', '--isolation', isolation, '-o', `type=local,dest=${local}`, ctx], { root, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(l.code, l.stderr).toBe(0);
    expect(await fs.readFile(path.join(local, 'etc/resolv.conf'), 'utf8')).toBe('# image-resolver\nnameserver 192.0.2.1\n');
    expect(await fs.readFile(path.join(local, 'seen'), 'utf8')).not.toContain('image-resolver');
    expect(await fs.readdir(path.join(local, 'dev'))).toEqual([]);
  });

  it('--isolation=chroot never writes through an /etc the step swapped for a symlink', async () => {
    const decoy = await fs.mkdtemp(path.join(work, 'decoy-'));
    const ctx = await ctxWith({
      Dockerfile: `FROM busybox\nCOPY resolv.conf /etc/resolv.conf\nRUN rm -rf /etc /dev && ln -s ${decoy} /etc && ln -s ${decoy} /dev\n`,
      'resolv.conf': 'nameserver 192.0.2.1\n',
    });
    const r = await tsbuild(['build', '--progress', 'plain', '--no-cache', '--isolation', 'chroot', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/replaced \/etc\/resolv\.conf \(or its directory\)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // The host directory the links point at got nothing: no resolv.conf, no device nodes.
    expect(await fs.readdir(decoy)).toEqual([]);
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
  });

  it('keeps the fifos and device nodes a step makes, the same way under every isolation', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN mkfifo -m 0640 /pipe && mknod -m 0600 /zero c 1 5\n' });
    const seen = new Map<string, string[]>();
    for (const way of WAYS.filter((w) => w.name !== 'none')) {
      const out = path.join(work, `special-${way.name.replace('+', '-')}.tar`);
      const r = await tsbuild(['build', '--progress', 'plain', '--no-cache', ...way.args, '-o', `type=oci,dest=${out}`, ctx], { root, env: { ...way.env, SOURCE_DATE_EPOCH: '1700000000' } });
      expect(r.code, `${way.name}: ${r.stderr}`).toBe(0);
      const { diffIds, listings } = await readArchive(out);
      expect(listings[0], way.name).toMatch(/^prw-r----- 0\/0 .* pipe$/m);
      expect(listings[0], way.name).toMatch(/^crw------- 0\/0 +1,5 .* zero$/m);
      seen.set(way.name, diffIds);
    }
    const [first, ...rest] = [...seen.values()];
    for (const ids of rest) expect(ids).toEqual(first);
  });

  // A base image whose layer carries a file capability (GNU tar --xattrs, as docker save and
  // registries deliver such layers): the snapshot a RUN step runs on must have it too.
  it.each([['overlay'], ['copy']])('unpacks file capabilities of a base image into the %s snapshots', async (snapshotter) => {
    await requireTool('setcap');
    const src = await fs.mkdtemp(path.join(work, 'capsrc-'));
    await fs.mkdir(path.join(src, 'bin'));
    await fs.mkdir(path.join(src, 'usr/bin'), { recursive: true });
    await fs.copyFile((await tool('sh', ['-c', 'command -v busybox'])).stdout.trim(), path.join(src, 'bin/busybox'));
    await fs.symlink('busybox', path.join(src, 'bin/sh'));
    await fs.writeFile(path.join(src, 'usr/bin/tool'), 'tool\n');
    await tool('setcap', ['cap_net_raw+ep', path.join(src, 'usr/bin/tool')]);
    const tar = path.join(work, `caps-${snapshotter}.tar`);
    await tool('tar', ['--xattrs', '--xattrs-include=security.capability', '--format=posix', '-C', src, '-cf', tar, '.']);
    const store = path.join(work, `caps-store-${snapshotter}`);
    expect((await tsbuild(['import', tar, 'capbase:1'], { root: store })).code).toBe(0);
    const r = await tsbuild(['build', '-q', '--no-cache', await ctxWith({ Dockerfile: 'FROM capbase:1\nRUN echo hi > /hi\n' })], { root: store, env: { TSBUILD_SNAPSHOTTER: snapshotter } });
    expect(r.code, r.stderr).toBe(0);
    const found = (await tool('sh', ['-c', `find ${store}/snapshots -path '*/usr/bin/tool' -exec getfattr --absolute-names -h -n security.capability -e hex {} +`])).stdout;
    expect(found).toMatch(/^security\.capability=0x0100000200200000/m);
  });

  it('TSBUILD_SNAPSHOTTER=overlay with --isolation=chroot is a clear error', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN true\n' });
    const r = await tsbuild(['build', '--isolation', 'chroot', ctx], { root, env: { TSBUILD_SNAPSHOTTER: 'overlay' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--isolation=chroot cannot use overlay snapshots/);
  });
});
