import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RootfsView, type IndexedEntry } from '../image/rootfs-view.js';
import { planCopy } from './copy-plan.js';
import { resolveSources, type PathFilter, type SourceRoot } from './copy-sources.js';
import { TsbuildError } from '../errors.js';

let ctx: string;
let outside: string;

beforeAll(async () => {
  ctx = await fs.mkdtemp(path.join(os.tmpdir(), 'tsb-copy-'));
  outside = await fs.mkdtemp(path.join(os.tmpdir(), 'tsb-outside-'));
  await fs.writeFile(path.join(outside, 'secret'), 'host secret');
  await fs.mkdir(path.join(ctx, 'src/sub'), { recursive: true });
  await fs.writeFile(path.join(ctx, 'a.txt'), 'a');
  await fs.writeFile(path.join(ctx, 'b.txt'), 'b');
  await fs.writeFile(path.join(ctx, 'src/main.js'), 'main');
  await fs.writeFile(path.join(ctx, 'src/sub/x.js'), 'x');
  await fs.writeFile(path.join(ctx, 'src/skip.log'), 'log');
  await fs.symlink('main.js', path.join(ctx, 'src/link.js'));
  await fs.symlink(path.join(outside, 'secret'), path.join(ctx, 'escape'));
  await fs.symlink('../../', path.join(ctx, 'up'));
  await fs.symlink('a.txt', path.join(ctx, 'alias'));
  await fs.mkdir(path.join(ctx, 'linked/deeper'), { recursive: true });
  await fs.writeFile(path.join(ctx, 'linked/one'), 'same inode');
  await fs.link(path.join(ctx, 'linked/one'), path.join(ctx, 'linked/two'));
  await fs.link(path.join(ctx, 'linked/one'), path.join(ctx, 'linked/deeper/three'));
  await fs.mkdir(path.join(ctx, 'store'));
  await fs.writeFile(path.join(ctx, 'store/real'), 'in the stage');
  await fs.symlink('/store/real', path.join(ctx, 'abs'));
});
afterAll(async () => {
  await fs.rm(ctx, { recursive: true, force: true });
  await fs.rm(outside, { recursive: true, force: true });
});

const dir = (p: string): IndexedEntry => ({ path: p, type: 'dir', mode: 0o700, uid: 5, gid: 5, mtime: 1, size: 0 });
const view = new RootfsView([{ entries: [dir('app'), dir('usr'), dir('usr/bin'), { path: 'bin', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: 0, size: 0, linkTarget: 'usr/bin' }], whiteouts: [], opaqueDirs: [] }]);
const filter: PathFilter = { matches: (p) => p.endsWith('.log'), matchingPattern: () => ({ pattern: '*.log' }) };
const root = (): SourceRoot => ({ dir: ctx, kind: 'context', label: 'build context', filter, filterFile: '.dockerignore' });

async function plan(srcs: string[], dest: string, extra: Partial<Parameters<typeof planCopy>[2]> = {}) {
  const matches = await resolveSources(root(), srcs, { instruction: 'COPY' });
  const entries = await planCopy(root(), matches, { dest, workdir: '/', view, createdMtime: 0, ...extra });
  return Object.fromEntries(entries.map((e) => [e.path, e]));
}

