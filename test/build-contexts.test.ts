import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { git, requireTool, startGitDaemon, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// `--build-context NAME=VALUE` as buildx takes it: a local directory, docker-image://REF, a git
// repository served by `git daemon` and a tarball served over HTTP on loopback. Each build runs
// with its own TMPDIR, which must be empty afterwards (fetched contexts are removed).

let work: string;
let root: string;
let daemon: Awaited<ReturnType<typeof startGitDaemon>>;
let gitUrl: string;
let server: http.Server;
let tarUrl: string;


beforeAll(async () => {
  await requireTool('git');
  await requireTool('tar');
  work = await tempDir('named-ctx');
  root = path.join(work, 'store');
  await storeWithBusybox(root);

  const repo = path.join(work, 'srv', 'lib');
  await writeTree(repo, { 'lib.txt': 'from git\n' });
  await git(repo, 'init', '-q');
  await git(repo, 'add', '.');
  await git(repo, 'commit', '-q', '-m', 'one');
  daemon = await startGitDaemon(path.join(work, 'srv'), 'lib');
  gitUrl = daemon.url('lib');

  const tarSrc = path.join(work, 'tar-src');
  await writeTree(tarSrc, { 'data/t.txt': 'from a tarball\n' });
  await tool('tar', ['-czf', path.join(work, 'ctx.tar.gz'), '-C', tarSrc, '.']);
  const body = await fs.readFile(path.join(work, 'ctx.tar.gz'));
  server = http.createServer((req, res) => {
    if (req.url !== '/ctx.tar.gz') return void res.writeHead(404).end('no');
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tarUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/ctx.tar.gz`;
}, 120_000);

afterAll(async () => {
  daemon?.kill();
  await new Promise((r) => server?.close(r));
  await fs.rm(work, { recursive: true, force: true });
});

/** A build in a fresh context dir with this Dockerfile; the result, its local output and what is left in TMPDIR. */
async function build(name: string, dockerfile: string, args: string[], opts: { local?: boolean } = {}) {
  const ctx = path.join(work, `ctx-${name}`);
  await writeTree(ctx, { Dockerfile: dockerfile, 'main.txt': 'main context\n' });
  const tmp = path.join(work, `tmp-${name}`);
  const out = path.join(work, `out-${name}`);
  await fs.mkdir(tmp, { recursive: true });
  const output = opts.local === false ? [] : ['-o', `type=local,dest=${out}`];
  const r = await tsbuild(['build', '-q', ...output, ...args, ctx], { root, env: { TMPDIR: tmp }, cwd: work });
  return { ...r, out, left: await fs.readdir(tmp) };
}

const read = (p: string) => fs.readFile(p, 'utf8');

describe('a directory as a named context', () => {
  it('is read by COPY --from and RUN --mount from=, with its own .dockerignore, and keyed by its content', async () => {
    const dir = path.join(work, 'shared');
    await writeTree(dir, { 'a.txt': 'shared a\n', 'sub/b.txt': 'shared b\n', 'secret.key': 'ignored\n', '.dockerignore': '*.key\n' });
    const df = 'FROM busybox\nCOPY --from=shared . /s/\nRUN --mount=type=bind,from=shared,target=/m cat /m/sub/b.txt > /from-mount.txt\n';
    const first = await build('dir1', df, ['--build-context', 'shared=shared']);
    expect(first.code, first.stderr).toBe(0);
    expect(await read(path.join(first.out, 's/a.txt'))).toBe('shared a\n');
    expect(await read(path.join(first.out, 's/sub/b.txt'))).toBe('shared b\n');
    expect(await read(path.join(first.out, 'from-mount.txt'))).toBe('shared b\n');
    // BuildKit applies a local named context's own .dockerignore.
    await expect(fs.stat(path.join(first.out, 's/secret.key'))).rejects.toThrow();
    // the main context is not what COPY --from=shared reads
    await expect(fs.stat(path.join(first.out, 's/main.txt'))).rejects.toThrow();

    // Same content: the same image. A changed file: COPY and the bind-mounting RUN run again.
    const again = await build('dir2', df, ['--build-context', `shared=${dir}`], { local: false });
    const same = await build('dir3', df, ['--build-context', `shared=${dir}`], { local: false });
    expect(again.code, again.stderr).toBe(0);
    expect(same.stdout).toBe(again.stdout);
    await fs.writeFile(path.join(dir, 'sub/b.txt'), 'changed b\n');
    const changed = await build('dir4', df, ['--build-context', `shared=${dir}`]);
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.stdout).not.toBe(again.stdout);
    expect(await read(path.join(changed.out, 'from-mount.txt'))).toBe('changed b\n');
  });

  it('confines COPY --from and bind mounts to the directory: a symlink out of it is refused', async () => {
    const dir = path.join(work, 'escape');
    await fs.mkdir(dir, { recursive: true });
    await fs.symlink('/etc', path.join(dir, 'out'));
    const copy = await build('esc1', 'FROM busybox\nCOPY --from=esc out/passwd /x\n', ['--build-context', `esc=${dir}`]);
    expect(copy.code).toBe(1);
    expect(copy.stderr).toMatch(/outside|not found/);
    const mount = await build('esc2', 'FROM busybox\nRUN --mount=type=bind,from=esc,source=out/passwd,target=/p cat /p\n', ['--build-context', `esc=${dir}`]);
    expect(mount.code).toBe(1);
    expect(mount.stderr).toMatch(/outside|not found/);
  });

  it('is a FROM base as BuildKit makes it: one layer of its files (owners 0:0, .dockerignore applied), an empty config', async () => {
    const dir = path.join(work, 'plain');
    await writeTree(dir, { 'f.txt': 'x\n', 'sub/g.sh': 'echo g\n', 'skip.log': 'no\n', '.dockerignore': '*.log\n' });
    await fs.chmod(path.join(dir, 'sub/g.sh'), 0o750);
    await fs.chown(path.join(dir, 'f.txt'), 1234, 1234);
    const df = 'FROM plain\nCOPY --from=busybox /bin/busybox /bin/busybox\nRUN ["/bin/busybox", "cp", "/f.txt", "/copied.txt"]\n';
    const r = await build('from-dir', df, ['--build-context', `plain=${dir}`, '-t', 'from-dir']);
    expect(r.code, r.stderr).toBe(0);
    expect(await read(path.join(r.out, 'copied.txt'))).toBe('x\n');
    expect(await read(path.join(r.out, 'sub/g.sh'))).toBe('echo g\n');
    // The stage's first layer is the directory, read with GNU tar from the saved image.
    const archive = path.join(work, 'from-dir.tar');
    expect((await tsbuild(['save', '-o', archive, 'from-dir'], { root })).code).toBe(0);
    const unpacked = path.join(work, 'from-dir-oci');
    await fs.mkdir(unpacked);
    await tool('tar', ['-xf', archive, '-C', unpacked]);
    const index = JSON.parse(await read(path.join(unpacked, 'index.json'))) as { manifests: Array<{ digest: string }> };
    const blob = (d: string) => path.join(unpacked, 'blobs', 'sha256', d.slice('sha256:'.length));
    const manifest = JSON.parse(await read(blob(index.manifests[0]!.digest))) as { config: { digest: string }; layers: Array<{ digest: string }> };
    expect(manifest.layers).toHaveLength(3);
    const listing = (await tool('tar', ['-tv', '--numeric-owner', '-f', blob(manifest.layers[0]!.digest)])).stdout.trim().split('\n');
    const entries = listing.map((l) => l.split(/\s+/)).map((f) => `${f[0]} ${f[1]} ${f[5]}`);
    expect(entries).toEqual(['-rw-r--r-- 0/0 .dockerignore', '-rw-r--r-- 0/0 f.txt', 'drwxr-xr-x 0/0 sub/', '-rwxr-x--- 0/0 sub/g.sh']);
    const config = JSON.parse(await read(blob(manifest.config.digest))) as { config: { Env?: string[]; Cmd?: string[]; Entrypoint?: string[]; WorkingDir?: string } };
    expect(config.config).toEqual({ Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] });
    // The same directory again: every step a hit.
    const again = await tsbuild(['build', '--progress', 'plain', '--build-context', `plain=${dir}`, path.join(work, 'ctx-from-dir')], { root, cwd: work });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/#1 \[1\/3\] FROM plain \[context .*plain\]\n#1 CACHED/);
  });
});

describe('an image as a named context', () => {
  it('replaces FROM NAME and COPY --from=NAME, also over a real image name', async () => {
    // "alpine" is not in the store and is never pulled: the named context replaces it.
    const r = await build('img', 'FROM alpine\nCOPY --from=tools /bin/busybox /opt/busybox\nRUN /opt/busybox echo ran > /ran.txt\n', [
      '--pull', 'never', '--build-context', 'alpine=docker-image://busybox', '--build-context', 'tools=docker-image://busybox:latest',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(await read(path.join(r.out, 'ran.txt'))).toBe('ran\n');
    const a = await fs.readFile(path.join(r.out, 'opt/busybox'));
    const b = await fs.readFile(path.join(r.out, 'bin/busybox'));
    expect(a.equals(b)).toBe(true);
  });
});

describe('a named context over a stage of the same name', () => {
  it('replaces the stage in COPY --from, RUN --mount from= and FROM; the stage itself does not run', async () => {
    const dir = path.join(work, 'deps-dir');
    await writeTree(dir, { 'x.txt': 'from the named context\n' });
    const df = 'FROM busybox AS deps\nRUN exit 3\nFROM busybox AS base\nRUN exit 4\nFROM base\nCOPY --from=deps /x.txt /x.txt\nRUN --mount=type=bind,from=deps,target=/d cp /d/x.txt /y.txt\n';
    const r = await build('over-stage', df, ['--build-context', `deps=${dir}`, '--build-context', 'base=docker-image://busybox']);
    expect(r.code, r.stderr).toBe(0);
    expect(await read(path.join(r.out, 'x.txt'))).toBe('from the named context\n');
    expect(await read(path.join(r.out, 'y.txt'))).toBe('from the named context\n');
    // without the contexts the stages run (and fail): the Dockerfile is not trivially green
    const plain = await build('over-stage-plain', df, []);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/exit (3|4)/);
  });
});

describe('remote named contexts', () => {
  it('a git repository and a tarball URL are fetched for COPY --from, then removed', async () => {
    const r = await build('remote', 'FROM scratch\nCOPY --from=lib lib.txt /lib.txt\nCOPY --from=tarball data/t.txt /t.txt\n', [
      '--build-context', `lib=${gitUrl}`, '--build-context', `tarball=${tarUrl}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(await read(path.join(r.out, 'lib.txt'))).toBe('from git\n');
    expect(await read(path.join(r.out, 't.txt'))).toBe('from a tarball\n');
    expect(r.left).toEqual([]);
  });
});

describe('bad --build-context values', () => {
  it.each([
    ['nameless', 'noequals', /expected NAME=VALUE/],
    ['missing dir', 'x=./no-such-dir', /"\.\/no-such-dir" is not a directory \(it does not exist\)/],
    ['unknown scheme', 'x=ftp://example.invalid/a', /unknown kind of context "ftp:\/\/example.invalid\/a"/],
    ['bad image', 'x=docker-image://UPPER:case:bad', /is not an image reference/],
  ])('%s: exit 2 naming the value', async (_label, value, message) => {
    const r = await build(`bad-${_label.replace(/\s/g, '-')}`, 'FROM scratch\nCOPY --from=x . /\n', ['--build-context', value]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--build-context "${value}"`);
    expect(r.stderr).toMatch(message);
    expect(r.left).toEqual([]);
  });
});
