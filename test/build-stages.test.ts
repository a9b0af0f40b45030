import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// Multi-stage COPY --from, ONBUILD, ADD of archives and URLs: checked on the rootfs written
// with --output type=local and on the config read back by skopeo.
let work: string;
let root: string;
let server: http.Server;
let baseUrl: string;
const payload = 'downloaded content\n';
const payloadDigest = `sha256:${createHash('sha256').update(payload).digest('hex')}`;

beforeAll(async () => {
  for (const t of ['skopeo', 'tar', 'bzip2', 'xz']) await requireTool(t);
  work = await tempDir('e2e-stages');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  server = http.createServer((req, res) => {
    if (req.url === '/files/data.txt') {
      res.writeHead(200, { 'content-type': 'text/plain', 'last-modified': 'Tue, 14 Nov 2023 22:13:20 GMT' });
      res.end(payload);
    } else {
      res.writeHead(404);
      res.end('no');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await fs.rm(work, { recursive: true, force: true });
});

async function buildLocal(files: Record<string, string>, extra: string[] = []): Promise<{ code: number; stderr: string; out: string }> {
  const ctx = await fs.mkdtemp(path.join(work, 'ctx-'));
  await writeTree(ctx, files);
  const out = path.join(ctx, '..', `${path.basename(ctx)}-out`);
  const r = await tsbuild(['build', ...extra, '--output', `type=local,dest=${out}`, ctx], { root });
  return { code: r.code, stderr: r.stderr, out };
}

describe('multi-stage builds', () => {
  it('copies from a stage by name and by index, building only what the target needs', async () => {
    const r = await buildLocal({
      Dockerfile: [
        'FROM busybox AS build',
        'COPY src/ /out/',
        'FROM scratch AS unused',
        'COPY does-not-exist /',
        'FROM scratch',
        'COPY --from=build /out/a.txt /a.txt',
        'COPY --from=0 /out/sub /sub',
        'COPY --from=busybox /bin/busybox /bin/busybox',
        '',
      ].join('\n'),
      'src/a.txt': 'A',
      'src/sub/b.txt': 'B',
    });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(r.out, 'a.txt'), 'utf8')).toBe('A');
    expect(await fs.readFile(path.join(r.out, 'sub/b.txt'), 'utf8')).toBe('B');
    expect((await fs.stat(path.join(r.out, 'bin/busybox'))).size).toBeGreaterThan(100_000);
  });

  it('--target stops at the named stage', async () => {
    const r = await buildLocal({ Dockerfile: 'FROM scratch AS one\nCOPY a /a\nFROM scratch\nCOPY b /b\n', a: 'a', b: 'b' }, ['--target', 'one']);
    expect(r.code).toBe(0);
    await expect(fs.readFile(path.join(r.out, 'a'), 'utf8')).resolves.toBe('a');
    await expect(fs.access(path.join(r.out, 'b'))).rejects.toThrow();
  });

  it('runs ONBUILD triggers of a base image in the child build', async () => {
    const ctx = await fs.mkdtemp(path.join(work, 'onbuild-'));
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nONBUILD COPY trigger.txt /triggered.txt\nONBUILD LABEL from=onbuild\n', 'trigger.txt': 'T' });
    expect((await tsbuild(['build', '-t', 'onbuild-base:1', ctx], { root })).code).toBe(0);
    const r = await buildLocal({ Dockerfile: 'FROM onbuild-base:1\n', 'trigger.txt': 'child' });
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(r.out, 'triggered.txt'), 'utf8')).toBe('child');
  });

  it('passes ARG and build args through stages as BuildKit does', async () => {
    const ctx = await fs.mkdtemp(path.join(work, 'args-'));
    await writeTree(ctx, {
      Dockerfile: 'ARG VERSION=1.0\nFROM busybox\nARG VERSION\nARG FLAVOR=plain\nENV APP_VERSION=${VERSION} APP_FLAVOR=$FLAVOR\nLABEL v="${VERSION:-none}-${FLAVOR}"\n',
    });
    const oci = path.join(ctx, 'o.tar');
    const r = await tsbuild(['build', '--build-arg', 'FLAVOR=extra', '--build-arg', 'UNUSED=1', '--output', `type=oci,dest=${oci}`, ctx], { root });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/UNUSED/); // the warning names the unused build arg
    const cfg = JSON.parse((await tool('skopeo', ['inspect', '--config', `oci-archive:${oci}`])).stdout) as { config: { Env: string[]; Labels: Record<string, string> } };
    expect(cfg.config.Env).toContain('APP_VERSION=1.0');
    expect(cfg.config.Env).toContain('APP_FLAVOR=extra');
    expect(cfg.config.Labels.v).toBe('1.0-extra');
  });
});