describe('COPY planning', () => {
  it('copies a file to a new name', async () => {
    const e = await plan(['a.txt'], '/app/renamed');
    expect(Object.keys(e)).toEqual(['app', 'app/renamed']);
    expect(e['app']!.mode).toBe(0o700); // existing parent keeps its metadata
    expect(e['app/renamed']!.uid).toBe(0);
  });

  it('copies into a directory named with a slash, or existing, or "."', async () => {
    expect(Object.keys(await plan(['a.txt'], '/new/'))).toEqual(['new', 'new/a.txt']);
    expect(Object.keys(await plan(['a.txt'], '/app'))).toContain('app/a.txt');
    expect(Object.keys(await plan(['a.txt'], '.', { workdir: '/app' }))).toContain('app/a.txt');
  });

  it('copies the contents of a directory, not the directory, skipping ignored files', async () => {
    const e = await plan(['src'], '/dst');
    expect(Object.keys(e)).toEqual(['dst', 'dst/link.js', 'dst/main.js', 'dst/sub', 'dst/sub/x.js']);
    expect(e['dst/link.js']!.type).toBe('symlink');
    expect(e['dst/link.js']!.linkTarget).toBe('main.js');
  });

  it('expands wildcards into a directory', async () => {
    expect(Object.keys(await plan(['*.txt'], '/t/'))).toEqual(['t', 't/a.txt', 't/b.txt']);
  });

  it('allows a wildcard that matches nothing, as BuildKit does', async () => {
    expect(await plan(['*.none'], '/t/')).toEqual({});
  });

  it('follows a symlink source inside the context', async () => {
    const e = await plan(['alias'], '/t/');
    expect(e['t/alias']!.type).toBe('file');
  });

  it('resolves the destination through symlinks in the image', async () => {
    expect(Object.keys(await plan(['a.txt'], '/bin/'))).toEqual(['usr', 'usr/bin', 'usr/bin/a.txt']);
  });

  it('applies --chown and --chmod, also to created parents', async () => {
    const e = await plan(['a.txt'], '/x/y/z', { chown: { uid: 7, gid: 8 }, chmod: 0o640 });
    expect(e['x/y/z']).toMatchObject({ uid: 7, gid: 8, mode: 0o640 });
    expect(e['x']).toMatchObject({ uid: 7, gid: 8, mode: 0o755 });
  });

  it.each([
    [['../x'], 'CONTEXT_ESCAPE'],
    [['escape'], 'CONTEXT_ESCAPE'],
    [['up/etc/passwd'], 'CONTEXT_ESCAPE'],
    [['missing.txt'], 'CONTEXT_SOURCE_MISSING'],
    [['src/skip.log'], 'CONTEXT_SOURCE_EXCLUDED'],
  ])('refuses %s with %s', async (srcs, code) => {
    try {
      await plan(srcs, '/t/');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(TsbuildError);
      expect((e as TsbuildError).code).toBe(code);
    }
  });
});

describe('hard links (fsutil copy: one inode map per source argument)', () => {
  it('makes later names of one inode hard links to the first, in path order', async () => {
    const e = await plan(['linked'], '/h/');
    // h/deeper/three sorts first ('d' < 'o'): it carries the content.
    expect(e['h/deeper/three']).toMatchObject({ type: 'file', size: 10 });
    expect(e['h/one']).toMatchObject({ type: 'hardlink', linkTarget: 'h/deeper/three', size: 0 });
    expect(e['h/one']!.srcAbs).toBeUndefined();
    expect(e['h/two']).toMatchObject({ type: 'hardlink', linkTarget: 'h/deeper/three' });
  });

  it('keeps separate source arguments, and each wildcard match, separate files', async () => {
    const e = await plan(['linked/one', 'linked/two'], '/h/');
    expect([e['h/one']!.type, e['h/two']!.type]).toEqual(['file', 'file']);
    const w = await plan(['linked/*'], '/w/');
    expect([w['w/one']!.type, w['w/two']!.type, w['w/three']!.type]).toEqual(['file', 'file', 'file']);
  });
});

describe('sources in a stage root (chroot-style symlinks)', () => {
  const stage = (): SourceRoot => ({ dir: ctx, kind: 'stage', label: 'stage s' });
  const resolve = (srcs: string[]) => resolveSources(stage(), srcs, { instruction: 'COPY' });

  it('resolves an absolute symlink inside the root', async () => {
    const [m] = await resolve(['abs']);
    expect(m!.matches[0]!.abs).toBe(path.join(ctx, 'store/real'));
  });

  it('never reaches the host: an absolute link to a host file and a climbing link name paths in the root', async () => {
    // `escape` -> <outside>/secret and `up` -> ../../ both stay in the root, where nothing is.
    for (const src of ['escape', 'up/etc/passwd']) {
      await expect(resolve([src])).rejects.toMatchObject({ code: 'CONTEXT_SOURCE_MISSING' });
    }
  });
});
