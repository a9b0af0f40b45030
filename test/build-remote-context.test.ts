import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { git, requireTool, startGitDaemon, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { freePort } from './support/registry.js';

// Remote build contexts as buildx takes them, against real servers on loopback: `git daemon`
// serving a repository made here (a tag, a branch, a subdirectory), and a node HTTP server
// serving tarballs made by GNU tar. Every build runs with its own TMPDIR, which must be empty
// afterwards: the fetched context is removed whether the build succeeded or not.

let work: string;
let root: string;
let daemon: Awaited<ReturnType<typeof startGitDaemon>>;
let gitUrl: string;
let server: http.Server;
let httpBase: string;
const files = new Map<string, Buffer>();


beforeAll(async () => {
  await requireTool('git');
  await requireTool('tar');
  work = await tempDir('remote-ctx');
  root = path.join(work, 'store');
  const repo = path.join(work, 'srv', 'repo');
  await writeTree(repo, {
    Dockerfile: 'FROM scratch\nCOPY . /out/\n',
    'version.txt': 'v1\n',
    'sub/Dockerfile': 'FROM scratch\nCOPY . /sub-out/\n',
    'sub/only-in-sub.txt': 'sub\n',
  });
  await git(repo, 'init', '-q');
  await git(repo, 'add', '.');
  await git(repo, 'commit', '-q', '-m', 'one');
  await git(repo, 'tag', 'v1');
  await git(repo, 'checkout', '-q', '-b', 'dev');
  await fs.writeFile(path.join(repo, 'version.txt'), 'v2\n');
  await git(repo, 'commit', '-q', '-am', 'two');
  await git(repo, 'checkout', '-q', 'main');

  // A repository whose submodule points at a server that is not there.
  const withSub = path.join(work, 'srv', 'withsub');
  await writeTree(withSub, { Dockerfile: 'FROM scratch\nCOPY . /\n' });
  await git(withSub, 'init', '-q');
  await git(withSub, '-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', repo, 'mod');
  await git(withSub, 'config', '-f', '.gitmodules', 'submodule.mod.url', `git://127.0.0.1:${await freePort()}/gone`);
  await git(withSub, 'add', '.');
  await git(withSub, 'commit', '-q', '-m', 'with a submodule');

  daemon = await startGitDaemon(path.join(work, 'srv'), 'repo');
  gitUrl = daemon.url('repo');

  const tarSrc = path.join(work, 'tar-src');
  await writeTree(tarSrc, { Dockerfile: 'FROM scratch\nCOPY hello.txt /\n', 'hello.txt': 'from a tarball\n' });
  await tool('tar', ['-czf', path.join(work, 'ctx.tar.gz'), '-C', tarSrc, '.']);
  await tool('tar', ['-cf', path.join(work, 'ctx.tar'), '-C', tarSrc, '.']);
  files.set('/ctx.tar.gz', await fs.readFile(path.join(work, 'ctx.tar.gz')));
  files.set('/Dockerfile.txt', Buffer.from('FROM scratch\nLABEL from=url\n'));
  server = http.createServer((req, res) => {
    const body = files.get(req.url ?? '');
    if (body === undefined) {
      res.writeHead(404).end('no');
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  httpBase = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}, 60_000);

afterAll(async () => {
  daemon?.kill();
  await new Promise((r) => server?.close(r));
  await fs.rm(work, { recursive: true, force: true });
});

/** Builds `context` into a local output dir; returns the result and what is left in its TMPDIR. */
async function buildTo(name: string, args: string[], input?: Buffer) {
  const tmp = path.join(work, `tmp-${name}`);
  const out = path.join(work, `out-${name}`);
  await fs.mkdir(tmp, { recursive: true });
  const quiet = args.includes('--progress') ? [] : ['-q'];
  const r = await tsbuild(['build', ...quiet, '-o', `type=local,dest=${out}`, ...args], { root, env: { TMPDIR: tmp }, ...(input ? { input } : {}) });
  return { ...r, out, left: await fs.readdir(tmp) };
}

const read = (p: string) => fs.readFile(p, 'utf8');

describe('a git repository as the build context', () => {
  it('builds a tag, a branch, the default branch and a subdirectory; the clone is removed', async () => {
    const tag = await buildTo('tag', [`${gitUrl}#v1`]);
    expect(tag.code, tag.stderr).toBe(0);
    expect(await read(path.join(tag.out, 'out/version.txt'))).toBe('v1\n');
    await expect(fs.stat(path.join(tag.out, 'out/.git'))).rejects.toThrow();
    expect(tag.left).toEqual([]);

    const branch = await buildTo('branch', [`${gitUrl}#dev`]);
    expect(branch.code, branch.stderr).toBe(0);
    expect(await read(path.join(branch.out, 'out/version.txt'))).toBe('v2\n');

    const head = await buildTo('head', [gitUrl]);
    expect(head.code, head.stderr).toBe(0);
    expect(await read(path.join(head.out, 'out/version.txt'))).toBe('v1\n');

    const sub = await buildTo('sub', [`${gitUrl}#dev:sub`]);
    expect(sub.code, sub.stderr).toBe(0);
    expect((await fs.readdir(path.join(sub.out, 'sub-out'))).sort()).toEqual(['Dockerfile', 'only-in-sub.txt']);
    expect(sub.left).toEqual([]);
  });

  it('a commit id works too', async () => {
    const sha = (await tool('git', ['rev-parse', 'dev'], { cwd: path.join(work, 'srv', 'repo') })).stdout.trim();
    const r = await buildTo('sha', [`${gitUrl}#${sha}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(await read(path.join(r.out, 'out/version.txt'))).toBe('v2\n');
  });

  it('a bad ref, a path outside the repository, a submodule that cannot be fetched, an unreachable server: clear errors, nothing left', async () => {
    const badRef = await buildTo('badref', [`${gitUrl}#no-such-branch`]);
    expect(badRef.code).toBe(1);
    expect(badRef.stderr).toContain('no branch, tag or commit "no-such-branch"');
    expect(badRef.stderr).not.toMatch(/\n\s+at /);
    expect(badRef.left).toEqual([]);

    const outside = await buildTo('outside', [`${gitUrl}#main:../..`]);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toContain('the subdirectory "../.." is not a directory inside the repository');
    expect(outside.left).toEqual([]);

    const sub = await buildTo('badsub', [`${gitUrl.replace(/repo$/, 'withsub')}`]);
    expect(sub.code).toBe(1);
    expect(sub.stderr).toMatch(/a submodule of git:\/\/127\.0\.0\.1:\d+\/withsub could not be fetched/);
    expect(sub.left).toEqual([]);

    const port = await freePort();
    const down = await buildTo('down', [`git://127.0.0.1:${port}/repo`]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`cannot fetch the git repository git://127.0.0.1:${port}/repo`);
    expect(down.left).toEqual([]);
  });
});

describe('a tarball URL or stdin as the build context', () => {
  it('a gzip tarball URL builds; a plain-text URL is the Dockerfile; a 404 is a clear error', async () => {
    const r = await buildTo('url', [`${httpBase}/ctx.tar.gz`]);
    expect(r.code, r.stderr).toBe(0);
    expect(await read(path.join(r.out, 'hello.txt'))).toBe('from a tarball\n');
    expect(r.left).toEqual([]);

    const df = await tsbuild(['build', '-q', `${httpBase}/Dockerfile.txt`], { root, env: { TMPDIR: path.join(work, 'tmp-url') } });
    expect(df.code, df.stderr).toBe(0);
    const inspect = await tsbuild(['inspect', df.stdout.trim()], { root });
    expect(inspect.stdout).toContain('"from": "url"');

    const missing = await buildTo('404', [`${httpBase}/nope.tar`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`cannot fetch the build context ${httpBase}/nope.tar: HTTP 404`);
    expect(missing.left).toEqual([]);
  });

  it('- reads a tar from stdin; -f - with it is a usage error', async () => {
    const r = await buildTo('stdin', ['-'], await fs.readFile(path.join(work, 'ctx.tar')));
    expect(r.code, r.stderr).toBe(0);
    expect(await read(path.join(r.out, 'hello.txt'))).toBe('from a tarball\n');
    expect(r.left).toEqual([]);
    const both = await tsbuild(['build', '-f', '-', '-'], { root });
    expect(both.code).toBe(2);
  });
});

describe('ADD <git URL>', () => {
  it('copies a tag, a branch subdirectory, and with --keep-git-dir the .git (no credentials in it)', async () => {
    const ctx = path.join(work, 'ctx-add-git');
    await writeTree(ctx, {
      Dockerfile: `FROM scratch\nADD ${gitUrl}#v1 /src/\nADD ${gitUrl}#dev:sub /sub/\nADD --keep-git-dir=true ${gitUrl}#dev /kept/\n`,
    });
    const r = await buildTo('add-git', ['--progress', 'plain', ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(await read(path.join(r.out, 'src/version.txt'))).toBe('v1\n');
    await expect(fs.stat(path.join(r.out, 'src/.git'))).rejects.toThrow();
    expect((await fs.readdir(path.join(r.out, 'sub'))).sort()).toEqual(['Dockerfile', 'only-in-sub.txt']);
    expect(await read(path.join(r.out, 'kept/version.txt'))).toBe('v2\n');
    expect(await read(path.join(r.out, 'kept/.git/config'))).toContain(`url = ${gitUrl}`);
    expect(r.left).toEqual([]);
  });

  it('is cached while the branch stays, and runs again when it moves', async () => {
    const ctx = path.join(work, 'ctx-add-moving');
    await writeTree(ctx, { Dockerfile: `FROM scratch\nADD ${gitUrl}#moving /m/\n` });
    const repo = path.join(work, 'srv', 'repo');
    await git(repo, 'branch', '-f', 'moving', 'v1');
    const first = await buildTo('moving-1', ['--progress', 'plain', ctx]);
    expect(first.code, first.stderr).toBe(0);
    expect(await read(path.join(first.out, 'm/version.txt'))).toBe('v1\n');
    const again = await buildTo('moving-2', ['--progress', 'plain', ctx]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/ADD [^\n]*#moving \/m\/\n#\d+ CACHED/);
    await git(repo, 'branch', '-f', 'moving', 'dev');
    const moved = await buildTo('moving-3', ['--progress', 'plain', ctx]);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stderr).not.toMatch(/#moving \/m\/\n#\d+ CACHED/);
    expect(await read(path.join(moved.out, 'm/version.txt'))).toBe('v2\n');
  });

  it('a bad ref fails at the ADD line, naming the ref', async () => {
    const ctx = path.join(work, 'ctx-add-bad');
    await writeTree(ctx, { Dockerfile: `FROM scratch\nADD ${gitUrl}#nope /x/\n` });
    const r = await buildTo('add-bad', [ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: ADD git:\/\/127\.0\.0\.1:\d+\/repo#nope: .*no branch, tag or commit "nope"/);
    expect(r.left).toEqual([]);
  });
});