describe('COPY wildcards', () => {
  it('matches [class] patterns; [[] and \\[ name a literal bracket (Go filepath.Match, as BuildKit)', async () => {
    const r = await buildLocal({
      Dockerfile: 'FROM scratch\nCOPY a[[]1].txt /lit/\nCOPY a\\\\[1].txt /lit2/\nCOPY a[1].txt /class/\nCOPY a1.txt b?.txt /several/\n',
      'a[1].txt': 'bracket',
      'a1.txt': 'one',
      'b2.txt': 'two',
    });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const list = async (d: string): Promise<string[]> => (await fs.readdir(path.join(r.out, d))).sort();
    expect(await list('lit')).toEqual(['a[1].txt']);
    expect(await list('lit2')).toEqual(['a[1].txt']);
    expect(await list('class')).toEqual(['a1.txt']);
    expect(await list('several')).toEqual(['a1.txt', 'b2.txt']);
  });
});

describe('COPY --exclude', () => {
  it('leaves out what the patterns match, relative to each source', async () => {
    const r = await buildLocal({
      Dockerfile: 'FROM scratch\nCOPY --exclude=*.log --exclude=tmp src/ /d/\nCOPY --exclude=*.md *.txt *.md /top/\n',
      'src/keep.txt': 'k',
      'src/drop.log': 'l',
      'src/sub/also.log': 'l',
      'src/sub/keep2.txt': 'k2',
      'src/tmp/x.txt': 'x',
      'a.txt': 'a',
      'b.md': 'b',
    });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const list = async (d: string): Promise<string[]> => (await fs.readdir(d, { recursive: true })).map(String).sort();
    expect(await list(path.join(r.out, 'd'))).toEqual(['keep.txt', 'sub', 'sub/also.log', 'sub/keep2.txt']);
    expect(await list(path.join(r.out, 'top'))).toEqual(['a.txt']);
  });
});

describe('ADD', () => {
  it('unpacks local tar, tar.gz, tar.bz2 and tar.xz archives, and copies other files', async () => {
    const ctx = await fs.mkdtemp(path.join(work, 'add-'));
    await writeTree(ctx, { 'src/d/one.txt': 'one', 'src/two.txt': 'two', 'plain.txt': 'plain' });
    await tool('tar', ['-C', path.join(ctx, 'src'), '-cf', path.join(ctx, 'a.tar'), '.']);
    await tool('tar', ['-C', path.join(ctx, 'src'), '-czf', path.join(ctx, 'a.tgz'), '.']);
    await tool('tar', ['-C', path.join(ctx, 'src'), '-cjf', path.join(ctx, 'a.tbz'), '.']);
    await tool('tar', ['-C', path.join(ctx, 'src'), '-cJf', path.join(ctx, 'a.txz'), '.']);
    await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\nADD a.tar /t/\nADD a.tgz /gz/\nADD a.tbz /bz/\nADD a.txz plain.txt /xz/\nCOPY a.tgz /copied/\n');
    const out = path.join(work, 'add-out');
    const r = await tsbuild(['build', '--output', `type=local,dest=${out}`, ctx], { root });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    for (const d of ['t', 'gz', 'bz', 'xz']) {
      expect(await fs.readFile(path.join(out, d, 'd/one.txt'), 'utf8')).toBe('one');
      expect(await fs.readFile(path.join(out, d, 'two.txt'), 'utf8')).toBe('two');
    }
    expect(await fs.readFile(path.join(out, 'xz/plain.txt'), 'utf8')).toBe('plain');
    expect((await fs.stat(path.join(out, 'copied/a.tgz'))).isFile()).toBe(true); // COPY never unpacks
  });

  it('downloads a URL, checks --checksum, and keeps Last-Modified and mode 0600', async () => {
    const r = await buildLocal({ Dockerfile: `FROM scratch\nADD --checksum=${payloadDigest} ${baseUrl}/files/data.txt /dl/\n` });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const p = path.join(r.out, 'dl/data.txt');
    expect(await fs.readFile(p, 'utf8')).toBe(payload);
    const st = await fs.stat(p);
    expect(st.mode & 0o777).toBe(0o600);
    expect(Math.floor(st.mtimeMs / 1000)).toBe(1700000000);
  });

  it('refuses a download whose checksum does not match, and a 404', async () => {
    const bad = await buildLocal({ Dockerfile: `FROM scratch\nADD --checksum=sha256:${'0'.repeat(64)} ${baseUrl}/files/data.txt /dl/\n` });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Dockerfile:2: .*checksum/);
    const missing = await buildLocal({ Dockerfile: `FROM scratch\nADD ${baseUrl}/files/nope /dl/\n` });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/404/);
  });
});
